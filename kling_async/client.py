"""KlingClient: the object users hold. One aiohttp session, every endpoint, safe retries.

Money rules, enforced here:

- A job-creating POST is retried only when the server cannot have created the job (429,
  or a connection that never came up). Any other failure after the request left (a reset,
  a timeout, a 5xx, an unreadable 200) is *ambiguous*: the client looks the task up in the
  account's task list (``GET /tasks/``, matching prompt and image URLs, created since the
  POST) and adopts it when found. Only when the list, checked twice, shows no such task is
  the POST sent again; when it cannot tell, `SubmissionUnknownError` says so.
- Submissions of one prompt to one account go out one at a time, so a recovered task is
  never mistaken for a sibling's.
- A task id, once the server returned it, is logged, passed to ``on_submitted`` hooks, and
  survives the caller's cancellation (the POST finishes in the background).
- The token is sent only to the API base URL, never to result or download URLs, and never
  appears in a repr, a log line or an exception.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import ipaddress
import json
import logging
import mimetypes
import os
import re
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar
from urllib.parse import urlsplit

import aiohttp
import attrs
from yarl import URL

from ._places import Places
from .config import (
    DEFAULT_BASE_URL,
    DEFAULT_CONFIG,
    TOKEN_ENV,
    UNSET,
    ClientConfig,
    Unset,
)
from .convert import (
    _checked_request_body,
    request_body,
    structure,
    structure_task,
)
from .errors import (
    AccountError,
    ConfigurationError,
    KlingError,
    PayloadError,
    RequestValidationError,
    ServerError,
    SubmissionUnknownError,
    TaskFailedError,
    TaskTimeoutError,
    TransportError,
    error_from_response,
)
from .models import Account, AssetUpload, TaskResponse, Work
from .requests import GenerationRequest, Image2VideoElements, ImageSource, KolorsElements, is_remote
from .retry import (
    _RETRIED,
    call_with_retries,
    is_retryable,
    sleep_scaled,
)
from .slots import JobSlots, SlotHold
from .waiter import (
    PollLimiter,
    PollPolicy,
    PushSource,
    TaskWaiter,
    default_timeout,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_CONFIG",
    "ClientConfig",
    "KlingClient",
    "PushReceiver",
    "RequestInfo",
]

log = logging.getLogger("kling_async")

T = TypeVar("T")
R = TypeVar("R", bound=GenerationRequest)
Hook = Callable[..., Any]


#: Upload content types and size limits (bytes), from the assets page.
UPLOAD_TYPES: Final[Mapping[str, int]] = {
    "image/png": 10 << 20,
    "image/jpeg": 10 << 20,
    "video/mp4": 100 << 20,
    "video/quicktime": 100 << 20,
    "audio/wav": 20 << 20,
    "audio/wave": 20 << 20,
    "audio/mpeg": 20 << 20,
    "audio/mp4": 20 << 20,
    "audio/flac": 20 << 20,
    "audio/aac": 20 << 20,
    "audio/ogg": 20 << 20,
}
_MAGIC: Final = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
)
_SAFE_EXTENSIONS: Final = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".mp4", ".mov"})
_CHUNK = 1 << 16
#: The task list is read in pages of this size when looking for the task of a failed POST,
#: newest first, back to the recovery window; past the last page the task cannot be ruled
#: out (a busy account creates more than a page of tasks while one POST times out).
_RECOVERY_PAGE_SIZE: Final = 100
#: Tasks whose account (and "claimed" mark, for recovery) the client remembers: a long-
#: running client forgets the oldest. A recovery only considers tasks created since its
#: POST, and waiting on a forgotten task uses the default account (or ``email=``).
_TASKS_REMEMBERED: Final = 100_000
_RECOVERY_MAX_PAGES: Final = 20
#: A path built into a URL as it is: letters, digits and ``/._-`` need no quoting.
_PLAIN_PATH: Final = re.compile(r"[A-Za-z0-9/._-]+").fullmatch
#: How many emails' quoted queries a client keeps.
_EMAIL_QUERIES: Final = 64


@attrs.frozen(kw_only=True)
class RequestInfo:
    """What ``on_request`` hooks receive after each HTTP attempt (never the token)."""

    method: str
    path: str
    status: int | None
    elapsed: float
    error: str | None = None


class PushReceiver(PushSource, Protocol):
    """What the client needs from a push receiver (`kling_async.webhooks.KlingWebhookReceiver`)."""

    @property
    def running(self) -> bool: ...

    @property
    def reply_url(self) -> str: ...

    async def start(self) -> str: ...

    async def stop(self) -> None: ...

    def new_ref(self) -> str: ...

    def bind(self, reply_ref: str, task_id: int) -> None: ...


def _is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_base_url(base_url: str, allow_insecure: bool) -> str:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"base_url must be an http(s) URL, got {base_url!r}")
    if parts.scheme == "http" and not allow_insecure and not _is_loopback(parts.hostname):
        raise ConfigurationError(
            f"base_url {base_url!r} is plain http on a non-loopback host: the token would "
            "be sent in clear text; use https or pass allow_insecure=True in ClientConfig"
        )
    return base_url.rstrip("/") + "/"


async def _call_hook(hook: Hook | None, *args: Any) -> None:
    if hook is None:
        return
    try:
        result = hook(*args)
        if inspect.isawaitable(result):
            await result
    except Exception:  # a user's hook must not break (or lose) a job
        log.exception("hook %r raised", hook)


def _describe(exc: BaseException) -> str:
    """An exception as text without its repr: aiohttp's reprs show the request headers."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _guess_content_type(source: ImageSource, data: bytes) -> str | None:
    for magic, ctype in _MAGIC:
        if data.startswith(magic):
            return ctype
    if len(data) > 12 and data[4:8] == b"ftyp":
        return "video/quicktime" if data[8:10] == b"qt" else "video/mp4"
    if isinstance(source, str | os.PathLike):
        guessed, _ = mimetypes.guess_type(os.fspath(source))
        return guessed
    return None


class KlingClient:
    """Asyncio client for useapi.net's Kling API v1.

    ``token`` defaults to ``$USEAPI_TOKEN``. ``email`` is the default account; ``accounts``
    maps several accounts to their ``max_jobs`` (None: read from GET /accounts/{email}).
    ``max_jobs`` sizes the single account's job slots (None: read from the server).
    ``session`` is used as given and not closed; otherwise the client owns one.
    Hooks (plain callables or coroutines): ``on_request(RequestInfo)``,
    ``on_retry(exc, tries, wait)`` (``wait`` in seconds: the server's Retry-After when it
    sent one; not shrunk by `fast_mode`), ``on_submitted(TaskResponse)``::

        async with KlingClient() as kling:
            final = await kling.kolors_elements(prompt="...", subject_images=["a.png", "b.png"])
            await kling.download(final, "out/")
    """

    def __init__(
        self,
        token: str | None = None,
        email: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        max_jobs: int | None = None,
        accounts: Mapping[str, int | None] | None = None,
        *,
        config: ClientConfig | None = None,
        session: aiohttp.ClientSession | None = None,
        on_request: Hook | None = None,
        on_retry: Hook | None = None,
        on_submitted: Hook | None = None,
        webhook: PushReceiver | None = None,
    ) -> None:
        self.config = config or DEFAULT_CONFIG
        self.webhook = webhook
        self._started_webhook = False
        self.base_url = _check_base_url(base_url, self.config.allow_insecure)
        parsed = URL(self.base_url)
        # The base URL's parts for building a call's URL without parsing (None: a base
        # URL with a query or fragment, where every URL is parsed whole).
        self._base_parts = (
            (parsed.scheme, parsed.raw_authority, parsed.raw_path)
            if not parsed.raw_query_string and not parsed.raw_fragment
            else None
        )
        self._email_queries: dict[str, str] = {}
        # The generation endpoints' URLs, built once (one POST per job goes to them).
        self._endpoint_urls: dict[str, URL] = {}
        self._endpoint_urls = {
            cls.endpoint: url
            for cls in (KolorsElements, Image2VideoElements)
            if isinstance(url := self._target(cls.endpoint, None)[0], URL)
        }
        self.__token = token if token is not None else os.environ.get(TOKEN_ENV)
        self.__headers: dict[str, str] | None = None
        if accounts is not None and max_jobs is not None:
            raise ConfigurationError("give max_jobs per account in accounts=, not max_jobs=")
        self._accounts: dict[str, int | None] = dict(accounts or {})
        if email is not None and self._accounts and email not in self._accounts:
            raise ConfigurationError(f"email {email!r} is not one of accounts=")
        if not self._accounts:
            self._accounts = {email or "": max_jobs}
        if email is None and len(self._accounts) == 1:
            email = next(iter(self._accounts)) or None
        self.email = email
        self._session = session
        self._owns_session = session is None
        self._closed = False
        self.on_request, self.on_retry, self.on_submitted = on_request, on_retry, on_submitted
        self.poll_limiter = PollLimiter(
            self.config.poll.max_polls_per_second, in_flight=self.config.connection_limit or None
        )
        self.slots = JobSlots(self._accounts, self._fetch_max_jobs)
        self._waiter = TaskWaiter(self)
        self._task_email: dict[int, str | None] = {}
        self._uploads: dict[tuple[str, str], asyncio.Future[str]] = {}
        self._submit_turns: dict[tuple[str, str, str], Places] = {}
        # Submissions under way (their tasks, with the future each caller awaits).
        self._background: dict[asyncio.Task[Any], asyncio.Future[Any]] = {}
        self._following: set[asyncio.Task[None]] = set()  # jobs nobody waits for, slot held
        self._email_probe: asyncio.Future[Any] | None = None

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<KlingClient {self.base_url} email={self.email!r} {state}>"

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> KlingClient:
        self._ensure_session()
        if self.webhook is not None and not self.webhook.running:
            await self.webhook.start()
            self._started_webhook = True
        return self

    @property
    def push(self) -> PushReceiver | None:
        """The push receiver (``webhook=``) waiters listen to, or None when polling only."""
        return self.webhook

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the session (if the client owns it). Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._following:
                log.info(
                    "closing: %d jobs nobody waits for still run on the server; no longer followed",
                    len(self._following),
                )
                for follow in self._following:
                    follow.cancel()
                await asyncio.wait(self._following)
            if self._background:
                # Let interrupted submissions finish so their task ids get reported.
                await asyncio.wait(list(self._background), timeout=self.config.request_timeout)
        except asyncio.CancelledError:
            for posting, answer in list(self._background.items()):
                posting.cancel()  # given up on; each is logged as abandoned
                answer.cancel()  # in case the task never started: its caller still waits
            raise
        finally:
            if self.webhook is not None and self._started_webhook:
                await self.webhook.stop()
            if self._session is not None and self._owns_session:
                await self._session.close()
            await asyncio.sleep(0)  # let the transports finish closing

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        session = getattr(self, "_session", None)
        if getattr(self, "_owns_session", False) and session is not None and not session.closed:
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

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ConfigurationError("the client is closed")
        if self._session is None:
            cfg = self.config
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=cfg.connection_limit, limit_per_host=0),
                # No sock_read: aiohttp re-arms that timer on every read (10-18 us of CPU
                # per job, measured); the total bounds a stalled answer.
                timeout=aiohttp.ClientTimeout(
                    total=cfg.request_timeout,
                    connect=cfg.connect_timeout,
                    sock_connect=cfg.connect_timeout,
                ),
                headers={"User-Agent": cfg.user_agent},
            )
        return self._session

    def _auth(self) -> dict[str, str]:
        """The Authorization header; built once and never changed (aiohttp copies it)."""
        headers = self.__headers
        if headers is None:
            token = self.__token
            if not token:
                raise ConfigurationError(
                    f"no API token: pass token= or set ${TOKEN_ENV} (useapi.net account page)"
                )
            headers = self.__headers = {"Authorization": f"Bearer {token}"}
        return headers

    # -- HTTP ------------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        data: bytes | None = None,
        content_type: str | None = None,
        creates_job: bool = False,
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> Awaitable[Any]:
        """One API call with the retry policy: the decoded JSON answer, or a typed error
        (`TransportError` for a connection or timeout failure)."""
        if json_body is not None:
            # Serialized here (what aiohttp's json= does, minus its payload wrapper).
            data, content_type = json.dumps(json_body).encode(), "application/json"
        return self._once(method, path, params, data, content_type, timeout, creates_job)

    async def _once(  # noqa: PLR0917 - positional: every API call's hot path, no kwargs dict
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        data: bytes | None,
        content_type: str | None,
        timeout: aiohttp.ClientTimeout | None,
        creates_job: bool | None = None,
    ) -> Any:
        """One request. Its failures go on to the retry policy when ``creates_job`` is a
        bool (the first attempt of a `_call`: one coroutine, no retry machinery, for the
        calls that succeed at once); None: an attempt of the retry loop, failures raw."""
        try:
            session = self._session
            if session is None or self._closed:
                session = self._ensure_session()
            headers = self.__headers or self._auth()
            if content_type:
                headers = {**headers, "Content-Type": content_type}
            report = self.on_request is not None or log.isEnabledFor(logging.DEBUG)
            start = time.monotonic() if report else 0.0
            status: int | None = None
            error: str | None = None
            try:
                url, query = self._target(path, params)
                async with session.request(
                    method,
                    url,
                    params=query,
                    data=data,
                    headers=headers,
                    # The API does not redirect; following one could carry the token
                    # elsewhere.
                    allow_redirects=False,
                    timeout=timeout if timeout is not None else session.timeout,
                ) as resp:
                    status = resp.status
                    body = await resp.read()
                    resp_headers = resp.headers
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                error = _describe(exc)
                raise
            finally:
                if report:
                    await self._report(method, path, status, time.monotonic() - start, error)
            if status >= 300:
                raise error_from_response(status, body, resp_headers, method=method, path=path)
            if not body or body.isspace():
                return {}
            try:
                return json.loads(body)
            except ValueError:
                excerpt = body[:120].decode("utf-8", "replace")
                raise PayloadError(
                    f"{method} {path}: answer {status} is not JSON: {excerpt!r}"
                ) from None
        except _RETRIED as exc:
            if creates_job is None:
                raise  # the retry loop's attempt: the loop decides
            args = (method, path, params, data, content_type, timeout)
            return await self._retry(args, exc, creates_job)

    def _target(
        self, path: str, params: Mapping[str, Any] | None
    ) -> tuple[URL | str, Mapping[str, Any] | None]:
        """A call's URL, and the query parameters left for aiohttp to add.

        The calls made for every job (a POST to an endpoint, a GET of a task with its
        account's email) get a URL built from encoded parts, skipping yarl's parsing and
        quoting of a new string (about 3.5 us per call): their path has only characters
        that need no quoting, and the email's query is quoted once by yarl, as before.
        """
        if params is None:
            known = self._endpoint_urls.get(path)
            if known is not None:
                return known, None
        base = self._base_parts
        if (
            base is not None
            and _PLAIN_PATH(path)
            and (params is None or (len(params) == 1 and "email" in params))
        ):
            query = "" if params is None else self._email_query(params["email"])
            url = URL.build(
                scheme=base[0],
                authority=base[1],
                path=base[2] + path,
                query_string=query,
                encoded=True,
            )
            return url, None
        return self.base_url + path, params

    def _email_query(self, email: str) -> str:
        """``email=...`` as yarl quotes it, remembered per email (there are few)."""
        query = self._email_queries.get(email)
        if query is None:
            if len(self._email_queries) >= _EMAIL_QUERIES:
                self._email_queries.clear()
            query = URL.build(query={"email": email}).raw_query_string
            self._email_queries[email] = query
        return query

    async def _retry(
        self,
        args: tuple[str, str, Mapping[str, Any] | None, bytes | None, str | None, Any],
        first: BaseException,
        creates_job: bool,
    ) -> Any:
        """The rest of a call whose first attempt failed with ``first``."""
        method, path = args[0], args[1]
        try:
            if not is_retryable(first, creates_job=creates_job):
                raise first

            async def on_retry(exc: BaseException, tries: int, wait: float) -> None:
                await _call_hook(self.on_retry, exc, tries, wait)

            return await call_with_retries(
                functools.partial(self._once, *args),
                policy=self.config.retry,
                creates_job=creates_job,
                describe=f"{method} {path}",
                on_retry=on_retry,
                first_failure=first,
            )
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            what = type(exc).__name__ if isinstance(exc, asyncio.TimeoutError) else _describe(exc)
            raise TransportError(
                f"{method} {path} failed: {what}", method=method, path=path
            ) from exc

    async def _report(
        self, method: str, path: str, status: int | None, elapsed: float, error: str | None
    ) -> None:
        note = f" ({error})" if error else ""
        log.debug("%s %s -> %s in %.0f ms%s", method, path, status, elapsed * 1000, note)
        info = RequestInfo(method=method, path=path, status=status, elapsed=elapsed, error=error)
        await _call_hook(self.on_request, info)

    @staticmethod
    def _params(email: str | None, **more: Any) -> dict[str, str]:
        params = {k: str(v) for k, v in more.items() if v is not None}
        if email:
            params["email"] = email
        return params

    # -- accounts and tasks ----------------------------------------------------------------

    def _account_for(self, email: str | None) -> str | None:
        """The account a call goes to (given, else the default); an unknown one is refused.

        Any email is accepted when none is configured (the server knows the accounts);
        otherwise only the configured ones, since only they have job slots.
        """
        email = email or self.email
        if email and "" not in self._accounts and email not in self._accounts:
            known = ", ".join(sorted(self._accounts))
            raise RequestValidationError(
                f"email: {email!r} is not a configured account ({known})", field="email"
            )
        return email

    async def get_account(self, email: str) -> Account:
        """``GET /accounts/{email}``: the account's configuration, ``max_jobs`` included."""
        data = await self._call("GET", f"accounts/{email}")
        return structure(data, Account)

    async def list_accounts(self) -> dict[str, Account]:
        """``GET /accounts``: every configured account, by email."""
        data = await self._call("GET", "accounts")
        if not isinstance(data, Mapping):
            raise PayloadError("GET accounts: expected an object keyed by email")
        return {k: structure(v, Account) for k, v in data.items() if isinstance(v, Mapping)}

    def _learn_email(self, email: str) -> None:
        if self.email is None and "" in self._accounts and email:
            self.email = email
            log.debug("the token's only account is %s", email)

    async def _with_default_email(self, email: str | None) -> str | None:
        """``email``, else the default account's; with no account configured, the token's
        only account is read once from GET /accounts (useapi.net's own scripts always send
        the email: some lookups answer 400 without it)."""
        if email or self.email is not None or "" not in self._accounts:
            return email or self.email
        if self._email_probe is None:
            # One attempt, no retries: this only improves the request that follows.
            self._email_probe = asyncio.ensure_future(
                self._once("GET", "accounts", None, None, None, None)
            )
            # Retrieved here too, so a probe whose callers were all cancelled is not
            # reported by asyncio as "exception was never retrieved".
            self._email_probe.add_done_callback(lambda f: f.cancelled() or f.exception())
        try:
            found = await asyncio.shield(self._email_probe)
        except (KlingError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
            self._email_probe = None  # try again next time
            log.debug("could not read the default account (%s); sending no email", _describe(exc))
            return None
        if isinstance(found, Mapping) and len(found) == 1:
            self._learn_email(str(next(iter(found))))
        return self.email

    async def _fetch_max_jobs(self, email: str) -> int:
        if email:
            account = await self.get_account(email)
        else:
            found = await self.list_accounts()
            if len(found) != 1:
                raise ConfigurationError(
                    f"{len(found)} accounts are configured on useapi.net: pass email= or "
                    "accounts= to KlingClient"
                )
            account = next(iter(found.values()))
            self._learn_email(next(iter(found)))
        if not account.max_jobs:
            raise ConfigurationError(f"account {email or '(default)'} reports no maxJobs")
        log.debug("account %s: maxJobs %s", email or "(default)", account.max_jobs)
        return account.max_jobs

    async def get_task(self, task_id: int, email: str | None = None) -> TaskResponse:
        """``GET /tasks/{task_id}``: the task's current state (one request, retried safely)."""
        given: object = task_id  # callers without a type checker pass strings too
        if isinstance(given, bool) or not isinstance(given, int) or given <= 0:
            raise RequestValidationError(
                f"task_id: must be a positive integer, got {task_id!r}", field="task_id"
            )
        email = email or self._task_email.get(task_id) or self.email
        if not email:
            email = await self._with_default_email(email)
        params = {"email": email} if email else None  # the poll: no _params() call
        data = await self._call("GET", f"tasks/{task_id}", params=params)
        return structure_task(data)

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
        params = self._params(
            await self._with_default_email(self._account_for(email)),
            contentType=content_type,
            pageSize=page_size,
            createdAfter=created_after,
            createdBefore=created_before,
        )
        data = await self._call("GET", "tasks/", params=params)
        history = data.get("history") if isinstance(data, Mapping) else None
        return [structure_task(item) for item in history or () if isinstance(item, Mapping)]

    # -- assets ----------------------------------------------------------------------------

    async def upload_asset(
        self, source: ImageSource, content_type: str | None = None, *, email: str | None = None
    ) -> str:
        """``POST /assets``: upload a file (path or bytes) and return its URL.

        Each content is uploaded once per account per client; later calls reuse the URL.
        """
        data = await self._read_source(source)
        ctype = content_type or _guess_content_type(source, data)
        if ctype is None or ctype not in UPLOAD_TYPES:
            raise RequestValidationError(
                f"content_type: {ctype or 'unknown'} is not supported; one of "
                + ", ".join(UPLOAD_TYPES),
                field="content_type",
            )
        if len(data) > UPLOAD_TYPES[ctype]:
            raise RequestValidationError(
                f"source: {len(data)} bytes is over the {UPLOAD_TYPES[ctype] >> 20} MB limit "
                f"for {ctype}",
                field="source",
            )
        email = self._account_for(email)
        key = (email or "", hashlib.sha256(data).hexdigest())
        pending = self._uploads.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._upload(data, ctype, email))
            self._uploads[key] = pending
        try:
            return await asyncio.shield(pending)
        except BaseException:
            if pending.done() and (pending.cancelled() or pending.exception() is not None):
                self._uploads.pop(key, None)  # let a later call try again
            raise

    async def _read_source(self, source: ImageSource) -> bytes:
        if isinstance(source, bytes | bytearray):
            if not source:
                raise RequestValidationError("source: empty bytes", field="source")
            return bytes(source)
        if isinstance(source, str) and is_remote(source):
            raise RequestValidationError(
                "source: already a URL; pass it to the request as is", field="source"
            )
        path = Path(os.fspath(source))
        if not await asyncio.to_thread(path.is_file):
            raise RequestValidationError(f"source: no such file {str(path)!r}", field="source")
        return await asyncio.to_thread(path.read_bytes)

    async def _upload(self, data: bytes, content_type: str, email: str | None) -> str:
        timeout = aiohttp.ClientTimeout(
            total=self.config.transfer_timeout,
            sock_connect=self.config.connect_timeout,
            sock_read=self.config.read_timeout,
        )
        answer = await self._call(
            "POST",
            "assets/",
            params=self._params(email),
            data=data,
            content_type=content_type,
            timeout=timeout,
        )
        asset = structure(answer, AssetUpload)
        if not asset.url:
            raise PayloadError(f"POST assets/: the answer has no url: {answer!r}"[:300])
        log.debug("uploaded %d bytes (%s) as %s", len(data), content_type, asset.file_name)
        return asset.url

    async def upload_images(self, request: R, *, email: str | None = None) -> R:
        """A copy of ``request`` whose local files and bytes are uploaded (`upload_asset`)
        and replaced by their URLs; ``submit`` does this itself."""
        if not request.has_local_images():
            return request
        local = {k: v for k, v in request.image_inputs().items() if not is_remote(v)}
        urls = await asyncio.gather(*(self.upload_asset(v, email=email) for v in local.values()))
        return request.with_image_urls(dict(zip(local, urls, strict=True)))

    # -- submission ------------------------------------------------------------------------

    async def submit(
        self,
        request: GenerationRequest,
        *,
        email: str | None = None,
        on_submitted: Hook | None = None,
    ) -> TaskResponse:
        """POST a request to its endpoint; return the answer (``status`` submitted).

        Local files and bytes in image fields are uploaded first. ``email`` picks the
        account (else the request's, else the client's). The POST is never retried when
        the server may have created the job; see the module docstring. No job slot is
        taken: to keep an account at its maxJobs, use `run` (submit and wait on a slot).
        """
        answer, _ = await self._start_submission(request, email, on_submitted)
        return await answer

    async def _start_submission(
        self, request: GenerationRequest, email: str | None, on_submitted: Hook | None
    ) -> tuple[asyncio.Future[TaskResponse], asyncio.Task[TaskResponse | None]]:
        """Check, upload, and send the POST in a task of its own: its answer, the task id,
        must outlive a caller's cancellation (it is logged and handed to the hooks).

        Returns the future the caller awaits for the answer (cancelling it leaves the POST
        running) and the task (which ends with the answer, or None when it failed).
        """
        if not isinstance(request, GenerationRequest):
            raise TypeError(f"submit() takes a request object, got {type(request).__name__}")
        email = self._account_for(email or request.email)
        if not email:
            email = await self._with_default_email(email)
        uploaded = request.has_local_images()
        if uploaded:
            request = await self.upload_images(request, email=email)
        if self.webhook is not None and request.reply_url is None:
            request = attrs.evolve(
                request, reply_url=self.webhook.reply_url, reply_ref=self.webhook.new_ref()
            )
        # After uploads, the body's own check confirms that every image is now a URL.
        body = request_body(request) if uploaded else _checked_request_body(request)
        if email:
            body["email"] = email
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[TaskResponse] = loop.create_future()
        posting = loop.create_task(self._post_job(answer, request, body, email, on_submitted))
        self._background[posting] = answer
        return answer, posting

    async def _post_job(
        self,
        answer: asyncio.Future[TaskResponse],
        request: GenerationRequest,
        body: dict[str, Any],
        email: str | None,
        on_submitted: Hook | None,
    ) -> TaskResponse | None:
        """The POST of a submission, in its own task; its outcome goes to ``answer`` from
        inside the task (what asyncio.shield does, minus a task-done callback and a loop
        turn per job). Ends with the answer, or None when it failed.

        ``answer`` already done (cancelled) means its caller left: a failure then reaches
        nobody but the log.
        """
        # Jobs recovery cannot tell apart go to one account one at a time, so that a task
        # recovered from the list after an ambiguous failure cannot be a sibling's whose
        # answer is still on its way. Recovery matches by prompt and a subset of the images
        # (not aspect ratio, count...): the prompt alone is the key.
        key = (email or "", request.endpoint, str(body.get("prompt") or ""))
        turns = self._submit_turns.get(key)
        if turns is None:
            turns = self._submit_turns[key] = Places(1)
        in_turn = False
        try:
            try:
                if not turns.try_enter():
                    await turns.enter()
                in_turn = True
                resp = await self._post_with_recovery(request, body, email)
            finally:
                if in_turn:
                    turns.leave()
                if turns.idle:
                    del self._submit_turns[key]
            self._submitted(request, resp, email)
            if self.on_submitted is not None:
                await _call_hook(self.on_submitted, resp)
            if on_submitted is not None:
                await _call_hook(on_submitted, resp)
        except asyncio.CancelledError:  # only aclose() cancels a submission
            if in_turn:
                log.warning(
                    "a submission to %s on %s was cancelled while its POST was out (the "
                    "client closed): the job may exist; look for it with find_tasks()",
                    request.endpoint,
                    email or "the default account",
                )
            answer.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - handed to the caller as it is
            if not answer.done():
                answer.set_exception(exc)
            elif isinstance(exc, SubmissionUnknownError):
                # The caller left: this log line is the only notice that a paid job may exist.
                log.warning("abandoned submission: %s", exc)
            else:
                log.debug("abandoned submission ended with %s", _describe(exc))
            return None
        finally:
            self._background.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
        if not answer.done():
            answer.set_result(resp)
        return resp

    def _submitted(self, request: GenerationRequest, resp: TaskResponse, email: str | None) -> None:
        """Note a created task: its account, its callbacks' reference, the log."""
        task_id = resp.task_id
        assert task_id is not None  # checked by _post_with_recovery
        self._remember(task_id, email)
        if (
            self.webhook is not None
            and request.reply_ref
            and request.reply_url == (self.webhook.reply_url)
        ):
            self.webhook.bind(request.reply_ref, task_id)
        log.info("submitted task %s (%s) on %s", task_id, request.endpoint, email or "default")

    async def _post_with_recovery(
        self, request: GenerationRequest, body: dict[str, Any], email: str | None
    ) -> TaskResponse:
        path = request.endpoint
        rounds = self.config.retry.max_tries
        for round_no in range(1, rounds + 1):
            sent_at = int(time.time() * 1000)
            try:
                data = await self._call("POST", path, json_body=body, creates_job=True)
                resp = structure_task(data)
            except TransportError as exc:
                if isinstance(exc.__cause__, aiohttp.ClientConnectorError):
                    raise  # never connected: nothing can have been created
                failure: KlingError = exc
            except (ServerError, PayloadError) as exc:
                failure = exc
            else:
                if resp.task_id is not None:
                    return resp
                failure = PayloadError(f"POST {path}: the answer has no task id")
            log.warning(
                "POST %s failed after it was sent (%s); looking for the task", path, failure
            )
            found = await self._recover(request, body, email, sent_at, failure)
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

    async def _recover(
        self,
        request: GenerationRequest,
        body: Mapping[str, Any],
        email: str | None,
        sent_at: int,
        failure: KlingError,
    ) -> TaskResponse | None:
        """Find the task a failed POST may have created; None when surely none was."""
        since = sent_at - int(self.config.recovery_window * 1000)
        content_type = "video" if isinstance(request, Image2VideoElements) else "image"
        matches: list[TaskResponse] = []
        for look in range(2):
            if look:
                await sleep_scaled(self.config.recovery_confirm_delay)
            try:
                matches, complete = await self._find_since(email, content_type, since, body)
            except KlingError as exc:
                raise SubmissionUnknownError(
                    f"POST {request.endpoint} failed after it was sent ({failure}) and the task "
                    f"list could not be read ({exc}); the job may exist: check before resubmitting",
                    method="POST",
                    path=request.endpoint,
                    request=request,
                    email=email,
                    sent_at=sent_at,
                ) from exc
            if matches:
                break
        if len(matches) == 1:
            return matches[0]
        if not matches and complete:
            return None
        if not matches:
            raise SubmissionUnknownError(
                f"POST {request.endpoint} failed after it was sent ({failure}) and the task "
                f"list holds more than {_RECOVERY_PAGE_SIZE * _RECOVERY_MAX_PAGES} tasks since "
                "then; the job may exist: check before resubmitting",
                method="POST",
                path=request.endpoint,
                request=request,
                email=email,
                sent_at=sent_at,
            )
        raise SubmissionUnknownError(
            f"POST {request.endpoint} failed after it was sent ({failure}); "
            f"{len(matches)} tasks could be it: {[t.task_id for t in matches]}",
            method="POST",
            path=request.endpoint,
            request=request,
            email=email,
            sent_at=sent_at,
            candidates=tuple(t.task_id for t in matches if t.task_id),
        )

    async def _find_since(
        self, email: str | None, content_type: str, since: int, body: Mapping[str, Any]
    ) -> tuple[list[TaskResponse], bool]:
        return await self.find_tasks(
            lambda t: self._matches(t, body), email=email, content_type=content_type, since=since
        )

    async def find_tasks(
        self,
        predicate: Callable[[TaskResponse], bool],
        *,
        since: int,
        email: str | None = None,
        content_type: str | None = None,
    ) -> tuple[list[TaskResponse], bool]:
        """Tasks created since ``since`` (epoch ms) for which ``predicate`` holds, newest first,
        and whether the list was read all the way back to ``since``.

        Pages are read newest first, each older than the last one's oldest task; reading
        stops at the first page with a match (a lost task is among the newest) or after
        enough pages to cover a busy account. When the second value is False and nothing
        matched, the task list could not rule out that such a task exists. A short page is
        not taken as the end of the list (the server may cap ``pageSize``): only an empty
        page, or a task older than ``since``, is.
        """
        found: dict[int, TaskResponse] = {}
        before: int | None = None
        complete = False
        for _ in range(_RECOVERY_MAX_PAGES):
            page = await self.list_tasks(
                email,
                content_type=content_type,
                page_size=_RECOVERY_PAGE_SIZE,
                created_before=before,
            )
            if not page:
                complete = True
                break
            fresh = {t.task_id: t for t in page if t.task_id and t.task_id not in found}
            found.update(fresh)
            times = [t.task.create_time for t in page if t.task and t.task.create_time]
            if times and min(times) <= since:
                complete = True
                break
            if any(predicate(t) for t in fresh.values()):
                break
            if not times:
                break  # nothing to page by: the rest cannot be read
            if fresh:
                before = min(times) + 1  # +1: tasks of that same millisecond are not skipped
            elif before != min(times):
                before = min(times)  # only that millisecond's tasks again: step past them
            else:
                break  # no progress: the rest cannot be read
        matches = [
            t
            for t in found.values()
            if predicate(t) and not (t.task and t.task.create_time and t.task.create_time < since)
        ]
        return matches, complete

    def _matches(self, task: TaskResponse, body: Mapping[str, Any]) -> bool:
        if task.task_id is None or task.task_id in self._task_email:
            return False  # already another job's
        if (task.arguments.get("prompt") or None) != (body.get("prompt") or None):
            return False
        info = task.task.task_info if task.task is not None else None
        urls = {i.url for i in info.inputs} if info is not None else set()
        wanted = {v for k, v in body.items() if k.startswith(("subjectImage", "image_"))}
        wanted |= {body[k] for k in ("sceneImage", "styleImage") if k in body}
        return wanted <= urls

    # -- waiting and jobs ------------------------------------------------------------------

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
        task_id = task.task_id if isinstance(task, TaskResponse) else task
        email = email or (self._task_email.get(task_id) if task_id else None) or self.email
        if task_id and task_id not in self._task_email:
            # Remember the account (downloads ask it for the clean copy) and count the
            # task as claimed, so an ambiguous-POST recovery never adopts it.
            self._remember(task_id, email)
        if not hold_slot:
            return await self._waiter.wait(task, email=email, timeout=timeout)
        hold = self.slots.acquire(email if email in self._accounts else None)
        async with hold as account:
            try:
                return await self._waiter.wait(task, email=account or email, timeout=timeout)
            except (asyncio.CancelledError, TaskTimeoutError):
                self._hold_until_final(hold.detach(), task, account or email)  # still runs
                raise

    def _remember(self, task_id: int, email: str | None) -> None:
        """Note a task's account; the oldest notes go past `_TASKS_REMEMBERED` tasks."""
        known = self._task_email
        known[task_id] = email
        if len(known) > _TASKS_REMEMBERED:
            del known[next(iter(known))]

    def watch(
        self, task: int | TaskResponse, *, email: str | None = None
    ) -> AsyncIterator[TaskResponse]:
        """Yield a task each time its status changes, ending with the final state."""
        task_id = task.task_id if isinstance(task, TaskResponse) else task
        email = email or (self._task_email.get(task_id) if task_id else None) or self.email
        return self._waiter.watch(task, email=email)

    async def run(
        self,
        request: GenerationRequest,
        *,
        on_submitted: Hook | None = None,
        timeout: float | Unset | None = UNSET,
    ) -> TaskResponse:
        """Hold a job slot, submit, wait for the final state; return it.

        Raises `TaskFailedError` when the task failed. The slot stays held until the job
        is final on the server: when the caller is cancelled or the deadline passes
        (`TaskTimeoutError`) after the POST went out, the client keeps polling the task in
        the background and frees the slot when it ends (or after its kind's default
        deadline), so new jobs never find the account over its maxJobs. A submitted
        task's id has been logged and passed to ``on_submitted`` by then.
        """
        email = self._account_for(request.email)
        deadline = request.default_timeout if isinstance(timeout, Unset) else timeout
        while True:
            # No email (or none configured): the slots pick the account with a free slot.
            hold = self.slots.acquire(email if email in self._accounts else None)
            # Not `async with hold`: one coroutine fewer per job; the finally frees it.
            account = await hold.take()
            try:
                chosen = account or email
                posting: asyncio.Task[TaskResponse | None] | None = None
                try:
                    answer, posting = await self._start_submission(request, chosen, on_submitted)
                    resp = await answer
                except AccountError as exc:
                    # Nothing was created (the account cannot take jobs): with another
                    # account to go to, set this one aside and take a slot elsewhere.
                    if not self._set_aside(chosen, exc) or email in self._accounts:
                        raise
                    if len(self.slots.disabled()) == len(self._accounts):
                        raise  # no account left: the server's own answer says why
                    continue
                except asyncio.CancelledError:
                    if posting is not None:  # the POST goes on: its job may hold the slot
                        self._hold_until_final(hold.detach(), posting, chosen)
                    raise
                try:
                    return await self._waiter.wait(resp, email=chosen, timeout=deadline)
                except AccountError as exc:
                    self._set_aside(chosen, exc)  # the task stays; wait on it once repaired
                    raise
                except (asyncio.CancelledError, TaskTimeoutError) as exc:
                    why = "cancelled" if isinstance(exc, asyncio.CancelledError) else "timed out"
                    log.warning(
                        "stopped waiting for task %s (%s); the job goes on", resp.task_id, why
                    )
                    self._hold_until_final(hold.detach(), resp, chosen)
                    raise
            finally:
                hold.release()  # nothing when detached

    def _hold_until_final(
        self,
        hold: SlotHold,
        submission: int | TaskResponse | asyncio.Task[TaskResponse | None],
        email: str | None,
    ) -> None:
        """Keep a job's slot in the background until the job is final on the server."""
        if self._closed:  # closing: no one will submit again, and no poll could go out
            hold.release()
            return
        follow = asyncio.get_running_loop().create_task(self._follow(submission, email))
        self._following.add(follow)
        follow.add_done_callback(self._following.discard)
        # A callback, not a finally: a task cancelled before its first step runs no code.
        follow.add_done_callback(lambda _: hold.release())

    async def _follow(
        self,
        submission: int | TaskResponse | asyncio.Task[TaskResponse | None],
        email: str | None,
    ) -> None:
        """Wait for a job nobody waits for (its caller's slot is held meanwhile), at most
        its kind's default deadline (a task id alone: the longest, a video's)."""
        task: int | TaskResponse
        if isinstance(submission, asyncio.Task):
            await asyncio.wait({submission})
            answered = None if submission.cancelled() else submission.result()
            if answered is None:
                return  # no job to wait for (the failure was reported to the caller or logged)
            task = answered
        else:
            task = submission
        resp = task if isinstance(task, TaskResponse) else None
        task_id = resp.task_id if resp is not None else task
        log.info(
            "task %s: nobody waits for it any more; its job slot on %s stays taken until it ends",
            task_id,
            email or "the default account",
        )
        try:
            await self._waiter.wait(task, email=email, timeout=default_timeout(resp))
        except TaskFailedError:
            pass
        except KlingError as exc:
            log.warning(
                "task %s: no longer followed (%s); its job slot is free again",
                task_id,
                _describe(exc),
            )
        except Exception:  # nobody awaits this task: its error would only reach the loop
            log.exception("task %s: following it failed; its job slot is free again", task_id)

    def _set_aside(self, email: str | None, error: AccountError) -> bool:
        """Stop giving jobs to an account in error state (api/errors.md: with several
        accounts, stop using that one). True when it was set aside."""
        if not email or len(self._accounts) < 2 or email not in self._accounts:
            return False
        if email not in self.slots.disabled():
            log.warning("account %s is in error state (%s); no more jobs go to it", email, error)
            self.slots.disable(email, error)
        return True

    async def kolors_elements(self, **fields: Any) -> TaskResponse:
        """Run a KOLORS-elements image job (see `KolorsElements` for the fields)."""
        return await self.run(KolorsElements(**fields))

    async def image2video_elements(self, **fields: Any) -> TaskResponse:
        """Run an image2video-elements video job (see `Image2VideoElements`)."""
        return await self.run(Image2VideoElements(**fields))

    # -- downloads -------------------------------------------------------------------------

    async def download(
        self,
        response: TaskResponse,
        folder: str | os.PathLike[str],
        *,
        covers: bool = False,
        clean: bool = True,
    ) -> list[Path]:
        """Stream every work's file (and, with ``covers``, its cover) into ``folder``.

        Files are named ``{task_id}-{index}{ext}`` (covers ``...-cover{ext}``); a name never
        leaves ``folder``. ``clean`` fetches the unwatermarked copy (GET /assets/download)
        and falls back to the watermarked one. Returns the paths written.
        """
        target = Path(folder)
        await asyncio.to_thread(target.mkdir, parents=True, exist_ok=True)
        task_id = response.task_id or 0
        paths: list[Path] = []
        for index, work in enumerate(response.works):
            url = work.url
            if not url:
                continue
            if clean:
                url = await self._clean_url(work, response) or url
            stem = f"{task_id}-{index}"
            paths.append(await self._fetch(url, target, stem, work))
            if covers and work.cover is not None and work.cover.resource:
                paths.append(await self._fetch(work.cover.resource, target, f"{stem}-cover", None))
        return paths

    async def _clean_url(self, work: Work, response: TaskResponse) -> str | None:
        if work.work_id is None:
            return None
        file_type = "MP4" if (work.content_type or "").lower() == "video" else "PNG"
        email = self._task_email.get(response.task_id or 0) or self.email
        try:
            data = await self._call(
                "GET",
                "assets/download",
                params=self._params(email, workIds=work.work_id, fileTypes=file_type),
            )
        except KlingError as exc:
            log.info("no clean copy of work %s (%s); using the watermarked file", work.work_id, exc)
            return None
        url = data.get("cdnUrl") if isinstance(data, Mapping) else None
        return url if isinstance(url, str) and is_remote(url) else None

    async def _fetch(self, url: str, folder: Path, stem: str, work: Work | None) -> Path:
        if not is_remote(url):
            raise PayloadError(f"refusing to download a non-http(s) URL: {url[:100]!r}")
        suffix = Path(urlsplit(url).path).suffix.lower()
        if suffix not in _SAFE_EXTENSIONS:
            video = work is not None and (work.content_type or "").lower() == "video"
            suffix = ".mp4" if video else ".png"
        final = folder / f"{stem}{suffix}"
        partial = folder / f".{stem}{suffix}.part"
        timeout = aiohttp.ClientTimeout(
            total=self.config.transfer_timeout,
            sock_connect=self.config.connect_timeout,
            sock_read=self.config.read_timeout,
        )

        async def attempt() -> None:
            session = self._ensure_session()
            # No Authorization header: result files live on CDN hosts.
            async with session.get(url, timeout=timeout) as resp:
                if resp.status >= 400:
                    body = await resp.read()
                    raise error_from_response(
                        resp.status, body, resp.headers, method="GET", path=urlsplit(url).path
                    )
                with partial.open("wb") as out:
                    async for chunk in resp.content.iter_chunked(_CHUNK):
                        out.write(chunk)

        try:
            await call_with_retries(
                attempt, policy=self.config.retry, creates_job=False, describe=f"download {stem}"
            )
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            partial.unlink(missing_ok=True)
            raise TransportError(
                f"download of {stem} failed: {_describe(exc)}",
                method="GET",
                path=urlsplit(url).path,
            ) from exc
        except BaseException:
            partial.unlink(missing_ok=True)  # cancelled, or an error answer: no stray .part
            raise
        partial.replace(final)
        return final
