"""Job slots against the simulator: never above maxJobs, always freed, spread over accounts."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from helpers import EMAIL, TOKEN, URL1, URL2, wait_until

from kling_async import (
    AccountError,
    ConfigurationError,
    JobSlots,
    KlingClient,
    KolorsElements,
    ModerationError,
    RateLimitError,
    RequestInfo,
    RequestValidationError,
    TaskFailedError,
    TaskResponse,
    TaskTimeoutError,
    TaskWaiter,
)
from kling_async.testing import FaultPlan, FaultRates, KlingSimulator

OTHER = "b@example.com"


def job(prompt: str, **fields: Any) -> KolorsElements:
    return KolorsElements(prompt=prompt, subject_images=[URL1, URL2], **fields)


@pytest.fixture
def created() -> asyncio.Queue[str]:
    """The prompt of each task ``slow_sim`` creates, as it creates it."""
    return asyncio.Queue()


@pytest.fixture
async def slow_sim(created: asyncio.Queue[str]) -> AsyncIterator[KlingSimulator]:
    """Jobs whose prompt says "slow" run for a minute, the others 50 ms."""

    def durations(endpoint: str, body: dict[str, Any], rng: Any) -> float:
        prompt = str(body.get("prompt", ""))
        created.put_nowait(prompt)
        return 60.0 if "slow" in prompt else 0.05

    async with KlingSimulator(
        token=TOKEN, accounts={EMAIL: 3}, job_duration=durations, eta=False
    ) as server:
        yield server


async def soon(awaitable: Awaitable[Any]) -> Any:
    """Await something that must happen (bounded, so a bug fails instead of hanging)."""
    return await asyncio.wait_for(awaitable, 10)


@pytest.fixture
async def slow_client(slow_sim: KlingSimulator) -> AsyncIterator[KlingClient]:
    async with KlingClient(token=TOKEN, base_url=slow_sim.base_url, email=EMAIL) as kling:
        yield kling


# -- never above maxJobs, always busy ----------------------------------------------------------


async def test_50_jobs_never_exceed_max_jobs_and_keep_every_slot_busy(
    sim: KlingSimulator,
) -> None:
    in_use_at_submission: list[int] = []
    async with KlingClient(
        token=TOKEN,
        base_url=sim.base_url,
        max_jobs=3,
        on_submitted=lambda _: in_use_at_submission.append(kling.slots.in_use("")),
    ) as kling:
        results = await asyncio.gather(
            *(
                kling.kolors_elements(prompt=f"job {n}", subject_images=[URL1, URL2])
                for n in range(50)
            )
        )
        assert kling.slots.in_use("") == 0
        assert kling.slots.peak("") == 3
    assert [r.arguments["prompt"] for r in results] == [f"job {n}" for n in range(50)]
    assert all(r.succeeded for r in results)
    stats = sim.stats
    assert stats["tasks_created"] == 50
    assert stats["peak_running"] == {EMAIL: 3}
    assert stats["rate_limited"] == 0  # the client never asked for a 4th slot
    # Busy: while jobs were queued, every submission happened with all 3 slots taken.
    assert in_use_at_submission.count(3) >= 45


async def test_max_jobs_read_from_the_server(sim: KlingSimulator, client: KlingClient) -> None:
    assert client.slots.accounts == [""]
    assert client.slots.limit("") is None
    await client.kolors_elements(prompt="one", subject_images=[URL1, URL2])
    assert client.slots.limit("") == 3
    async with KlingClient(token=TOKEN, base_url=sim.base_url, email=EMAIL) as kling:
        assert kling.slots.limit(EMAIL) is None
        await asyncio.gather(
            *(kling.kolors_elements(prompt=f"j{n}", subject_images=[URL1, URL2]) for n in range(7))
        )
        assert kling.slots.limit(EMAIL) == 3
        assert kling.slots.peak(EMAIL) == 3
    assert sim.stats["peak_running"] == {EMAIL: 3}


async def test_max_jobs_given_is_not_read(sim: KlingSimulator) -> None:
    async with KlingClient(token=TOKEN, base_url=sim.base_url, max_jobs=2) as kling:
        await asyncio.gather(
            *(kling.kolors_elements(prompt=f"j{n}", subject_images=[URL1, URL2]) for n in range(6))
        )
        assert kling.slots.peak("") == 2
    assert sim.stats["peak_running"] == {EMAIL: 2}


@pytest.mark.parametrize("value", [0, 51, True])
def test_max_jobs_out_of_range(value: Any) -> None:
    with pytest.raises(ConfigurationError, match="max_jobs"):
        KlingClient(token=TOKEN, max_jobs=value)
    with pytest.raises(ConfigurationError):
        JobSlots({"x@example.com": value})


def test_max_jobs_and_accounts_are_exclusive() -> None:
    with pytest.raises(ConfigurationError):
        KlingClient(token=TOKEN, max_jobs=2, accounts={EMAIL: 2})
    with pytest.raises(ConfigurationError):
        KlingClient(token=TOKEN, email="c@example.com", accounts={EMAIL: 2})


async def test_busy_answer_is_retried_without_leaking_the_slot(sim: KlingSimulator) -> None:
    retried: list[BaseException] = []

    def on_retry(exc: BaseException, tries: int, wait: float) -> None:
        retried.append(exc)
        sim.finish_all()  # the job started elsewhere ends: the next try finds room

    async with KlingClient(
        token=TOKEN, base_url=sim.base_url, max_jobs=3, on_retry=on_retry
    ) as kling:
        for n in range(3):  # started outside the slots (say, by another program)
            await kling.submit(job(f"outside {n}"))
        done = await kling.run(job("inside"))
        assert done.succeeded
        assert kling.slots.in_use("") == 0
    assert len(retried) == 1
    assert isinstance(retried[0], RateLimitError)
    assert sim.stats["tasks_created"] == 4


async def test_busy_budget_spent_frees_the_slot(slow_sim: KlingSimulator) -> None:
    from kling_async import ClientConfig, RetryPolicy

    config = ClientConfig(retry=RetryPolicy(busy_tries=2))
    async with KlingClient(
        token=TOKEN, base_url=slow_sim.base_url, max_jobs=3, config=config
    ) as kling:
        for n in range(3):
            await kling.submit(job(f"slow outside {n}"))
        with pytest.raises(RateLimitError):
            await kling.run(job("inside"))
        assert kling.slots.in_use("") == 0


# -- every way a job ends frees its slot -------------------------------------------------------


async def test_failed_job_frees_its_slot(
    slow_sim: KlingSimulator, slow_client: KlingClient
) -> None:
    with pytest.raises(TaskFailedError) as caught:
        await slow_client.kolors_elements(prompt="this will fail", subject_images=[URL1, URL2])
    failed = caught.value.task
    assert failed is not None
    assert failed.failed
    assert failed.status_name == "failed"
    assert caught.value.task_id == failed.task_id
    assert slow_sim.tasks[failed.task_id or 0].status_name == "failed"
    assert "simulated" in str(caught.value)
    assert slow_client.slots.in_use(EMAIL) == 0
    assert (await slow_client.run(job("after"))).succeeded


async def test_moderated_job_frees_its_slot(
    slow_sim: KlingSimulator, slow_client: KlingClient
) -> None:
    with pytest.raises(ModerationError):
        await slow_client.run(job("nsfw please"))
    assert slow_client.slots.in_use(EMAIL) == 0
    assert slow_sim.stats["tasks_created"] == 0
    assert (await slow_client.run(job("after"))).succeeded


async def test_timed_out_job_keeps_its_slot_until_it_ends_and_can_be_waited_on_again(
    slow_sim: KlingSimulator, slow_client: KlingClient
) -> None:
    with pytest.raises(TaskTimeoutError) as caught:
        await slow_client.run(job("slow one"), timeout=0.05)
    error = caught.value
    assert isinstance(error, TimeoutError)
    assert error.task_id in slow_sim.tasks
    assert error.last is not None
    assert error.last.task_id == error.task_id
    assert not error.last.is_final
    # The job still runs on the server, so it still counts against maxJobs here.
    assert slow_client.slots.in_use(EMAIL) == 1
    assert (await slow_client.run(job("after"))).succeeded  # a later job runs beside it
    assert slow_sim.stats["running"] == {EMAIL: 1}  # the slow one still runs on the server
    slow_sim.finish(error.task_id or 0)
    assert (await slow_client.wait(error.task_id or 0)).succeeded
    await wait_until(lambda: slow_client.slots.in_use(EMAIL) == 0)  # given back once final


async def test_cancelled_waiting_job_keeps_its_slot_until_the_job_ends(
    slow_sim: KlingSimulator, slow_client: KlingClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kling_async")
    submitted: list[TaskResponse] = []
    reported = asyncio.Event()

    def on_submitted(resp: TaskResponse) -> None:
        submitted.append(resp)
        reported.set()

    running = asyncio.ensure_future(
        slow_client.run(job("slow cancelled"), on_submitted=on_submitted)
    )
    await soon(reported.wait())
    task_id = submitted[0].task_id
    await wait_until(lambda: slow_sim.stats["polls_by_task"].get(task_id or 0, 0) >= 1)
    assert slow_client.slots.in_use(EMAIL) == 1
    running.cancel()  # while it waits (it polled once)
    with pytest.raises(asyncio.CancelledError):
        await running
    assert task_id in slow_sim.tasks
    assert slow_sim.stats["running"] == {EMAIL: 1}  # the job goes on without a waiter
    assert slow_client.slots.in_use(EMAIL) == 1  # and keeps its slot meanwhile
    assert f"stopped waiting for task {task_id} (cancelled); the job goes on" in caplog.text
    await wait_until(lambda: "nobody waits for it any more" in caplog.text)
    slow_sim.finish_all()
    await wait_until(lambda: slow_client.slots.in_use(EMAIL) == 0)
    await asyncio.gather(*(slow_client.run(job(f"after {n}")) for n in range(3)))


async def test_a_followed_job_that_vanishes_frees_its_slot(
    slow_sim: KlingSimulator, slow_client: KlingClient, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(TaskTimeoutError) as caught:
        await slow_client.run(job("slow and then deleted"), timeout=0.05)
    assert slow_client.slots.in_use(EMAIL) == 1
    del slow_sim.tasks[caught.value.task_id or 0]  # the server forgets it: GET answers 404
    await wait_until(lambda: slow_client.slots.in_use(EMAIL) == 0)
    # The waiter ends a seen task's 404 with TaskGoneError, a TaskFailedError: the follower
    # treats it as a job that ended (quietly), like any other failed job.
    assert "following it failed" not in caplog.text


async def test_a_slot_held_while_waiting_stays_held_past_the_deadline(
    slow_sim: KlingSimulator,
) -> None:
    """wait(hold_slot=True) (resuming a job started elsewhere) keeps the slot as run() does."""
    async with KlingClient(
        token=TOKEN, base_url=slow_sim.base_url, email=EMAIL, max_jobs=3
    ) as starter:
        started = await starter.submit(job("slow, started elsewhere"))
    task_id = started.task_id or 0
    async with KlingClient(
        token=TOKEN, base_url=slow_sim.base_url, email=EMAIL, max_jobs=3
    ) as kling:
        with pytest.raises(TaskTimeoutError):
            await kling.wait(task_id, hold_slot=True, timeout=0.05)
        assert kling.slots.in_use(EMAIL) == 1  # the job runs on: its slot stays taken
        slow_sim.finish(task_id)
        await wait_until(lambda: kling.slots.in_use(EMAIL) == 0)


async def test_a_follower_that_breaks_frees_the_slot_and_says_so(
    slow_sim: KlingSimulator,
    slow_client: KlingClient,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(TaskTimeoutError) as caught:
        await slow_client.run(job("slow, and its follower breaks"), timeout=0.05)

    async def broken(*args: Any, **kwargs: Any) -> TaskResponse:
        raise RuntimeError("a bug")

    # The follower has not taken its first step yet: it meets the broken waiter (every
    # TaskWaiter's wait, the public class the client waits with).
    monkeypatch.setattr(TaskWaiter, "wait", broken)
    await wait_until(lambda: slow_client.slots.in_use(EMAIL) == 0)
    task_id = caught.value.task_id
    assert f"task {task_id}: following it failed; its job slot is free again" in caplog.text
    assert "RuntimeError: a bug" in caplog.text


async def test_a_job_cancelled_while_the_client_closes_is_not_followed(
    slow_sim: KlingSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    kling = KlingClient(token=TOKEN, base_url=slow_sim.base_url, email=EMAIL)
    await kling.__aenter__()
    running = asyncio.ensure_future(kling.run(job("slow, then the client closes")))
    await wait_until(lambda: slow_sim.stats["polls"] >= 1)  # it waits
    closing = asyncio.ensure_future(kling.aclose())
    await asyncio.sleep(0)  # aclose() has begun: the client is closed to new work
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert kling.jobs.following == 0  # no poll could go out any more
    assert kling.slots.in_use(EMAIL) == 0
    await closing
    assert "no longer followed" not in caplog.text


async def test_closing_the_client_lets_followed_jobs_go(slow_sim: KlingSimulator) -> None:
    kling = KlingClient(token=TOKEN, base_url=slow_sim.base_url, email=EMAIL)
    async with kling:
        with pytest.raises(TaskTimeoutError):
            await kling.run(job("slow, then the client closes"), timeout=0.05)
        assert kling.slots.in_use(EMAIL) == 1
        assert kling.jobs.following == 1
    assert kling.jobs.following == 0
    assert kling.slots.in_use(EMAIL) == 0


async def test_cancelled_while_queued_for_a_slot_takes_nothing(
    slow_sim: KlingSimulator, created: asyncio.Queue[str]
) -> None:
    async with KlingClient(
        token=TOKEN, base_url=slow_sim.base_url, email=EMAIL, max_jobs=1
    ) as kling:
        first = asyncio.ensure_future(kling.run(job("slow first")))
        assert await soon(created.get()) == "slow first"
        queued = asyncio.ensure_future(kling.run(job("queued")))
        await asyncio.sleep(0)
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        assert kling.slots.in_use(EMAIL) == 1
        slow_sim.finish_all()
        assert (await first).succeeded
        assert kling.slots.in_use(EMAIL) == 0
        assert (await kling.run(job("next"))).succeeded
    assert slow_sim.stats["posts"] == 2


async def test_cancel_while_the_post_is_in_flight_still_reports_the_task(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="kling_async")
    plan = FaultPlan(rules={"submit": FaultRates(delay=1.0)}, delay_seconds=0.3)
    reported = asyncio.Event()
    ids: list[int | None] = []
    created = asyncio.Event()

    def durations(endpoint: str, body: dict[str, Any], rng: Any) -> float:
        created.set()  # the server has the task; its answer is held back 0.3 s
        return 60.0

    async def on_submitted(resp: TaskResponse) -> None:
        ids.append(resp.task_id)
        reported.set()

    async with (
        # No ETA: the follower polls at the (test-scaled) policy pace, not in a minute.
        KlingSimulator(
            token=TOKEN, accounts={EMAIL: 3}, fault_plan=plan, job_duration=durations, eta=False
        ) as sim,
        KlingClient(
            token=TOKEN, base_url=sim.base_url, email=EMAIL, max_jobs=3, on_submitted=on_submitted
        ) as kling,
    ):
        running = asyncio.ensure_future(kling.run(job("in flight")))
        await soon(created.wait())
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        assert kling.slots.in_use(EMAIL) == 1  # the job may exist: its slot stays taken
        assert not reported.is_set()
        await soon(reported.wait())
        (task_id,) = ids
        assert task_id == sim.stats["tasks"][0]["id"]
        await wait_until(lambda: "nobody waits for it any more" in caplog.text)
        assert kling.slots.in_use(EMAIL) == 1  # the job runs: followed, slot held
        sim.finish(task_id or 0)
        await wait_until(lambda: kling.slots.in_use(EMAIL) == 0)
    assert f"submitted task {task_id}" in caplog.text


async def test_cancel_while_a_refused_post_is_in_flight_frees_the_slot_on_its_answer() -> None:
    plan = FaultPlan(rules={"submit": FaultRates(delay=1.0)}, delay_seconds=0.3)
    refused = asyncio.Event()

    def on_request(info: RequestInfo) -> None:
        if info.method == "POST" and info.status == 500:
            refused.set()

    async with (
        KlingSimulator(token=TOKEN, accounts={EMAIL: 3}, fault_plan=plan) as sim,
        KlingClient(
            token=TOKEN, base_url=sim.base_url, email=EMAIL, max_jobs=3, on_request=on_request
        ) as kling,
    ):
        running = asyncio.ensure_future(kling.run(job("nsfw in flight")))
        await wait_until(lambda: sim.stats["posts"] == 1)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        assert kling.slots.in_use(EMAIL) == 1  # the answer is not in yet
        await soon(refused.wait())  # moderation: nothing was created
        await wait_until(lambda: kling.slots.in_use(EMAIL) == 0)
        assert sim.stats["tasks_created"] == 0
        assert kling.jobs.following == 0


# -- several accounts --------------------------------------------------------------------------


@pytest.fixture
async def two_accounts() -> AsyncIterator[KlingSimulator]:
    async with KlingSimulator(
        token=TOKEN, accounts={EMAIL: 2, OTHER: 2}, job_seconds=0.05
    ) as server:
        yield server


async def test_jobs_without_email_spread_over_accounts(two_accounts: KlingSimulator) -> None:
    sim = two_accounts
    async with KlingClient(
        token=TOKEN, base_url=sim.base_url, accounts={EMAIL: 2, OTHER: None}
    ) as kling:
        results = await asyncio.gather(*(kling.run(job(f"spread {n}")) for n in range(12)))
        assert kling.slots.limit(OTHER) == 2  # read from GET /accounts/{email}
        assert kling.slots.peak(EMAIL) == kling.slots.peak(OTHER) == 2
        assert kling.slots.in_use(EMAIL) == kling.slots.in_use(OTHER) == 0
    stats = sim.stats
    used = {t["account"] for t in stats["tasks"]}
    assert used == {EMAIL, OTHER}
    assert stats["peak_running"] == {EMAIL: 2, OTHER: 2}
    assert stats["rate_limited"] == 0
    for result in results:  # each waited on its own account
        assert result.succeeded
        assert sim.tasks[result.task_id or 0].account in (EMAIL, OTHER)


async def test_email_pins_the_account(two_accounts: KlingSimulator) -> None:
    sim = two_accounts
    async with KlingClient(
        token=TOKEN, base_url=sim.base_url, accounts={EMAIL: 2, OTHER: 2}
    ) as kling:
        await asyncio.gather(*(kling.run(job(f"pinned {n}", email=OTHER)) for n in range(5)))
        await kling.kolors_elements(prompt="kw", subject_images=[URL1, URL2], email=OTHER)
        assert kling.slots.peak(EMAIL) == 0
        assert kling.slots.peak(OTHER) == 2
        sub = await kling.submit(job("submit pinned"), email=OTHER)
        assert (await kling.wait(sub)).succeeded
    assert {t["account"] for t in sim.stats["tasks"]} == {OTHER}
    assert sim.stats["peak_running"][OTHER] == 2


async def test_unknown_email_is_refused_before_anything_is_sent(
    two_accounts: KlingSimulator,
) -> None:
    sim = two_accounts
    async with KlingClient(
        token=TOKEN, base_url=sim.base_url, accounts={EMAIL: 2, OTHER: 2}
    ) as kling:
        with pytest.raises(RequestValidationError, match="email"):
            await kling.run(job("stray", email="c@example.com"))
        with pytest.raises(RequestValidationError, match="email"):
            await kling.kolors_elements(
                prompt="stray", subject_images=[URL1, URL2], email="c@example.com"
            )
        with pytest.raises(RequestValidationError, match="email"):
            await kling.submit(job("stray"), email="c@example.com")
        assert kling.slots.in_use(EMAIL) == kling.slots.in_use(OTHER) == 0
    assert sim.stats["posts"] == 0


async def test_single_configured_account_refuses_another_email(sim: KlingSimulator) -> None:
    async with KlingClient(token=TOKEN, base_url=sim.base_url, email=EMAIL, max_jobs=3) as kling:
        with pytest.raises(RequestValidationError, match="email"):
            await kling.run(job("stray", email="c@example.com"))
        assert kling.slots.in_use(EMAIL) == 0
    assert sim.stats["posts"] == 0


async def test_email_given_per_job_without_configured_accounts(sim: KlingSimulator) -> None:
    async with KlingClient(token=TOKEN, base_url=sim.base_url, max_jobs=3) as kling:
        done = await kling.run(job("explicit", email=EMAIL))
        assert done.succeeded
        assert kling.slots.in_use("") == 0
    assert sim.stats["tasks"][0]["body"]["email"] == EMAIL


# -- gather and TaskGroup ----------------------------------------------------------------------


async def test_gather_return_exceptions_keeps_jobs_independent(
    slow_sim: KlingSimulator, slow_client: KlingClient
) -> None:
    prompts = ["ok 0", "please fail", "ok 1", "nsfw", "ok 2", "fail again", "ok 3"]
    results = await asyncio.gather(
        *(slow_client.run(job(p)) for p in prompts), return_exceptions=True
    )
    for prompt, result in zip(prompts, results, strict=True):
        if prompt.startswith("ok"):
            assert isinstance(result, TaskResponse)
            assert result.succeeded
            assert result.arguments["prompt"] == prompt
        elif "nsfw" in prompt:
            assert isinstance(result, ModerationError)
        else:
            assert isinstance(result, TaskFailedError)
            assert result.task is not None
            assert result.task.arguments["prompt"] == prompt
    assert slow_client.slots.in_use(EMAIL) == 0
    assert slow_sim.stats["peak_running"][EMAIL] <= 3


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.TaskGroup is 3.11+")
async def test_task_group_failure_cancels_siblings_whose_jobs_keep_their_slots_till_they_end(
    slow_sim: KlingSimulator, slow_client: KlingClient
) -> None:
    submitted: list[int | None] = []
    slow_client.on_submitted = lambda resp: submitted.append(resp.task_id)
    with pytest.raises(Exception, match="TaskGroup") as caught:  # noqa: PT012
        async with asyncio.TaskGroup() as group:
            group.create_task(slow_client.run(job("slow sibling 1")))
            group.create_task(slow_client.run(job("slow sibling 2")))
            group.create_task(slow_client.run(job("this one fails")))
    failures = caught.value.exceptions
    assert len(failures) == 1
    assert isinstance(failures[0], TaskFailedError)
    assert len(submitted) == 3  # the cancelled siblings' task ids were reported
    assert set(submitted) == set(slow_sim.tasks)
    # The cancelled siblings' jobs go on running on the server, holding their slots.
    assert slow_client.slots.in_use(EMAIL) == 2
    slow_sim.finish_all()
    await wait_until(lambda: slow_client.slots.in_use(EMAIL) == 0)
    async with asyncio.TaskGroup() as group:  # and the client works on
        tasks = [group.create_task(slow_client.run(job(f"next {n}"))) for n in range(2)]
    assert all(t.result().succeeded for t in tasks)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.TaskGroup is 3.11+")
async def test_task_group_all_succeed(sim: KlingSimulator, client: KlingClient) -> None:
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(client.run(job(f"tg {n}"))) for n in range(8)]
    assert [t.result().arguments["prompt"] for t in tasks] == [f"tg {n}" for n in range(8)]
    assert sim.stats["peak_running"] == {EMAIL: 3}


# -- JobSlots on its own -----------------------------------------------------------------------


async def test_job_slots_hand_freed_slots_to_waiters_in_order() -> None:
    slots = JobSlots({EMAIL: 1})
    order: list[int] = []
    release = asyncio.Event()

    async def hold(n: int, gate: Callable[[], Awaitable[Any]]) -> None:
        async with slots.acquire() as account:
            assert account == EMAIL
            order.append(n)
            await gate()

    first = asyncio.ensure_future(hold(0, release.wait))
    await asyncio.sleep(0)
    others = [asyncio.ensure_future(hold(n, lambda: asyncio.sleep(0))) for n in (1, 2, 3)]
    await asyncio.sleep(0)
    assert slots.in_use(EMAIL) == 1
    release.set()
    await asyncio.gather(first, *others)
    assert order == [0, 1, 2, 3]
    assert slots.in_use(EMAIL) == 0
    assert slots.peak(EMAIL) == 1


async def test_job_slots_fetch_sizes_once() -> None:
    calls: list[str] = []

    async def fetch(email: str) -> int:
        calls.append(email)
        await asyncio.sleep(0)
        return 2

    slots = JobSlots({EMAIL: None, OTHER: 1}, fetch)

    async def use() -> None:
        async with slots.acquire():
            await asyncio.sleep(0)

    await asyncio.gather(*(use() for _ in range(6)))
    assert calls == [EMAIL]
    assert slots.limit(EMAIL) == 2
    with pytest.raises(ConfigurationError, match="unknown account"):
        async with slots.acquire("c@example.com"):
            pass


async def test_job_slots_disable_and_enable_an_account() -> None:
    slots = JobSlots({EMAIL: 1, OTHER: 1})
    reason = AccountError("Account b in error state", status=596, method="POST", path="x")
    held_a, held_b = slots.acquire(), slots.acquire()
    assert {await held_a.__aenter__(), await held_b.__aenter__()} == {EMAIL, OTHER}

    async def take(email: str | None) -> str:
        async with slots.acquire(email) as account:
            return account

    for_b = asyncio.ensure_future(take(OTHER))
    for_any = asyncio.ensure_future(take(None))
    await asyncio.sleep(0)  # both queued: every slot is held
    slots.disable(OTHER, reason)
    with pytest.raises(AccountError) as info:
        await for_b  # asked for b by name: told why, not left waiting
    assert str(info.value) == (
        f"596: account {OTHER} is set aside (after: 596 from POST x: Account b in error "
        "state); no request was sent. Repair the account (re-add it with POST /accounts), "
        "then call enable(email) on the client's slots"
    )
    assert not for_any.done()  # any account will do: it waits for a's slot
    await held_b.__aexit__(None, None, None)  # b's slot comes back: not for new jobs
    await asyncio.sleep(0)
    assert not for_any.done()
    await held_a.__aexit__(None, None, None)
    assert await for_any == EMAIL
    assert slots.disabled() == {OTHER: reason}
    slots.enable(OTHER)
    assert await take(OTHER) == OTHER
    assert slots.disabled() == {}
    with pytest.raises(ConfigurationError, match="unknown account"):
        slots.disable("c@example.com", reason)


async def test_job_slots_with_every_account_disabled_refuse_at_once() -> None:
    slots = JobSlots({EMAIL: 1, OTHER: 1})
    reason = AccountError("broken", status=596)
    slots.disable(EMAIL, reason)
    slots.disable(OTHER, reason)
    for email in (None, EMAIL):
        with pytest.raises(AccountError, match=r"^596: every account is set aside"):
            async with slots.acquire(email):
                pass
    assert slots.in_use(EMAIL) == slots.in_use(OTHER) == 0


async def test_slot_hold_take_and_release_without_a_block() -> None:
    """`take` is the block's entry (waiting in order when full), `release` its exit."""
    slots = JobSlots({"a@example.com": 1})
    first = slots.acquire()
    assert await first.take() == "a@example.com"
    with pytest.raises(RuntimeError, match="entered twice"):
        await first.take()
    second = slots.acquire("a@example.com")
    waiting = asyncio.ensure_future(second.take())
    await asyncio.sleep(0)
    assert not waiting.done()
    first.release()
    first.release()  # once: later calls do nothing
    assert await waiting == "a@example.com"
    assert slots.in_use("a@example.com") == 1
    second.release()
    assert slots.in_use("a@example.com") == 0
