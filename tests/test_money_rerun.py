"""A batch re-run into another --out folder never holds the first run's task ids (issue 16).

The same jobs file runs to its end into folder A; then a run into folder B is killed
(SIGKILL) while the simulator holds its POSTs' answers (the tasks exist, the answers never
come); B resumed holds only tasks its own submissions created, each exactly once, though
A's tasks have the same prompts and images. The command runs as a subprocess; the
simulator serves on the test's own loop.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from pathlib import Path

from helpers import EMAIL, TOKEN, Durations, fast_env, wait_until

from kling_async.batch import JOURNAL_NAME, JobRecord, JobState, Journal
from kling_async.testing import FaultPlan, FaultRates, KlingSimulator

IMGS = [f"https://example.com/rerun/{n}.png" for n in range(3)]
#: Lines 1 and 3 alike (the same prompt and images), line 4 their sibling with other
#: images. The first two differ in prompt, so their POSTs go out together (the POSTs of
#: one prompt go one at a time).
LINES = [
    {"kind": "image", "prompt": "a cat", "subject_images": IMGS[:2]},
    {"kind": "video", "prompt": "a cat walks", "images": IMGS[:1]},
    {"kind": "image", "prompt": "a cat", "subject_images": IMGS[:2]},
    {"kind": "image", "prompt": "a cat", "subject_images": IMGS[1:]},
]
MAX_JOBS = 2


def records(out: Path) -> list[JobRecord]:
    """The journal's rows as they are now (none before the run created it)."""
    path = out / JOURNAL_NAME
    if not path.exists():
        return []
    try:
        with Journal(path, read_only=True) as journal:
            return journal.records()
    except sqlite3.OperationalError:  # created, not yet initialised
        return []


async def start_batch(sim: KlingSimulator, jobs: Path, out: Path) -> asyncio.subprocess.Process:
    command = ["-m", "kling_async.cli", "--base-url", sim.base_url, "batch", str(jobs)]
    return await asyncio.create_subprocess_exec(
        sys.executable,
        *command,
        "--out",
        str(out),
        "--account",
        f"{EMAIL}:{MAX_JOBS}",
        env=fast_env(USEAPI_TOKEN=TOKEN),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def finish(proc: asyncio.subprocess.Process) -> tuple[int, str]:
    """The process's exit status and its output (stdout then stderr)."""
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, stdout.decode() + stderr.decode()


async def test_a_rerun_into_another_folder_never_holds_the_first_runs_tasks(
    tmp_path: Path,
) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(json.dumps(line) + "\n" for line in LINES))
    first, second = tmp_path / "A", tmp_path / "B"
    durations = Durations(0.05)
    async with KlingSimulator(
        token=TOKEN, accounts={EMAIL: 5}, job_duration=durations, duration_sigma=0
    ) as sim:
        code, output = await finish(await start_batch(sim, jobs, first))
        assert code == 0, output
        ours_a = {r.task_id for r in records(first)}
        assert len(ours_a) == len(LINES)

        # B: every POST's task is created, its answer held; killed with two POSTs out.
        durations.seconds = 3600.0
        hold = FaultPlan(rules={"submit": FaultRates(delay=1.0)}, delay_seconds=3600.0)
        sim.set_fault_plan(hold)
        killed = await start_batch(sim, jobs, second)
        try:
            await wait_until(lambda: sim.stats["tasks_created"] == len(LINES) + MAX_JOBS, 60)
            await wait_until(
                lambda: sum(r.state is JobState.SUBMITTING for r in records(second)) == MAX_JOBS
            )
        finally:
            killed.kill()
            await killed.communicate()
        assert all(r.task_id is None for r in records(second))

        # Resumed: the held tasks still run (found by their tags), then every job ends.
        sim.set_fault_plan(None)
        durations.seconds = 0.05
        resumed = await start_batch(sim, jobs, second)
        await wait_until(
            lambda: all(r.state is not JobState.SUBMITTING for r in records(second)), 60
        )
        sim.finish_all()
        code, output = await finish(resumed)
        assert code == 0, output
        rows = records(second)
        created = {task.id: task.body for task in sim.tasks.values()}
    ours_b = [r.task_id for r in rows]
    assert [r.state for r in rows] == [JobState.SUCCEEDED] * len(LINES)
    assert not ours_a & set(ours_b)  # never one of A's
    assert len(set(ours_b)) == len(LINES)
    assert len(created) == 2 * len(LINES)  # tasks created == jobs, per run
    for rec in rows:  # each row's task is the one its own POST (its tag) created
        assert rec.task_id is not None
        assert created[rec.task_id]["replyRef"] == rec.tag
    assert output.count("of an interrupted submission") == MAX_JOBS
