"""One line's job as `JobRunner.run` reports its steps, written to the journal.

`LineSteps` is the batch's `JobEvents`: ``sending`` journals ``submitting`` with the exact
body (its tag), ``submitted`` the task id, ``failed`` what the error makes of the row (the
outcome table, `kling_async.batch.outcomes`), ``final`` the response. A POST's outcome comes
from the POST's own task, so it is journaled also after the run was cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, MutableMapping
from typing import Any

from ..errors import AccountError, KlingError, SubmissionUnknownError, TaskFailedError
from ..jobs import JobEvents, JobPhase
from ..models import TaskResponse
from ..requests import GenerationRequest
from .accounts import AccountGuard
from .events import JobEvent
from .journal import JobRecord, JobState, Journal
from .outcomes import FATAL, outcome_of

__all__ = ["LineSteps", "Stopping"]


class Stopping(Exception):
    """The run is stopping (an error stops every job): a job that got a slot sends nothing
    and stays pending."""


class LineSteps(JobEvents):
    """Journals the steps of line ``line``'s job; ``emit(event, record)`` reports a change.

    ``posts`` collects the POSTs under way (a cancelled run waits for their answers),
    ``responses`` the final responses by line. ``phase`` and ``email``: where the last
    step failed, for `AccountGuard.ended`.
    """

    def __init__(
        self,
        line: int,
        journal: Journal,
        *,
        emit: Callable[[JobEvent, JobRecord], None],
        accounts: AccountGuard,
        posts: set[asyncio.Task[TaskResponse | None]],
        responses: MutableMapping[int, TaskResponse],
    ) -> None:
        self.line = line
        self.journal = journal
        self.emit = emit
        self.accounts = accounts
        self.posts = posts
        self.responses = responses
        self.phase: JobPhase | None = None
        self.email: str | None = None

    def started(self, email: str | None) -> None:
        """Stop before the upload when the run is stopping."""
        self.email = email
        if self.accounts.halted is not None:
            raise Stopping

    def posted(self, request: GenerationRequest, email: str | None) -> None:
        """Stop before the POST when the run is stopping."""
        if self.accounts.halted is not None:
            raise Stopping

    def posting(self, post: asyncio.Task[TaskResponse | None]) -> None:
        """Keep the POST until it ends: a cancelled run waits for its answer."""
        self.posts.add(post)
        post.add_done_callback(self.posts.discard)

    def sending(self, body: dict[str, Any], email: str | None) -> None:
        """``submitting``, with the exact body: a resume finds the POST by its tag."""
        self.journal.mark_submitting(self.line, email, body)

    def submitted(self, response: TaskResponse, email: str | None) -> None:
        """``submitted`` with the task id, before anyone waits for it."""
        if response.task_id is not None:
            rec = self.journal.mark_submitted(self.line, response.task_id, email)
            self.emit(JobEvent.SUBMITTED, rec)

    def final(self, response: TaskResponse) -> None:
        """Kept for the summary (and the download, when it succeeded)."""
        if response.task_id is not None:
            self.responses[self.line] = response

    def failed(self, phase: JobPhase, error: KlingError, email: str | None) -> None:
        """Write what ``error`` makes of the row (`OUTCOMES`). An error that stops every
        job stops the run now, before this job's slot is free. A 596 to a poll or to
        taking a slot is noted by `AccountGuard.ended`, which knows the account's fate."""
        self.phase, self.email = phase, email
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
