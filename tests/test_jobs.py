"""JobRunner: one job's lifecycle, and the events a caller (the batch) hears of it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from helpers import EMAIL, TOKEN

from kling_async import KlingClient, KolorsElements, TaskFailedError, TaskResponse
from kling_async.jobs import JobEvents
from kling_async.requests import GenerationRequest
from kling_async.testing import KlingSimulator
from kling_async.testing.media import png

URLS = ["https://example.com/a.png", "https://example.com/b.png"]


@pytest.fixture
async def client(sim: KlingSimulator) -> AsyncIterator[KlingClient]:
    """A client of ``sim`` with its account named (its slots are counted by email)."""
    async with KlingClient(token=TOKEN, base_url=sim.base_url, email=EMAIL) as kling:
        yield kling


class Recorder(JobEvents):
    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def posted(self, request: GenerationRequest, email: str | None) -> None:
        self.seen.append(("posted", (request.image_inputs(), email)))

    def submitted(self, response: TaskResponse, email: str | None) -> None:
        self.seen.append(("submitted", (response.task_id, email)))

    def final(self, response: TaskResponse) -> None:
        self.seen.append(("final", (response.task_id, response.status_final)))


async def test_events_come_in_order_with_the_task_id(
    sim: KlingSimulator, client: KlingClient
) -> None:
    events = Recorder()
    request = KolorsElements(prompt="a cat", subject_images=[png(320, 320, (1, 2, 3)), URLS[1]])
    final = await client.jobs.run(request, events=events)
    [posted, submitted, done] = events.seen
    assert posted[0] == "posted"
    inputs, email = posted[1]
    assert all(str(v).startswith("http") for v in inputs.values())  # uploaded before POST
    assert email == EMAIL
    assert submitted == ("submitted", (final.task_id, EMAIL))
    assert done == ("final", (final.task_id, True))
    assert sim.stats["posts"] == 1
    assert client.slots.in_use(EMAIL) == 0


async def test_a_failing_posted_event_stops_the_job_before_anything_is_sent(
    sim: KlingSimulator, client: KlingClient
) -> None:
    class Refuse(JobEvents):
        def posted(self, request: GenerationRequest, email: str | None) -> None:
            raise RuntimeError("journal is read-only")

    with pytest.raises(RuntimeError, match="journal is read-only"):
        await client.run(KolorsElements(prompt="a cat", subject_images=URLS), events=Refuse())
    assert sim.stats["posts"] == 0
    assert client.slots.in_use(EMAIL) == 0


async def test_a_failed_task_reaches_final_and_raises() -> None:
    async with KlingSimulator(
        token=TOKEN, accounts={EMAIL: 2}, job_seconds=0.01, failure_words=("doomed",)
    ) as sim:
        async with KlingClient(token=TOKEN, base_url=sim.base_url) as kling:
            events = Recorder()
            with pytest.raises(TaskFailedError) as caught:
                await kling.run(KolorsElements(prompt="doomed", subject_images=URLS), events=events)
    assert [name for name, _ in events.seen] == ["posted", "submitted", "final"]
    assert events.seen[-1][1] == (caught.value.task.task_id if caught.value.task else None, True)


async def test_a_hook_that_raises_in_submitted_never_loses_the_job(
    sim: KlingSimulator, client: KlingClient
) -> None:
    class Broken(JobEvents):
        def submitted(self, response: TaskResponse, email: str | None) -> None:
            raise RuntimeError("bug in the caller")

    final = await client.run(KolorsElements(prompt="a cat", subject_images=URLS), events=Broken())
    assert final.status_final
    assert client.jobs.following == 0
