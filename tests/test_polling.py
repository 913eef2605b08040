"""When waiters poll: the delay schedule, the ETA read only when plausible, the poll floor,
and the client-wide `PollLimiter` (a cap on polls per second, polls in flight)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from helpers import EMAIL, TOKEN, kolors

from kling_async import (
    ClientConfig,
    KlingClient,
    KolorsElements,
    PollPolicy,
    TaskResponse,
    TaskWaiter,
)
from kling_async.config import fast_mode
from kling_async.models import Task
from kling_async.polling import MAX_ETA, EtaReader, PollLimiter, poll_delays
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


# -- the client-wide poll cap, and polls timed from the ETA (real waits: fast mode off) ------


async def test_poll_cap_bounds_polls_across_all_waiters() -> None:
    """Eager policies (10 ms) and 30 waiters; the client-wide cap of 40 polls/s holds."""
    rate = 40.0
    config = ClientConfig(
        poll=PollPolicy(
            interval=0.01, max_interval=0.01, min_interval=0.0, jitter=0, max_polls_per_second=rate
        )
    )
    with fast_mode(1.0):
        async with (
            KlingSimulator(
                token=TOKEN, accounts={EMAIL: 50}, job_seconds=0.3, duration_sigma=0, eta=False
            ) as sim,
            KlingClient(token=TOKEN, base_url=sim.base_url, max_jobs=50, config=config) as kling,
        ):
            subs = [await kling.submit(kolors(f"capped {n}")) for n in range(30)]
            loop = asyncio.get_running_loop()
            start = loop.time()
            waiter = TaskWaiter(kling)  # its own waiter shares the client's cap
            await asyncio.gather(
                *(kling.wait(s) for s in subs[:15]), *(waiter.wait(s) for s in subs[15:])
            )
            elapsed = loop.time() - start
    polls = sim.stats["polls"]
    assert all(n >= 1 for n in sim.stats["polls_by_task"].values())
    # Uncapped, 30 waiters polling every 10 ms for 0.3 s would send ~900 polls.
    assert polls <= rate * elapsed + 1
    assert polls < 300


async def test_poll_limiter_spacing_is_client_wide() -> None:
    limiter = PollLimiter(None)
    await limiter.turn()  # no cap: returns at once
    with pytest.raises(ValueError, match="max_polls_per_second"):
        PollLimiter(0)


async def test_poll_limiter_places_go_in_arrival_order() -> None:
    """At most ``in_flight`` polls are under way; freed places go to the oldest waiter,
    skipping one cancelled while queued."""
    limiter = PollLimiter(None, in_flight=2)
    order: list[str] = []
    release = asyncio.Event()

    async def poll(name: str) -> None:
        async with limiter.slot():
            order.append(name)
            await release.wait()

    tasks = {name: asyncio.create_task(poll(name)) for name in ("a", "b", "c", "gone", "d")}
    for _ in range(3):
        await asyncio.sleep(0)
    assert order == ["a", "b"]  # the others queue
    tasks["gone"].cancel()
    release.set()
    await asyncio.gather(*(t for n, t in tasks.items() if n != "gone"))
    assert order == ["a", "b", "c", "d"]
    assert tasks["gone"].cancelled()


async def test_poll_limiter_without_bound_and_bad_bound() -> None:
    unbounded = PollLimiter(None)
    async with unbounded.slot(), unbounded.slot():
        pass  # no bound: nobody waits
    with pytest.raises(ValueError, match="in_flight"):
        PollLimiter(None, in_flight=0)


async def test_first_poll_and_final_poll_timed_from_the_eta() -> None:
    """With the service's ETA a job takes at most 3 polls; without it, many more."""
    policy = PollPolicy(
        interval=0.05, growth=1.4, max_interval=1.0, max_polls_per_second=None, min_interval=0.05
    )
    counts: dict[bool, list[int]] = {}
    with fast_mode(1.0):
        for eta in (True, False):
            async with (
                KlingSimulator(
                    token=TOKEN, accounts={EMAIL: 5}, job_seconds=0.4, duration_sigma=0, eta=eta
                ) as sim,
                KlingClient(
                    token=TOKEN,
                    base_url=sim.base_url,
                    max_jobs=5,
                    config=ClientConfig(poll=policy),
                ) as kling,
            ):
                done = await asyncio.gather(*(kling.run(kolors(f"eta {n}")) for n in range(4)))
                assert all(d.succeeded for d in done)
                counts[eta] = sorted(sim.stats["polls_by_task"].values())
    assert len(counts[True]) == 4
    assert max(counts[True]) <= 3
    assert min(counts[False]) >= 4  # 50, 70, 98, 137, 192 ms...: five polls for 0.4 s
