"""Submission: one POST of one generation request, and settling it after an ambiguous failure.

Money rules, enforced here:

- Every POST carries a tag: the request's ``replyRef`` (the caller's, else one minted with
  `secrets`: unguessable, unique per submission), on every endpoint that takes one.
- The POST goes out with ``creates_job=True``: retried only when the server cannot have
  created the job (429, or a connection that never came up). Any other failure after the
  request left (a reset, a timeout, a 5xx, an unreadable 200) is *ambiguous* and is settled
  by identity first: the tag is looked up in ``GET /scheduler`` (the jobs useapi.net is
  running, with their ``replyRef``); found there under a tag the client minted, that task
  is the submission's, exactly. A caller's own ``replyRef`` may be shared by several
  submissions: it proves nothing and only narrows the strict search below.
- Otherwise (the scheduler cannot answer, or the task already ended) the task list is
  searched strictly (`matches_submission`: created at or after the POST minus the measured
  clock offset, every echoed input equal, not claimed by another submission, not seen in
  the scheduler under another tag). Exactly one candidate is adopted; more than one, or a
  list that cannot be read back far enough, is `SubmissionUnknownError` listing them.
  Only when the scheduler and the list, after ``recovery_confirm_delay``, show no such task
  is the POST sent again.
- Submissions of one prompt to one account go out one at a time, so a recovered task is
  never mistaken for a sibling's whose answer is still on its way.
- A task id, once the server returned it, is logged, passed to ``on_submitted`` hooks, and
  survives the caller's cancellation (the POST finishes in a task of its own).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import aiohttp
import attrs

from .accounts import KnownTasks
from .config import ClientConfig
from .convert import request_body, structure_task
from .errors import (
    KlingError,
    PayloadError,
    RateLimitError,
    ServerError,
    SubmissionUnknownError,
    TransportError,
)
from .files import Uploads
from .models import TaskResponse
from .reconcile import Reconciler, TaskFinder, matches_submission, new_tag, tagged
from .requests import GenerationRequest, is_remote
from .transport import Hook, Transport, call_hook, describe_error
from .waiter import PushSource

__all__ = [
    "PushReceiver",
    "ReplyTags",
    "Submission",
    "Submitter",
    "TaskFinder",
    "matches_submission",
    "new_tag",
    "tagged",
]

log = logging.getLogger("kling_async")

R = TypeVar("R", bound=GenerationRequest)


class ReplyTags(Protocol):
    """What a submission needs from a push receiver: the replyUrl of a tag, binding."""

    def reply_url_for(self, tag: str) -> str: ...

    def bind(self, tag: str, task_id: int, reply_ref: str | None = None) -> None: ...


class PushReceiver(PushSource, ReplyTags, Protocol):
    """What the client needs from a push receiver (`kling_async.webhooks.KlingWebhookReceiver`)."""

    @property
    def running(self) -> bool: ...

    async def start(self) -> str: ...

    async def stop(self) -> None: ...


@attrs.frozen
class Submission:
    """A POST under way: ``answer`` is what its caller awaits (cancelling it leaves the
    POST running); ``posting`` ends with the answer, or None when the POST failed."""

    answer: asyncio.Future[TaskResponse]
    posting: asyncio.Task[TaskResponse | None]


class Submitter:
    """Sends generation requests: uploads, the body, the POST, recovery."""

    def __init__(
        self,
        transport: Transport,
        config: ClientConfig,
        *,
        known: KnownTasks,
        find_tasks: TaskFinder,
        uploads: Uploads,
        webhook: ReplyTags | None = None,
    ) -> None:
        self._transport = transport
        self._uploads = uploads
        self._config = config
        self.known = known
        self._find_tasks = find_tasks
        self._webhook = webhook
        self.on_submitted: Hook | None = None
        #: Called with every `SubmissionUnknownError` a submission ends with, whether or not
        #: its caller still waits (one that was cancelled learns the candidates only here
        #: and in the log).
        self.on_unknown: Hook | None = None
        #: Called with the account when a POST is answered 429 although this process held a
        #: job slot for it: the shared slots then recount the jobs started elsewhere.
        self.on_busy: Callable[[str], Awaitable[None]] | None = None
        # Per key: the lock and how many submissions hold or wait for it.
        self._turns: dict[tuple[str, str, str], tuple[asyncio.Lock, list[int]]] = {}
        self.background: dict[asyncio.Task[Any], asyncio.Future[Any]] = {}
        #: Settles ambiguous failures (also the batch's resume: `Reconciler.reconcile`).
        self.reconciler = Reconciler(transport, config, find_tasks)

    @property
    def queued(self) -> int:
        """How many submissions wait for a sibling with the same key to settle."""
        return sum(users[0] - lock.locked() for lock, users in self._turns.values())

    async def aclose(self, timeout: float) -> None:
        """Let POSTs under way finish (so their task ids get reported), up to ``timeout``;
        cancelled meanwhile, each is given up on (and logged as abandoned)."""
        try:
            if self.background:
                await asyncio.wait(list(self.background), timeout=timeout)
        except asyncio.CancelledError:
            for posting, answer in list(self.background.items()):
                posting.cancel()
                answer.cancel()  # in case the task never started: its caller still waits
            raise

    async def upload_images(self, request: R, email: str | None) -> R:
        """A copy of ``request`` whose local files and bytes are uploaded to ``email``'s
        account and replaced by their URLs (``request`` itself when it has none)."""
        if not request.has_local_images():
            return request
        local = {k: v for k, v in request.image_inputs().items() if not is_remote(v)}
        urls = await asyncio.gather(*(self._uploads.upload(v, None, email) for v in local.values()))
        return request.with_image_urls(dict(zip(local, urls, strict=True)))

    def start(
        self,
        request: GenerationRequest,
        email: str | None,
        on_submitted: Hook | None = None,
        on_sending: Callable[[dict[str, Any]], object] | None = None,
        *,
        on_failed: Hook | None = None,
    ) -> Submission:
        """Build the body of ``request`` (its images already URLs) and send the POST to
        ``email``'s account in a task of its own. ``on_sending(body)`` runs just before the
        POST goes out, with the exact body (after an identical request's turn, so a caller
        that journals it never records a POST that was not sent); if it raises, nothing is
        sent and the submission fails with its exception. ``on_failed(exc)`` is called with
        the failure of the POST once sent, before its caller hears of it, and also when the
        caller has left (a hook: its failure is logged)."""
        push_tag: str | None = None
        if self._webhook is not None and request.reply_url is None:
            # A URL of its own, also when the caller's replyRef is shared by several
            # submissions; without one, the URL's tag is the submission tag too.
            push_tag = new_tag()
            request = attrs.evolve(
                request,
                reply_url=self._webhook.reply_url_for(push_tag),
                reply_ref=request.reply_ref or push_tag,
            )
        # The tag: found in the scheduler after an ambiguous failure (and the push tag).
        request = tagged(request)
        body = request_body(request)
        if email:
            body["email"] = email
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[TaskResponse] = loop.create_future()
        posting = loop.create_task(
            self._post_job(
                answer,
                request,
                body,
                email,
                on_submitted,
                on_sending=on_sending,
                on_failed=on_failed,
                push_tag=push_tag,
            )
        )
        self.background[posting] = answer
        return Submission(answer, posting)

    async def _post_job(
        self,
        answer: asyncio.Future[TaskResponse],
        request: GenerationRequest,
        body: dict[str, Any],
        email: str | None,
        on_submitted: Hook | None,
        *,
        on_sending: Callable[[dict[str, Any]], object] | None = None,
        on_failed: Hook | None = None,
        push_tag: str | None = None,
    ) -> TaskResponse | None:
        """The POST, in its own task; its outcome goes to ``answer``. ``answer`` already
        done (cancelled) means its caller left: a POST not yet sent is then never sent, and
        a failure of one sent reaches only the log."""
        # Recovery matches by prompt and images, so the prompt alone is the key.
        key = (email or "", request.endpoint, str(body.get("prompt") or ""))
        entry = self._turns.get(key)
        if entry is None:
            entry = self._turns[key] = (asyncio.Lock(), [0])
        turn, users = entry
        users[0] += 1
        sent = False
        try:
            try:
                async with turn:
                    if answer.done():  # its caller left before the POST went out
                        log.debug("a POST to %s withdrawn: its caller left", request.endpoint)
                        return None
                    if on_sending is not None:
                        on_sending(body)
                    sent = True
                    resp = await self._post_with_recovery(request, body, email)
            finally:
                users[0] -= 1
                if not users[0]:
                    del self._turns[key]
            self._submitted(request, resp, email, push_tag)
            for hook in (self.on_submitted, on_submitted):
                if hook is not None:
                    await call_hook(hook, resp)
        except asyncio.CancelledError:  # only aclose() cancels a submission
            if sent:
                log.warning(
                    "a submission to %s on %s was cancelled while its POST was out (the "
                    "client closed): the job may exist; look for it with find_tasks()",
                    request.endpoint,
                    email or "the default account",
                )
            answer.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - handed to the caller as it is
            if sent:  # not a failure of on_sending: that one is the caller's own
                await call_hook(on_failed, exc)
            if not answer.done():
                answer.set_exception(exc)
            elif isinstance(exc, SubmissionUnknownError):
                # The caller left: this log line is the only notice that a paid job may exist.
                log.warning("abandoned submission: %s", exc)
            else:
                log.debug("abandoned submission ended with %s", describe_error(exc))
            if isinstance(exc, SubmissionUnknownError):
                await call_hook(self.on_unknown, exc)
            return None
        finally:
            self.background.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
        if not answer.done():
            answer.set_result(resp)
        return resp

    def _submitted(
        self,
        request: GenerationRequest,
        resp: TaskResponse,
        email: str | None,
        push_tag: str | None,
    ) -> None:
        task_id = resp.task_id
        assert task_id is not None  # checked by _post_with_recovery
        self.known.remember(task_id, email)
        hook = self._webhook
        if hook is not None and push_tag is not None:
            try:
                if request.reply_ref == push_tag:
                    hook.bind(push_tag, task_id)
                else:  # the caller's replyRef: only then the argument (older receivers lack it)
                    hook.bind(push_tag, task_id, reply_ref=request.reply_ref)
            except Exception as exc:  # noqa: BLE001 - a receiver's failure must not cost the id
                log.warning(
                    "the push receiver did not take task %s (%s); it is polled", task_id, exc
                )
        log.info("submitted task %s (%s) on %s", task_id, request.endpoint, email or "default")

    def _busy_hook(self, email: str | None) -> Hook | None:
        """A retry hook that reports a 429 (the account is full on the server) to
        ``on_busy``; a failure there is logged, never fails the submission."""
        on_busy = self.on_busy
        if on_busy is None or not email:
            return None

        async def busy(exc: BaseException, tries: int, wait: float) -> None:
            if isinstance(exc, RateLimitError):
                try:
                    await on_busy(email)
                except Exception as failure:  # noqa: BLE001 - a recount is best effort
                    log.warning("recounting %s's job slots failed: %s", email, failure)

        return busy

    async def _post_with_recovery(
        self, request: GenerationRequest, body: dict[str, Any], email: str | None
    ) -> TaskResponse:
        path = request.endpoint
        rounds = self._config.retry.max_tries
        for round_no in range(1, rounds + 1):
            sent_at = int(time.time() * 1000)
            try:
                data = await self._transport.call(
                    "POST", path, json_body=body, creates_job=True, on_retry=self._busy_hook(email)
                )
                resp = structure_task(data)
            except TransportError as exc:
                if isinstance(exc.__cause__, aiohttp.ClientConnectorError):
                    raise  # never connected: nothing can have been created
                failure: KlingError = exc
            except (ServerError, PayloadError) as exc:
                failure = exc
            else:
                if resp.task_id is not None:
                    created = resp.task.create_time if resp.task is not None else None
                    if created:
                        self.reconciler.clock.observe(created, int(time.time() * 1000))
                    return resp
                failure = PayloadError(f"POST {path}: the answer has no task id")
            log.warning(
                "POST %s failed after it was sent (%s); looking for the task", path, failure
            )
            found = await self.reconciler.reconcile(
                body,
                endpoint=path,
                email=email,
                sent_at=sent_at,
                confirm_delay=self._config.recovery_confirm_delay,
                claimed=self.known.claimed,
                why=f"POST {path} failed after it was sent ({failure})",
                request=request,
            )
            if found is not None:
                log.warning("recovered task %s after %s", found.task_id, failure)
                return found
            if round_no < rounds:
                log.warning("no task was created by the failed POST %s; sending it again", path)
        if isinstance(failure, TransportError):
            raise SubmissionUnknownError(
                f"POST {path} kept failing ({failure}); the account shows no such task",
                method="POST",
                path=path,
                request=request,
                email=email,
                sent_at=sent_at,
            ) from failure
        raise failure
