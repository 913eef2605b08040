"""Accounts and their tasks against the simulator: which account a call names, GET /accounts,
one task and the task list, and the scheduler (running jobs, capacity, release)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from helpers import EMAIL, TOKEN, URL1, URL2, kolors, serve, video

from kling_async import (
    Account,
    AccountCapacity,
    KlingClient,
    KolorsElements,
    NotFoundError,
    RequestValidationError,
    ScheduledJob,
)
from kling_async.testing import KlingSimulator


async def test_get_task_and_list_tasks(client: KlingClient, sim: KlingSimulator) -> None:
    first = await client.submit(kolors("first"))
    second = await client.submit(video("second"))
    task_id = first.task_id or 0
    polled = await client.get_task(task_id)
    assert polled.task_id == task_id
    assert polled.arguments["prompt"] == "first"
    sim.finish_all()
    done = await client.get_task(task_id)
    assert done.succeeded
    assert len(done.works) == 1
    listed = await client.list_tasks()
    assert [t.task_id for t in listed] == [second.task_id, first.task_id]  # newest first
    only_video = await client.list_tasks(content_type="video", page_size=5)
    assert [t.task_id for t in only_video] == [second.task_id]
    assert sim.stats["lists"] == 2


@pytest.mark.parametrize("bad", [0, -1, "12", True, 1.5])
async def test_get_task_rejects_bad_ids(client: KlingClient, bad: Any) -> None:
    with pytest.raises(RequestValidationError):
        await client.get_task(bad)


async def test_accounts(client: KlingClient, sim: KlingSimulator) -> None:
    account = await client.get_account(EMAIL)
    assert isinstance(account, Account)
    assert account.email == EMAIL
    assert account.max_jobs == 3
    sim.add_account("b@example.com", 7)
    accounts = await client.list_accounts()
    assert {e: a.max_jobs for e, a in accounts.items()} == {EMAIL: 3, "b@example.com": 7}


async def test_the_tokens_only_account_is_sent_as_email() -> None:
    """useapi.net's scripts always send email (some lookups answer 400 without it)."""
    seen: list[dict[str, str]] = []

    async def accounts(request: web.Request) -> web.Response:
        return web.json_response({"only@example.com": {"email": "only@example.com", "maxJobs": 2}})

    async def task(request: web.Request) -> web.Response:
        seen.append(dict(request.query))
        return web.json_response({"status": 5, "task": {"id": 5}})

    app = web.Application()
    app.router.add_get("/v1/kling/accounts", accounts)
    app.router.add_get("/v1/kling/tasks/{task_id}", task)
    async with serve(app) as root:
        async with KlingClient(token=TOKEN, base_url=f"{root}/v1/kling", max_jobs=2) as kling:
            await kling.get_task(5)
            await kling.get_task(5)
            assert kling.email == "only@example.com"
    assert seen == [{"email": "only@example.com"}] * 2


async def test_running_lists_the_jobs_with_their_reply_ref(minute_sim: KlingSimulator) -> None:
    async with KlingClient(token=TOKEN, base_url=minute_sim.base_url, email=EMAIL) as kling:
        sub = await kling.submit(
            KolorsElements(prompt="a cat", subject_images=[URL1, URL2], reply_ref="r1")
        )
        [job] = await kling.running()
    assert isinstance(job, ScheduledJob)
    assert (job.id, job.email, job.reply_ref) == (sub.task_id, EMAIL, "r1")
    assert job.elapsed_seconds is not None
    assert job.elapsed_seconds >= 0
    assert job.started


async def test_available_counts_jobs_started_elsewhere(minute_sim: KlingSimulator) -> None:
    async with KlingClient(token=TOKEN, base_url=minute_sim.base_url, email=EMAIL) as other:
        first = await other.submit(KolorsElements(prompt="elsewhere", subject_images=[URL1, URL2]))
    async with KlingClient(token=TOKEN, base_url=minute_sim.base_url, email=EMAIL) as kling:
        capacity = await kling.available()
    assert capacity.available == (
        AccountCapacity(email=EMAIL, max_jobs=5, executing=1, available=4),
    )
    assert [j.id for j in capacity.executing] == [first.task_id]


async def test_release_frees_the_slot_and_a_second_release_is_not_found(
    minute_sim: KlingSimulator,
) -> None:
    async with KlingClient(token=TOKEN, base_url=minute_sim.base_url, email=EMAIL) as kling:
        sub = await kling.submit(KolorsElements(prompt="stuck", subject_images=[URL1, URL2]))
        assert sub.task_id is not None
        assert await kling.release(sub.task_id) == "Task was successfully canceled."
        assert await kling.running() == []
        with pytest.raises(NotFoundError, match=f"Unable to locate running task_id {sub.task_id}"):
            await kling.release(sub.task_id)
        with pytest.raises(RequestValidationError, match="task_id: must be a positive integer"):
            await kling.release(0)
    assert minute_sim.stats["tasks_created"] == 1  # the job still runs: it was not cancelled
