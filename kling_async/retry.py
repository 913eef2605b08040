"""Retry policies: which failures are retried, how long to wait, and the test-mode switch.

Rules (money first):

- A request that cannot create anything (GET, an asset upload) is retried on connection
  errors, timeouts, 429 and 5xx other than moderation and 596.
- A POST that creates a job is retried only when the server cannot have created it: a 429
  (all slots busy, nothing created) or a connection that failed before any byte was sent.
  Everything else surfaces (the client then looks the task up; see `KlingClient.submit`).

Waits are exponential with full jitter, capped, bounded by tries and total time; a
server's Retry-After (already parsed into ``RateLimitError.retry_after``) is honoured as
is (no jitter), capped at ``max_retry_after``. All waits go through `backoff`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

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
from .errors import AccountError, ModerationError, PayloadError, RateLimitError, ServerError

__all__ = [
    "DEFAULT_RETRY",
    "RetryPolicy",
    "call_with_retries",
    "delay_scale",
    "fast_mode",
    "is_retryable",
    "scaled",
    "set_time_scale",
    "sleep_scaled",
]

log = logging.getLogger("kling_async")

T = TypeVar("T")


def is_retryable(exc: BaseException, *, creates_job: bool) -> bool:
    """Whether ``exc`` may be retried; ``creates_job`` for a POST that creates a paid job."""
    if isinstance(exc, RateLimitError):
        return True
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return False  # retrying cannot fix a certificate
    if isinstance(exc, aiohttp.ClientConnectorError):
        # The TCP (or TLS) connection never came up: no request byte left this machine.
        return True
    if creates_job:
        return False
    if isinstance(exc, ModerationError | AccountError):
        return False
    return isinstance(exc, ServerError | PayloadError | aiohttp.ClientError | asyncio.TimeoutError)


def _waits(
    policy: RetryPolicy, planned: list[float]
) -> Generator[float | None, BaseException | None, None]:
    """A backoff wait generator that reads the failure it is sent (for Retry-After).

    Each delay is appended to ``planned`` before the test-mode scaling.
    """
    exc = yield None  # backoff primes the generator with next()
    attempt = 0
    while True:
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(retry_after, int | float):
            delay = min(float(retry_after), policy.max_retry_after)
        else:
            delay = random.uniform(0, min(policy.max_delay, policy.base * 2**attempt))  # noqa: S311
        attempt += 1
        planned.append(delay)
        exc = yield scaled(delay)


#: The failures `call_with_retries` considers (is_retryable decides which are retried).
_RETRIED = (aiohttp.ClientError, asyncio.TimeoutError, RateLimitError, ServerError, PayloadError)


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

    The last failure is re-raised as it is; the caller maps raw transport errors to its
    own types. ``on_retry(exc, tries, wait)`` runs before each wait; ``wait`` is in
    seconds as the policy chose it (a Retry-After as the server sent it, up to the cap),
    not shrunk by `fast_mode`, so hooks and logs say what production would wait.
    ``first_failure``: the retryable failure of a first attempt the caller made itself.
    """
    first: BaseException
    if first_failure is not None:
        first = first_failure
    else:
        # Fast path: most calls succeed at once and never need backoff's machinery.
        try:
            return await attempt()
        except _RETRIED as exc:
            if not is_retryable(exc, creates_job=creates_job):
                raise
            first = exc
    replayed = False

    async def again() -> T:
        # Backoff's first call replays the failure already seen, so its try count, waits
        # and hooks are those of the whole sequence.
        nonlocal replayed
        if not replayed:
            replayed = True
            raise first
        return await attempt()

    planned: list[float] = []

    def giveup(exc: Exception) -> bool:
        return not is_retryable(exc, creates_job=creates_job)

    async def before_wait(details: Any) -> None:
        exc = details.get("exception")
        scale = delay_scale()
        # backoff reports the scaled sleep (also cut to the time left): undo the scaling.
        wait = details["wait"] / scale if scale > 0 else planned[-1]
        tries = details["tries"]
        # Not %r: aiohttp's reprs include the request headers (the token).
        what = f"{type(exc).__name__}: {exc}"
        log.debug("retrying %s after %s (try %d, waiting %.2fs)", describe, what, tries, wait)
        if on_retry is not None and exc is not None:
            await on_retry(exc, tries, wait)

    # A job-creating POST is retried only on 429 (busy) and connect failures, so its bound
    # is the busy budget: waiting for a free slot may take a whole job's time.
    wait_gen: Any = _waits  # backoff's stubs do not know generators that receive values
    decorated = backoff.on_exception(
        wait_gen,
        _RETRIED,
        max_tries=policy.busy_tries if creates_job else policy.max_tries,
        max_time=policy.busy_max_time if creates_job else policy.max_time,
        giveup=giveup,
        jitter=None,
        logger=None,
        on_backoff=before_wait,
        policy=policy,
        planned=planned,
    )(again)
    return await decorated()
