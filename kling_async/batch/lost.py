"""Settling lost POSTs: rows left ``submitting`` (or ``unknown``) by an earlier run.

Money rule: such a job is never blindly resubmitted. It is looked up in the account's task
list (``KlingClient.find_tasks``): a task of the same kind matching the POST's recorded
wire body (`matches_body`), created since shortly before the POST and not claimed by
another row, is adopted. When the list, read
back to the POST, holds no such task, the POST created none and the job goes back to
``pending``. When the list cannot be read that far, the job is marked ``unknown``.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Final

from ..config import sleep_scaled
from ..errors import AccountError, KlingError
from ..models import TaskResponse
from .accounts import AccountGuard, repair
from .events import BatchObserver, JobEvent
from .journal import JobRecord, JobState, Journal
from .matching import matches_body
from .outcomes import FATAL

if TYPE_CHECKING:
    from ..client import KlingClient

__all__ = ["LOOKUP_SLACK_SECONDS", "LostPosts"]

log = logging.getLogger("kling_async")

#: How far before the recorded POST time a task may have been created (server clock skew).
LOOKUP_SLACK_SECONDS: Final = 600.0


class _LookupIncomplete(Exception):
    """The task list could not rule out that a lost POST created a task."""


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
            except _LookupIncomplete as exc:
                self._unknown(rec, str(exc))
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

        Before concluding "none", a POST sent less than the client's
        ``recovery_confirm_delay`` ago gets the rest of that time (the server may still be
        processing it) and the list is read again."""
        tasks, complete = await self._find(rec)
        if not tasks and complete:
            sent = rec.submitting_at or time.time()
            left = sent + self.client.config.recovery_confirm_delay - time.time()
            if left > 0:
                await sleep_scaled(left)
                tasks, complete = await self._find(rec)
        if tasks:
            return tasks[-1].task_id  # the oldest match: the list is newest first
        if not complete:
            raise _LookupIncomplete(
                "too many tasks were created since the POST to read back to it, and the "
                "newest of them do not include it"
            )
        return None

    async def _find(self, rec: JobRecord) -> tuple[list[TaskResponse], bool]:
        since = (rec.submitting_at or time.time()) - LOOKUP_SLACK_SECONDS
        claimed = self.journal.claimed_task_ids()
        body = rec.body
        wanted = rec.prompt or None

        def same_job(task: TaskResponse) -> bool:
            if task.task_id is None or task.task_id in claimed:
                return False
            if body is not None:
                return matches_body(task, body)
            # Sent by a journal of schema 1, which kept no body: the prompt alone.
            return (task.arguments.get("prompt") or None) == wanted

        return await self.client.find_tasks(
            same_job, since=int(since * 1000), email=rec.email, content_type=rec.kind
        )
