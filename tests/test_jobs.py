"""JobRunner: one job's lifecycle, and the events a caller (the batch) hears of it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from helpers import EMAIL, TOKEN, HeldPosts, serve, wait_until

from kling_async import (
    AccountError,
    KlingClient,
    KlingError,
    KolorsElements,
    ModerationError,
    TaskFailedError,
    TaskResponse,
    TaskTimeoutError,
)
from kling_async.jobs import JobEvents, JobPhase
from kling_async.requests import GenerationRequest
from kling_async.testing import KlingSimulator
from kling_async.testing.answers import ACCOUNT_ERROR_REASON
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


class Steps(JobEvents):
    """Records every step, by name, with what it was told."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def names(self) -> list[str]:
        return [name for name, _ in self.seen]

    def told(self, name: str) -> list[Any]:
        return [what for seen, what in self.seen if seen == name]

    def started(self, email: str | None) -> None:
        self.seen.append(("started", email))

    def posted(self, request: GenerationRequest, email: str | None) -> None:
        self.seen.append(("posted", email))

    def posting(self, post: asyncio.Task[TaskResponse | None]) -> None:
        self.seen.append(("posting", post))

    def sending(self, body: dict[str, Any], email: str | None) -> None:
        self.seen.append(("sending", (body, email)))

    def submitted(self, response: TaskResponse, email: str | None) -> None:
        self.seen.append(("submitted", (response.task_id, email)))

    def failed(self, phase: JobPhase, error: KlingError, email: str | None) -> None:
        self.seen.append(("failed", (phase, error, email)))

    def final(self, response: TaskResponse) -> None:
        self.seen.append(("final", response.task_id))


STEPS = ["started", "posted", "posting", "sending", "submitted", "final"]


async def test_every_step_is_told_in_order_with_the_exact_body(
    sim: KlingSimulator, client: KlingClient
) -> None:
    steps = Steps()
    request = KolorsElements(prompt="a cat", subject_images=[png(320, 320, (1, 2, 3)), URLS[1]])
    final = await client.jobs.run(request, events=steps)
    assert steps.names() == STEPS
    assert steps.told("started") == steps.told("posted") == [EMAIL]
    [(body, email)] = steps.told("sending")
    [task] = sim.stats["tasks"]
    assert (body, email) == (task["body"], EMAIL)  # what went out, tag and uploaded URL
    assert body["replyRef"]
    [post] = steps.told("posting")
    assert post.done()
    assert post.result().task_id == final.task_id
    assert steps.told("submitted") == [(final.task_id, EMAIL)]
    assert steps.told("final") == [final.task_id]


async def test_a_refused_post_is_told_with_its_phase_then_raised(
    sim: KlingSimulator, client: KlingClient
) -> None:
    steps = Steps()
    with pytest.raises(ModerationError) as caught:
        await client.run(KolorsElements(prompt="nsfw thing", subject_images=URLS), events=steps)
    assert steps.names() == ["started", "posted", "posting", "sending", "failed"]
    assert steps.told("failed") == [(JobPhase.POST, caught.value, EMAIL)]
    assert sim.stats["tasks_created"] == 0
    assert client.slots.in_use(EMAIL) == 0


async def test_a_failed_task_is_final_then_failed_in_the_wait() -> None:
    async with KlingSimulator(
        token=TOKEN, accounts={EMAIL: 2}, job_seconds=0.01, failure_words=("doomed",)
    ) as sim:
        async with KlingClient(token=TOKEN, base_url=sim.base_url) as kling:
            steps = Steps()
            with pytest.raises(TaskFailedError) as caught:
                await kling.run(KolorsElements(prompt="doomed", subject_images=URLS), events=steps)
    assert steps.names() == [*STEPS, "failed"]
    assert steps.told("failed") == [(JobPhase.WAIT, caught.value, EMAIL)]


async def test_a_failing_sending_event_sends_nothing_and_is_no_failure(
    sim: KlingSimulator, client: KlingClient
) -> None:
    class Refuse(Steps):
        def sending(self, body: dict[str, Any], email: str | None) -> None:
            raise RuntimeError("journal is read-only")

    steps = Refuse()
    with pytest.raises(RuntimeError, match="journal is read-only"):
        await client.run(KolorsElements(prompt="a cat", subject_images=URLS), events=steps)
    assert steps.names() == ["started", "posted", "posting"]  # the caller's error, not a step's
    assert sim.stats["posts"] == 0
    assert client.slots.in_use(EMAIL) == 0


B = "b@example.com"


async def test_a_596_sends_the_job_to_another_account_and_says_so() -> None:
    """b (more free slots: chosen first) answers 596: nothing was created; the job starts
    over on a. A job that names b only fails."""
    async with KlingSimulator(token=TOKEN, accounts={EMAIL: 1, B: 2}, job_seconds=0.01) as sim:
        sim.set_account_error(B)
        async with KlingClient(
            token=TOKEN, base_url=sim.base_url, accounts={EMAIL: 1, B: 2}
        ) as kling:
            steps = Steps()
            final = await kling.run(
                KolorsElements(prompt="a cat", subject_images=URLS), events=steps
            )
            assert steps.names() == ["started", "posted", "posting", "sending", "failed", *STEPS]
            [(phase, error, email)] = steps.told("failed")
            assert (phase, email, type(error)) == (JobPhase.POST, B, AccountError)
            assert ACCOUNT_ERROR_REASON in str(error)
            assert steps.told("started") == [B, EMAIL]
            assert steps.told("submitted") == [(final.task_id, EMAIL)]
            assert list(kling.slots.disabled()) == [B]

            named = Steps()
            request = KolorsElements(prompt="for b", subject_images=URLS, email=B)
            with pytest.raises(AccountError) as caught:
                await kling.run(request, events=named)
            assert named.told("failed") == [(JobPhase.SLOT, caught.value, B)]  # nothing sent
        assert (sim.stats["posts"], sim.stats["tasks_created"]) == (2, 1)


@pytest.mark.parametrize("follow", [True, False])
async def test_a_job_cancelled_while_its_post_is_out_still_hears_its_task_id(
    follow: bool,
) -> None:
    """The POST goes on in its own task: its answer reaches ``submitted``. The slot is kept
    until the job ends (followed), or with ``follow_cancelled=False`` freed at once."""
    service = HeldPosts(4242)
    steps = Steps()
    request = KolorsElements(prompt="in flight", subject_images=URLS)
    async with (
        serve(service.app) as root,
        KlingClient(token=TOKEN, base_url=f"{root}/v1/kling", email=EMAIL, max_jobs=1) as kling,
    ):
        running = asyncio.ensure_future(
            kling.jobs.run(request, events=steps, follow_cancelled=follow)
        )
        await asyncio.wait_for(service.posted.wait(), 10)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        assert kling.slots.in_use(EMAIL) == (1 if follow else 0)
        service.answer.set()
        await wait_until(lambda: steps.told("submitted") == [(4242, EMAIL)])
        # Followed: the service has no task to poll (404), so the follower gives up.
        await wait_until(lambda: kling.slots.in_use(EMAIL) == 0)
    assert steps.names() == ["started", "posted", "posting", "sending", "submitted"]
    assert len(service.bodies) == 1


async def test_a_timeout_function_is_asked_when_the_wait_begins() -> None:
    async with KlingSimulator(token=TOKEN, accounts={EMAIL: 2}, job_seconds=3600) as sim:
        async with KlingClient(token=TOKEN, base_url=sim.base_url, email=EMAIL) as kling:
            steps = Steps()

            def timeout() -> float:
                steps.seen.append(("timeout", None))
                return 0.0

            request = KolorsElements(prompt="a cat", subject_images=URLS)
            with pytest.raises(TaskTimeoutError) as caught:
                await kling.jobs.run(request, timeout=timeout, events=steps)
            assert steps.names() == [*STEPS[:-1], "timeout", "failed"]
            assert steps.told("failed") == [(JobPhase.WAIT, caught.value, EMAIL)]
            assert kling.slots.in_use(EMAIL) == 1  # it runs on: followed, slot kept
            assert kling.jobs.following == 1
