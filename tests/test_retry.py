"""Retries against the simulator's fault plan: GETs retried, job-creating POSTs never resent blind.

Money rule under test: after an ambiguous failure (the POST may have created the job) the
client looks the task up in GET /tasks/ and adopts it; it sends the POST again only when the
list shows no such task. So ``tasks_created`` always equals the number of jobs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from helpers import EMAIL, TOKEN, files_under, run_command, serve, wait_until

from kling_async import (
    ClientConfig,
    KlingClient,
    KolorsElements,
    RateLimitError,
    RequestInfo,
    Resource,
    RetryPolicy,
    ServerError,
    SubmissionUnknownError,
    TaskResponse,
    TransportError,
    Work,
)
from kling_async.config import TIME_SCALE_ENV
from kling_async.convert import PayloadError
from kling_async.errors import (
    AccountError,
    AuthenticationError,
    ModerationError,
    NotFoundError,
)
from kling_async.retry import delay_scale, fast_mode, is_retryable, scaled, set_time_scale
from kling_async.testing import FaultPlan, FaultRates, KlingSimulator

URL1 = "https://example.com/a.png"
URL2 = "https://example.com/b.png"


IMGS = (URL1, URL2)


def same_images(aspect_ratio: str) -> KolorsElements:
    return KolorsElements(prompt="one prompt", subject_images=IMGS, aspect_ratio=aspect_ratio)


def job(n: int) -> KolorsElements:
    return KolorsElements(prompt=f"job number {n}", subject_images=[URL1, URL2])


class Recorder:
    """Hooks that record requests and retries."""

    def __init__(self) -> None:
        self.requests: list[RequestInfo] = []
        self.retries: list[tuple[BaseException, int, float]] = []

    def on_request(self, info: RequestInfo) -> None:
        self.requests.append(info)

    def on_retry(self, exc: BaseException, tries: int, wait: float) -> None:
        self.retries.append((exc, tries, wait))

    def calls(self, method: str, prefix: str) -> list[RequestInfo]:
        return [r for r in self.requests if r.method == method and r.path.startswith(prefix)]


MakeClient = Callable[..., KlingClient]


@pytest.fixture
async def sim(request: pytest.FixtureRequest) -> AsyncIterator[KlingSimulator]:
    """Room for every job at once: these tests submit without job slots. Jobs last 50 ms
    unless a test asks for longer ones (``parametrize("sim", [seconds], indirect=True)``)."""
    seconds = getattr(request, "param", 0.05)
    async with KlingSimulator(token=TOKEN, accounts={EMAIL: 50}, job_seconds=seconds) as server:
        yield server


@pytest.fixture
async def make_client(sim: KlingSimulator) -> AsyncIterator[MakeClient]:
    """Clients of ``sim`` with hooks of a `Recorder` and a given config; closed at the end."""
    made: list[KlingClient] = []

    def make(recorder: Recorder | None = None, **config: Any) -> KlingClient:
        rec = recorder or Recorder()
        kling = KlingClient(
            token=TOKEN,
            base_url=sim.base_url,
            max_jobs=50,
            config=ClientConfig(**config),
            on_request=rec.on_request,
            on_retry=rec.on_retry,
        )
        made.append(kling)
        return kling

    yield make
    for kling in made:
        await kling.aclose()


def plan(group: str, seed: int = 1, **rates: float) -> FaultPlan:
    return FaultPlan(seed=seed, rules={group: FaultRates(**rates)}, delay_seconds=1.0)


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


def test_time_scale_switch() -> None:
    assert delay_scale() == 0.0
    previous = set_time_scale(0.5)
    try:
        assert previous == 0.0
        assert scaled(4) == 2.0
    finally:
        set_time_scale(previous)
    with pytest.raises(ValueError, match="scale"):
        set_time_scale(-1)


SCALE_PROBE = """
import kling_async
from kling_async.config import delay_scale, scaled
try:
    print(delay_scale(), scaled(2.0))
except kling_async.ConfigurationError as exc:
    print(exc)
"""


@pytest.mark.parametrize(
    ("value", "printed"),
    [
        ("0.25", "0.25 0.5"),
        ("fast", "KLING_ASYNC_TIME_SCALE must be a number >= 0, got 'fast'"),
        ("-1", "KLING_ASYNC_TIME_SCALE must be a number >= 0, got '-1'"),
    ],
)
def test_time_scale_from_the_environment(value: str, printed: str) -> None:
    """A process (a CLI a test suite runs) starts with the scale in KLING_ASYNC_TIME_SCALE;
    a bad one is refused at the first wait, naming the variable (importing reads nothing)."""
    env = {**os.environ, TIME_SCALE_ENV: value}
    done = run_command([sys.executable, "-c", SCALE_PROBE], env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == printed


# -- job-creating POSTs ----------------------------------------------------------------------


async def run_jobs(kling: KlingClient, n: int) -> list[TaskResponse]:
    return list(await asyncio.gather(*(kling.submit(job(i)) for i in range(n))))


def assert_one_task_per_job(sim: KlingSimulator, answers: list[TaskResponse]) -> None:
    stats = sim.stats
    assert stats["tasks_created"] == len(answers)
    ids = [a.task_id for a in answers]
    assert len(set(ids)) == len(ids)
    assert set(ids) == {t["id"] for t in stats["tasks"]}
    for n, answer in enumerate(answers):  # each job got its own task, not a sibling's
        assert answer.arguments["prompt"] == f"job number {n}"
        assert sim.tasks[answer.task_id or 0].body["prompt"] == f"job number {n}"


# "delay" with jobs that outlast its 1 s answer: a task that ended before its tag could be
# seen in the scheduler is reported unknown, never adopted (tests/test_money.py).
@pytest.mark.parametrize("sim", [5.0], indirect=True)
@pytest.mark.parametrize("kind", ["reset_after", "malformed", "delay"])
async def test_ambiguous_post_failures_are_recovered_not_resent(
    sim: KlingSimulator, make_client: MakeClient, kind: str
) -> None:
    rec = Recorder()
    kling = make_client(rec, request_timeout=0.2)  # shorter than the 1 s delay fault
    sim.set_fault_plan(plan("submit", seed=2, **{kind: 0.5}))
    answers = await run_jobs(kling, 12)
    stats = sim.stats
    faults = stats["faults"][kind]
    assert 1 <= faults < 12
    assert_one_task_per_job(sim, answers)
    assert stats["posts"] == 12  # not one POST was sent twice
    assert rec.retries == []  # and none was retried by the retry layer
    for answer in answers:  # the recovered answers are full task models
        assert answer.task is not None
        assert answer.status_name in ("submitted", "processing", "succeed")


async def test_reset_before_creation_resends_only_after_the_list_shows_nothing(
    sim: KlingSimulator, make_client: MakeClient
) -> None:
    rec = Recorder()
    kling = make_client(rec, retry=RetryPolicy(max_tries=3))
    sim.set_fault_plan(plan("submit", reset=1.0))
    with pytest.raises(SubmissionUnknownError) as caught:
        await kling.submit(job(0))
    error = caught.value
    assert error.request is not None
    assert error.sent_at is not None
    sequence = [(r.method, r.path.split("?")[0]) for r in rec.requests]
    post = ("POST", "images/kolors-elements")
    scheduler, look = ("GET", "scheduler"), ("GET", "tasks/")
    # Every POST is followed by two looks for its tag in the scheduler (before and after
    # the confirm delay) and one at the task list before anything else is sent (first,
    # once, the token's only account: the client sends its email everywhere).
    assert sequence == [("GET", "accounts"), *[post, scheduler, scheduler, look] * 3]
    assert sim.stats["tasks_created"] == 0
    assert sim.stats["faults"] == {"reset": 3}


async def test_resets_before_creation_give_one_task_per_job(
    sim: KlingSimulator, make_client: MakeClient
) -> None:
    rec = Recorder()
    kling = make_client(rec, retry=RetryPolicy(max_tries=10))
    sim.set_fault_plan(plan("submit", seed=5, reset=0.4))
    answers = await run_jobs(kling, 12)
    stats = sim.stats
    assert stats["faults"]["reset"] >= 1
    assert_one_task_per_job(sim, answers)
    assert stats["posts"] == 12 + stats["faults"]["reset"]
    assert stats["lists"] >= 2 * stats["faults"]["reset"]


# Jobs outlast the 1 s "delay" answer: a task that ended before its tag could be seen in
# the scheduler is reported unknown, never adopted (tests/test_money.py covers that case).
@pytest.mark.parametrize("sim", [5.0], indirect=True)
async def test_mixed_submit_faults_never_duplicate(
    sim: KlingSimulator, make_client: MakeClient
) -> None:
    rec = Recorder()
    kling = make_client(rec, request_timeout=0.2, retry=RetryPolicy(max_tries=10))
    rates = FaultRates(rate_limit=0.15, reset=0.15, reset_after=0.15, delay=0.1, malformed=0.15)
    sim.set_fault_plan(FaultPlan(seed=9, rules={"submit": rates}, delay_seconds=1.0))
    answers = await run_jobs(kling, 15)
    assert_one_task_per_job(sim, answers)


async def test_identical_jobs_with_ambiguous_failures_keep_their_own_tasks(
    sim: KlingSimulator, make_client: MakeClient
) -> None:
    """Same body three times: recovery must not hand one task to two jobs."""
    kling = make_client(retry=RetryPolicy(max_tries=10))
    sim.set_fault_plan(plan("submit", seed=3, reset_after=0.5, reset=0.2))
    same = job(0)
    answers = await asyncio.gather(*(kling.submit(same) for _ in range(6)))
    ids = [a.task_id for a in answers]
    assert len(set(ids)) == 6
    assert sim.stats["tasks_created"] == 6


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


async def test_5xx_on_submit_is_looked_up_and_not_resent_blind(
    sim: KlingSimulator, make_client: MakeClient
) -> None:
    """A 500/502/503 from the simulator comes before creation: the list shows nothing."""
    rec = Recorder()
    kling = make_client(rec, retry=RetryPolicy(max_tries=10))
    sim.set_fault_plan(plan("submit", seed=6, server_error=0.4))
    answers = await run_jobs(kling, 10)
    stats = sim.stats
    assert stats["faults"]["server_error"] >= 1
    assert_one_task_per_job(sim, answers)
    assert rec.retries == []
    assert stats["lists"] >= 2 * stats["faults"]["server_error"]


async def test_unreadable_task_list_after_an_ambiguous_post(
    sim: KlingSimulator, make_client: MakeClient
) -> None:
    kling = make_client(retry=RetryPolicy(max_tries=2))
    await kling.list_tasks()  # learns the token's only account before the faults begin
    sim.set_fault_plan(
        FaultPlan(
            rules={
                "submit": FaultRates(reset_after=1.0),
                "tasks": FaultRates(server_error=1.0),
                "accounts": FaultRates(server_error=1.0),  # the scheduler cannot answer
            }
        )
    )
    with pytest.raises(SubmissionUnknownError, match="may exist") as caught:
        await kling.submit(job(0))
    assert caught.value.email == "a@example.com"  # learnt from GET /accounts
    assert sim.stats["tasks_created"] == 1
    assert sim.stats["posts"] == 1


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


@pytest.mark.parametrize("sim", [30.0], indirect=True)  # running, so found by its tag
async def test_identical_job_arriving_while_a_sibling_hands_over_waits_its_turn(
    sim: KlingSimulator, make_client: MakeClient
) -> None:
    """A job submitted the moment an identical one finishes must still queue behind the next.
    (Its jobs outlast the test: a reset POST's task is found by its tag in the scheduler;
    50 ms jobs could end before the look-up, and a look-alike never seen under its tag is
    reported unknown, never adopted.)"""
    kling = make_client()
    same = job(0)
    late: list[asyncio.Future[TaskResponse]] = []

    def on_submitted(_: TaskResponse) -> None:
        if not late:  # the first job is done; its identical sibling is about to go
            late.append(asyncio.ensure_future(kling.submit(same)))

    kling.on_submitted = on_submitted
    sim.set_fault_plan(plan("submit", reset_after=1.0))
    first, second = await asyncio.gather(kling.submit(same), kling.submit(same))
    third = await late[0]
    assert len({first.task_id, second.task_id, third.task_id}) == 3
    assert sim.stats["tasks_created"] == 3
    assert sim.stats["posts"] == 3


async def test_a_sibling_differing_only_in_options_is_never_adopted() -> None:
    """Recovery matches a task by prompt and images: a job that differs from a sibling in
    another field (aspect ratio) must not adopt the sibling's task, whose answer is still
    on its way when the job looks at the task list."""
    tasks: list[dict[str, Any]] = []
    b_created, release_b, list_read = asyncio.Event(), asyncio.Event(), asyncio.Event()
    a_posts = 0

    def create(body: dict[str, Any]) -> dict[str, Any]:
        task = {
            "id": 100 + len(tasks),
            "status": 5,
            "status_name": "submitted",
            "status_final": False,
            "createTime": int(time.time() * 1000),
            "taskInfo": {
                "inputs": [{"name": f"subject_image_{i}", "url": u} for i, u in enumerate(IMGS)],
                "arguments": [
                    {"name": "prompt", "value": body["prompt"]},
                    {"name": "aspect_ratio", "value": body["aspect_ratio"]},
                ],
            },
        }
        tasks.append(task)
        return {"status": 5, "status_name": "submitted", "status_final": False, "task": task}

    async def kolors(request: web.Request) -> web.Response:
        nonlocal a_posts
        body = await request.json()
        if body["aspect_ratio"] == "1:1":  # B: created at once, answered late
            answer = create(body)
            b_created.set()
            await release_b.wait()
            return web.json_response(answer)
        a_posts += 1
        if a_posts == 1:  # A: a 5xx that created nothing, then a normal answer
            return web.json_response({"error": "Internal Server Error"}, status=500)
        return web.json_response(create(body))

    async def task_list(request: web.Request) -> web.Response:
        list_read.set()
        before = int(request.query.get("createdBefore", 2**62))
        older = [t for t in reversed(tasks) if t["createTime"] < before]
        return web.json_response({"history": [{"task": t} for t in older]})

    app = web.Application()
    app.router.add_post("/v1/kling/images/kolors-elements", kolors)
    app.router.add_get("/v1/kling/tasks/", task_list)
    async with serve(app) as root:
        async with KlingClient(token=TOKEN, base_url=f"{root}/v1/kling", email=EMAIL) as kling:
            b = asyncio.ensure_future(kling.submit(same_images("1:1")))
            await asyncio.wait_for(b_created.wait(), 10)
            a = asyncio.ensure_future(kling.submit(same_images("16:9")))
            # A either reads the list while B's answer is out, or queues behind B.
            await wait_until(lambda: list_read.is_set() or kling.queued_submissions > 0)
            release_b.set()
            first, second = await asyncio.gather(a, b)
    assert (first.task_id, second.task_id) == (101, 100)


async def test_an_abandoned_submission_that_may_have_created_a_job_is_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The caller of submit() left (cancelled) while the POST was out; the POST then failed
    ambiguously and the task list could not be read: nobody is left to receive the
    SubmissionUnknownError, so the log must say that a paid job may exist."""
    posted, answer = asyncio.Event(), asyncio.Event()

    async def kolors(request: web.Request) -> web.Response:
        posted.set()
        await answer.wait()
        return web.json_response({"error": "Internal Server Error"}, status=500)

    async def task_list(request: web.Request) -> web.Response:
        return web.json_response({"error": "Internal Server Error"}, status=500)

    app = web.Application()
    app.router.add_post("/v1/kling/images/kolors-elements", kolors)
    app.router.add_get("/v1/kling/tasks/", task_list)
    config = ClientConfig(retry=RetryPolicy(max_tries=1))
    async with serve(app) as root:
        kling = KlingClient(token=TOKEN, base_url=f"{root}/v1/kling", email=EMAIL, config=config)
        async with kling:
            caller = asyncio.ensure_future(kling.submit(job(1)))
            await asyncio.wait_for(posted.wait(), 10)
            caller.cancel()
            with pytest.raises(asyncio.CancelledError):
                await caller
            answer.set()
        # aclose waited for the abandoned submission to end
    unknown = [
        r for r in caplog.records if r.levelno >= logging.WARNING and "may exist" in r.getMessage()
    ]
    assert unknown, [r.getMessage() for r in caplog.records]


async def test_recovery_reads_past_a_short_page_when_the_server_caps_page_size() -> None:
    """A server that caps pageSize below what was asked returns short pages that are not
    the end of the list: the lost task, behind 15 newer ones, must be found, not paid for
    again."""
    tasks: list[dict[str, Any]] = []
    clock = int(time.time() * 1000)
    posts = 0

    def create(prompt: str) -> dict[str, Any]:
        task = {
            "id": 500 + len(tasks),
            "status": 5,
            "status_name": "submitted",
            "status_final": False,
            "createTime": clock + len(tasks),
            "taskInfo": {
                "inputs": [{"name": f"subject_image_{i}", "url": u} for i, u in enumerate(IMGS)],
                "arguments": [{"name": "prompt", "value": prompt}],
            },
        }
        tasks.append(task)
        return task

    async def kolors(request: web.Request) -> web.Response:
        nonlocal posts
        posts += 1
        create((await request.json())["prompt"])
        for n in range(15):  # another process on the account is busy too
            create(f"someone else's job {n}")
        return web.json_response({"error": "Bad Gateway"}, status=502)

    async def task_list(request: web.Request) -> web.Response:
        before = int(request.query.get("createdBefore", 2**62))
        older = [t for t in reversed(tasks) if t["createTime"] < before]
        return web.json_response({"history": [{"task": t} for t in older[:10]]})  # capped

    app = web.Application()
    app.router.add_post("/v1/kling/images/kolors-elements", kolors)
    app.router.add_get("/v1/kling/tasks/", task_list)
    async with serve(app) as root:
        async with KlingClient(
            token=TOKEN, base_url=f"{root}/v1/kling", email="a@example.com", max_jobs=1
        ) as kling:
            answer = await kling.submit(job(0))
    assert posts == 1  # never sent again
    assert answer.task_id == 500


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
