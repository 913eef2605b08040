"""The soak's batches: jobs through `BatchRunner`, each run killed while the service is still
processing one of its POSTs, then resumed by a new client on the same journal.

A kill leaves what SIGKILL leaves: the journal is no longer written (its rows stay
``submitting``), the run's connections drop unanswered while the service goes on and
creates the task (the simulator's ``slow_create`` fault holds such a POST), and nothing of
the dead client survives. The resume (a new client, `BatchRunner` on the same journal)
must settle each such row: its task found by its tag exactly once, or the row reported
``unknown`` naming it; never sent twice, never another job's task.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import attrs

from kling_async import GenerationRequest, KlingClient, TaskResponse
from kling_async.batch import (
    BatchRunner,
    BatchSummary,
    Job,
    JobEvent,
    JobRecord,
    JobState,
    Journal,
    job_from_request,
)

__all__ = ["KILL_AFTER", "MAX_KILLS", "BatchOutcome", "Kill", "compare_record", "run_killed_batch"]

#: A POST out this long is being processed (the soak's answers take milliseconds, a 429's
#: Retry-After is 0.1 s): kill.
KILL_AFTER: Final = 0.15
#: Runs of one batch killed at most (then one runs to its end).
MAX_KILLS: Final = 3
_CANDIDATES: Final = re.compile(r"candidate tasks: ([\d, ]+)")


@attrs.frozen
class BatchOutcome:
    """A batch job's end: its journal row after the resume, and the final response of a
    row the resume saw succeed (None for rows that ended before the kill)."""

    record: JobRecord
    response: TaskResponse | None
    folder: Path

    @property
    def candidates(self) -> tuple[int, ...]:
        """The tasks an ``unknown`` row names (the client lists them in its note)."""
        found = _CANDIDATES.search(self.record.error or "")
        return tuple(int(n) for n in found.group(1).split(",")) if found else ()


@attrs.define
class Kill:
    """What one batch's kills and resumes came to (also the runs' `BatchObserver`)."""

    kills: int = 0  #: runs killed with a POST out `KILL_AFTER` seconds
    adopted: int = 0  #: lost POSTs a resume found (their tag, or the one candidate)

    def job_event(self, event: JobEvent, record: JobRecord) -> None:
        """Count the resumes' adoptions."""
        self.adopted += event is JobEvent.ADOPTED


async def _posts_out(journal: Journal, life: asyncio.Future[Any], deadline: float) -> bool:
    """Wait until a row of ``journal`` has been ``submitting`` for `KILL_AFTER` seconds
    (True), or the run ends or ``deadline`` (loop time) passes (False)."""
    loop = asyncio.get_running_loop()
    while not life.done() and loop.time() < deadline:
        now = time.time()
        for rec in journal.records():
            if rec.state is JobState.SUBMITTING and now - (rec.submitting_at or now) >= KILL_AFTER:
                return True
        await asyncio.wait({life}, timeout=0.01)
    return False


async def _kill(life: asyncio.Future[Any], settling: asyncio.Event, client: KlingClient) -> None:
    """Stop the run as SIGKILL would: at once, its POSTs' connections dropped unanswered."""
    life.cancel()
    waiting = asyncio.ensure_future(settling.wait())
    await asyncio.wait({life, waiting}, return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    life.cancel()  # a cancelled run waits for its POSTs' answers: a dead one does not
    await asyncio.wait({life})
    if not life.cancelled():
        life.result()  # it ended by itself first: its error is the soak's
    for posting in list(client.jobs.submitter.background):
        posting.cancel()  # the connection closes; the service goes on with the request


async def _life(
    jobs: Sequence[Job],
    folder: Path,
    client: KlingClient,
    kill: Kill,
    *,
    deadline: float,
    killed: bool,
) -> BatchSummary | None:
    """One run of the batch: its summary, or None when it was ``killed`` once a POST had
    been out `KILL_AFTER` seconds. Raises `TimeoutError` past ``deadline`` seconds."""
    loop = asyncio.get_running_loop()
    with Journal(folder / "journal.sqlite3") as journal:
        settling = asyncio.Event()
        runner = BatchRunner(
            client, journal, folder, observer=kill, on_settle=lambda _n: settling.set()
        )
        life = asyncio.ensure_future(runner.run(jobs))
        if not killed:
            return await asyncio.wait_for(life, deadline)
        if await _posts_out(journal, life, loop.time() + deadline):
            kill.kills += 1
            await _kill(life, settling, client)
            return None
        if not life.done():  # the deadline passed
            await _kill(life, settling, client)
            raise asyncio.TimeoutError(f"batch in {folder}: not done in {deadline} s")
        return life.result()


async def run_killed_batch(
    requests: Sequence[GenerationRequest],
    folder: Path,
    make_client: Callable[[], KlingClient],
    *,
    deadline: float,
) -> tuple[list[BatchOutcome], Kill]:
    """Run ``requests`` as one batch into ``folder``: each run killed once a POST has been
    out `KILL_AFTER` seconds and resumed by a new client, `MAX_KILLS` times at most, the
    last run to its end. The outcomes (in ``requests`` order) and what the kills came to.
    Raises `TimeoutError` when a run is not done in ``deadline`` seconds."""
    jobs = [job_from_request(n, r) for n, r in enumerate(requests, 1)]
    kill = Kill()
    summary = None
    for n in range(MAX_KILLS + 1):
        async with make_client() as client:
            summary = await _life(
                jobs, folder, client, kill, deadline=deadline, killed=n < MAX_KILLS
            )
        if summary is not None:
            break
    assert summary is not None  # the last run is never killed
    outcomes = [BatchOutcome(r, summary.responses.get(r.line), folder) for r in summary.records]
    return outcomes, kill


def compare_record(
    prompt: str, tasks: list[Any], outcome: BatchOutcome, *, moderation: str, failure: str
) -> str | None:
    """Why a batch job's row differs from the simulator's record, or None when it matches:
    the row holds the one task its tag created (failed for a ``failure`` prompt, its files
    downloaded otherwise), none for a ``moderation`` prompt, or is ``unknown`` naming it."""
    rec = outcome.record
    row = f"row {rec.state.value} task {rec.task_id} ({rec.error})"[:300]
    if moderation in prompt:
        if tasks:
            return f"moderated prompt created tasks {[t.id for t in tasks]}"
        return None if rec.state is JobState.FAILED and rec.task_id is None else row
    if (
        rec.state is JobState.UNKNOWN
        and len(tasks) <= 1
        and all(t.id in outcome.candidates for t in tasks)
    ):
        return None  # reported as unknown (its own task, if any, a candidate): not adopted
    if len(tasks) != 1:
        return f"{len(tasks)} simulator tasks {[t.id for t in tasks]}; {row}"
    task = tasks[0]
    if rec.task_id != task.id:
        return f"simulator's task {task.id}; {row}"
    if failure in prompt:
        return None if rec.state is JobState.FAILED else row
    if rec.state is not JobState.SUCCEEDED:
        return row
    files = [Path(f) for f in rec.files]
    if not files or any(
        not (outcome.folder / f).is_file() or not f.name.startswith(f"{task.id}-") for f in files
    ):
        return f"files {rec.files} are not task {task.id}'s"
    truth = [w["resource"]["resource"] for w in task.works]
    if outcome.response is not None and outcome.response.urls != truth:
        return f"works {outcome.response.urls} != simulator's {truth}"[:300]
    return None
