"""KlingClient: the object users hold; a facade over the package's layers.

A call goes down once: the client checks its arguments and picks the account, then
hands over to `kling_async.jobs` (slot, submit, wait, follow), `kling_async.submit`
(uploads, the POST, settling an ambiguous failure), `kling_async.files` (uploads,
downloads) and `kling_async.transport` (the session, the auth header, one attempt under
the retry policy of `kling_async.retry`). The money rules are in `kling_async.submit`'s
docstring; the token is sent only to the API base URL, never to result or download URLs,
and never appears in a repr, a log line or an exception.

Environment: ``$USEAPI_TOKEN`` (the token), ``$KLING_BASE_URL`` (the base URL when
``base_url`` is not given), ``$KLING_SLOTS`` (shared job slots, ``redis://...``, when
``slots`` is not given) and ``$KLING_ASYNC_DEBUG=1`` (the ``kling_async`` logger at
DEBUG, with a stderr handler, when a client is made) are read by `KlingClient()`.
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from .accounts import Accounts, KnownTasks, Scheduler, TaskList, check_task_id
from .assets import Assets
from .catalog import Catalog
from .config import BASE_URL_ENV, DEFAULT_BASE_URL, DEFAULT_CONFIG, UNSET, ClientConfig, Unset
from .convert import structure_task
from .endpoints import EndpointMethods
from .errors import ConfigurationError
from .files import Downloads, Uploads
from .jobs import JobEvents, JobRunner, check_timeout
from .models import Account, ScheduledJob, SchedulerCapacity, TaskResponse
from .requests import GenerationRequest, ImageSource
from .slots import JobSlots, SlotPool
from .slots.shared import pool_from, scheduler_capacity
from .submit import PushReceiver, Submitter
from .transport import Hook, RequestInfo, Transport, check_base_url, debug_from_env
from .waiter import PollLimiter, PollPolicy, TaskWaiter

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_CONFIG",
    "ClientConfig",
    "KlingClient",
    "PushReceiver",
    "RequestInfo",
]

log = logging.getLogger("kling_async")

R = TypeVar("R", bound=GenerationRequest)


def _forwarded(layer: str, name: str, doc: str) -> Any:
    """A client attribute kept on one of its layers (the hooks live where they run)."""

    def get(self: KlingClient) -> Any:
        return getattr(getattr(self, layer), name)

    def set_(self: KlingClient, value: Any) -> None:
        setattr(getattr(self, layer), name, value)

    return property(get, set_, doc=doc)


class KlingClient(EndpointMethods):
    """Asyncio client for useapi.net's Kling API v1.

    ``token`` defaults to ``$USEAPI_TOKEN``, ``base_url`` to ``$KLING_BASE_URL`` or the
    service's. ``email`` is the default account; ``accounts`` maps several accounts to
    their ``max_jobs`` (None: read from GET /accounts/{email}). ``max_jobs`` sizes the
    single account's job slots (None: read from the server). ``session`` is used as given
    and not closed; otherwise the client owns one. Hooks (plain callables or coroutines):
    ``on_request(RequestInfo)``, ``on_retry(exc, tries, wait)`` (``wait`` in seconds: the
    server's Retry-After when it sent one; not shrunk by `fast_mode`),
    ``on_submitted(TaskResponse)``, ``on_unknown(SubmissionUnknownError)`` (an attribute:
    a paid job may exist; called also when its caller left). ``slots`` (default
    ``$KLING_SLOTS``): a ``redis://`` URL or a `SlotPool` whose job slots every process on
    it shares (`kling_async.slots`)::

        async with KlingClient() as kling:
            final = await kling.kolors_elements(prompt="...", subject_images=["a.png", "b.png"])
            await kling.download(final, "out/")
    """

    def __init__(
        self,
        token: str | None = None,
        email: str | None = None,
        base_url: str | None = None,
        max_jobs: int | None = None,
        accounts: Mapping[str, int | None] | None = None,
        *,
        config: ClientConfig | None = None,
        session: aiohttp.ClientSession | None = None,
        on_request: Hook | None = None,
        on_retry: Hook | None = None,
        on_submitted: Hook | None = None,
        webhook: PushReceiver | None = None,
        slots: str | SlotPool | None = None,
    ) -> None:
        debug_from_env()
        if config is not None and not isinstance(config, ClientConfig):
            raise ConfigurationError(f"config: must be a ClientConfig, got {type(config).__name__}")
        self.config = cfg = config or DEFAULT_CONFIG
        if email is not None and not isinstance(email, str):
            raise ConfigurationError(f"email: must be a string, got {type(email).__name__}")
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise ConfigurationError("session: must be an aiohttp.ClientSession")
        given_url = base_url if base_url is not None else os.environ.get(BASE_URL_ENV)
        self.base_url = check_base_url(given_url or DEFAULT_BASE_URL, cfg.allow_insecure)
        self.webhook = webhook
        self._started_webhook = False
        self._transport = Transport(self.base_url, token, cfg, session)
        self._accounts = Accounts.configure(self._transport, email, max_jobs, accounts)
        configured = self._accounts.configured
        self.poll_limiter = PollLimiter(
            cfg.poll.max_polls_per_second, in_flight=cfg.connection_limit or None
        )
        pool, self._owns_pool = pool_from(slots)  # slots=, else $KLING_SLOTS: shared slots
        capacity = functools.partial(scheduler_capacity, self._transport)
        fetch, email_of = self._accounts.fetch_max_jobs, self._accounts.email_of
        self.slots = JobSlots(configured, fetch, pool=pool, capacity=capacity, email_of=email_of)
        self._known = KnownTasks()
        self._tasks = TaskList(self._transport)
        self._scheduler = Scheduler(self._transport)
        self._uploads = Uploads(self._transport)
        self._downloads = Downloads(self._transport)
        #: The asset calls: ``uploaded()``, ``delete(ids)``, ``download(work_ids, folder)``.
        self.assets = Assets(self._transport, self._downloads, self._accounts.for_call)
        self._submitter = Submitter(
            self._transport,
            cfg,
            known=self._known,
            find_tasks=self.find_tasks,
            uploads=self._uploads,
            webhook=webhook,
        )
        self._submitter.on_busy = self.slots.reconcile  # a 429 despite a slot: recount
        self._waiter = TaskWaiter(self)
        self.jobs = JobRunner(
            self.slots, self._submitter, self._waiter, configured, self._accounts.with_default
        )
        self.on_request, self.on_retry, self.on_submitted = on_request, on_retry, on_submitted

    def __repr__(self) -> str:
        state = "closed" if self._transport.closed else "open"
        return f"<KlingClient {self.base_url} email={self.email!r} {state}>"

    on_request = _forwarded("_transport", "on_request", "Called with a `RequestInfo` per attempt.")
    on_retry = _forwarded("_transport", "on_retry", "Called as (exc, tries, wait) before a retry.")
    on_submitted = _forwarded("_submitter", "on_submitted", "Called with each submission's answer.")
    on_unknown = _forwarded("_submitter", "on_unknown", "Called with each SubmissionUnknownError.")

    async def __aenter__(self) -> KlingClient:
        self._transport.ensure_session()
        if self.webhook is not None and not self.webhook.running:
            await self.webhook.start()
            self._started_webhook = True
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def closed(self) -> bool:
        """Whether `aclose` was called."""
        return self._transport.closed

    @property
    def session(self) -> aiohttp.ClientSession | None:
        """The aiohttp session (the client's own, or the one given; None before first use)."""
        return self._transport.session

    @property
    def queued_submissions(self) -> int:
        """How many submissions wait for a sibling (same account and prompt) to settle."""
        return self._submitter.queued

    @property
    def push(self) -> PushReceiver | None:
        """The push receiver (``webhook=``) waiters listen to, or None when polling only."""
        return self.webhook

    async def aclose(self) -> None:
        """Close the session (if the client owns it). Safe to call more than once."""
        if self._transport.closed:
            return
        self._transport.closed = True
        try:
            await self.jobs.aclose()
            await self._submitter.aclose(self.config.request_timeout)
            await self.slots.aclose(close_pool=self._owns_pool)
        finally:
            if self.webhook is not None and self._started_webhook:
                await self.webhook.stop()
            await self._transport.aclose()

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        transport = getattr(self, "_transport", None)
        session = transport.session if transport is not None else None
        if transport is not None and transport.owns_session and session and not session.closed:
            _warn(
                f"unclosed {self!r}: use 'async with KlingClient()' or await aclose()",
                ResourceWarning,
                source=self,
                stacklevel=2,
            )

    @property
    def poll_time_bound(self) -> float | None:
        """The longest one poll can take with its retries (None: unbounded)."""
        retry = self.config.retry
        if retry.max_time is None:
            return None
        return retry.max_time + self.config.request_timeout + retry.max_retry_after

    @property
    def poll_policy(self) -> PollPolicy:
        """The polling policy waiters of this client use."""
        return self.config.poll

    email = _forwarded("_accounts", "email", "The default account (None: learnt on first use).")

    async def get_account(self, email: str) -> Account:
        """``GET /accounts/{email}``: the account's configuration, ``max_jobs`` included."""
        return await self._accounts.get(email)

    async def list_accounts(self) -> dict[str, Account]:
        """``GET /accounts``: every configured account, by email."""
        return await self._accounts.list()

    async def get_task(self, task_id: int, email: str | None = None) -> TaskResponse:
        """``GET /tasks/{task_id}``: the task's current state (one request, retried safely)."""
        check_task_id(task_id)
        email = email or self._known.email(task_id) or self.email
        if not email:
            email = await self._accounts.with_default(email)
        params = {"email": email} if email else None
        return structure_task(await self._transport.call("GET", f"tasks/{task_id}", params=params))

    async def list_tasks(
        self,
        email: str | None = None,
        *,
        content_type: str | None = None,
        page_size: int | None = None,
        created_after: int | None = None,
        created_before: int | None = None,
    ) -> list[TaskResponse]:
        """``GET /tasks/``: the account's tasks, newest first (times in epoch ms)."""
        email = await self._accounts.with_default(self._accounts.for_call(email))
        return await self._tasks.page(
            email,
            content_type=content_type,
            page_size=page_size,
            created_after=created_after,
            created_before=created_before,
        )

    async def find_tasks(
        self,
        predicate: Callable[[TaskResponse], bool],
        *,
        since: int,
        email: str | None = None,
        content_type: str | None = None,
    ) -> tuple[list[TaskResponse], bool]:
        """Tasks created since ``since`` (epoch ms) for which ``predicate`` holds, newest
        first, and whether the list was read back to ``since`` (`TaskList.find`)."""
        email = await self._accounts.with_default(self._accounts.for_call(email))
        return await self._tasks.find(
            predicate, since=since, email=email, content_type=content_type, page=self.list_tasks
        )

    async def upload_asset(
        self, source: ImageSource, content_type: str | None = None, *, email: str | None = None
    ) -> str:
        """``POST /assets``: upload a file (path or bytes) and return its URL.

        Each content is uploaded once per account per client; later calls reuse the URL.
        """
        return await self._uploads.upload(source, content_type, self._accounts.for_call(email))

    async def upload_images(self, request: R, *, email: str | None = None) -> R:
        """A copy of ``request`` whose local files and bytes are uploaded (`upload_asset`)
        and replaced by their URLs; ``submit`` does this itself."""
        return await self._submitter.upload_images(request, self._accounts.for_call(email))

    async def download(
        self,
        response: TaskResponse,
        folder: str | os.PathLike[str],
        *,
        covers: bool = False,
        clean: bool | None = None,
    ) -> list[Path]:
        """Stream every work's file (``covers``: and its cover) into ``folder``, named
        ``{task_id}-{index}{ext}``; ``clean``: the unwatermarked copy when there is one
        (`kling_async.files`; None: for videos and audio, images as served). Returns the
        paths written."""
        email = self._known.email(response.task_id) or self.email
        return await self._downloads.download(
            response, folder, email=email, covers=covers, clean=clean
        )

    async def submit(
        self,
        request: GenerationRequest,
        *,
        email: str | None = None,
        on_submitted: Hook | None = None,
        on_sending: Callable[[dict[str, Any]], object] | None = None,
    ) -> TaskResponse:
        """POST a request (its local images uploaded first) to ``email``'s account (else the
        request's, else the client's); return the answer. Never retried when the server may
        have created the job (`kling_async.submit`). No job slot is taken: see `run`.
        ``on_sending(body)``: called with the exact JSON body just before the POST goes out
        (a write-ahead record; if it raises, nothing is sent)."""
        if not isinstance(request, GenerationRequest):
            raise TypeError(f"submit() takes a request object, got {type(request).__name__}")
        email = await self._accounts.with_default(self._accounts.for_call(email or request.email))
        request = await self._submitter.upload_images(request, email)
        return await self._submitter.start(request, email, on_submitted, on_sending).answer

    async def wait(
        self,
        task: int | TaskResponse,
        *,
        email: str | None = None,
        timeout: float | Unset | None = UNSET,
        hold_slot: bool = False,
    ) -> TaskResponse:
        """Poll a task until final; return it or raise `TaskFailedError`/`TaskTimeoutError`.

        ``hold_slot`` takes one of the account's job slots while waiting (for resuming a
        job started elsewhere, so new submissions still respect maxJobs); as with `run`,
        the slot stays taken until the job ends when the wait is cancelled or times out.
        """
        check_timeout(timeout)
        task_id = task.task_id if isinstance(task, TaskResponse) else task
        email = email or self._known.email(task_id) or self.email
        if task_id and not self._known.claimed(task_id):
            # Remembered for downloads (the clean copy), and claimed: never recovered.
            self._known.remember(task_id, email)
        if hold_slot:
            return await self.jobs.wait_holding(task, email, timeout)
        return await self._waiter.wait(task, email=email, timeout=timeout)

    def watch(
        self, task: int | TaskResponse, *, email: str | None = None
    ) -> AsyncIterator[TaskResponse]:
        """Yield a task each time its status changes, ending with the final state."""
        task_id = task.task_id if isinstance(task, TaskResponse) else task
        return self._waiter.watch(task, email=email or self._known.email(task_id) or self.email)

    async def run(
        self,
        request: GenerationRequest,
        *,
        on_submitted: Hook | None = None,
        timeout: float | Unset | None = UNSET,
        events: JobEvents | None = None,
    ) -> TaskResponse:
        """Hold a job slot, submit, wait for the final state; return it or raise
        `TaskFailedError`/`TaskTimeoutError`. The slot stays held until the job is final on
        the server, even when the caller leaves (`JobRunner.run`; ``events``: `JobEvents`)."""
        if not isinstance(request, GenerationRequest):
            raise TypeError(f"run() takes a request object, got {type(request).__name__}")
        check_timeout(timeout)
        email = self._accounts.for_call(request.email)
        return await self.jobs.run(
            request, email=email, timeout=timeout, on_submitted=on_submitted, events=events
        )

    @property
    def catalog(self) -> Catalog:
        """The calls that create no job: effects, voices, elements, avatars, assets..."""
        return Catalog(self._transport, self._accounts)

    async def available(self) -> SchedulerCapacity:
        """``GET /scheduler/available``: each account's capacity as the server counts it."""
        return await self._scheduler.available()

    async def running(self) -> list[ScheduledJob]:
        """``GET /scheduler``: the jobs useapi.net is tracking now, with their ``replyRef``."""
        return await self._scheduler.running()

    async def release(self, task_id: int) -> str:
        """``DELETE /scheduler/{task_id}``: free a stuck job's slot (it still runs, charged)."""
        return await self._scheduler.release(task_id)
