"""Accounts in error state (596) during a batch: set aside, go on, or stop the run.

api/errors.md: "with several accounts, stop using that one". The batch goes on with the
other accounts; what the broken one holds is left for a run after its repair. The run stops
only when no account is left, or at once with a single account.

Whether a refused job goes to another account is `JobRunner.run`'s rule (the job names no
account, and one is left); the guard sees the jobs it did not send elsewhere (`ended`),
notes why in the journal, and stops the run when no account can take jobs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from ..errors import AccountError, KlingError
from ..jobs import JobPhase
from .events import BatchObserver, JobEvent
from .journal import Journal

if TYPE_CHECKING:
    from ..client import KlingClient

__all__ = ["AccountGuard", "repair"]

_E = TypeVar("_E", bound=KlingError)


def repair(them: str = "it") -> str:
    """What to do about an account in error state (api/errors.md), in the journal's words."""
    return f"repair {them} (delete {them} and add {them} again with POST /accounts), then re-run"


class AccountGuard:
    """Sets broken accounts aside for one run and decides when the run must stop.

    ``set_aside(email, exc)`` gives an account no more jobs (False with a single account).
    ``halted`` is the error that stops the run, once one was raised.
    """

    def __init__(
        self,
        client: KlingClient,
        journal: Journal,
        observer: BatchObserver,
        set_aside: Callable[[str | None, AccountError], bool],
    ) -> None:
        self.client = client
        self.journal = journal
        self.observer = observer
        self.set_aside = set_aside
        self.halted: KlingError | None = None

    def ended(
        self,
        phase: JobPhase | None,
        line: int,
        email: str | None,
        wanted: str | None,
        exc: AccountError,
    ) -> None:
        """A new job ended with a 596 in ``phase`` on ``email`` (``wanted``: the account it
        names); raises the batch's stop when no account can take jobs."""
        if phase is JobPhase.SLOT:
            self.not_sent(line, wanted, exc)
        elif phase is JobPhase.WAIT:
            self.poll_refused(line, email, exc)
        else:
            self.refused(line, email, exc)

    def refused(self, line: int, email: str | None, exc: AccountError) -> None:
        """596 to the job's upload or POST (nothing was created; the row is pending) and no
        other account took it: the batch stops with a single account or none left; a job
        that names this account waits for a run after the repair."""
        if not self.set_aside(email, exc):
            raise self.stopped(email, exc) from exc
        self.stop_if_none_left(exc)
        note = (
            f"{self.in_error(email, exc)}; nothing was created. The job names that account: "
            f"{repair()} to send it"
        )
        self.observer.job_event(JobEvent.INCOMPLETE, self.journal.note_error(line, note))

    def not_sent(self, line: int, wanted: str | None, exc: AccountError) -> None:
        """No slot for the job: its account (or every account) is set aside."""
        self.stop_if_none_left(exc)
        if wanted is None:
            raise exc  # not expected: a job for any account is refused only when none is left
        note = f"{self.in_error(wanted, exc)}; not sent. The job names that account: {repair()}"
        rec = self.journal.note_error(line, f"{note} to send it")
        self.observer.job_event(JobEvent.INCOMPLETE, rec)

    def poll_refused(self, line: int, email: str | None, exc: AccountError) -> None:
        """A refused poll (or, resuming, no slot of a set-aside account): the task goes on
        at Kling; the row keeps its task id for a run after the repair."""
        note = f"{self.in_error(email, exc)}; its task goes on: {repair()} to wait for it"
        self.observer.job_event(JobEvent.INCOMPLETE, self.journal.note_error(line, note))
        if not self.set_aside(email, exc):
            raise self.stopped(email, exc) from exc
        self.stop_if_none_left(exc)

    def in_error(self, email: str | None, exc: KlingError) -> str:
        """``account X is in error state (<the server's 596 answer>)``."""
        reason = self.client.slots.disabled().get(email or "", exc)
        return f"account {email or '(default)'} is in error state ({reason})"

    def stop_if_none_left(self, exc: KlingError) -> None:
        """Raise the batch's stop when every account is set aside."""
        slots = self.client.slots
        if len(slots.disabled()) == len(slots.accounts):
            raise self.stopped(None, exc) from exc

    def stopped(self, email: str | None, exc: KlingError) -> AccountError:
        """The error that stops the batch: its only account, or every one, is in error state."""
        out = self.client.slots.disabled()
        if len(out) > 1 and len(out) == len(self.client.slots.accounts):
            reasons = "; ".join(f"{account}: {why}" for account, why in out.items())
            what, them = f"every account is in error state ({reasons})", "them"
        else:
            what, them = self.in_error(email or next(iter(out), None), exc), "it"
        return self.halt(
            AccountError(
                f"{what}: the batch stopped, no job can be sent. The journal keeps every job; "
                f"{repair(them)} the same batch to resume",
                status=596,
                code=596,
            )
        )

    def halt(self, exc: _E) -> _E:
        """Note that ``exc`` stops the run (before the slot of the job raising it is free)."""
        if self.halted is None:
            self.halted = exc
        return exc
