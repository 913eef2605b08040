"""Money safety by identity (issue 16): tags, the scheduler, strict matching, held slots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from helpers import EMAIL, TOKEN, fault_first_post, wait_until

from kling_async import (
    ClientConfig,
    KlingClient,
    KolorsElements,
    PollPolicy,
    RequestInfo,
    RetryPolicy,
    SubmissionUnknownError,
    retry,
)
from kling_async.batch import BatchRunner, JobState, Journal, JournalConflictError, job_from_request
from kling_async.convert import request_body, structure_task
from kling_async.reconcile import matches_submission, tagged
from kling_async.testing import FaultPlan, FaultRates, KlingSimulator

IMGS = [f"https://example.com/{n}.png" for n in range(4)]


def request(prompt: str = "a cat", images: list[str] | None = None) -> KolorsElements:
    return KolorsElements(prompt=prompt, subject_images=images or IMGS[:2], email=EMAIL)


async def test_every_post_carries_an_unguessable_tag(minute_sim: KlingSimulator) -> None:
    async with KlingClient(token=TOKEN, base_url=minute_sim.base_url, email=EMAIL) as kling:
        await kling.submit(request())
        await kling.submit(request(), email=EMAIL)
        mine = await kling.submit(request().__class__(prompt="x", subject_images=IMGS[:2],
                                                      reply_ref="mine"))  # fmt: skip
    tags = [t["body"].get("replyRef") for t in minute_sim.stats["tasks"]]
    assert tags[2] == "mine"
    assert mine.task_id is not None
    assert len(set(tags)) == 3
    assert all(len(t) >= 20 for t in tags[:2])


async def test_two_clients_same_request_and_a_reset_post_get_two_tasks(
    minute_sim: KlingSimulator,
) -> None:
    """The second client's POST is reset before the server created anything: it must not
    recover the first client's task (the scheduler shows it under another tag)."""
    async with KlingClient(token=TOKEN, base_url=minute_sim.base_url, email=EMAIL) as first:
        a = await first.submit(request())
    async with KlingClient(
        token=TOKEN,
        base_url=minute_sim.base_url,
        email=EMAIL,
        on_request=fault_first_post(minute_sim),
    ) as second:
        b = await second.submit(request())
    assert minute_sim.stats["faults"] == {"reset": 1}
    assert a.task_id != b.task_id
    assert minute_sim.stats["tasks_created"] == 2


async def test_a_reset_after_creation_is_found_by_its_tag_never_resent(
    minute_sim: KlingSimulator,
) -> None:
    """Four images, of which the task list may echo only some: found by the tag, once."""
    minute_sim.set_fault_plan(FaultPlan(rules={"submit": FaultRates(reset_after=1.0)}))
    async with KlingClient(token=TOKEN, base_url=minute_sim.base_url, email=EMAIL) as kling:
        found = await kling.submit(request(images=IMGS))
    assert minute_sim.stats["posts"] == 1
    assert minute_sim.stats["tasks_created"] == 1
    assert found.task_id == minute_sim.stats["tasks"][0]["id"]
    assert minute_sim.stats["lists"] == 0  # identity, not resemblance


def test_the_matcher_takes_an_unechoed_input_as_unknown_not_a_mismatch() -> None:
    body = request_body(KolorsElements(prompt="p", subject_images=IMGS, aspect_ratio="16:9"))

    def task(urls: list[str], ratio: str = "16:9", prompt: str = "p") -> Any:
        args = [{"name": "prompt", "value": prompt}, {"name": "aspect_ratio", "value": ratio}]
        inputs = [{"name": f"i{n}", "url": u} for n, u in enumerate(urls)]
        return structure_task({"task": {"id": 7, "taskInfo": {"inputs": inputs,
                                                              "arguments": args}}})  # fmt: skip

    assert matches_submission(task(IMGS[:2]), body)  # 2 of 4 echoed: still a candidate
    assert not matches_submission(task([*IMGS[:1], "https://example.com/other.png"]), body)
    assert not matches_submission(task(IMGS, ratio="1:1"), body)
    assert not matches_submission(task(IMGS, prompt="q"), body)


async def test_the_slot_stays_held_after_submission_unknown_until_the_job_ends() -> None:
    async with KlingSimulator(token=TOKEN, accounts={EMAIL: 2}, job_seconds=0.05) as sim:
        sim.set_fault_plan(
            FaultPlan(
                rules={
                    "submit": FaultRates(reset_after=1.0),
                    "tasks": FaultRates(server_error=1.0),
                    "accounts": FaultRates(server_error=1.0),  # no scheduler either
                }
            )
        )
        config = ClientConfig(retry=RetryPolicy(max_tries=1))
        async with KlingClient(
            token=TOKEN, base_url=sim.base_url, email=EMAIL, max_jobs=2, config=config
        ) as kling:
            with pytest.raises(SubmissionUnknownError, match="may exist"):
                await kling.run(request())
            assert kling.slots.in_use(EMAIL) == 1  # the job may be running: slot kept
            assert kling.jobs.following == 1
            sim.set_fault_plan(None)  # the scheduler answers again; the job ends
            await wait_until(lambda: kling.slots.in_use(EMAIL) == 0)
        assert sim.stats["tasks_created"] == 1


async def test_resume_while_the_server_still_processes_the_post(tmp_path: Path) -> None:
    """Killed with the POST out; the server creates the task only after the resume first
    looked: the resume waits the confirm delay, finds it by its tag, sends nothing."""
    job = job_from_request(1, request("processing"))
    sent = tagged(job.request)
    async with (
        # The job outlasts the confirm delay: it is still running when the resume looks again.
        KlingSimulator(token=TOKEN, accounts={EMAIL: 2}, job_seconds=1.0, duration_sigma=0) as sim,
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http,
    ):
        with Journal(tmp_path / "j.sqlite3") as journal:
            journal.sync([job])
            journal.mark_submitting(1, EMAIL, request_body(sent))  # ...and the run died

            async def server_finishes_the_post(info: RequestInfo) -> None:
                if info.path == "scheduler" and not sim.stats["tasks_created"]:
                    url = f"{sim.base_url}/{sent.endpoint}"
                    async with http.post(url, json=request_body(sent)) as resp:
                        assert resp.status == 200

            config = ClientConfig(
                recovery_confirm_delay=0.3, poll=PollPolicy(interval=0.05, min_interval=0.05)
            )
            with retry.fast_mode(1.0):  # the confirm delay is really waited
                async with KlingClient(
                    token=TOKEN, base_url=sim.base_url, email=EMAIL, config=config,
                    on_request=server_finishes_the_post,
                ) as kling:  # fmt: skip
                    await BatchRunner(kling, journal, tmp_path / "out").run([job])
            rec = journal.record(1)
        assert sim.stats["tasks_created"] == 1  # tasks created == jobs
    assert rec.state is JobState.SUCCEEDED
    assert rec.task_id == sim.stats["tasks"][0]["id"]


async def test_siblings_with_one_prompt_each_get_their_own_task(tmp_path: Path) -> None:
    """Lines sharing a prompt, different images, all lost mid-POST and still running: each
    line adopts the task with its own images (by its tag)."""
    jobs = [job_from_request(n, request("same", IMGS[n - 1 : n + 1])) for n in (1, 2, 3)]
    sent = [tagged(j.request) for j in jobs]
    async with (
        KlingSimulator(token=TOKEN, accounts={EMAIL: 5}, job_seconds=0.5) as sim,
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http,
    ):
        with Journal(tmp_path / "j.sqlite3") as journal:
            journal.sync(jobs)
            for job, req in zip(jobs, sent, strict=True):
                journal.mark_submitting(job.line, EMAIL, request_body(req))
                async with http.post(f"{sim.base_url}/{req.endpoint}", json=request_body(req)):
                    pass
            async with KlingClient(token=TOKEN, base_url=sim.base_url, email=EMAIL) as kling:
                await BatchRunner(kling, journal, tmp_path / "out").run(jobs)
            records = journal.records()
        by_id = {t["id"]: t["body"] for t in sim.stats["tasks"]}
        assert sim.stats["tasks_created"] == 3
    for rec, req in zip(records, sent, strict=True):
        assert rec.state is JobState.SUCCEEDED
        assert by_id[rec.task_id or 0]["subjectImage1"] == req.subject_images[0]


def test_a_second_writer_on_one_folder_is_refused(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite3"):
        with pytest.raises(JournalConflictError, match="another run is using the journal"):
            Journal(tmp_path / "j.sqlite3")
    Journal(tmp_path / "j.sqlite3").close()  # released with its holder
