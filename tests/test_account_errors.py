"""The client against accounts the service refuses, over real sockets (simulator).

402 (the token's useapi.net subscription), 412 (the Kling account out of credits) and 596
(the account in error state) must surface as `PaymentRequiredError` / `AccountError` with
the server's text, from submit, run, a waiter and an upload, and must never be retried:
none of them can succeed by asking again, and a retried POST could pay twice once the
account is back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from helpers import EMAIL, TOKEN, URL1, URL2, kolors, video, wait_until

from kling_async import (
    AccountError,
    KlingClient,
    PaymentRequiredError,
    TaskResponse,
    TaskWaiter,
)
from kling_async.testing import KlingSimulator
from kling_async.testing.answers import ACCOUNT_ERROR_REASON, OUT_OF_CREDITS
from kling_async.testing.media import png

B = "b@example.com"
KOLORS = "images/kolors-elements"
VIDEO = "videos/image2video-elements"
IN_ERROR = f"Account {EMAIL} in error state: {ACCOUNT_ERROR_REASON}"


@pytest.fixture
async def pinned(sim: KlingSimulator) -> AsyncIterator[KlingClient]:
    """A client of ``sim`` with its account and maxJobs given: no call but the ones tested."""
    async with KlingClient(token=TOKEN, email=EMAIL, max_jobs=3, base_url=sim.base_url) as kling:
        yield kling


@pytest.fixture
async def slow_sim() -> AsyncIterator[KlingSimulator]:
    """One account, jobs that run until finished by the test, no ETA (polls keep coming)."""
    async with KlingSimulator(
        token=TOKEN, accounts={EMAIL: 3}, job_seconds=600, duration_sigma=0, eta=False
    ) as server:
        yield server


@pytest.fixture
async def slow(slow_sim: KlingSimulator) -> AsyncIterator[KlingClient]:
    """A client of ``slow_sim`` (account and maxJobs given)."""
    base_url = slow_sim.base_url
    async with KlingClient(token=TOKEN, email=EMAIL, max_jobs=3, base_url=base_url) as kling:
        yield kling


def assert_nothing_created(sim: KlingSimulator, *, posts: int) -> None:
    stats = sim.stats
    assert (stats["posts"], stats["tasks_created"], stats["uploads"]) == (posts, 0, 0)


# --- 596: the account is in error state --------------------------------------------------
async def test_submit_to_an_account_in_error_state(
    sim: KlingSimulator, pinned: KlingClient
) -> None:
    sim.set_account_error(EMAIL)
    with pytest.raises(AccountError) as info:
        await pinned.submit(kolors())
    error = info.value
    assert str(error) == f"596 from POST {KOLORS}: {IN_ERROR}"
    assert (error.status, error.code, error.error) == (596, 596, IN_ERROR)
    assert (error.method, error.path) == ("POST", KOLORS)
    assert error.body == {"error": IN_ERROR, "code": 596}
    # One POST, not retried, and no look into the task list (a 596 creates nothing).
    assert_nothing_created(sim, posts=1)
    assert (sim.stats["account_errors"], sim.stats["lists"]) == (1, 0)


async def test_run_on_an_account_in_error_state(sim: KlingSimulator, client: KlingClient) -> None:
    # The default client: account and maxJobs are read from GET /accounts, which still
    # answers for a broken account; the POST is refused.
    sim.set_account_error(EMAIL, "CAPTCHA")
    with pytest.raises(AccountError) as info:
        await client.run(video())
    assert str(info.value) == f"596 from POST {VIDEO}: Account {EMAIL} in error state: CAPTCHA"
    assert_nothing_created(sim, posts=1)
    assert sim.stats["account_errors"] == 1
    assert all(client.slots.in_use(a) == 0 for a in client.slots.accounts)


async def test_convenience_method_on_an_account_in_error_state(
    sim: KlingSimulator, pinned: KlingClient
) -> None:
    sim.set_account_error(EMAIL)
    with pytest.raises(AccountError) as info:
        await pinned.kolors_elements(prompt="p", subject_images=[URL1, URL2])
    assert str(info.value) == f"596 from POST {KOLORS}: {IN_ERROR}"
    assert_nothing_created(sim, posts=1)
    assert pinned.slots.in_use(EMAIL) == 0


async def test_repaired_account_takes_jobs_again(sim: KlingSimulator, pinned: KlingClient) -> None:
    sim.set_account_error(EMAIL)
    with pytest.raises(AccountError, match="in error state"):
        await pinned.submit(kolors())
    sim.set_account_error(EMAIL, None)
    final = await pinned.run(kolors())
    assert final.succeeded
    assert (sim.stats["posts"], sim.stats["tasks_created"]) == (2, 1)


async def test_waiter_when_the_account_breaks_mid_wait(
    slow_sim: KlingSimulator, slow: KlingClient
) -> None:
    submitted = await slow.submit(kolors())
    task_id = submitted.task_id
    assert task_id is not None
    waiting = asyncio.ensure_future(TaskWaiter(slow, timeout=60).wait(submitted))
    await wait_until(lambda: slow_sim.stats["polls_by_task"].get(task_id, 0) >= 2)
    slow_sim.set_account_error(EMAIL)
    with pytest.raises(AccountError) as info:
        await waiting
    error = info.value
    assert str(error) == f"596 from GET tasks/{task_id}: {IN_ERROR}"
    assert (error.method, error.path, error.code) == ("GET", f"tasks/{task_id}", 596)
    # The first refused poll ends the wait: no retry, no further poll.
    assert slow_sim.stats["account_errors"] == 1
    # The job goes on at Kling; once the account is fixed the same task can be waited on.
    assert not slow_sim.tasks[task_id].is_final
    slow_sim.set_account_error(EMAIL, None)
    slow_sim.finish(task_id)
    final = await slow.wait(task_id)
    assert (final.task_id, final.status_name) == (task_id, "succeed")
    assert slow_sim.stats["tasks_created"] == 1


async def test_run_when_the_account_breaks_mid_wait(
    slow_sim: KlingSimulator, slow: KlingClient
) -> None:
    submitted: list[TaskResponse] = []
    running = asyncio.ensure_future(slow.run(video(), on_submitted=submitted.append))
    await wait_until(lambda: submitted and slow_sim.stats["polls"] >= 1)
    slow_sim.set_account_error(EMAIL, "login failed")
    with pytest.raises(AccountError) as info:
        await running
    task_id = submitted[0].task_id
    assert (
        str(info.value)
        == f"596 from GET tasks/{task_id}: Account {EMAIL} in error state: login failed"
    )
    assert (slow_sim.stats["posts"], slow_sim.stats["account_errors"]) == (1, 1)
    assert slow.slots.in_use(EMAIL) == 0  # the slot is given back


# --- 402: the useapi.net subscription -----------------------------------------------------
async def test_submit_without_subscription(sim: KlingSimulator, pinned: KlingClient) -> None:
    sim.set_subscription(False)
    with pytest.raises(PaymentRequiredError) as info:
        await pinned.submit(kolors())
    error = info.value
    assert str(error) == f"402 Payment Required from POST {KOLORS}: Subscription required"
    assert (error.status, error.code, error.body) == (
        402,
        402,
        {"error": "Subscription required", "code": 402},
    )
    assert_nothing_created(sim, posts=1)
    assert (sim.stats["payment_required"], sim.stats["lists"]) == (1, 0)


async def test_run_without_subscription_stops_at_the_account_lookup(
    sim: KlingSimulator, client: KlingClient
) -> None:
    # The default client reads maxJobs first: that GET is refused, and nothing is posted.
    sim.set_subscription(False)
    with pytest.raises(PaymentRequiredError) as info:
        await client.run(kolors())
    assert str(info.value) == "402 Payment Required from GET accounts: Subscription required"
    assert_nothing_created(sim, posts=0)
    assert sim.stats["payment_required"] == 1  # the lookup was not retried


async def test_waiter_when_the_subscription_ends_mid_wait(
    slow_sim: KlingSimulator, slow: KlingClient
) -> None:
    submitted = await slow.submit(kolors())
    task_id = submitted.task_id
    assert task_id is not None
    waiting = asyncio.ensure_future(slow.wait(submitted, timeout=60))
    await wait_until(lambda: slow_sim.stats["polls_by_task"].get(task_id, 0) >= 2)
    slow_sim.set_subscription(False)
    with pytest.raises(PaymentRequiredError) as info:
        await waiting
    assert (
        str(info.value) == f"402 Payment Required from GET tasks/{task_id}: Subscription required"
    )
    assert slow_sim.stats["payment_required"] == 1
    assert not slow_sim.tasks[task_id].is_final


# --- 412: the Kling account is out of credits --------------------------------------------
@pytest.mark.parametrize(("request_of", "path"), [(kolors, KOLORS), (video, VIDEO)])
async def test_submit_out_of_credits(
    sim: KlingSimulator, pinned: KlingClient, request_of: Any, path: str
) -> None:
    sim.set_out_of_credits(EMAIL)
    with pytest.raises(PaymentRequiredError) as info:
        await pinned.run(request_of())
    error = info.value
    assert str(error) == f"412 Precondition Failed from POST {path}: {OUT_OF_CREDITS}"
    assert (error.status, error.code, error.error) == (412, None, OUT_OF_CREDITS)
    assert_nothing_created(sim, posts=1)
    assert (sim.stats["payment_required"], sim.stats["lists"]) == (1, 0)
    assert pinned.slots.in_use(EMAIL) == 0


# --- uploads -----------------------------------------------------------------------------
async def test_upload_to_an_account_in_error_state(
    sim: KlingSimulator, pinned: KlingClient
) -> None:
    data = png(320, 320, (9, 9, 9))
    sim.set_account_error(EMAIL)
    with pytest.raises(AccountError) as info:
        await pinned.upload_asset(data)
    assert str(info.value) == f"596 from POST assets/: {IN_ERROR}"
    assert (sim.stats["uploads"], sim.stats["account_errors"]) == (0, 1)  # not retried
    # The failure is not remembered: once the account is repaired the same file goes up.
    sim.set_account_error(EMAIL, None)
    url = await pinned.upload_asset(data)
    assert url.startswith(f"{sim.root_url}/uploads/")
    assert sim.stats["uploads"] == 1


async def test_upload_without_subscription(sim: KlingSimulator, pinned: KlingClient) -> None:
    sim.set_subscription(False)
    with pytest.raises(PaymentRequiredError) as info:
        await pinned.upload_asset(png(320, 320, (9, 9, 9)))
    assert str(info.value) == "402 Payment Required from POST assets/: Subscription required"
    assert (sim.stats["uploads"], sim.stats["payment_required"]) == (0, 1)


async def test_upload_out_of_credits_still_works(sim: KlingSimulator, pinned: KlingClient) -> None:
    # Credits pay for jobs, not for uploads: only the generation POST is refused.
    sim.set_out_of_credits(EMAIL)
    url = await pinned.upload_asset(png(320, 320, (9, 9, 9)))
    assert url.startswith(f"{sim.root_url}/uploads/")


async def test_submit_with_local_files_stops_at_the_upload(
    sim: KlingSimulator, pinned: KlingClient, images: Path
) -> None:
    sim.set_account_error(EMAIL)
    with pytest.raises(AccountError) as info:
        await pinned.submit(kolors(subject_images=[images / "a.png", images / "b.png"]))
    assert str(info.value) == f"596 from POST assets/: {IN_ERROR}"
    # Both uploads were refused once each; the generation POST was never sent.
    await wait_until(lambda: sim.stats["account_errors"] == 2)
    assert_nothing_created(sim, posts=0)


# --- several accounts, one broken ----------------------------------------------------------
@pytest.fixture
async def two_sim() -> AsyncIterator[KlingSimulator]:
    """Accounts a (healthy) and b (in error state), maxJobs 2 each, 50 ms jobs."""
    async with KlingSimulator(
        token=TOKEN, accounts={EMAIL: 2, B: 2}, job_seconds=0.05, duration_sigma=0
    ) as server:
        server.set_account_error(B)
        yield server


@pytest.fixture
async def two(two_sim: KlingSimulator) -> AsyncIterator[KlingClient]:
    """A client of both accounts, maxJobs read from the server."""
    accounts: dict[str, int | None] = {EMAIL: None, B: None}
    async with KlingClient(token=TOKEN, accounts=accounts, base_url=two_sim.base_url) as kling:
        yield kling


SET_ASIDE = (
    f"596: account {B} is set aside (after: 596 from POST {KOLORS}: Account {B} in error "
    f"state: {ACCOUNT_ERROR_REASON}); no request was sent. Repair the account (re-add it with "
    "POST /accounts), then call enable(email) on the client's slots"
)


async def test_a_broken_account_is_set_aside_and_its_jobs_go_to_the_healthy_one(
    two_sim: KlingSimulator, two: KlingClient
) -> None:
    """api/errors.md on 596: "with several accounts, stop using that one". A job refused
    by b (nothing created) takes a slot on a instead; b gets no more jobs."""
    outcomes = await asyncio.gather(
        *(two.run(kolors(f"job {i}")) for i in range(10)), return_exceptions=True
    )
    assert all(isinstance(o, TaskResponse) and o.succeeded for o in outcomes), outcomes
    stats = two_sim.stats
    assert stats["tasks_created"] == 10
    assert {t["account"] for t in stats["tasks"]} == {EMAIL}
    # At most the refusals of the POSTs already out to b when the first one came back
    # (b's two slots); each refused job was sent once more, to a.
    assert 1 <= stats["account_errors"] <= 2
    assert stats["posts"] == 10 + stats["account_errors"]
    assert list(two.slots.disabled()) == [B]
    assert two.slots.in_use(EMAIL) == two.slots.in_use(B) == 0
    # A job for b by name now fails at once, without a request.
    with pytest.raises(AccountError) as info:
        await two.run(kolors("for b", email=B))
    assert str(info.value) == SET_ASIDE
    assert two_sim.stats["posts"] == stats["posts"]
    # Repaired and enabled again: b takes jobs.
    two_sim.set_account_error(B, None)
    two.slots.enable(B)
    assert (await two.run(kolors("b is back", email=B))).succeeded


async def test_when_every_account_is_broken_queued_jobs_fail_too(
    two_sim: KlingSimulator, two: KlingClient
) -> None:
    two_sim.set_account_error(EMAIL)
    outcomes = await asyncio.gather(
        *(two.run(kolors(f"job {i}")) for i in range(8)), return_exceptions=True
    )
    assert all(isinstance(o, AccountError) for o in outcomes), outcomes
    served = [str(o) for o in outcomes if "in error state:" in str(o) and "set aside" not in str(o)]
    aside = [str(o) for o in outcomes if str(o).startswith("596: every account is set aside")]
    assert len(served) + len(aside) == 8
    # Each POST was refused once and never sent again; a job refused by one account
    # whose other account went too reports the set-aside error (which quotes a refusal).
    assert two_sim.stats["account_errors"] == two_sim.stats["posts"] <= 4
    assert 1 <= len(served) <= two_sim.stats["posts"]
    assert aside  # the queued jobs learnt it from the slots, without a request
    assert two_sim.stats["tasks_created"] == 0
    assert set(two.slots.disabled()) == {EMAIL, B}


async def test_a_job_for_the_broken_account_by_name(
    two_sim: KlingSimulator, two: KlingClient
) -> None:
    with pytest.raises(AccountError) as info:
        await two.run(kolors(email=B))
    assert str(info.value) == (
        f"596 from POST {KOLORS}: Account {B} in error state: {ACCOUNT_ERROR_REASON}"
    )
    assert (two_sim.stats["posts"], two_sim.stats["tasks_created"]) == (1, 0)
