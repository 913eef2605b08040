"""The batch runner when an account is in error state (596), over real sockets (simulator).

api/errors.md on 596: the account's upstream session is broken; "with several accounts,
stop using that one"; nothing succeeds on it until it is repaired. A 596 to a POST created
nothing. So, with several accounts, the batch sets the account aside (as `KlingClient.run`
does) and goes on with the others: a refused job goes back to pending and to another
account, a task the broken account holds waits for a later run; the batch stops only when
no account is left. With a single account it stops at once. Every job runs exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from io import StringIO
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from helpers import Durations, fast_env, serve, wait_until

from kling_async import AccountError, KlingClient, KolorsElements, cli
from kling_async.batch import (
    JOURNAL_NAME,
    BatchRunner,
    BatchSummary,
    Job,
    JobEvent,
    JobRecord,
    JobState,
    Journal,
    job_from_request,
    parse_jobs_file,
)
from kling_async.testing import KlingSimulator
from kling_async.testing.answers import ACCOUNT_ERROR_REASON

TOKEN = "test-token-batch-596"
A = "a@example.com"
B = "b@example.com"
KOLORS = "images/kolors-elements"
URLS = ["https://example.com/a.png", "https://example.com/b.png"]
REPAIR = "(delete it and add it again with POST /accounts), then re-run"


def refused(email: str, where: str = f"POST {KOLORS}") -> str:
    """The client's text of a 596 answer."""
    return f"596 from {where}: Account {email} in error state: {ACCOUNT_ERROR_REASON}"


def jobs_of(*prompts: str, email: str | None = None, start: int = 1) -> list[Job]:
    """Image jobs with remote images (no upload: the POST is the first request)."""
    return [
        job_from_request(line, KolorsElements(prompt=p, subject_images=URLS, email=email))
        for line, p in enumerate(prompts, start=start)
    ]


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[JobEvent, int]] = []

    def job_event(self, event: JobEvent, record: JobRecord) -> None:
        self.events.append((event, record.line))

    def lines(self, event: JobEvent) -> list[int]:
        return sorted(line for e, line in self.events if e is event)


@pytest.fixture
async def two_sim(durations: Durations) -> AsyncIterator[KlingSimulator]:
    """Accounts a and b, maxJobs 2 each, jobs as long as ``durations`` says (50 ms)."""
    async with KlingSimulator(
        token=TOKEN, accounts={A: 2, B: 2}, job_duration=durations, duration_sigma=0
    ) as server:
        yield server


@pytest.fixture
async def no_eta_sim(durations: Durations) -> AsyncIterator[KlingSimulator]:
    """`two_sim` without ETAs in its answers: a waiter polls all along (no sleep to the ETA)."""
    async with KlingSimulator(
        token=TOKEN, accounts={A: 2, B: 2}, job_duration=durations, duration_sigma=0, eta=False
    ) as server:
        yield server


@pytest.fixture
async def one_sim() -> AsyncIterator[KlingSimulator]:
    """A single account a, maxJobs 2, 50 ms jobs."""
    async with KlingSimulator(
        token=TOKEN, accounts={A: 2}, job_seconds=0.05, duration_sigma=0
    ) as server:
        yield server


def two_accounts(base_url: str) -> KlingClient:
    return KlingClient(token=TOKEN, base_url=base_url, accounts={A: 2, B: 2})


async def run_batch(
    kling: KlingClient, jobs: list[Job], out: Path, **kwargs: Any
) -> tuple[BatchSummary, Recorder]:
    recorder = Recorder()
    async with kling:
        with Journal(out / JOURNAL_NAME) as journal:
            runner = BatchRunner(kling, journal, out, observer=recorder, **kwargs)
            return await runner.run(jobs), recorder


def journal_records(out: Path) -> list[JobRecord]:
    with Journal(out / JOURNAL_NAME) as journal:
        return journal.records()


def assert_each_job_ran_once(sim: KlingSimulator, jobs: list[Job]) -> None:
    prompts = sorted(t["body"]["prompt"] for t in sim.stats["tasks"])
    assert prompts == sorted(job.request.prompt for job in jobs)  # type: ignore[attr-defined]
    assert sim.stats["tasks_created"] == len(jobs)


# --------------------------------------------------------------------------- POST refused


async def test_a_broken_account_is_set_aside_and_the_batch_goes_on(
    two_sim: KlingSimulator, tmp_path: Path
) -> None:
    two_sim.set_account_error(B)
    jobs = jobs_of(*(f"job {i}" for i in range(10)))
    summary, recorder = await run_batch(two_accounts(two_sim.base_url), jobs, tmp_path)

    assert summary.ok, summary.problems
    assert all(r.state is JobState.SUCCEEDED and r.email == A for r in summary.records)
    assert all(r.error is None and len(r.files) == 1 for r in summary.records)
    assert_each_job_ran_once(two_sim, jobs)
    stats = two_sim.stats
    assert {t["account"] for t in stats["tasks"]} == {A}
    # b refused the POSTs it had out when its first answer came (its two slots), once
    # each; each refused job was sent once more, to a.
    assert 1 <= stats["account_errors"] <= 2
    assert stats["posts"] == len(jobs) + stats["account_errors"]
    assert summary.accounts_set_aside == {B: refused(B)}
    assert not recorder.lines(JobEvent.FAILED)
    assert not recorder.lines(JobEvent.INCOMPLETE)
    assert recorder.lines(JobEvent.SUCCEEDED) == list(range(1, 11))


async def test_upload_refused_by_the_broken_account_goes_to_the_other(
    two_sim: KlingSimulator, images: Path, tmp_path: Path
) -> None:
    two_sim.set_account_error(B)
    pair = ["a.png", "b.png"]
    lines = [{"kind": "image", "prompt": f"p{i}", "subject_images": pair} for i in range(6)]
    path = images / "jobs.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    jobs = parse_jobs_file(path)
    summary, _ = await run_batch(two_accounts(two_sim.base_url), jobs, tmp_path)

    assert summary.ok, summary.problems
    assert_each_job_ran_once(two_sim, jobs)
    stats = two_sim.stats
    # The uploads to b were refused (two files for each of b's two slots at most); no
    # generation POST ever went to b. a took the two files once (the client reuses them).
    assert 1 <= stats["account_errors"] <= 4
    assert (stats["posts"], stats["uploads"]) == (6, 2)
    assert {t["account"] for t in stats["tasks"]} == {A}
    assert summary.accounts_set_aside == {B: refused(B, "POST assets/")}


async def test_jobs_that_name_the_broken_account_wait_for_a_later_run(
    two_sim: KlingSimulator, tmp_path: Path
) -> None:
    two_sim.set_account_error(B)
    # The two jobs for b come first: they take b's two slots, and both POSTs go out.
    jobs = [
        *jobs_of("for b 1", "for b 2", email=B),
        *jobs_of(*(f"any {i}" for i in range(4)), start=3),
    ]
    summary, recorder = await run_batch(two_accounts(two_sim.base_url), jobs, tmp_path)

    stats = two_sim.stats
    assert (stats["posts"], stats["account_errors"], stats["tasks_created"]) == (6, 2, 4)
    assert {t["account"] for t in stats["tasks"]} == {A}
    by_line = {r.line: r for r in summary.records}
    for line in (1, 2):
        rec = by_line[line]
        assert (rec.state, rec.task_id) == (JobState.PENDING, None)
        assert rec.error == (
            f"account {B} is in error state ({refused(B)}); nothing was created. The job "
            f"names that account: repair it {REPAIR} to send it"
        )
    assert all(by_line[line].state is JobState.SUCCEEDED for line in range(3, 7))
    assert recorder.lines(JobEvent.INCOMPLETE) == [1, 2]
    assert summary.accounts_set_aside == {B: refused(B)}

    # b repaired: a new run sends those two, to b, and nothing else.
    two_sim.set_account_error(B, None)
    again, recorder = await run_batch(two_accounts(two_sim.base_url), jobs, tmp_path)
    assert again.ok, again.problems
    assert again.accounts_set_aside == {}
    assert_each_job_ran_once(two_sim, jobs)
    assert sorted(t["body"]["prompt"] for t in two_sim.stats["tasks"] if t["account"] == B) == [
        "for b 1",
        "for b 2",
    ]
    assert two_sim.stats["posts"] == 8
    assert recorder.lines(JobEvent.SKIPPED) == [3, 4, 5, 6]


async def test_a_job_naming_an_account_already_set_aside_is_not_sent(
    two_sim: KlingSimulator, tmp_path: Path
) -> None:
    two_sim.set_account_error(B)
    jobs = jobs_of("for b", email=B)
    async with two_accounts(two_sim.base_url) as kling:
        # Set aside by an earlier refusal on this client (a job for any account).
        with pytest.raises(AccountError):
            await kling.run(KolorsElements(prompt="earlier", subject_images=URLS, email=B))
        assert list(kling.slots.disabled()) == [B]
        summary, recorder = await run_batch(kling, jobs, tmp_path)
    [rec] = summary.records
    assert rec.state is JobState.PENDING
    assert rec.error == (
        f"account {B} is in error state ({refused(B)}); not sent. The job names that "
        f"account: repair it {REPAIR} to send it"
    )
    assert (two_sim.stats["posts"], two_sim.stats["tasks_created"]) == (1, 0)
    assert recorder.lines(JobEvent.INCOMPLETE) == [1]


async def test_when_every_account_is_broken_the_batch_stops(
    two_sim: KlingSimulator, tmp_path: Path
) -> None:
    two_sim.set_account_error(A)
    two_sim.set_account_error(B)
    jobs = jobs_of(*(f"job {i}" for i in range(6)))
    with pytest.raises(AccountError) as info:
        await run_batch(two_accounts(two_sim.base_url), jobs, tmp_path)
    text = str(info.value)
    assert text.startswith("596: every account is in error state (")
    assert f"{A}: {refused(A)}" in text
    assert f"{B}: {refused(B)}" in text
    assert text.endswith(
        "): the batch stopped, no job can be sent. The journal keeps every job; repair them "
        "(delete them and add them again with POST /accounts), then re-run the same batch "
        "to resume"
    )
    # Each account refused the POSTs it had out (two slots each), once each; nothing else
    # was sent, nothing created, and every job is pending: none is left "submitting".
    stats = two_sim.stats
    assert stats["posts"] == stats["account_errors"] <= 4
    assert stats["tasks_created"] == 0
    records = journal_records(tmp_path)
    assert [r.state for r in records] == [JobState.PENDING] * 6
    assert all(r.task_id is None for r in records)

    two_sim.set_account_error(A, None)
    two_sim.set_account_error(B, None)
    summary, _ = await run_batch(two_accounts(two_sim.base_url), jobs, tmp_path)
    assert summary.ok, summary.problems
    assert_each_job_ran_once(two_sim, jobs)


async def test_a_single_account_in_error_state_stops_the_batch(
    one_sim: KlingSimulator, tmp_path: Path
) -> None:
    one_sim.set_account_error(A)
    jobs = jobs_of(*(f"job {i}" for i in range(4)))
    kling = KlingClient(token=TOKEN, base_url=one_sim.base_url, email=A, max_jobs=2)
    with pytest.raises(AccountError) as info:
        await run_batch(kling, jobs, tmp_path)
    assert str(info.value) == (
        f"596: account {A} is in error state ({refused(A)}): the batch stopped, no job can be "
        f"sent. The journal keeps every job; repair it {REPAIR} the same batch to resume"
    )
    stats = one_sim.stats
    assert stats["posts"] == stats["account_errors"] <= 2  # the POSTs out at once
    assert stats["tasks_created"] == 0
    records = journal_records(tmp_path)
    assert [r.state for r in records] == [JobState.PENDING] * 4

    one_sim.set_account_error(A, None)
    kling = KlingClient(token=TOKEN, base_url=one_sim.base_url, email=A, max_jobs=2)
    summary, _ = await run_batch(kling, jobs, tmp_path)
    assert summary.ok, summary.problems
    assert summary.accounts_set_aside == {}
    assert_each_job_ran_once(one_sim, jobs)


# --------------------------------------------------------------------------- cancelled


class Gate:
    """Generation POSTs for one account wait here until ``opened`` is set."""

    def __init__(self) -> None:
        self.held = 0
        self.opened = asyncio.Event()


@contextlib.asynccontextmanager
async def holding_proxy(target: str, account: str) -> AsyncIterator[tuple[str, Gate]]:
    """A proxy on a real socket in front of the simulator at ``target`` (its root URL)
    that holds the generation POSTs for ``account`` at a `Gate`; yields its root URL."""
    gate = Gate()

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        generation = request.method == "POST" and "/assets" not in request.path and body
        if generation and json.loads(body).get("email") == account:
            gate.held += 1
            await gate.opened.wait()
        headers = {k: v for k, v in request.headers.items() if k in ("Authorization",)}
        if request.content_type:
            headers["Content-Type"] = request.content_type
        async with session.request(
            request.method, f"{target}{request.path_qs}", data=body, headers=headers
        ) as answer:
            data = await answer.read()
            kind = answer.headers.get("Content-Type", "application/json")
            return web.Response(status=answer.status, body=data, headers={"Content-Type": kind})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    async with aiohttp.ClientSession() as session, serve(app) as root:
        yield root, gate


async def test_refusals_that_answer_a_cancelled_run_are_journaled_pending(
    two_sim: KlingSimulator, durations: Durations, tmp_path: Path
) -> None:
    """A 596 that comes back after the run was cancelled (Ctrl-C, or another job stopped
    the batch) leaves its job pending, not "submitting": a re-run then sends it, to a
    healthy account, without having to read the broken account's task list."""
    durations.seconds = 3600.0  # a's jobs run until the test finishes them
    two_sim.set_account_error(B)
    jobs = jobs_of(*(f"job {i}" for i in range(4)))
    base_path = two_sim.base_url.removeprefix(two_sim.root_url)
    async with holding_proxy(two_sim.root_url, B) as (root, gate):
        async with two_accounts(f"{root}{base_path}") as kling:
            with Journal(tmp_path / JOURNAL_NAME) as journal:
                runner = BatchRunner(kling, journal, tmp_path)
                running = asyncio.ensure_future(runner.run(jobs))
                # Two jobs on a (submitted), two with their POSTs to b held.
                await wait_until(lambda: gate.held == 2)
                await wait_until(
                    lambda: [r.state for r in journal.records()].count(JobState.SUBMITTED) == 2
                )
                running.cancel()
                # Both jobs of b let their slots go: the cancellation reached them. Only
                # now does b answer them.
                await wait_until(lambda: kling.slots.in_use(B) == 0)
                gate.opened.set()
                with pytest.raises(asyncio.CancelledError):
                    await running
    records = journal_records(tmp_path)
    on_b = [r for r in records if r.email == B]
    on_a = [r for r in records if r.email == A]
    assert len(on_b) == len(on_a) == 2
    assert all(r.state is JobState.PENDING and r.error == refused(B) for r in on_b)
    assert all(r.state is JobState.SUBMITTED and r.task_id for r in on_a)
    stats = two_sim.stats
    assert (stats["posts"], stats["account_errors"], stats["tasks_created"]) == (4, 2, 2)

    # The re-run: b is still broken. a's tasks are resumed; b's jobs are sent to b again
    # (a new client knows nothing of b), refused, and go to a. No task list is read.
    durations.seconds = 0.05
    two_sim.finish_all()
    summary, recorder = await run_batch(two_accounts(two_sim.base_url), jobs, tmp_path)
    assert summary.ok, summary.problems
    assert_each_job_ran_once(two_sim, jobs)
    assert {t["account"] for t in two_sim.stats["tasks"]} == {A}
    assert recorder.lines(JobEvent.RESUMED) == sorted(r.line for r in on_a)
    assert two_sim.stats["lists"] == 0


# --------------------------------------------------------------------------- resume


async def test_lost_posts_of_a_broken_account_are_left_for_a_later_run(
    two_sim: KlingSimulator, tmp_path: Path
) -> None:
    jobs = jobs_of("lost on a", "lost on b 1", "lost on b 2", "new 1", "new 2")
    with Journal(tmp_path / JOURNAL_NAME) as journal:
        journal.sync(jobs)
        # Crash window: three POSTs out; only a's reached the server.
        journal.mark_submitting(1, A)
        journal.mark_submitting(2, B)
        journal.mark_submitting(3, B)
    async with two_accounts(two_sim.base_url) as kling:
        created = await kling.submit(jobs[0].request, email=A)
    two_sim.set_account_error(B)

    summary, recorder = await run_batch(two_accounts(two_sim.base_url), jobs, tmp_path)
    by_line = {r.line: r for r in summary.records}
    assert (by_line[1].state, by_line[1].task_id) == (JobState.SUCCEEDED, created.task_id)
    assert all(by_line[line].state is JobState.SUCCEEDED for line in (4, 5))
    reason = refused(B, "GET tasks/")
    for line in (2, 3):
        rec = by_line[line]
        assert (rec.state, rec.email, rec.task_id) == (JobState.SUBMITTING, B, None)
        assert rec.error == (
            f"account {B} is in error state ({reason}); its task list cannot be read to "
            "look up the interrupted POST, which is left for a later run (never sent "
            f"blindly): repair it {REPAIR}"
        )
    assert summary.accounts_set_aside == {B: reason}
    assert recorder.lines(JobEvent.ADOPTED) == [1]
    assert recorder.lines(JobEvent.INCOMPLETE) == [2, 3]
    stats = two_sim.stats
    # One refused look into b's list (the second lost row did not ask again); the new
    # jobs went to a.
    assert stats["account_errors"] == 1
    assert (stats["posts"], stats["tasks_created"]) == (3, 3)
    assert {t["account"] for t in stats["tasks"]} == {A}

    # b repaired: its list shows no task of those POSTs, so they are sent now.
    two_sim.set_account_error(B, None)
    again, recorder = await run_batch(two_accounts(two_sim.base_url), jobs, tmp_path)
    assert again.ok, again.problems
    assert_each_job_ran_once(two_sim, jobs)
    assert recorder.lines(JobEvent.SKIPPED) == [1, 4, 5]


async def test_lost_posts_on_every_broken_account_stop_the_run(
    two_sim: KlingSimulator, tmp_path: Path
) -> None:
    jobs = jobs_of("lost on a", "lost on b", "new")
    with Journal(tmp_path / JOURNAL_NAME) as journal:
        journal.sync(jobs)
        journal.mark_submitting(1, A)
        journal.mark_submitting(2, B)
    two_sim.set_account_error(A)
    two_sim.set_account_error(B)
    with pytest.raises(AccountError, match=r"^596: every account is in error state \("):
        await run_batch(two_accounts(two_sim.base_url), jobs, tmp_path)
    states = [r.state for r in journal_records(tmp_path)]
    assert states == [JobState.SUBMITTING, JobState.SUBMITTING, JobState.PENDING]
    assert (two_sim.stats["posts"], two_sim.stats["account_errors"]) == (0, 2)


# --------------------------------------------------------------------------- poll refused


async def test_a_refused_poll_keeps_the_task_for_a_later_run(
    no_eta_sim: KlingSimulator, durations: Durations, tmp_path: Path
) -> None:
    durations.seconds = 3600.0  # jobs run until the test finishes them
    jobs = jobs_of(*(f"job {i}" for i in range(6)))
    out = tmp_path
    running = asyncio.ensure_future(run_batch(two_accounts(no_eta_sim.base_url), jobs, out))
    await wait_until(lambda: no_eta_sim.stats["tasks_created"] == 4)
    with Journal(out / JOURNAL_NAME, read_only=True) as journal:
        await wait_until(
            lambda: [r.state for r in journal.records()].count(JobState.SUBMITTED) == 4
        )
        # b breaks while its two tasks run: their next polls are refused.
        no_eta_sim.set_account_error(B)
        await wait_until(lambda: sum(bool(r.error) for r in journal.records()) == 2)
    durations.seconds = 0.05  # the two queued jobs, now for a alone, are short
    no_eta_sim.finish_all()
    summary, recorder = await running

    on_b = [r for r in summary.records if r.email == B]
    assert len(on_b) == 2
    for rec in on_b:
        assert rec.state is JobState.SUBMITTED
        assert rec.error is not None
        assert rec.error.startswith(f"account {B} is in error state (596 from GET tasks/")
        assert rec.error.endswith(f"); its task goes on: repair it {REPAIR} to wait for it")
    assert [r.state for r in summary.records if r.email == A] == [JobState.SUCCEEDED] * 4
    [(email, why)] = summary.accounts_set_aside.items()
    assert email == B
    assert why.startswith("596 from GET tasks/")
    assert sorted(recorder.lines(JobEvent.INCOMPLETE)) == sorted(r.line for r in on_b)
    stats = no_eta_sim.stats
    assert (stats["posts"], stats["tasks_created"], stats["account_errors"]) == (6, 6, 2)

    # b repaired: a new run waits for those two tasks and sends nothing.
    no_eta_sim.set_account_error(B, None)
    again, recorder = await run_batch(two_accounts(no_eta_sim.base_url), jobs, out)
    assert again.ok, again.problems
    assert recorder.lines(JobEvent.RESUMED) == sorted(r.line for r in on_b)
    assert_each_job_ran_once(no_eta_sim, jobs)
    assert no_eta_sim.stats["posts"] == 6


# --------------------------------------------------------------------------- command line


def test_summary_names_the_accounts_set_aside() -> None:
    stream = StringIO()
    summary = BatchSummary(records=(), accounts_set_aside={B: refused(B)})
    cli.Display(fancy=False, stream=stream).summary(summary, None)
    assert f"account {B} was set aside, it is in error state: {refused(B)}\n" in stream.getvalue()


async def run_cli(sim: KlingSimulator, jobs: Path, out: Path) -> tuple[int, str, str]:
    """``kling-async batch`` in a subprocess, with a and b; the simulator serves meanwhile.

    Its waits are shrunk (`fast_env`): without a plausible ETA each poll waits the floor.
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kling_async.cli",
        "--token",
        TOKEN,
        "--base-url",
        sim.base_url,
        "batch",
        str(jobs),
        "--out",
        str(out),
        "--account",
        f"{A}:2",
        "--account",
        f"{B}:2",
        env=fast_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, stdout.decode(), stderr.decode()


@pytest.fixture
def jobs_file(tmp_path: Path) -> Path:
    path = tmp_path / "jobs.jsonl"
    lines = [{"kind": "image", "prompt": f"job {i}", "subject_images": URLS} for i in range(4)]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return path


async def test_command_goes_on_without_the_broken_account(
    two_sim: KlingSimulator, jobs_file: Path, tmp_path: Path
) -> None:
    two_sim.set_account_error(B)
    code, stdout, stderr = await run_cli(two_sim, jobs_file, tmp_path / "out")
    assert code == 0, stderr
    assert "4 job(s): 4 succeeded" in stdout
    assert f"account {B} was set aside, it is in error state: {refused(B)}" in stdout
    assert f"account {B} is in error state" in stderr  # the client's warning
    assert two_sim.stats["tasks_created"] == 4


async def test_command_stops_when_every_account_is_broken(
    two_sim: KlingSimulator, jobs_file: Path, tmp_path: Path
) -> None:
    two_sim.set_account_error(A)
    two_sim.set_account_error(B)
    code, _, stderr = await run_cli(two_sim, jobs_file, tmp_path / "out")
    assert code == 1
    assert "kling-async batch: 596: every account is in error state (" in stderr
    assert "the batch stopped, no job can be sent" in stderr
    assert two_sim.stats["tasks_created"] == 0
