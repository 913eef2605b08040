"""The scheduler in the client: available(), running(), release(), against the simulator."""

from __future__ import annotations

import pytest
from helpers import EMAIL, TOKEN

from kling_async import (
    AccountCapacity,
    KlingClient,
    KolorsElements,
    NotFoundError,
    RequestValidationError,
    ScheduledJob,
)
from kling_async.testing import KlingSimulator

URLS = ["https://example.com/a.png", "https://example.com/b.png"]


@pytest.fixture
async def slow_sim() -> KlingSimulator:
    async with KlingSimulator(token=TOKEN, accounts={EMAIL: 3}, job_seconds=60) as server:
        yield server  # type: ignore[misc]


async def test_running_lists_the_jobs_with_their_reply_ref(slow_sim: KlingSimulator) -> None:
    async with KlingClient(token=TOKEN, base_url=slow_sim.base_url, email=EMAIL) as kling:
        sub = await kling.submit(
            KolorsElements(prompt="a cat", subject_images=URLS, reply_ref="r1")
        )
        [job] = await kling.running()
    assert isinstance(job, ScheduledJob)
    assert (job.id, job.email, job.reply_ref) == (sub.task_id, EMAIL, "r1")
    assert job.elapsed_seconds is not None
    assert job.elapsed_seconds >= 0
    assert job.started


async def test_available_counts_jobs_started_elsewhere(slow_sim: KlingSimulator) -> None:
    async with KlingClient(token=TOKEN, base_url=slow_sim.base_url, email=EMAIL) as other:
        first = await other.submit(KolorsElements(prompt="elsewhere", subject_images=URLS))
    async with KlingClient(token=TOKEN, base_url=slow_sim.base_url, email=EMAIL) as kling:
        capacity = await kling.available()
    assert capacity.available == (
        AccountCapacity(email=EMAIL, max_jobs=3, executing=1, available=2),
    )
    assert [j.id for j in capacity.executing] == [first.task_id]


async def test_release_frees_the_slot_and_a_second_release_is_not_found(
    slow_sim: KlingSimulator,
) -> None:
    async with KlingClient(token=TOKEN, base_url=slow_sim.base_url, email=EMAIL) as kling:
        sub = await kling.submit(KolorsElements(prompt="stuck", subject_images=URLS))
        assert sub.task_id is not None
        assert await kling.release(sub.task_id) == "Task was successfully canceled."
        assert await kling.running() == []
        with pytest.raises(NotFoundError, match=f"Unable to locate running task_id {sub.task_id}"):
            await kling.release(sub.task_id)
        with pytest.raises(RequestValidationError, match="task_id: must be a positive integer"):
            await kling.release(0)
    assert slow_sim.stats["tasks_created"] == 1  # the job still runs: it was not cancelled
