"""TaskWaiter against the simulator: final states, watch(), deadlines, default timeouts, tasks
that go away and hostile answers. When it polls: tests/test_polling.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
from aiohttp import web
from helpers import EMAIL, TOKEN, URL1, URL2, serve

from kling_async import (
    ClientConfig,
    EmptyResultError,
    KlingClient,
    KolorsElements,
    NotFoundError,
    RequestInfo,
    RetryPolicy,
    TaskExpiredError,
    TaskFailedError,
    TaskGoneError,
    TaskResponse,
    TaskTimeoutError,
    TaskWaiter,
)
from kling_async.config import DEFAULT_IMAGE_TIMEOUT, DEFAULT_POLL, DEFAULT_VIDEO_TIMEOUT
from kling_async.testing import FaultPlan, FaultRates, KlingSimulator
from kling_async.waiter import default_timeout


def job(prompt: str = "wait for me", **fields: Any) -> KolorsElements:
    return KolorsElements(prompt=prompt, subject_images=[URL1, URL2], **fields)


def names(updates: list[TaskResponse]) -> list[str | None]:
    return [u.status_name for u in updates]


@pytest.fixture
async def long_sim() -> AsyncIterator[KlingSimulator]:
    """Jobs that never end on their own within a test: the test finishes them."""
    async with KlingSimulator(
        token=TOKEN, accounts={EMAIL: 50}, job_seconds=60, duration_sigma=0, eta=False
    ) as server:
        yield server


@pytest.fixture
async def long_client(long_sim: KlingSimulator) -> AsyncIterator[KlingClient]:
    async with KlingClient(token=TOKEN, base_url=long_sim.base_url, max_jobs=50) as kling:
        yield kling


# -- wait ----------------------------------------------------------------------------------------


async def test_wait_by_response_or_id(client: KlingClient, sim: KlingSimulator) -> None:
    first = await client.submit(job("by response"))
    second = await client.submit(job("by id"))
    done = await client.wait(first)
    assert done.succeeded
    assert done.task_id == first.task_id
    assert done.works
    by_id = await TaskWaiter(client).wait(second.task_id or 0)
    assert by_id.succeeded
    assert by_id.arguments["prompt"] == "by id"
    with pytest.raises(TypeError):
        await TaskWaiter(client).wait("123")  # type: ignore[arg-type]


async def test_wait_failed_raises_with_the_final_task(client: KlingClient) -> None:
    sub = await client.submit(job("doomed to fail"))
    with pytest.raises(TaskFailedError) as caught:
        await client.wait(sub)
    assert caught.value.task is not None
    assert caught.value.task.failed
    assert caught.value.task_id == sub.task_id
    assert str(sub.task_id) in str(caught.value)


async def test_wait_unknown_task_stops_at_once(client: KlingClient, sim: KlingSimulator) -> None:
    with pytest.raises(NotFoundError):
        await client.wait(999)
    assert sim.stats["polls"] == 1


async def test_transient_poll_failures_are_polled_through(sim: KlingSimulator) -> None:
    config = ClientConfig(retry=RetryPolicy(max_tries=1))  # every failure reaches the waiter
    async with KlingClient(token=TOKEN, base_url=sim.base_url, config=config) as kling:
        sub = await kling.submit(job())
        sim.set_fault_plan(
            FaultPlan(
                seed=7, rules={"tasks": FaultRates(server_error=0.3, reset=0.1, malformed=0.2)}
            )
        )
        assert (await kling.wait(sub)).succeeded
    assert sum(sim.stats["faults"].values()) >= 1


# -- watch ---------------------------------------------------------------------------------------


async def test_watch_yields_each_status_once_in_order(
    long_sim: KlingSimulator, long_client: KlingClient
) -> None:
    sub = await long_client.submit(job())
    task_id = sub.task_id or 0
    long_sim.tasks[task_id].started_at -= 6  # skip the queue: processing from now on
    updates: list[TaskResponse] = []
    async for update in long_client.watch(sub):
        updates.append(update)
        if update.status_name == "processing":
            long_sim.finish(task_id)
    assert names(updates) == ["submitted", "processing", "succeed"]
    assert [u.task_id for u in updates] == [task_id] * 3
    assert updates[-1].is_final
    assert updates[-1].works


class PollCounter:
    """An ``on_request`` hook that lets a test await the n-th poll."""

    def __init__(self) -> None:
        self.polls = 0
        self._waiting: list[tuple[int, asyncio.Event]] = []

    def __call__(self, info: RequestInfo) -> None:
        if info.method == "GET" and info.path.startswith("tasks/"):
            self.polls += 1
            for wanted, event in self._waiting:
                if self.polls >= wanted:
                    event.set()

    async def reach(self, polls: int) -> None:
        event = asyncio.Event()
        self._waiting.append((polls, event))
        self(RequestInfo(method="", path="", status=None, elapsed=0))  # already there?
        await asyncio.wait_for(event.wait(), 10)


async def test_watch_never_repeats_a_status_however_often_it_polls(
    long_sim: KlingSimulator,
) -> None:
    counter = PollCounter()
    updates: list[TaskResponse] = []
    async with KlingClient(token=TOKEN, base_url=long_sim.base_url, on_request=counter) as kling:
        sub = await kling.submit(job())
        task_id = sub.task_id or 0

        async def follow() -> None:
            async for update in kling.watch(task_id):  # by id: starts with a poll
                updates.append(update)

        follower = asyncio.ensure_future(follow())
        await counter.reach(20)  # still submitted after 20 polls
        long_sim.tasks[task_id].started_at -= 6
        await counter.reach(counter.polls + 20)  # processing for 20 more
        long_sim.finish(task_id)
        await asyncio.wait_for(follower, 10)
    assert names(updates) == ["submitted", "processing", "succeed"]
    assert long_sim.stats["polls_by_task"][task_id] >= 41


async def test_watch_of_a_failing_task_ends_with_failed(client: KlingClient) -> None:
    sub = await client.submit(job("fail here"))
    seen = [u async for u in TaskWaiter(client).watch(sub)]
    assert seen[0] is sub
    assert seen[-1].status_name == "failed"
    assert seen[-1].is_final
    assert len(set(names(seen))) == len(seen)


# -- deadlines -----------------------------------------------------------------------------------


async def test_timeout_raises_with_task_id_and_last_state(
    long_sim: KlingSimulator, long_client: KlingClient
) -> None:
    sub = await long_client.submit(job())
    with pytest.raises(TaskTimeoutError) as caught:
        await TaskWaiter(long_client, timeout=0.05).wait(sub)
    error = caught.value
    assert isinstance(error, TimeoutError)
    assert error.task_id == sub.task_id
    assert error.last is not None
    assert not error.last.is_final
    assert "may still finish" in str(error)
    with pytest.raises(TaskTimeoutError):  # a per-call deadline beats the waiter's
        await TaskWaiter(long_client, timeout=None).wait(sub, timeout=0.01)
    long_sim.finish(sub.task_id or 0)
    assert (await TaskWaiter(long_client, timeout=None).wait(sub)).succeeded


async def test_timeout_before_any_poll_answered(long_sim: KlingSimulator) -> None:
    long_sim.set_fault_plan(FaultPlan(rules={"tasks": FaultRates(server_error=1.0)}))
    config = ClientConfig(retry=RetryPolicy(max_tries=1))
    async with KlingClient(token=TOKEN, base_url=long_sim.base_url, config=config) as kling:
        with pytest.raises(TaskTimeoutError) as caught:
            await kling.wait(123, timeout=0.05)
    assert caught.value.task_id == 123
    assert caught.value.last is None


def test_default_deadlines_by_kind() -> None:
    from kling_async import Task

    image = TaskResponse(task=Task(id=1, type="mmu_multi_img2img_aiweb"))
    video = TaskResponse(task=Task(id=2, type="m2v_img2video_hq"))
    assert default_timeout(image) == DEFAULT_IMAGE_TIMEOUT
    assert default_timeout(video) == DEFAULT_VIDEO_TIMEOUT
    assert default_timeout(None) == DEFAULT_VIDEO_TIMEOUT  # unknown: the generous one
    assert 0 < DEFAULT_IMAGE_TIMEOUT < DEFAULT_VIDEO_TIMEOUT


def test_waiter_settings_override_the_clients(client: KlingClient) -> None:
    waiter = TaskWaiter(client, interval=2, max_interval=9, timeout=None)
    assert waiter.policy.interval == 2
    assert waiter.policy.max_interval == 9
    assert waiter.timeout is None
    assert TaskWaiter(client).policy == client.poll_policy


async def test_deadline_bounds_a_poll_the_server_never_answers() -> None:
    """The deadline holds even while a poll is out: a GET the server sits on does not keep
    the caller waiting for the request timeout (and its retries)."""
    polled = asyncio.Event()
    never = asyncio.Event()

    async def task(request: web.Request) -> web.Response:
        polled.set()
        await never.wait()
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/v1/kling/tasks/{task_id}", task)
    # deadline_grace: how long the poll due at the deadline may take to answer.
    poll = attrs.evolve(DEFAULT_POLL, deadline_grace=0.05)
    config = ClientConfig(read_timeout=3600, request_timeout=3600, poll=poll)
    async with serve(app) as root:
        try:
            async with KlingClient(
                token=TOKEN, base_url=f"{root}/v1/kling", email=EMAIL, config=config
            ) as kling:
                waiting = asyncio.ensure_future(kling.wait(321, timeout=0.2))
                await asyncio.wait_for(polled.wait(), 10)
                # A hang guard, not a timing assertion: without the fix this waits an hour.
                with pytest.raises(TaskTimeoutError) as caught:
                    await asyncio.wait_for(waiting, 60)
        finally:
            never.set()  # lets the handler end, so the server can shut down
    assert caught.value.task_id == 321


# -- tasks that go away, hostile answers ----------------------------------------------------------


async def test_a_deleted_task_ends_the_wait_as_gone(
    long_client: KlingClient, long_sim: KlingSimulator
) -> None:
    sub = await long_client.submit(job("deleted later"))
    long_sim.delete_task(sub.task_id or 0)
    with pytest.raises(TaskGoneError) as caught:
        await long_client.wait(sub)
    assert isinstance(caught.value, TaskFailedError)
    assert caught.value.task_id == sub.task_id
    message = str(caught.value)
    for cause in ("deleted", "moderation", "out of credits"):
        assert cause in message


async def test_an_expired_task_ends_the_wait_as_expired(
    long_client: KlingClient, long_sim: KlingSimulator
) -> None:
    sub = await long_client.submit(job("expired later"))
    long_sim.expire(sub.task_id or 0)
    with pytest.raises(TaskExpiredError, match=r"expired .*7 days") as caught:
        await long_client.wait(sub)
    assert caught.value.task_id == sub.task_id


async def test_a_task_that_vanishes_at_moderation_is_gone() -> None:
    async with (
        KlingSimulator(
            token=TOKEN, accounts={EMAIL: 5}, job_seconds=0.05, vanish_on_moderation=True
        ) as sim,
        KlingClient(token=TOKEN, base_url=sim.base_url, max_jobs=5) as kling,
    ):
        with pytest.raises(TaskGoneError, match="failed at moderation"):
            await kling.run(job("something nsfw"))
        assert sim.stats["polls_gone"] >= 1


def _hostile(answers: list[dict[str, Any]], polls: list[int]) -> web.Application:
    """A server whose polls answer ``answers`` in turn (the last one repeats)."""

    async def task(request: web.Request) -> web.Response:
        polls.append(1)
        return web.json_response(answers[min(len(polls), len(answers)) - 1])

    app = web.Application()
    app.router.add_get("/v1/kling/tasks/{task_id}", task)
    return app


def _answer(task_id: int, *, works: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "status": 99,
        "status_name": "succeed",
        "status_final": True,
        "task": {"id": task_id, "status": 99, "type": "m2v_img2img"},
        "works": works,
    }


WORK = {"resource": {"resource": "https://example.com/x.png"}, "contentType": "image"}


async def test_an_answer_about_another_task_is_polled_again() -> None:
    polls: list[int] = []
    app = _hostile([_answer(999, works=[WORK]), _answer(321, works=[WORK])], polls)
    async with (
        serve(app) as root,
        KlingClient(token=TOKEN, base_url=f"{root}/v1/kling", email=EMAIL) as kling,
    ):
        done = await kling.wait(321)
    assert done.task_id == 321
    assert len(polls) == 2


async def test_succeed_without_works_is_an_error() -> None:
    app = _hostile([_answer(321, works=[])], [])
    async with (
        serve(app) as root,
        KlingClient(token=TOKEN, base_url=f"{root}/v1/kling", email=EMAIL) as kling,
    ):
        with pytest.raises(EmptyResultError, match="task 321 ended succeed without any works"):
            await kling.wait(321)
