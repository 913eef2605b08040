"""Settling lost POSTs: rows left ``submitting`` (or ``unknown``) by an earlier run.

Money rule: such a job is never blindly resubmitted. It is settled as a submission is
(`kling_async.reconcile`): the row's tag (the ``replyRef`` of its recorded wire body) in
``GET /scheduler``, else the one matcher on the account's task list (every echoed input
equal to the recorded body, created after the POST, not claimed by another row). Exactly
one task is adopted; when the scheduler and the list show none once the confirm delay has
passed since the POST, the job goes back to ``pending``; otherwise (several candidates,
a list that cannot be read that far) it is marked ``unknown``, listing the candidates.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Final

from ..errors import AccountError, KlingError, SubmissionUnknownError
from .accounts import AccountGuard, repair
from .events import BatchObserver, JobEvent
from .journal import JobRecord, JobState, Journal
from .outcomes import FATAL

if TYPE_CHECKING:
    from ..client import KlingClient

__all__ = ["LOOKUP_SLACK_SECONDS", "LostPosts"]

log = logging.getLogger("kling_async")

#: Kept for compatibility: the resume now uses the client's measured clock offset, else
#: its ``recovery_window`` (`kling_async.reconcile.ClockOffset`).
LOOKUP_SLACK_SECONDS: Final = 600.0


class LostPosts:
    """Looks up every lost POST of a journal before a run sends anything."""

    def __init__(
        self,
        client: KlingClient,
        journal: Journal,
        accounts: AccountGuard,
        observer: BatchObserver,
        *,
        resubmit_unknown: bool,
    ) -> None:
        self.client = client
        self.journal = journal
        self.accounts = accounts
        self.observer = observer
        self.resubmit_unknown = resubmit_unknown

    async def settle(self) -> None:
        """Adopt, send again, or leave each lost POST; see the module docstring."""
        lost = [
            r for r in self.journal.records() if r.state in (JobState.SUBMITTING, JobState.UNKNOWN)
        ]
        for rec in lost:
            reason = self.client.slots.disabled().get(rec.email or "")
            if reason is not None:  # set aside by an earlier lookup: no request
                self._leave(rec, reason)
                continue
            try:
                task_id = await self._lookup(rec)
            except AccountError as exc:  # the account's task list answers 596
                if not self.accounts.set_aside(rec.email, exc):
                    self.journal.note_error(rec.line, str(exc))
                    raise self.accounts.stopped(rec.email, exc) from exc
                self._leave(rec, exc)
                continue
            except FATAL:
                raise
            except SubmissionUnknownError as exc:
                why = str(exc)
                if exc.candidates:
                    why += f" (candidate tasks: {', '.join(map(str, exc.candidates))})"
                self._unknown(rec, why)
                continue
            except KlingError as exc:
                self._unknown(rec, f"the task list could not be read ({exc})")
                continue
            if task_id is not None:
                adopted = self.journal.mark_submitted(rec.line, task_id, rec.email)
                log.warning("line %d: found task %s of an interrupted POST", rec.line, task_id)
                self.observer.job_event(JobEvent.ADOPTED, adopted)
            else:
                log.warning("line %d: the interrupted POST created no task; sending it", rec.line)
                self.journal.mark_pending(rec.line, "the interrupted POST created no task")
        slots = self.client.slots
        if lost and slots.disabled() and len(slots.disabled()) == len(slots.accounts):
            raise self.accounts.stopped(None, next(iter(slots.disabled().values())))

    def _leave(self, rec: JobRecord, exc: KlingError) -> None:
        """Keep a lost POST's row as it is: its account cannot be asked now."""
        note = (
            f"{self.accounts.in_error(rec.email, exc)}; its task list cannot be read to look "
            f"up the interrupted POST, which is left for a later run (never sent blindly): "
            f"{repair()}"
        )
        log.warning("line %d: %s", rec.line, note)
        self.journal.note_error(rec.line, note)

    def _unknown(self, rec: JobRecord, why: str) -> None:
        if self.resubmit_unknown:
            self.journal.mark_pending(rec.line, f"resubmitted on request; {why}")
            return
        text = (
            f"the POST's outcome is unknown: {why}; check the account's tasks, then re-run "
            "with --resubmit-unknown to send it again"
        )
        self.journal.mark_unknown(rec.line, text)  # reported as skipped by the run

    async def _lookup(self, rec: JobRecord) -> int | None:
        """The id of the task the lost POST created, or None when the account has none.

        The same settling as a submission's (`Reconciler.reconcile`): the row's tag in the
        scheduler, then the one matcher on the task list; tasks of other rows and of this
        client are excluded. "None" is concluded only once the client's
        ``recovery_confirm_delay`` has passed since the POST (the server may still be
        processing it); raises `SubmissionUnknownError` when it cannot be told."""
        sent = rec.submitting_at or time.time()
        claimed = self.journal.claimed_task_ids()
        known = self.client.jobs.submitter.known
        body = rec.body
        if body is None:  # sent by a journal of schema 1, which kept no body: the prompt
            body = {"prompt": rec.prompt}
        left = sent + self.client.config.recovery_confirm_delay - time.time()
        found = await self.client.jobs.submitter.reconciler.reconcile(
            body,
            endpoint=f"{rec.kind} job of line {rec.line}",
            content_type=rec.kind,
            inputs_known=rec.body is not None,
            passthrough=(AccountError, *FATAL),
            email=rec.email,
            sent_at=int(sent * 1000),
            confirm_delay=max(0.0, left),
            claimed=lambda task_id: task_id in claimed or known.claimed(task_id),
            why=f"line {rec.line}: the interrupted POST's outcome is unknown",
        )
        return None if found is None else found.task_id
