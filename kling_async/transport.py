"""Transport: the aiohttp session, URLs, the auth header, one attempt of one request.

Every request of the package goes through `Transport`: `attempt` sends one request and
decodes its answer; `call` wraps attempts in the retry policy (`kling_async.retry`);
`stream_to` downloads a file without the auth header. aiohttp's and asyncio's failures
become `TransportError` in one place, `transport_error`, from a copy of the failure that
no longer holds the request's headers (aiohttp keeps them in ``request_info``; a
malformed status line's exception would otherwise carry the token into a traceback).

The token goes into the session's default headers only when the session is the
client's own and is sent only to the API host: every URL a `Transport` builds is the base
URL plus a path, redirects are never followed, and downloads go out without it.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import ipaddress
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
import attrs

from .config import DEBUG_ENV, TOKEN_ENV, ClientConfig
from .errors import ConfigurationError, PayloadError, TransportError, error_from_response
from .failures import (
    TRANSPORT_FAILURES,
    check_token,
    describe_error,
    redact,
    scrubbed,
    transport_error,
)
from .retry import RETRY_CANDIDATES, call_with_retries, is_retryable

__all__ = [
    "TRANSPORT_FAILURES",
    "Hook",
    "RequestInfo",
    "Transport",
    "call_hook",
    "check_base_url",
    "debug_from_env",
    "describe_error",
    "scrubbed",
    "transport_error",
]

log = logging.getLogger("kling_async")

#: A user's hook: a plain callable or a coroutine function.
Hook = Callable[..., Any]

_CHUNK: Final = 1 << 16


@attrs.frozen(kw_only=True)
class RequestInfo:
    """What ``on_request`` hooks receive after each HTTP attempt (never the token)."""

    method: str
    path: str
    status: int | None
    elapsed: float
    error: str | None = None


def _is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_base_url(base_url: object, allow_insecure: bool) -> str:
    """``base_url`` with one trailing slash, or `ConfigurationError` naming what is wrong
    (not an http(s) URL, or plain http to a non-loopback host without ``allow_insecure``)."""
    if not isinstance(base_url, str):
        raise ConfigurationError(f"base_url must be a string, got {type(base_url).__name__}")
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"base_url must be an http(s) URL, got {base_url!r}")
    try:
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError:
        raise ConfigurationError(f"base_url has a port out of range: {base_url!r}") from None
    if parts.scheme == "http" and not allow_insecure and not _is_loopback(parts.hostname):
        raise ConfigurationError(
            f"base_url {base_url!r} is plain http on a non-loopback host: the token would "
            "be sent in clear text; use https or pass allow_insecure=True in ClientConfig"
        )
    return base_url.rstrip("/") + "/"


async def call_hook(hook: Hook | None, *args: Any) -> None:
    """Run a user's hook; its failure is logged, never raised (it must not lose a job)."""
    if hook is None:
        return
    try:
        result = hook(*args)
        if inspect.isawaitable(result):
            await result
    except Exception:  # a user's hook must not break (or lose) a job
        log.exception("hook %r raised", hook)


def debug_from_env() -> None:
    """With ``$KLING_ASYNC_DEBUG`` set (not 0), the ``kling_async`` logger at DEBUG with a
    stderr handler (called when a client is made, never at import)."""
    if os.environ.get(DEBUG_ENV, "") not in ("", "0") and log.level != logging.DEBUG:
        log.setLevel(logging.DEBUG)
        if not log.handlers:
            log.addHandler(logging.StreamHandler())


class Transport:
    """One aiohttp session (owned, or borrowed when ``session`` is given) and the API's
    base URL and token. ``on_request`` and ``on_retry`` are the client's hooks."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        config: ClientConfig,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        given: object = token  # callers without a type checker pass anything
        if given is not None and not isinstance(given, str):
            raise ConfigurationError("token: must be a string without line breaks")
        self.base_url = base_url
        self.config = config
        self.__token = token if token is not None else os.environ.get(TOKEN_ENV)
        if self.__token:  # empty: "no API token" at the first request
            check_token(self.__token, "token" if token is not None else f"${TOKEN_ENV}")
        self._session = session
        self.owns_session = session is None
        self.closed = False
        self.on_request: Hook | None = None
        self.on_retry: Hook | None = None
        #: The ``Date`` header of the latest API answer and this machine's `time.time()`
        #: when it came (None before one had it): a bound on the server's clock offset.
        self.last_date: tuple[str, float] | None = None
        # Added per request, never to the session's defaults: downloads share the session
        # and must go out without it.
        self.__auth: dict[str, str] | None = None

    @property
    def session(self) -> aiohttp.ClientSession | None:
        """The aiohttp session once made (None before the first request)."""
        return self._session

    def ensure_session(self) -> aiohttp.ClientSession:
        """The session, made inside the running loop on first use."""
        if self.closed:
            raise ConfigurationError("the client is closed")
        if self._session is None:
            cfg = self.config
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=cfg.connection_limit, limit_per_host=0),
                timeout=aiohttp.ClientTimeout(
                    total=cfg.request_timeout,
                    connect=cfg.connect_timeout,
                    sock_connect=cfg.connect_timeout,
                ),
                headers={"User-Agent": cfg.user_agent},
            )
        return self._session

    def _request_headers(self, content_type: str | None) -> dict[str, str]:
        if self.__auth is None:
            if not self.__token:
                raise ConfigurationError(
                    f"no API token: pass token= or set ${TOKEN_ENV} (useapi.net account page)"
                )
            self.__auth = {"Authorization": f"Bearer {self.__token}"}
        if content_type:
            return {**self.__auth, "Content-Type": content_type}
        return self.__auth

    async def aclose(self) -> None:
        """Close the session when it is the transport's own. Idempotent."""
        self.closed = True
        if self._session is not None and self.owns_session and not self._session.closed:
            await self._session.close()
            await asyncio.sleep(0)  # let the transports finish closing

    @property
    def transfer_timeout(self) -> aiohttp.ClientTimeout:
        """The timeout of an upload or a download (longer than one API call's)."""
        cfg = self.config
        return aiohttp.ClientTimeout(
            total=cfg.transfer_timeout,
            sock_connect=cfg.connect_timeout,
            sock_read=cfg.read_timeout,
        )

    async def attempt(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        data: bytes | None = None,
        content_type: str | None = None,
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> Any:
        """One request to ``base_url + path``: the decoded JSON answer, or a typed error
        (`APIError` for an error status, `PayloadError`, `TransportError`)."""
        session = self.ensure_session()
        start = time.monotonic()
        status: int | None = None
        error: str | None = None
        failure: TransportError | None = None
        cause: BaseException | None = None
        try:
            async with session.request(
                method,
                self.base_url + path,
                params=params,
                data=data,
                # Built in the call, never held in a local: tracebacks that render locals
                # (rich, Sentry) would show the token.
                headers=self._request_headers(content_type),
                # The API does not redirect; following one could carry the token elsewhere.
                allow_redirects=False,
                timeout=timeout if timeout is not None else session.timeout,
            ) as resp:
                status = resp.status
                body = await self._read_capped(resp, method, path)
                answer_headers = resp.headers
                if (date := answer_headers.get("Date")) is not None:
                    self.last_date = (date, time.time())
        except TRANSPORT_FAILURES as exc:
            # No local holds the token: tracebacks that render locals would show it.
            error = describe_error(exc, self.__token)
            failure = transport_error(exc, method, path, token=self.__token)
            cause = scrubbed(exc, self.__token)
        finally:
            if self.on_request is not None or log.isEnabledFor(logging.DEBUG):
                await self._report(method, path, status, time.monotonic() - start, error)
        if failure is not None:
            # Raised outside the except block, so not even __context__ keeps the raw failure.
            raise failure from cause
        body = self.redact(body)
        assert status is not None  # set before the body was read
        if status >= 300:
            raise error_from_response(status, body, answer_headers, method=method, path=path)
        if not body or body.isspace():
            return {}
        try:
            return json.loads(body)
        except ValueError:
            excerpt = body[:120].decode("utf-8", "replace")
            raise PayloadError(
                f"{method} {path}: answer {status} is not JSON: {excerpt!r}"
            ) from None

    async def _read_capped(self, resp: aiohttp.ClientResponse, method: str, path: str) -> bytes:
        """The answer's body, or `PayloadError` past ``max_answer_bytes`` (never read whole)."""
        cap = self.config.max_answer_bytes
        declared = resp.content_length
        if declared is not None and declared > cap:
            raise PayloadError(
                f"{method} {path}: answer of {declared} bytes is over the "
                f"{cap}-byte cap (ClientConfig.max_answer_bytes)"
            )
        if declared is not None:  # aiohttp reads exactly the declared length
            return await resp.read()
        parts: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(_CHUNK):
            size += len(chunk)
            if size > cap:
                raise PayloadError(
                    f"{method} {path}: answer over the {cap}-byte cap "
                    "(ClientConfig.max_answer_bytes)"
                )
            parts.append(chunk)
        return b"".join(parts)

    def redact(self, data: bytes) -> bytes:
        """``data`` with the token replaced by ``***`` (a server may echo it back)."""
        return redact(data, self.__token)

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        data: bytes | None = None,
        content_type: str | None = None,
        creates_job: bool = False,
        timeout: aiohttp.ClientTimeout | None = None,
        on_retry: Hook | None = None,
    ) -> Any:
        """`attempt` under the retry policy (``creates_job``: a POST that creates a paid
        job, retried only when the server cannot have created it). ``on_retry`` is called
        like the client's own hook, after it, for this call's retries only."""
        if json_body is not None:
            data, content_type = json.dumps(json_body).encode(), "application/json"

        def once() -> Awaitable[Any]:
            return self.attempt(
                method, path, params=params, data=data, content_type=content_type, timeout=timeout
            )

        try:
            return await once()  # most calls succeed at once: no retry machinery for them
        except RETRY_CANDIDATES as exc:
            if not is_retryable(exc, creates_job=creates_job):
                raise
            first: BaseException = exc
        hooks = [hook for hook in (self.on_retry, on_retry) if hook is not None]
        return await call_with_retries(
            once,
            policy=self.config.retry,
            creates_job=creates_job,
            describe=f"{method} {path}",
            on_retry=functools.partial(self._on_retry, hooks) if hooks else None,
            first_failure=first,
        )

    @staticmethod
    async def _on_retry(hooks: list[Hook], exc: BaseException, tries: int, wait: float) -> None:
        # Hooks see the connection failure itself (scrubbed), as they always have.
        cause = exc.__cause__ if isinstance(exc, TransportError) else None
        for hook in hooks:
            await call_hook(hook, cause or exc, tries, wait)

    async def _report(
        self, method: str, path: str, status: int | None, elapsed: float, error: str | None
    ) -> None:
        note = f" ({error})" if error else ""
        log.debug("%s %s -> %s in %.0f ms%s", method, path, status, elapsed * 1000, note)
        info = RequestInfo(method=method, path=path, status=status, elapsed=elapsed, error=error)
        await call_hook(self.on_request, info)

    async def stream_to(self, url: str, partial: Path, what: str, *, limit: int) -> int:
        """Stream ``url`` into the file ``partial``, without the auth header (result files
        live on CDN hosts), retried as a GET; the number of bytes written. ``what`` names
        the download in errors. Past ``limit`` bytes, or shorter than its Content-Length,
        the download fails with `PayloadError` (the caller removes ``partial``)."""
        path = urlsplit(url).path

        async def once() -> int:
            session = self.ensure_session()
            failure: TransportError | None = None
            cause: BaseException | None = None
            try:
                async with session.get(url, timeout=self.transfer_timeout) as resp:
                    if resp.status >= 400:
                        body = self.redact(await self._read_capped(resp, "GET", path))
                        raise error_from_response(
                            resp.status, body, resp.headers, method="GET", path=path
                        )
                    return await self._write_capped(resp, partial, what, limit)
            except TRANSPORT_FAILURES as exc:
                # No token went to a file host, but its answer is quoted all the same.
                failure = transport_error(exc, "GET", path, what, self.__token)
                cause = scrubbed(exc, self.__token)
            raise failure from cause

        return await call_with_retries(
            once, policy=self.config.retry, creates_job=False, describe=what
        )

    @staticmethod
    async def _write_capped(
        resp: aiohttp.ClientResponse, partial: Path, what: str, limit: int
    ) -> int:
        declared = resp.content_length
        if declared is not None and declared > limit:
            raise PayloadError(f"{what}: {declared} bytes is over the {limit}-byte cap")
        size = 0
        with partial.open("wb") as out:
            async for chunk in resp.content.iter_chunked(_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise PayloadError(f"{what}: over the {limit}-byte cap; stopped")
                out.write(chunk)
        if declared is not None and size != declared:
            raise PayloadError(f"{what}: got {size} of the {declared} bytes announced")
        return size
