"""Retry policies: which failures are retried, how long to wait, and the test-mode switch.

Rules (money first):

- A request that cannot create anything (GET, an asset upload) is retried on connection
  errors, timeouts, 429 and 5xx other than moderation and 596.
- A POST that creates a job is retried only when the server cannot have created it: a 429
  (all slots busy, nothing created) or a connection that failed before any byte was sent.
  Everything else surfaces (the client then looks the task up; see `KlingClient.submit`).

Waits are exponential with full jitter, capped, bounded by tries and total time; a
server's Retry-After (already parsed into ``RateLimitError.retry_after``) is honoured as
is (no jitter), capped at ``max_retry_after``; a body's ``retryAfter`` may also be an
ISO-8601 time; a zero, negative, past or unreadable one gets the policy's own backoff.
The delays come from `backoff`'s generators.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import logging
import math
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Final, TypeVar

import aiohttp
import backoff

from .config import (
    DEFAULT_RETRY,
    RetryPolicy,
    delay_scale,
    fast_mode,
    scaled,
    set_time_scale,
    sleep_scaled,
)
from .errors import (
    AccountError,
    ModerationError,
    PayloadError,
    RateLimitError,
    ServerError,
    TransportError,
)

__all__ = [
    "DEFAULT_RETRY",
    "RETRIED_KINDS",
    "RETRY_CANDIDATES",
    "RetryPolicy",
    "call_with_retries",
    "delay_scale",
    "failure_kind",
    "fast_mode",
    "is_retryable",
    "retry_wait",
    "scaled",
    "set_time_scale",
    "sleep_scaled",
]

log = logging.getLogger("kling_async")

T = TypeVar("T")


#: Which kinds of failure are retried: the money rule as data. A job-creating POST
#: (``creates_job``) is retried only when the server cannot have created the job.
RETRIED_KINDS: Final[Mapping[bool, frozenset[str]]] = {
    True: frozenset({"busy", "not_sent"}),
    False: frozenset({"busy", "not_sent", "lost", "server"}),
}


def failure_kind(exc: BaseException) -> str | None:
    """How a failure bears on a retry: ``busy`` (429: nothing was created), ``not_sent``
    (the connection never came up: no request byte left), ``lost`` (a connection failure
    or timeout after the request may have left, an unreadable answer), ``server`` (a 5xx
    other than moderation and 596); None: never retried (a bug, a refusal, a certificate)."""
    if isinstance(exc, RateLimitError):
        return "busy"
    raw = exc.__cause__ if isinstance(exc, TransportError) else exc
    if isinstance(raw, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return None  # retrying cannot fix a certificate
    if isinstance(raw, aiohttp.ClientConnectorError):
        return "not_sent"
    if isinstance(exc, ModerationError | AccountError):
        return None
    if isinstance(exc, ServerError):
        return "server"
    if isinstance(exc, PayloadError | TransportError | aiohttp.ClientError | asyncio.TimeoutError):
        return "lost"
    return None


def is_retryable(exc: BaseException, *, creates_job: bool) -> bool:
    """Whether ``exc`` may be retried; ``creates_job`` for a POST that creates a paid job."""
    return failure_kind(exc) in RETRIED_KINDS[creates_job]


def retry_wait(policy: RetryPolicy, exc: BaseException, backoff_delay: float) -> float:
    """The wait before the next try (seconds, unscaled): the server's Retry-After up to
    ``max_retry_after`` when it sent a positive one, else ``backoff_delay`` (full jitter
    of the policy's exponential delay)."""
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is None:
        retry_after = _iso_retry_after(getattr(exc, "body", None))
    if isinstance(retry_after, int | float) and math.isfinite(retry_after) and retry_after > 0:
        return min(float(retry_after), policy.max_retry_after)
    return backoff.full_jitter(backoff_delay)


def _iso_retry_after(body: object) -> float | None:
    """Seconds until a body's ``retryAfter`` when it is an ISO-8601 time (None otherwise:
    garbage is ignored, and a time in the past means the policy's own backoff)."""
    value = body.get("retryAfter") if isinstance(body, Mapping) else None
    if not isinstance(value, str):
        return None
    try:
        when = datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return (when - datetime.datetime.now(datetime.timezone.utc)).total_seconds()


#: The failures `call_with_retries` looks at (`is_retryable` decides which are retried).
RETRY_CANDIDATES: Final = (
    aiohttp.ClientError,
    asyncio.TimeoutError,
    TransportError,
    RateLimitError,
    ServerError,
    PayloadError,
)


async def call_with_retries(
    attempt: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    creates_job: bool,
    describe: str,
    on_retry: Callable[[BaseException, int, float], Awaitable[None]] | None = None,
    first_failure: BaseException | None = None,
) -> T:
    """Await ``attempt()`` until it succeeds or a failure may not (or no longer) be retried.

    The last failure is re-raised as it is. Tries and time are bounded by ``policy``
    (a job-creating POST by its busy budget: waiting for a free slot may take a whole
    job's time). ``on_retry(exc, tries, wait)`` runs before each wait; ``wait`` is in
    seconds as the policy chose it, not shrunk by `fast_mode`, so hooks and logs say what
    production would wait. ``first_failure``: the retryable failure of a first attempt
    the caller made itself (counted as the first try).
    """
    max_tries = policy.busy_tries if creates_job else policy.max_tries
    max_time = policy.busy_max_time if creates_job else policy.max_time
    loop = asyncio.get_running_loop()
    start = loop.time()
    delays: Iterator[float] | None = None  # made at the first failure: most calls have none
    for tries in itertools.count(1):
        try:
            if first_failure is not None:
                failed, first_failure = first_failure, None
                raise failed
            return await attempt()
        except RETRY_CANDIDATES as exc:
            elapsed = loop.time() - start
            if (
                not is_retryable(exc, creates_job=creates_job)
                or tries >= max_tries
                or (max_time is not None and elapsed >= max_time)
            ):
                raise
            if delays is None:
                delays = backoff.expo(factor=policy.base, max_value=policy.max_delay)
                next(delays)  # backoff's generators are primed before their first value
            wait = retry_wait(policy, exc, next(delays))
            # Not %r: aiohttp's reprs include the request headers (the token).
            what = f"{type(exc).__name__}: {exc}"
            log.debug("retrying %s after %s (try %d, waiting %.2fs)", describe, what, tries, wait)
            if on_retry is not None:
                await on_retry(exc, tries, wait)
            sleep = scaled(wait)
            if max_time is not None:
                sleep = min(sleep, max_time - elapsed)
            await asyncio.sleep(sleep)
    raise AssertionError("unreachable")  # pragma: no cover - itertools.count never ends
