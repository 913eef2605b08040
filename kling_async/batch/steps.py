"""One line's job: one `JobRunner.run` call, its steps written to the journal.

`LineSteps` is the batch's `JobEvents`: ``sending`` journals ``submitting`` with the exact
body (its tag), ``submitted`` the task id, ``failed`` what the error makes of the row (the
outcome table, `kling_async.batch.outcomes`), ``final`` the response. A POST's outcome comes
from the POST's own task, so it is journaled also after the run was cancelled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from ..errors import AccountError, KlingError, SubmissionUnknownError, TaskFailedError
from ..jobs import JobEvents, JobPhase, Timeout
from ..models import TaskResponse
from ..requests import GenerationRequest
from .accounts import AccountGuard
from .events import JobEvent
from .journal import JobRecord, JobState, Journal
from .outcomes import FATAL, outcome_of

if TYPE_CHECKING:
    from ..client import KlingClient

__all__ = ["LineSteps", "RunState"]

log = logging.getLogger("kling_async")


class _Stopping(Exception):
    """The run is stopping (an error stops every job): a job that got a slot sends nothing
    and stays pending."""


@attrs.define(eq=False)
class RunState:
    """What the jobs of one run share: the journal, ``emit(event, record)`` (reports a
    change of a row), the accounts, the POSTs under way (a cancelled run waits for their
    answers), the final responses by line; ``over`` once the run has ended (its journal
    may be closed: an answer that comes later is left to a re-run, which looks it up)."""

    journal: Journal
    emit: Callable[[JobEvent, JobRecord], None]
    accounts: AccountGuard
    posts: set[asyncio.Task[TaskResponse | None]] = attrs.Factory(set)
    responses: dict[int, TaskResponse] = attrs.Factory(dict)
    over: bool = False


class LineSteps(JobEvents):
    """Runs line ``line``'s job and journals its steps. ``phase`` and ``email``: where the
    last step failed, for `AccountGuard.ended`."""

    def __init__(self, line: int, run: RunState) -> None:
        self.line = line
        self.run_state = run
        self.journal = run.journal
        self.emit = run.emit
        self.accounts = run.accounts
        self.phase: JobPhase | None = None
        self.email: str | None = None

    async def run(
        self,
        client: KlingClient,
        request: GenerationRequest,
        wanted: str | None,
        timeout: Callable[[], Timeout],
    ) -> TaskResponse | None:
        """The job's lifecycle, one `JobRunner.run` (slot, upload, POST, wait, follow,
        another account after a 596): the final response of a task that succeeded, or None
        after any other end (journaled); raises what stops the run."""
        try:
            return await client.jobs.run(
                request,
                email=wanted,
                timeout=timeout,
                events=self,
                follow_cancelled=False,  # a cancelled run is over: it settles its POSTs
            )
        except _Stopping:
            return None  # the run is stopping: the job stays pending
        except AccountError as exc:
            # Straight from run()'s slot block (a release never yields): a stop is noted
            # before a queued job can take that slot.
            self.accounts.ended(self.phase, self.line, self.email, wanted, exc)
        except FATAL as exc:
            self.accounts.halt(exc)  # the run stops (noted already when a step told it)
            raise
        except KlingError:
            pass  # journaled by its step
        return None

    async def resume(
        self, client: KlingClient, task_id: int, email: str | None, timeout: Timeout
    ) -> TaskResponse | None:
        """Wait again (holding a slot) on a task id an earlier run journaled, as `run` does
        a new job's wait."""
        try:
            final = await client.wait(task_id, email=email, timeout=timeout, hold_slot=True)
        except KlingError as exc:
            if isinstance(exc, TaskFailedError) and exc.task is not None:
                self.final(exc.task)
            self.failed(JobPhase.WAIT, exc, email)
            if isinstance(exc, AccountError):
                self.accounts.poll_refused(self.line, email, exc)
            elif isinstance(exc, FATAL):
                raise
            return None
        self.final(final)
        return final

    def started(self, email: str | None) -> None:
        """Stop before the upload when the run is stopping."""
        self.email = email
        if self.accounts.halted is not None:
            raise _Stopping

    def posted(self, request: GenerationRequest, email: str | None) -> None:
        """Stop before the POST when the run is stopping."""
        if self.accounts.halted is not None:
            raise _Stopping

    def posting(self, post: asyncio.Task[TaskResponse | None]) -> None:
        """Keep the POST until it ends: a cancelled run waits for its answer."""
        posts = self.run_state.posts
        posts.add(post)
        post.add_done_callback(posts.discard)

    def sending(self, body: dict[str, Any], email: str | None) -> None:
        """``submitting``, with the exact body: a resume finds the POST by its tag. A run
        that has ended sends nothing."""
        if self.run_state.over:
            raise _Stopping
        self.journal.mark_submitting(self.line, email, body)

    def submitted(self, response: TaskResponse, email: str | None) -> None:
        """``submitted`` with the task id, before anyone waits for it."""
        if self._late(f"task {response.task_id} was created"):
            return
        if response.task_id is not None:
            rec = self.journal.mark_submitted(self.line, response.task_id, email)
            self.emit(JobEvent.SUBMITTED, rec)

    def final(self, response: TaskResponse) -> None:
        """Kept for the summary (and the download, when it succeeded)."""
        if response.task_id is not None:
            self.run_state.responses[self.line] = response

    def failed(self, phase: JobPhase, error: KlingError, email: str | None) -> None:
        """Write what ``error`` makes of the row (`OUTCOMES`). An error that stops every
        job stops the run now, before this job's slot is free. A 596 to a poll or to
        taking a slot is noted by `AccountGuard.ended`, which knows the account's fate."""
        self.phase, self.email = phase, email
        if self._late(f"its {phase.value} failed ({error})"):
            return
        if isinstance(error, FATAL):
            self.accounts.halt(error)
        if phase is JobPhase.SLOT or (phase is JobPhase.WAIT and isinstance(error, AccountError)):
            return
        state = note = None
        if isinstance(error, SubmissionUnknownError):
            note = unknown_text(error)
        elif isinstance(error, TaskFailedError):
            done = error.task
            state = done.status_name if done is not None else None
            note = done.failure_reason if done is not None else str(error)
        self.write(phase, error, state, note=note)

    def _late(self, what: str) -> bool:
        """True (and a warning) when the run has ended: nothing is journaled any more."""
        if self.run_state.over:
            log.warning("line %d: %s after the run ended; a re-run looks it up", self.line, what)
        return self.run_state.over

    def write(
        self, phase: JobPhase, exc: KlingError, final_state: str | None = None, *, note: str | None
    ) -> None:
        """Write what ``exc`` makes of the row and report it; ``note`` (None: the table's)
        replaces the row's note."""
        outcome = outcome_of(phase, exc)
        if note is None:
            note = outcome.note.format(exc=exc)
        if outcome.state is None:
            rec = self.journal.note_error(self.line, note, final_state)
        elif outcome.state is JobState.PENDING:
            rec = self.journal.mark_pending(self.line, note)
        elif outcome.state is JobState.FAILED:
            rec = self.journal.mark_failed(self.line, note, final_state)
        else:
            rec = self.journal.mark_unknown(self.line, note)
        self.emit(outcome.event, rec)


def unknown_text(exc: SubmissionUnknownError) -> str:
    """The note of an unknown outcome, with the candidate tasks."""
    text = str(exc)
    if exc.candidates:
        text += f" (candidate tasks: {', '.join(map(str, exc.candidates))})"
    return text
