"""When waiters poll: the delay schedule, the ETA read only when plausible, the poll floor."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from helpers import EMAIL, TOKEN

from kling_async import ClientConfig, KlingClient, KolorsElements, PollPolicy, TaskResponse
from kling_async.config import fast_mode
from kling_async.models import Task
from kling_async.polling import MAX_ETA, EtaReader, poll_delays
from kling_async.testing import KlingSimulator


def answer(eta: int, origin: int, elapsed: float, *, final: bool = False) -> TaskResponse:
    created = round((time.time() - elapsed) * 1000)
    return TaskResponse(
        status_final=final,
        eta_time=eta,
        origin_eta_time=origin,
        task=Task(id=7, create_time=created),
    )


def test_delays_grow_to_the_cap_and_never_drop_below_the_floor() -> None:
    policy = PollPolicy(interval=1.0, growth=2.0, max_interval=10.0, jitter=0, min_interval=0)
    with fast_mode(1.0):
        delays = poll_delays(policy)
        assert [next(delays) for _ in range(7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
        floored = poll_delays(PollPolicy(interval=1.0, jitter=0.5, min_interval=5.0))
        assert min(next(floored) for _ in range(20)) >= 5.0
        assert next(poll_delays(policy, first=30.0)) == 10.0  # push fallback: capped too


def test_eta_unit_is_inferred_from_progress_against_elapsed_time() -> None:
    millis = EtaReader()
    assert millis.seconds_left(answer(57_000, 60_000, 3.0)) == 57.0
    seconds = EtaReader()
    assert seconds.seconds_left(answer(57, 60, 3.0)) == 57.0
    # No progress yet: either unit fits, so the ETA is not used until it can be told.
    fresh = EtaReader()
    assert fresh.seconds_left(answer(60, 60, 0.0)) is None
    assert fresh.seconds_left(answer(50, 60, 10.0)) == 50.0


def test_implausible_eta_is_ignored() -> None:
    assert EtaReader().seconds_left(answer(60_000, 30_000, 1.0)) is None  # more than its origin
    assert EtaReader().seconds_left(answer(5, 0, 3.0)) is None  # no origin to tell the unit
    huge = int(MAX_ETA) + 100
    assert EtaReader().seconds_left(answer(huge, huge + 10, 10.0)) is None


def test_eta_ignored_after_being_wrong_twice() -> None:
    eta = EtaReader()
    for _ in range(2):
        assert eta.seconds_left(answer(57_000, 60_000, 3.0)) == 57.0
        eta.answered(answer(1_000, 60_000, 59.0))  # not final when the ETA said
    assert eta.seconds_left(answer(57_000, 60_000, 3.0)) is None


def job(n: int) -> KolorsElements:
    return KolorsElements(prompt=f"eta {n}", subject_images=["https://e.com/a.png"] * 2)


async def polls_per_job(eta: Any, seconds: float, scale: float) -> list[int]:
    with fast_mode(scale):
        async with (
            KlingSimulator(
                token=TOKEN, accounts={EMAIL: 5}, job_seconds=seconds, duration_sigma=0, eta=eta
            ) as sim,
            KlingClient(token=TOKEN, base_url=sim.base_url, max_jobs=5) as kling,
        ):
            done = await asyncio.gather(*(kling.run(job(n)) for n in range(3)))
            assert all(d.succeeded for d in done)
            return sorted(sim.stats["polls_by_task"].values())


@pytest.mark.parametrize("seconds", [0.6, 1.5])
async def test_eta_in_seconds_gives_bounded_polls(seconds: float) -> None:
    """Read as milliseconds, an ETA in seconds would time a poll every few ms until the
    client-wide cap bites; read right (or ignored) it costs no more than no ETA at all."""
    counts = await polls_per_job("seconds", seconds, 0.01)
    without = await polls_per_job(False, seconds, 0.01)
    assert max(counts) <= max(without) + 1
    assert max(counts) <= 20


async def test_the_floor_spaces_polls_even_with_a_zero_interval() -> None:
    policy = PollPolicy(interval=0.0001, max_interval=0.0001, min_interval=0.2)
    with fast_mode(1.0):
        async with (
            KlingSimulator(
                token=TOKEN, accounts={EMAIL: 5}, job_seconds=0.5, duration_sigma=0, eta=False
            ) as sim,
            KlingClient(
                token=TOKEN, base_url=sim.base_url, max_jobs=5, config=ClientConfig(poll=policy)
            ) as kling,
        ):
            await kling.run(job(0))
            (polls,) = sim.stats["polls_by_task"].values()
    assert polls <= 5  # 0.5 s at one poll per 0.2 s; without the floor: thousands
