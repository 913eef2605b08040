"""Retries against the simulator's fault plan and scripted servers: GETs retried and bounded,
Retry-After honoured, job-creating POSTs retried only when nothing can have been created
(how an ambiguous POST is settled instead: tests/test_reconcile.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from helpers import (
    EMAIL,
    TOKEN,
    MakeClient,
    Recorder,
    assert_one_task_per_job,
    files_under,
    job,
    kolors,
    plan,
    run_jobs,
    serve,
)
from hostile import HOSTILE_CONFIG

from kling_async import (
    ClientConfig,
    KlingClient,
    RateLimitError,
    Resource,
    RetryPolicy,
    ServerError,
    SubmissionUnknownError,
    TaskResponse,
    TransportError,
    Work,
)
from kling_async.convert import PayloadError
from kling_async.errors import (
    AccountError,
    AuthenticationError,
    ModerationError,
    NotFoundError,
)
from kling_async.retry import delay_scale, fast_mode, is_retryable, scaled
from kling_async.testing import FaultPlan, FaultRates, KlingSimulator

#: Room for every job at once: these tests submit without job slots.
pytestmark = pytest.mark.simulator(max_jobs=50)


# -- GET retries ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rates", [{"server_error": 0.5}, {"reset": 0.5}, {"malformed": 0.5}, {"rate_limit": 0.5}]
)
async def test_get_retried_until_it_succeeds(
    sim: KlingSimulator, make_client: MakeClient, rates: dict[str, float]
) -> None:
    rec = Recorder()
    kling = make_client(rec, retry=RetryPolicy(max_tries=20))
    submitted = await kling.submit(job(0))
    sim.set_fault_plan(plan("tasks", **rates))
    for _ in range(10):
        assert (await kling.get_task(submitted.task_id or 0)).task_id == submitted.task_id
    faults = sim.stats["faults"]
    (kind,) = rates
    assert faults.get(kind, 0) >= 1
    failed_attempts = [r for r in rec.calls("GET", "tasks/") if r.status != 200]
    if kind != "malformed":  # a cut body comes with status 200
        assert len(rec.retries) == len(failed_attempts)
    # aiohttp itself resends a GET once on a reused keep-alive connection that was reset, so
    # the server may see more resets than the client counts retries.
    assert len(rec.retries) <= faults[kind]
    if kind != "reset":
        assert len(rec.retries) == faults[kind]
    assert sim.stats["polls"] == 10 + faults[kind]


async def test_a_retried_poll_still_names_its_account() -> None:
    """With several accounts the server needs ``email`` on every GET; a retry resends it
    as the first attempt did (one with a ``+``, which the query must quote)."""
    plus = "first+tag@example.com"
    async with KlingSimulator(
        token=TOKEN, accounts={plus: 5, EMAIL: 5}, job_seconds=0.05
    ) as server:
        rec = Recorder()
        async with KlingClient(
            token=TOKEN,
            base_url=server.base_url,
            accounts={plus: 5, EMAIL: 5},
            config=ClientConfig(retry=RetryPolicy(max_tries=20)),
            on_request=rec.on_request,
            on_retry=rec.on_retry,
        ) as kling:
            submitted = await kling.submit(job(0), email=plus)
            server.set_fault_plan(plan("tasks", server_error=0.5))
            for _ in range(10):
                task = await kling.get_task(submitted.task_id or 0, email=plus)
                assert task.task_id == submitted.task_id
        assert server.stats["faults"]["server_error"] >= 1
        assert len(rec.retries) == server.stats["faults"]["server_error"]
        assert server.tasks[submitted.task_id or 0].account == plus


@pytest.mark.parametrize(
    ("rates", "error"),
    [
        ({"server_error": 1.0}, ServerError),
        ({"reset": 1.0}, TransportError),
        ({"rate_limit": 1.0}, RateLimitError),
        ({"malformed": 1.0}, PayloadError),
    ],
)
async def test_get_gives_up_after_max_tries(
    sim: KlingSimulator, make_client: MakeClient, rates: dict[str, float], error: type[Exception]
) -> None:
    rec = Recorder()
    kling = make_client(rec, retry=RetryPolicy(max_tries=3))
    submitted = await kling.submit(job(0))
    sim.set_fault_plan(plan("tasks", **rates))
    with pytest.raises(error):
        await kling.get_task(submitted.task_id or 0)
    assert [tries for _, tries, _ in rec.retries] == [1, 2]
    assert len(rec.calls("GET", "tasks/")) == 3


async def test_get_retried_on_timeouts(sim: KlingSimulator, make_client: MakeClient) -> None:
    rec = Recorder()
    kling = make_client(rec, retry=RetryPolicy(max_tries=3), request_timeout=0.1)
    submitted = await kling.submit(job(0))
    sim.set_fault_plan(plan("tasks", delay=1.0))
    with pytest.raises(TransportError, match="TimeoutError"):
        await kling.get_task(submitted.task_id or 0)
    assert len(rec.retries) == 2
    assert all(isinstance(exc, asyncio.TimeoutError) for exc, _, _ in rec.retries)
    assert sim.stats["faults"] == {"delay": 3}
    sim.set_fault_plan(plan("tasks", delay=0.5, seed=4))
    rec.retries.clear()
    kling2 = make_client(rec, retry=RetryPolicy(max_tries=30), request_timeout=0.1)
    assert (await kling2.get_task(submitted.task_id or 0)).task_id == submitted.task_id


async def test_read_timeout_does_not_cut_api_answers(
    sim: KlingSimulator, make_client: MakeClient
) -> None:
    """A slow API answer is bounded by request_timeout as a whole, not by read_timeout."""
    rec = Recorder()
    kling = make_client(rec, retry=RetryPolicy(max_tries=2), read_timeout=0.05)
    sim.set_fault_plan(
        FaultPlan(seed=1, rules={"accounts": FaultRates(delay=1.0)}, delay_seconds=0.3)
    )
    assert (await kling.get_account(EMAIL)).email == EMAIL
    assert rec.retries == []
    assert sim.stats["faults"] == {"delay": 1}


async def test_read_timeout_ends_a_stalled_download(tmp_path: Path) -> None:
    """A download whose bytes stop coming fails after read_timeout, each try, named."""
    tries = 0
    never = asyncio.Event()

    async def stalled(request: web.Request) -> web.StreamResponse:
        nonlocal tries
        tries += 1
        resp = web.StreamResponse()
        resp.content_length = 1 << 20
        await resp.prepare(request)
        await resp.write(b"\x89PNG\r\n\x1a\n")
        await never.wait()  # the rest never comes
        return resp

    app = web.Application()
    app.router.add_get("/stalled.png", stalled)
    config = ClientConfig(read_timeout=0.05, retry=RetryPolicy(max_tries=2))
    async with serve(app) as root:
        try:
            async with KlingClient(
                token=TOKEN, base_url="https://api.invalid/v1/kling", config=config
            ) as kling:
                work = Work(resource=Resource(resource=f"{root}/stalled.png"))
                final = TaskResponse(status_final=True, status_name="succeed", works=(work,))
                with pytest.raises(TransportError) as caught:
                    await kling.download(final, tmp_path, clean=False)
        finally:
            never.set()  # lets the handlers end, so the server can shut down
    assert str(caught.value) == (
        "download of 0-0 failed: SocketTimeoutError: Timeout on reading data from socket"
    )
    assert tries == 2
    assert files_under(tmp_path) == []  # no stray .part file


async def test_connect_failures_are_retried_for_every_request() -> None:
    rec = Recorder()
    config = ClientConfig(retry=RetryPolicy(max_tries=3, busy_tries=4))
    async with KlingClient(
        token=TOKEN,
        base_url="http://127.0.0.1:9/v1/kling",  # nothing listens on the discard port
        max_jobs=1,
        config=config,
        on_retry=rec.on_retry,
    ) as kling:
        with pytest.raises(TransportError):
            await kling.get_task(1)
        assert len(rec.retries) == 2
        rec.retries.clear()
        # A POST that never connected cannot have created anything: retried too.
        with pytest.raises(TransportError) as caught:
            await kling.submit(job(0))
        assert not isinstance(caught.value, SubmissionUnknownError)
        assert len(rec.retries) == 3
        assert all(isinstance(e, aiohttp.ClientConnectorError) for e, _, _ in rec.retries)


# -- Retry-After ---------------------------------------------------------------------------


async def test_retry_after_is_honoured(sim: KlingSimulator, make_client: MakeClient) -> None:
    rec = Recorder()
    kling = make_client(rec, retry=RetryPolicy(max_tries=2))
    sim.set_fault_plan(FaultPlan(rules={"tasks": FaultRates(rate_limit=1.0)}, retry_after=7.5))
    with pytest.raises(RateLimitError) as caught:
        await kling.list_tasks()
    assert caught.value.retry_after == 7.5
    ((exc, tries, wait),) = rec.retries
    assert isinstance(exc, RateLimitError)
    assert tries == 1
    assert wait == 7.5  # the server's value, as production would wait (no jitter)


async def test_retry_after_is_capped(sim: KlingSimulator, make_client: MakeClient) -> None:
    rec = Recorder()
    kling = make_client(rec, retry=RetryPolicy(max_tries=2, max_retry_after=3.0))
    sim.set_fault_plan(FaultPlan(rules={"tasks": FaultRates(rate_limit=1.0)}, retry_after=42))
    with pytest.raises(RateLimitError):
        await kling.list_tasks()
    assert [wait for _, _, wait in rec.retries] == [3.0]


async def test_retry_after_sleeps_scaled_and_reports_unscaled(
    sim: KlingSimulator, make_client: MakeClient
) -> None:
    """With a small nonzero scale the hook still reports the server's value."""
    rec = Recorder()
    kling = make_client(rec, retry=RetryPolicy(max_tries=3))
    sim.set_fault_plan(FaultPlan(rules={"tasks": FaultRates(rate_limit=1.0)}, retry_after=2))
    with fast_mode(0.001):
        assert scaled(2) == pytest.approx(0.002)
        with pytest.raises(RateLimitError):
            await kling.list_tasks()
    assert [wait for _, _, wait in rec.retries] == pytest.approx([2.0, 2.0])
    assert delay_scale() == 0.0  # the autouse fast mode is back


async def test_exponential_waits_grow_within_the_cap(
    sim: KlingSimulator, make_client: MakeClient
) -> None:
    rec = Recorder()
    kling = make_client(rec, retry=RetryPolicy(max_tries=7, base=1.0, max_delay=4.0))
    sim.set_fault_plan(plan("tasks", server_error=1.0))
    with pytest.raises(ServerError):
        await kling.list_tasks()
    waits = [wait for _, _, wait in rec.retries]
    assert len(waits) == 6
    for n, wait in enumerate(waits):
        assert 0 <= wait <= min(4.0, 2**n)  # full jitter below the grown, capped delay


# -- job-creating POSTs ----------------------------------------------------------------------


async def test_429_on_submit_is_retried_without_duplicates(
    sim: KlingSimulator, make_client: MakeClient
) -> None:
    rec = Recorder()
    kling = make_client(rec)
    sim.set_fault_plan(
        FaultPlan(seed=4, rules={"submit": FaultRates(rate_limit=0.5)}, retry_after=3)
    )
    answers = await run_jobs(kling, 10)
    stats = sim.stats
    limited = stats["faults"]["rate_limit"]
    assert limited >= 1
    assert_one_task_per_job(sim, answers)
    assert stats["posts"] == 10 + limited
    assert len(rec.retries) == limited
    assert all(isinstance(e, RateLimitError) and w == 3 for e, _, w in rec.retries)
    assert stats["lists"] == 0  # a 429 is not ambiguous


# -- the retry predicate ---------------------------------------------------------------------


def api(cls: type[Exception], status: int) -> Exception:
    return cls("x", status=status)


@pytest.mark.parametrize(
    ("exc", "get", "post"),
    [
        (api(RateLimitError, 429), True, True),
        (api(ServerError, 502), True, False),
        (api(ModerationError, 500), False, False),
        (api(AccountError, 596), False, False),
        (api(NotFoundError, 404), False, False),
        (api(AuthenticationError, 401), False, False),
        (aiohttp.ServerDisconnectedError(), True, False),
        (asyncio.TimeoutError(), True, False),
        (PayloadError("cut"), True, False),
        (ValueError("bug"), False, False),
    ],
)
def test_is_retryable(exc: BaseException, get: bool, post: bool) -> None:
    assert is_retryable(exc, creates_job=False) is get
    assert is_retryable(exc, creates_job=True) is post


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        ("2999-01-01T00:00:00Z", "cap"),  # far ahead: capped at max_retry_after
        ("2000-01-01T00:00:00+00:00", "backoff"),  # in the past: the policy's own backoff
        ("not a time", "backoff"),
        (-5, "backoff"),
    ],
)
async def test_body_retry_after_may_be_an_iso_time(retry_after: object, expected: str) -> None:
    hits: list[int] = []

    async def busy(request: web.Request) -> web.Response:
        hits.append(1)
        body = {"error": "busy", "code": 429, "retryAfter": retry_after}
        return web.json_response(body, status=429)

    app = web.Application()
    app.router.add_get("/v1/kling/accounts", busy)
    policy = RetryPolicy(max_tries=3, base=0.001, max_delay=0.002, max_retry_after=0.05)
    waits: list[float] = []
    async with serve(app) as root:
        async with KlingClient(
            token=TOKEN,
            base_url=f"{root}/v1/kling",
            max_jobs=1,
            config=ClientConfig(retry=policy),
            on_retry=lambda exc, tries, wait: waits.append(wait),
        ) as kling:
            with pytest.raises(RateLimitError):
                await kling.list_accounts()
    assert len(hits) == 3
    if expected == "cap":
        assert waits == [0.05, 0.05]
    else:
        assert all(0 <= w <= 0.002 for w in waits)


async def test_429_busy_after_the_busy_budget() -> None:
    config = ClientConfig(retry=RetryPolicy(busy_tries=3))
    retries: list[tuple[Any, ...]] = []
    async with (
        KlingSimulator(token=TOKEN, accounts={EMAIL: 1}, job_seconds=30, busy_retry_after=4) as sim,
        KlingClient(
            token=TOKEN, base_url=sim.base_url, config=config, on_retry=lambda *a: retries.append(a)
        ) as kling,
    ):
        await kling.submit(kolors("holds the only slot"))
        with pytest.raises(RateLimitError) as caught:
            await kling.submit(kolors("no room"))
        assert caught.value.retry_after == 4
        assert "busy" in caught.value.error
        assert len(retries) == 2
        assert sim.stats["tasks_created"] == 1
        assert sim.stats["rate_limited"] == 3
        sim.finish_all()


async def test_5xx_becomes_server_error_after_retries(sim: KlingSimulator) -> None:
    sim.set_fault_plan(FaultPlan(rules={"tasks": FaultRates(server_error=1.0)}))
    retries: list[tuple[Any, ...]] = []
    config = ClientConfig(retry=RetryPolicy(max_tries=4))
    async with KlingClient(
        token=TOKEN, base_url=sim.base_url, config=config, on_retry=lambda *a: retries.append(a)
    ) as kling:
        with pytest.raises(ServerError) as caught:
            await kling.get_task(123)
    assert caught.value.status == 500  # 500, 502, 503, 500
    assert [r[1] for r in retries] == [1, 2, 3]
    assert sim.stats["faults"] == {"server_error": 4}


@pytest.mark.parametrize("value", ["-5", "0", "soon", "1e9999"])
async def test_odd_retry_after_uses_the_policys_backoff(value: str) -> None:
    hits: list[int] = []

    async def busy(request: web.Request) -> web.Response:
        hits.append(1)
        body = {"error": "busy", "code": 429}
        return web.json_response(body, status=429, headers={"Retry-After": value})

    app = web.Application()
    app.router.add_get("/v1/kling/accounts", busy)
    retry = HOSTILE_CONFIG.retry
    waits: list[float] = []
    async with serve(app) as root:
        async with KlingClient(
            token=TOKEN,
            base_url=f"{root}/v1/kling",
            max_jobs=1,
            config=HOSTILE_CONFIG,
            on_retry=lambda exc, tries, wait: waits.append(wait),
        ) as kling:
            with pytest.raises(RateLimitError):
                await kling.list_accounts()
    assert len(hits) == retry.max_tries  # bounded
    assert all(0 <= w <= retry.max_retry_after for w in waits)
    if value != "1e9999":
        assert all(w <= retry.max_delay for w in waits)  # the policy's own backoff
