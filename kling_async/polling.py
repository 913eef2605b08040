"""When a waiter polls: the delay schedule, the service's ETA (read only when plausible), and
the client-wide `PollLimiter`.

1. With no usable ETA the delay grows geometrically from ``interval`` by ``growth`` up to
   ``max_interval`` (a `backoff.expo` generator) with a little jitter: `poll_delays`.
2. The service's ETA (``etaTime`` / ``queuingEtaTime``, time left) times the next poll for
   just after it, but only once its unit is known: the pages do not say whether it is
   milliseconds or seconds, so `EtaReader` infers it from how far the ETA has moved from
   its origin (``originEtaTime + originQueuingEtaTime``) compared with the time elapsed
   since the task's ``createTime``. An ETA whose unit cannot be told, that is longer than
   `MAX_ETA`, or that was wrong twice in one wait (the task was not final when it said)
   is ignored for the schedule.
3. No poll that is not timed by a plausible ETA comes sooner than ``min_interval`` after
   the last one; an ETA-timed poll may (the job is due), and at most twice in vain.
4. Every poll takes a turn from the client's `PollLimiter` (a cap on polls per second and
   on polls in flight, shared by all waiters of a client).

Policy delays and the floor are scaled by the test switch (`kling_async.config.set_time_scale`);
the ETA is the service's own clock and is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Iterator
from typing import Any, Final

import backoff

from .config import PollPolicy, scaled
from .models import TaskResponse

__all__ = ["MAX_ETA", "EtaReader", "PollLimiter", "poll_delays"]

#: The longest ETA (seconds) taken at its word; a longer one is treated as garbage.
MAX_ETA: Final = 2 * 3600.0
#: Wrong ETAs after which a wait stops timing polls by the ETA.
_ETA_MISSES: Final = 2
_UNITS: Final = (0.001, 1.0)  # milliseconds, seconds
#: The in-flight place of a limiter without that bound: holds nothing.
_NO_BOUND: Final = contextlib.nullcontext()


def poll_delays(policy: PollPolicy, first: float | None = None) -> Iterator[float]:
    """The delays (real seconds, scaled) between polls of one wait without an ETA: from
    ``first`` (default ``policy.interval``) up by ``policy.growth`` to
    ``policy.max_interval``, jittered, never below ``policy.min_interval``."""
    grown = backoff.expo(
        base=policy.growth, factor=first or policy.interval, max_value=policy.max_interval
    )
    next(grown)  # backoff's generators are primed with a first next()
    for delay in grown:
        spread = random.uniform(1 - policy.jitter, 1 + policy.jitter)  # noqa: S311
        yield scaled(max(delay * spread, policy.min_interval))


def _infer_unit(raw: int, origin: int, created_ms: int | None, now: float) -> float | None:
    """Seconds per ETA unit, told by which unit makes the ETA's progress match the elapsed
    time; None while that cannot be told apart."""
    if origin <= 0 or created_ms is None or raw > origin:
        return None
    progress = origin - raw
    elapsed = max(0.0, now - created_ms / 1000)
    errors = sorted((abs(progress * unit - elapsed), unit) for unit in _UNITS)
    (best, unit), (other, _) = errors
    if progress < 2 or best * 2 >= other:
        return None
    return unit


class EtaReader:
    """The service's ETA for one wait: `seconds_left` gives it in seconds when plausible,
    `answered` counts the times it was wrong."""

    __slots__ = ("_misses", "_timed", "_unit")

    def __init__(self) -> None:
        self._unit: float | None = None
        self._misses = 0
        self._timed = False

    def seconds_left(self, last: TaskResponse | None) -> float | None:
        """The ETA of ``last`` in seconds, or None when there is none worth timing a poll by.
        A poll timed by it should be reported to `answered`."""
        if last is None or last.eta_time_over_sla or self._misses >= _ETA_MISSES:
            return None
        raw = max(last.eta_time or 0, last.queuing_eta_time or 0)
        if raw <= 0:
            return None
        if self._unit is None:
            origin = (last.origin_eta_time or 0) + (last.origin_queuing_eta_time or 0)
            created = last.task.create_time if last.task is not None else None
            self._unit = _infer_unit(raw, origin, created, time.time())
        if self._unit is None or raw * self._unit > MAX_ETA:
            return None
        self._timed = True
        return raw * self._unit

    def answered(self, last: TaskResponse | None) -> None:
        """Take the answer to a poll: one timed by the ETA that is not final is a miss."""
        if self._timed and last is not None and not last.is_final:
            self._misses += 1
        self._timed = False


class PollLimiter:
    """Spaces polls at least ``1 / rate`` seconds apart across every waiter of a client
    (``rate`` None: no spacing), and lets at most ``in_flight`` polls be under way at once
    (None: no bound).

    The second bound keeps memory flat when thousands of waiters come due together: a
    waiter queued here holds only its own frame, not a request being built.
    """

    def __init__(self, rate: float | None, in_flight: int | None = None) -> None:
        if rate is not None and rate <= 0:
            raise ValueError(f"max_polls_per_second must be > 0 or None, got {rate}")
        if in_flight is not None and in_flight < 1:
            raise ValueError(f"in_flight must be >= 1 or None, got {in_flight}")
        self.rate = rate
        self.in_flight = in_flight
        self._places = asyncio.Semaphore(in_flight) if in_flight is not None else None
        self._next = 0.0

    def slot(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """One of the in-flight places, held for the duration of a poll (``async with``)."""
        return self._places if self._places is not None else _NO_BOUND

    async def turn(self) -> None:
        """Wait for this caller's turn to poll."""
        if self.rate is None:
            return
        now = asyncio.get_running_loop().time()
        slot = max(now, self._next)
        self._next = slot + scaled(1.0 / self.rate)
        if slot > now:
            await asyncio.sleep(slot - now)
