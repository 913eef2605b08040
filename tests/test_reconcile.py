"""Settling an ambiguous POST against the simulator's faults and scripted servers: the job
is found by its tag or strictly in the task list, never sent twice, never a sibling's.

Money rule under test: after an ambiguous failure (the POST may have created the job) the
client looks the task up and adopts it; it sends the POST again only when nothing shows
it. So ``tasks_created`` always equals the number of jobs."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from aiohttp import web
from helpers import (
    EMAIL,
    IMGS,
    TOKEN,
    MakeClient,
    Recorder,
    assert_one_task_per_job,
    fault_first_post,
    job,
    plan,
    run_jobs,
    serve,
    wait_until,
)

from kling_async import (
    ClientConfig,
    KlingClient,
    KolorsElements,
    RequestInfo,
    RequestValidationError,
    RetryPolicy,
    SubmissionUnknownError,
    TaskResponse,
)
from kling_async.reconcile import is_minted, new_tag
from kling_async.testing import FaultPlan, FaultRates, KlingSimulator

#: Room for every job at once: these tests submit without job slots.
pytestmark = pytest.mark.simulator(max_jobs=50)


def same_images(aspect_ratio: str) -> KolorsElements:
    return KolorsElements(prompt="one prompt", subject_images=IMGS, aspect_ratio=aspect_ratio)


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


async def test_a_reply_ref_given_in_extra_is_sent_as_given(minute_sim: KlingSimulator) -> None:
    """``extra={"replyRef": ...}`` is the caller's own: the client mints no tag of its own
    beside it (that was refused as a field given twice) and sends it as given."""
    async with KlingClient(token=TOKEN, base_url=minute_sim.base_url, email=EMAIL) as kling:
        request = KolorsElements(prompt="a cat", subject_images=IMGS, extra={"replyRef": "mine-1"})
        sub = await kling.submit(request)
        [running] = await kling.running()
    assert (running.id, running.reply_ref) == (sub.task_id, "mine-1")


def test_a_tagged_copy_keeps_every_field() -> None:
    request = KolorsElements(prompt="a cat", subject_images=IMGS, aspect_ratio="16:9")
    copy = request.with_reply_ref("ka-1")
    assert copy.reply_ref == "ka-1"
    assert request.reply_ref is None
    assert copy.to_wire() == {**request.to_wire(), "replyRef": "ka-1"}
    with pytest.raises(RequestValidationError, match="reply_ref: must be a string, got int"):
        request.with_reply_ref(5)  # type: ignore[arg-type]
    with pytest.raises(RequestValidationError, match="extra: replyRef also set"):
        KolorsElements(prompt="a", subject_images=IMGS, extra={"replyRef": "x"}).with_reply_ref("y")


# -- a caller's own replyRef: it narrows the candidates, it proves nothing ----------------------


async def test_a_job_under_the_callers_shared_reply_ref_is_not_adopted(
    minute_sim: KlingSimulator,
) -> None:
    """Another process's job runs under the same caller-given ``reply_ref`` (an order id
    used twice); this POST is reset before anything was created. The running job is not
    this submission's (another prompt): the POST is sent again, never adopted."""
    async with KlingClient(token=TOKEN, base_url=minute_sim.base_url, email=EMAIL) as first:
        theirs = await first.submit(KolorsElements(prompt="theirs", subject_images=IMGS,
                                                   reply_ref="order-1"))  # fmt: skip
    hook = fault_first_post(minute_sim, "reset")
    async with KlingClient(
        token=TOKEN, base_url=minute_sim.base_url, email=EMAIL, on_request=hook
    ) as second:
        ours = await second.submit(KolorsElements(prompt="ours", subject_images=IMGS,
                                                  reply_ref="order-1"))  # fmt: skip
    assert minute_sim.stats["faults"] == {"reset": 1}
    assert ours.task_id != theirs.task_id
    assert minute_sim.stats["tasks_created"] == 2


async def test_a_lost_answer_under_the_callers_reply_ref_is_adopted_by_the_matcher(
    minute_sim: KlingSimulator,
) -> None:
    """The server created the job and the answer was lost: the job under the caller's tag
    that the strict matcher also finds is adopted, once."""
    hook = fault_first_post(minute_sim, "reset_after")
    async with KlingClient(
        token=TOKEN, base_url=minute_sim.base_url, email=EMAIL, on_request=hook
    ) as kling:
        found = await kling.submit(KolorsElements(prompt="mine", subject_images=IMGS,
                                                  reply_ref="order-7"))  # fmt: skip
    assert minute_sim.stats["tasks_created"] == 1
    assert found.task_id == minute_sim.stats["tasks"][0]["id"]
    assert minute_sim.stats["lists"] >= 1  # resemblance checked, not the tag alone


def test_only_a_minted_tag_proves_identity() -> None:
    assert is_minted(new_tag())
    assert not is_minted("order-1")
    assert not is_minted(None)
    assert not is_minted("ka-short")


async def test_the_slot_stays_held_while_several_jobs_carry_the_callers_tag(
    minute_sim: KlingSimulator,
) -> None:
    """An unknown outcome under a caller's tag that two other running jobs carry too: one
    of the jobs under it may be this submission's, so its slot stays held (it was freed
    after two looks, as if the scheduler had answered without the tag)."""
    async with KlingClient(token=TOKEN, base_url=minute_sim.base_url, email=EMAIL) as first:
        for prompt in ("a", "b"):
            await first.submit(KolorsElements(prompt=prompt, subject_images=IMGS,
                                              reply_ref="order-9"))  # fmt: skip
    minute_sim.set_fault_plan(
        FaultPlan(
            rules={"submit": FaultRates(reset_after=1.0), "tasks": FaultRates(server_error=1.0)}
        )
    )
    looks: list[str] = []

    def count(info: RequestInfo) -> None:
        if info.path == "scheduler":
            looks.append(info.path)

    config = ClientConfig(retry=RetryPolicy(max_tries=1))
    async with KlingClient(
        token=TOKEN, base_url=minute_sim.base_url, email=EMAIL, on_request=count, config=config
    ) as kling:
        with pytest.raises(SubmissionUnknownError, match="task list could not be read"):
            await kling.run(KolorsElements(prompt="c", subject_images=IMGS, reply_ref="order-9"))
        await wait_until(lambda: len(looks) >= 6)  # two by the settling, four by the follower
        assert kling.slots.in_use(EMAIL) == 1
        assert kling.jobs.following == 1
    assert minute_sim.stats["tasks_created"] == 3
