"""The batch runner, in process against the simulator."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from helpers import IMGS, Durations, HeldPosts, serve, wait_until

from kling_async import KlingClient, KolorsElements
from kling_async.batch import (
    MANIFEST_NAME,
    BatchRunner,
    Job,
    JobEvent,
    JobRecord,
    JobState,
    Journal,
    job_from_request,
    parse_jobs_file,
)
from kling_async.convert import request_body
from kling_async.errors import ConfigurationError, RequestValidationError, TransportError
from kling_async.testing import KlingSimulator

ACCOUNT = "a@example.com"
TOKEN = "test-token-batch"


@pytest.fixture
async def sim(durations: Durations) -> AsyncIterator[KlingSimulator]:
    async with KlingSimulator(
        token=TOKEN, accounts={ACCOUNT: 2}, job_duration=durations, duration_sigma=0
    ) as simulator:
        yield simulator


def client(sim: KlingSimulator) -> KlingClient:
    return KlingClient(token=TOKEN, base_url=sim.base_url, email=ACCOUNT, max_jobs=2)


def write_jobs(folder: Path, lines: list[Any]) -> Path:
    path = folder / "jobs.jsonl"
    text = [x if isinstance(x, str) else json.dumps(x) for x in lines]
    path.write_text("\n".join(text) + "\n")
    return path


def image_line(prompt: str) -> dict[str, Any]:
    return {"kind": "image", "prompt": prompt, "subject_images": ["a.png", "b.png"]}


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[JobEvent, int]] = []

    def job_event(self, event: JobEvent, record: JobRecord) -> None:
        self.events.append((event, record.line))


async def run_batch(
    sim: KlingSimulator, jobs: list[Job], out: Path, **kwargs: Any
) -> tuple[Any, Recorder]:
    recorder = Recorder()
    async with client(sim) as kling:
        with Journal(out / ".journal") as journal:
            runner = BatchRunner(kling, journal, out, observer=recorder, **kwargs)
            return await runner.run(jobs), recorder


async def test_batch_runs_downloads_and_skips_on_rerun(
    sim: KlingSimulator, images: Path, tmp_path: Path
) -> None:
    lines = [image_line(f"p{i}") for i in range(4)]
    lines.append({"kind": "video", "prompt": "a video", "images": ["a.png"]})
    lines.append(image_line("this one will fail"))
    jobs = parse_jobs_file(write_jobs(images, lines))
    out = tmp_path / "out"
    summary, _ = await run_batch(sim, jobs, out)
    assert summary.count(JobState.SUCCEEDED) == 5
    [failed] = summary.problems
    assert (failed.line, failed.state, failed.final_state) == (6, JobState.FAILED, "failed")
    assert failed.error
    for rec in summary.records[:5]:
        assert rec.task_id is not None
        # A video comes with its cover (the gallery's poster).
        name, *cover = rec.files
        assert len(cover) == (1 if rec.kind == "video" else 0)
        assert all(c.endswith("-cover.png") for c in cover)
        data = (out / name).read_bytes()
        assert data[4:8] == b"ftyp" if rec.kind == "video" else data[:4] == b"\x89PNG"
    assert sim.stats["tasks_created"] == 6
    assert max(sim.stats["peak_running"].values()) <= 2

    again, recorder = await run_batch(sim, jobs, out)
    assert sim.stats["tasks_created"] == 6
    assert {e for e, _ in recorder.events} == {JobEvent.SKIPPED}
    assert again.records == summary.records


async def test_moderated_prompt_fails_without_a_task(
    sim: KlingSimulator, images: Path, tmp_path: Path
) -> None:
    jobs = parse_jobs_file(write_jobs(images, [image_line("nsfw thing")]))
    summary, _ = await run_batch(sim, jobs, tmp_path)
    [rec] = summary.records
    assert rec.state is JobState.FAILED
    assert rec.task_id is None
    assert "community guidelines" in (rec.error or "")


async def test_lost_submission_is_found_not_resubmitted(
    sim: KlingSimulator, images: Path, tmp_path: Path
) -> None:
    jobs = parse_jobs_file(write_jobs(images, [image_line("lost"), image_line("never sent")]))
    with Journal(tmp_path / ".journal") as journal:
        journal.sync(jobs)
        # Crash window: both marked submitting; only the first POST reached the server.
        journal.mark_submitting(1, ACCOUNT)
        journal.mark_submitting(2, ACCOUNT)
    async with client(sim) as kling:
        created = await kling.submit(jobs[0].request)
    assert sim.stats["tasks_created"] == 1

    summary, recorder = await run_batch(sim, jobs, tmp_path)
    assert (JobEvent.ADOPTED, 1) in recorder.events
    first, second = summary.records
    assert first.task_id == created.task_id
    assert first.state is second.state is JobState.SUCCEEDED
    assert sim.stats["tasks_created"] == 2
    prompts = sorted(t["body"]["prompt"] for t in sim.stats["tasks"])
    assert prompts == ["lost", "never sent"]


async def test_unknown_outcome_is_not_resubmitted_unless_asked(
    sim: KlingSimulator, images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = parse_jobs_file(write_jobs(images, [image_line("unclear")]))
    with Journal(tmp_path / ".journal") as journal:
        journal.sync(jobs)
        journal.mark_submitting(1, ACCOUNT)

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise TransportError("task list unavailable")

    monkeypatch.setattr(KlingClient, "list_tasks", broken)
    summary, _ = await run_batch(sim, jobs, tmp_path)
    [rec] = summary.records
    assert rec.state is JobState.UNKNOWN
    assert "--resubmit-unknown" in (rec.error or "")
    assert sim.stats["posts"] == 0

    summary, _ = await run_batch(sim, jobs, tmp_path)  # still unknown: never guessed
    assert summary.records[0].state is JobState.UNKNOWN
    assert sim.stats["posts"] == 0

    summary, _ = await run_batch(sim, jobs, tmp_path, resubmit_unknown=True)
    assert summary.records[0].state is JobState.SUCCEEDED
    assert sim.stats["tasks_created"] == 1


async def test_cancelled_batch_resumes_without_resubmitting(
    sim: KlingSimulator, durations: Durations, images: Path, tmp_path: Path
) -> None:
    durations.seconds = 3600.0  # jobs run until the test finishes them
    jobs = parse_jobs_file(write_jobs(images, [image_line(f"job {i}") for i in range(5)]))
    out = tmp_path / "out"
    running = asyncio.ensure_future(run_batch(sim, jobs, out))
    await wait_until(lambda: sim.stats["tasks_created"] == 2)
    with Journal(out / ".journal", read_only=True) as journal:
        await wait_until(lambda: sum(r.task_id is not None for r in journal.records()) == 2)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running

    durations.seconds = 0.05
    sim.finish_all()
    summary, recorder = await run_batch(sim, jobs, out)
    assert summary.ok
    assert sorted(line for e, line in recorder.events if e is JobEvent.RESUMED) == [1, 2]
    assert sim.stats["tasks_created"] == 5
    assert sorted(t["body"]["prompt"] for t in sim.stats["tasks"]) == [f"job {i}" for i in range(5)]
    assert all((out / rec.files[0]).is_file() for rec in summary.records)


async def test_cancelled_run_journals_the_task_id_of_a_post_in_flight(tmp_path: Path) -> None:
    """A run cancelled while a POST is out still writes that POST's task id to the journal
    before it returns (its caller closes the journal next, as the CLI does)."""
    service = HeldPosts(4242)
    request = KolorsElements(prompt="in flight", subject_images=["https://x/a.png"] * 2)
    path = tmp_path / "journal.sqlite3"
    async with serve(service.app) as root, held_client(root, max_jobs=1) as kling:
        with Journal(path) as journal:
            runner = BatchRunner(kling, journal, tmp_path / "out")
            running = asyncio.ensure_future(runner.run([job_from_request(1, request)]))
            await asyncio.wait_for(service.posted.wait(), 10)
            running.cancel()
            # The job let its slot go: the cancellation reached it. Only now does the
            # server answer the POST.
            await wait_until(lambda: kling.slots.in_use(ACCOUNT) == 0)
            service.answer.set()
            with pytest.raises(asyncio.CancelledError):
                await running
    with Journal(path) as journal:
        rec = journal.record(1)
    assert (rec.state, rec.task_id) == (JobState.SUBMITTED, 4242)


async def test_an_identical_line_waiting_its_turn_is_not_journaled_as_sent(
    tmp_path: Path,
) -> None:
    """Identical requests are POSTed one at a time. A run stopped while the first one's
    POST is out withdraws the second (it is never sent, even once the first is answered)
    and leaves its line pending, not ``submitting``: a resume sends it without a needless
    "unknown"."""
    service = HeldPosts(4242)
    same = KolorsElements(prompt="twins", subject_images=["https://x/a.png"] * 2)
    path = tmp_path / "journal.sqlite3"
    async with serve(service.app) as root, held_client(root, max_jobs=2) as kling:
        with Journal(path) as journal:
            runner = BatchRunner(kling, journal, tmp_path / "out")
            jobs = [job_from_request(1, same), job_from_request(2, same)]
            running = asyncio.ensure_future(runner.run(jobs))
            await asyncio.wait_for(service.posted.wait(), 10)
            await wait_until(lambda: kling.slots.in_use(ACCOUNT) == 2)
            with Journal(path, read_only=True) as peek:
                assert peek.record(1).state is JobState.SUBMITTING
                assert peek.record(1).tag == service.bodies[0]["replyRef"]
                assert peek.record(2).state is JobState.PENDING  # waits for the turn
            running.cancel()
            await wait_until(lambda: kling.slots.in_use(ACCOUNT) == 0)  # the run let go
            service.answer.set()
            with pytest.raises(asyncio.CancelledError):
                await running
    with Journal(path) as journal:
        first, second = journal.record(1), journal.record(2)
    assert len(service.bodies) == 1
    assert (first.state, first.task_id) == (JobState.SUBMITTED, 4242)
    assert second.state is JobState.PENDING


async def test_a_post_answered_after_a_run_stopped_twice_is_left_to_a_re_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Cancelled again while it waits for its POSTs, the run stops at once and its caller
    closes the journal: the POST's later answer is not written there (the row stays
    ``submitting``, for a re-run to look up) and is told in one warning, not a traceback."""
    service = HeldPosts(4242)
    request = KolorsElements(prompt="late", subject_images=["https://x/a.png"] * 2)
    path = tmp_path / "journal.sqlite3"
    async with serve(service.app) as root, held_client(root, max_jobs=1) as kling:
        settling = asyncio.Event()
        with Journal(path) as journal:
            runner = BatchRunner(
                kling, journal, tmp_path / "out", on_settle=lambda _n: settling.set()
            )
            running = asyncio.ensure_future(runner.run([job_from_request(1, request)]))
            await asyncio.wait_for(service.posted.wait(), 10)
            running.cancel()
            await asyncio.wait_for(settling.wait(), 10)
            running.cancel()
            with pytest.raises(asyncio.CancelledError):
                await running
        service.answer.set()  # the journal is closed
        await wait_until(lambda: not kling.jobs.submitter.background)
    with Journal(path) as journal:
        rec = journal.record(1)
    assert (rec.state, rec.task_id) == (JobState.SUBMITTING, None)
    late = "line 1: task 4242 was created after the run ended; a re-run looks it up"
    assert late in caplog.messages
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def held_client(root: str, *, max_jobs: int) -> KlingClient:
    """A client of a `HeldPosts` service served at ``root``."""
    return KlingClient(token=TOKEN, base_url=f"{root}/v1/kling", email=ACCOUNT, max_jobs=max_jobs)


async def test_a_job_past_its_deadline_keeps_its_slot_until_it_ends(
    durations: Durations, images: Path, tmp_path: Path
) -> None:
    """The batch does as run(): a task that outlives its deadline still runs on the server,
    so its slot is not given to the next job until it ends."""
    durations.seconds = 3600.0  # until the test finishes them
    jobs = parse_jobs_file(write_jobs(images, [image_line(f"job {i}") for i in range(3)]))
    recorder = Recorder()
    async with (
        # No ETA: the followers poll at the (test-scaled) policy pace, not in an hour.
        KlingSimulator(
            token=TOKEN, accounts={ACCOUNT: 2}, job_duration=durations, eta=False
        ) as sim,
        client(sim) as kling,
    ):
        with Journal(tmp_path / ".journal") as journal:
            runner = BatchRunner(kling, journal, tmp_path, observer=recorder, timeout=0.05)
            running = asyncio.ensure_future(runner.run(jobs))
            incomplete = {(JobEvent.INCOMPLETE, 1), (JobEvent.INCOMPLETE, 2)}
            await wait_until(lambda: incomplete <= set(recorder.events))
            assert kling.slots.in_use(ACCOUNT) == 2  # both jobs run on: the third waits
            assert sim.stats["tasks_created"] == 2
            durations.seconds = 0.05
            runner.timeout = 60.0  # the third job's wait: no race with its 50 ms run
            sim.finish_all()
            summary = await running
    first, second, third = summary.records
    assert first.state is second.state is JobState.SUBMITTED  # a re-run waits for them
    assert "re-run to keep waiting" in (first.error or "")
    assert third.state is JobState.SUCCEEDED
    assert sim.stats["tasks_created"] == 3
    assert max(sim.stats["peak_running"].values()) <= 2


async def test_a_lost_post_never_adopts_a_task_with_other_images(
    sim: KlingSimulator, images: Path, tmp_path: Path
) -> None:
    """Same prompt, other images (a sibling line, or another run): not this POST's task."""
    twin_a = {"kind": "image", "prompt": "twin", "subject_images": ["a.png", "a.png"]}
    twin_b = {"kind": "image", "prompt": "twin", "subject_images": ["b.png", "b.png"]}
    [other] = parse_jobs_file(write_jobs(images, [twin_a]))
    jobs = parse_jobs_file(write_jobs(images, [twin_b]))
    async with client(sim) as kling:
        stray = await kling.submit(other.request)  # a's task, not this journal's
        body = request_body(await kling.upload_images(jobs[0].request))
    with Journal(tmp_path / ".journal") as journal:
        journal.sync(jobs)
        journal.mark_submitting(1, ACCOUNT, body)  # the crash window: nothing reached Kling
        assert journal.record(1).body == body

    summary, recorder = await run_batch(sim, jobs, tmp_path)
    [rec] = summary.records
    assert rec.state is JobState.SUCCEEDED
    assert rec.task_id != stray.task_id
    assert (JobEvent.ADOPTED, 1) not in recorder.events
    assert sim.stats["tasks_created"] == 2
    sent = {t["id"]: t["body"] for t in sim.stats["tasks"]}
    assert sent[rec.task_id]["prompt"] == sent[stray.task_id]["prompt"] == "twin"
    assert sent[rec.task_id]["subjectImage1"] != sent[stray.task_id]["subjectImage1"]


async def test_a_lost_post_is_adopted_by_its_recorded_body(
    sim: KlingSimulator, images: Path, tmp_path: Path
) -> None:
    jobs = parse_jobs_file(write_jobs(images, [image_line("lost")]))
    async with client(sim) as kling:
        uploaded = await kling.upload_images(jobs[0].request)
        created = await kling.submit(uploaded)  # reached Kling; the answer was lost
    with Journal(tmp_path / ".journal") as journal:
        journal.sync(jobs)
        journal.mark_submitting(1, ACCOUNT, request_body(uploaded))

    summary, recorder = await run_batch(sim, jobs, tmp_path)
    assert (JobEvent.ADOPTED, 1) in recorder.events
    assert summary.records[0].task_id == created.task_id
    assert summary.records[0].state is JobState.SUCCEEDED
    assert sim.stats["tasks_created"] == 1


async def test_a_resume_survives_an_inserted_comment_and_reordered_lines(
    sim: KlingSimulator, durations: Durations, images: Path, tmp_path: Path
) -> None:
    durations.seconds = 3600.0  # jobs run until the test finishes them
    lines = [image_line(f"job {i}") for i in range(3)]
    jobs = parse_jobs_file(write_jobs(images, lines))
    out = tmp_path / "out"
    running = asyncio.ensure_future(run_batch(sim, jobs, out))
    await wait_until(lambda: sim.stats["tasks_created"] == 2)
    with Journal(out / ".journal", read_only=True) as journal:
        await wait_until(lambda: sum(r.task_id is not None for r in journal.records()) == 2)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running

    durations.seconds = 0.05
    sim.finish_all()
    moved = parse_jobs_file(write_jobs(images, ["# resumed later", *reversed(lines)]))
    summary, recorder = await run_batch(sim, moved, out)
    assert summary.ok
    assert len([line for e, line in recorder.events if e is JobEvent.RESUMED]) == 2
    assert sim.stats["tasks_created"] == 3
    assert sorted(t["body"]["prompt"] for t in sim.stats["tasks"]) == [f"job {i}" for i in range(3)]


async def test_every_run_writes_results_jsonl(
    sim: KlingSimulator, images: Path, tmp_path: Path
) -> None:
    lines = [image_line("p0"), image_line("nsfw thing"), image_line("this one will fail")]
    lines.append({"kind": "video", "prompt": "a video", "images": ["a.png"]})
    jobs = parse_jobs_file(write_jobs(images, lines))
    out = tmp_path / "out"
    summary, _ = await run_batch(sim, jobs, out)
    results = [json.loads(x) for x in (out / MANIFEST_NAME).read_text().splitlines()]
    assert [r["line"] for r in results] == [1, 2, 3, 4]
    ok, moderated, failed, video = results
    [rec] = [r for r in summary.records if r.line == 1]
    assert ok == {
        "line": 1,
        "endpoint": "images/kolors-elements",
        "prompt": "p0",
        "account": ACCOUNT,
        "task_id": rec.task_id,
        "state": "succeeded",
        "final_state": rec.final_state,
        "files": list(rec.files),
        "error": None,
        "options": {},  # nothing but the prompt and image URLs was sent
        "timings": {"submitted_at": rec.submitting_at, "updated_at": rec.updated_at},
    }
    assert (out / ok["files"][0]).is_file()
    assert ok["task_id"] is not None
    assert ok["timings"]["submitted_at"] is not None
    assert (moderated["state"], moderated["task_id"]) == ("failed", None)
    assert "community guidelines" in moderated["error"]
    assert (failed["state"], failed["final_state"]) == ("failed", "failed")
    assert failed["task_id"] is not None
    assert failed["error"]
    assert (video["endpoint"], video["state"]) == ("videos/image2video-elements", "succeeded")


async def test_results_jsonl_is_updated_as_jobs_finish(
    durations: Durations, images: Path, tmp_path: Path
) -> None:
    durations.seconds = 3600.0  # the jobs run until the test finishes them
    jobs = parse_jobs_file(write_jobs(images, [image_line("nsfw thing"), image_line("slow")]))
    out = tmp_path / "out"
    # No ETA: the slow job's POST answer, if it came before finish_all(), would time its
    # first poll an hour away (the test hung then).
    async with KlingSimulator(
        token=TOKEN, accounts={ACCOUNT: 2}, job_duration=durations, eta=False
    ) as sim:
        running = asyncio.ensure_future(run_batch(sim, jobs, out))
        manifest = out / MANIFEST_NAME
        await wait_until(manifest.is_file)  # the refused job ended; the other runs
        states = [json.loads(x)["state"] for x in manifest.read_text().splitlines()]
        assert states[0] == "failed"
        assert states[1] in ("pending", "submitting", "submitted")
        durations.seconds = 0.05
        sim.finish_all()
        summary, _ = await running
    assert summary.ok is False
    final = [json.loads(x)["state"] for x in manifest.read_text().splitlines()]
    assert final == ["failed", "succeeded"]


@pytest.mark.parametrize("timeout", [-1, float("nan"), "60", True])
async def test_a_bad_timeout_is_refused_before_anything_is_sent(
    sim: KlingSimulator, tmp_path: Path, timeout: Any
) -> None:
    async with client(sim) as kling:
        with Journal(tmp_path / ".journal") as journal:
            with pytest.raises(
                RequestValidationError, match=r"^timeout: must be a number"
            ) as caught:
                BatchRunner(kling, journal, tmp_path, timeout=timeout)
    assert caught.value.field == "timeout"
    assert (sim.stats["posts"], sim.stats["polls"]) == (0, 0)


async def test_a_line_may_name_an_account_when_none_is_configured(
    durations: Durations, tmp_path: Path
) -> None:
    """Like `KlingClient.run`: without configured accounts the token's are the server's to
    know, so a line naming the token's account runs (it was refused as not configured)."""
    async with KlingSimulator(token=TOKEN, accounts={ACCOUNT: 2}, job_duration=durations) as sim:
        request = KolorsElements(prompt="named", subject_images=IMGS, email=ACCOUNT)
        async with KlingClient(token=TOKEN, base_url=sim.base_url) as kling:
            with Journal(tmp_path / ".journal") as journal:
                summary = await BatchRunner(kling, journal, tmp_path).run(
                    [job_from_request(1, request)]
                )
        [task] = sim.stats["tasks"]
    assert task["body"]["email"] == ACCOUNT
    assert [r.state for r in summary.records] == [JobState.SUCCEEDED]


async def test_a_line_naming_an_account_not_configured_is_refused_before_anything_is_sent(
    sim: KlingSimulator, tmp_path: Path
) -> None:
    good = KolorsElements(prompt="fine", subject_images=IMGS)
    bad = KolorsElements(prompt="elsewhere", subject_images=IMGS, email="c@example.com")
    jobs = [job_from_request(1, good), job_from_request(2, bad)]
    async with client(sim) as kling:
        with Journal(tmp_path / ".journal") as journal:
            runner = BatchRunner(kling, journal, tmp_path)
            with pytest.raises(ConfigurationError) as caught:
                await runner.run(jobs)
    assert str(caught.value) == (
        f"line 2: email: 'c@example.com' is not a configured account ({ACCOUNT})"
    )
    assert sim.stats["tasks_created"] == 0
