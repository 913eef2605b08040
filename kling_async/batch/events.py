"""What a batch run reports: job events, the observer protocol, and the run's summary."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Protocol

import attrs

from ..models import TaskResponse
from .journal import JobRecord, JobState

__all__ = ["BatchObserver", "BatchSummary", "JobEvent", "NullObserver"]


class JobEvent(enum.Enum):
    """What happened to a job, as reported to a `BatchObserver`."""

    SKIPPED = "skipped"  # finished in an earlier run
    QUEUED = "queued"  # waiting for a job slot
    RESUMED = "resumed"  # waiting again on a task submitted by an earlier run
    ADOPTED = "adopted"  # a lost submission was found in the account's task list
    SUBMITTED = "submitted"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"
    INCOMPLETE = "incomplete"  # still resumable: timed out, download or network failure


class BatchObserver(Protocol):
    """Receives every job event (for progress displays); must not block."""

    def job_event(self, event: JobEvent, record: JobRecord) -> None:
        """Called after the journal records the change."""


class NullObserver:
    """An observer that ignores every event."""

    def job_event(self, event: JobEvent, record: JobRecord) -> None:
        """Ignore the event."""


@attrs.frozen(kw_only=True)
class BatchSummary:
    """The journal at the end of a run, with counts."""

    records: tuple[JobRecord, ...]
    responses: Mapping[int, TaskResponse] = attrs.field(factory=dict)
    #: Accounts in error state (596) that got no more jobs, with the answer that said so.
    accounts_set_aside: Mapping[str, str] = attrs.field(factory=dict)

    def count(self, state: JobState) -> int:
        """How many jobs are in ``state``."""
        return sum(1 for r in self.records if r.state is state)

    @property
    def problems(self) -> list[JobRecord]:
        """Jobs that did not succeed (failed, unknown, or left resumable with an error)."""
        return [r for r in self.records if r.state is not JobState.SUCCEEDED]

    @property
    def ok(self) -> bool:
        """Whether every job succeeded."""
        return not self.problems
