"""The outcome table: what an error makes of a job's row, per phase (upload, POST, wait).

One table instead of one ``except`` ladder per phase (the phase is the one `JobRunner.run`
reports, `kling_async.jobs.JobPhase`); the batch adds only what a table cannot say (the
fate of an account in error state, stopping the run).
"""

from __future__ import annotations

from typing import Final

import aiohttp
import attrs

from ..errors import (
    AccountError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    KlingError,
    ModerationError,
    NotFoundError,
    PaymentRequiredError,
    RateLimitError,
    RequestValidationError,
    SubmissionUnknownError,
    TaskFailedError,
    TransportError,
)
from ..jobs import JobPhase
from .events import JobEvent
from .journal import JobState

__all__ = ["FATAL", "OUTCOMES", "Outcome", "Phase", "outcome_of"]


#: The step of a job that raised (``SLOT`` has no row: nothing was sent, see `AccountGuard`).
Phase = JobPhase


@attrs.frozen
class Outcome:
    """What an error makes of a job's row: its new state (None: kept, the error noted),
    the event reported, and the note (``{exc}`` is the error's text)."""

    state: JobState | None
    event: JobEvent
    note: str = "{exc}"


# Errors after which nothing can succeed in this run: stop and leave the journal resumable.
FATAL: Final = (AuthenticationError, PaymentRequiredError, ConfigurationError)
# Answers that mean the server refused the job: it exists nowhere, retrying cannot help.
_REFUSED: Final = (BadRequestError, NotFoundError, ModerationError, RequestValidationError)

_NOTED = Outcome(None, JobEvent.INCOMPLETE, "{exc} (re-run to keep waiting)")
_AGAIN = Outcome(JobState.PENDING, JobEvent.INCOMPLETE)

#: First matching row wins. A POST that may have reached the server is never ``pending``.
OUTCOMES: Final[tuple[tuple[tuple[type[KlingError], ...], dict[Phase, Outcome]], ...]] = (
    ((SubmissionUnknownError,), {Phase.POST: Outcome(JobState.UNKNOWN, JobEvent.UNKNOWN)}),
    (
        (AccountError, *FATAL),  # refused before anything was created
        {
            Phase.UPLOAD: Outcome(None, JobEvent.QUEUED),
            Phase.POST: Outcome(JobState.PENDING, JobEvent.QUEUED),
            Phase.WAIT: Outcome(None, JobEvent.INCOMPLETE),
        },
    ),
    ((RateLimitError,), {Phase.POST: _AGAIN}),  # busy past the retry budget: none created
    ((TaskFailedError,), {Phase.WAIT: Outcome(JobState.FAILED, JobEvent.FAILED)}),
    # A task deleted, moderated, or out of credits.
    ((NotFoundError,), {Phase.WAIT: Outcome(JobState.FAILED, JobEvent.FAILED)}),
    (
        _REFUSED,
        {
            Phase.UPLOAD: Outcome(JobState.FAILED, JobEvent.FAILED, "upload: {exc}"),
            Phase.POST: Outcome(JobState.FAILED, JobEvent.FAILED),
        },
    ),
    (
        (KlingError,),
        {
            # Network trouble before the POST: nothing was sent, a re-run sends it.
            Phase.UPLOAD: Outcome(None, JobEvent.INCOMPLETE, "upload: {exc}"),
            # Whatever else a POST raises, the client could not rule out a created job.
            Phase.POST: Outcome(JobState.UNKNOWN, JobEvent.UNKNOWN),
            Phase.WAIT: _NOTED,
        },
    ),
)


def outcome_of(phase: Phase, exc: KlingError) -> Outcome:
    """The row of `OUTCOMES` for an error raised in ``phase``."""
    if (
        phase is Phase.POST
        and isinstance(exc, TransportError)
        and not isinstance(exc, SubmissionUnknownError)
        and isinstance(exc.__cause__, aiohttp.ClientConnectorError)
    ):
        return _AGAIN  # never connected: nothing was sent
    for types, by_phase in OUTCOMES:
        if isinstance(exc, types) and phase in by_phase:
            return by_phase[phase]
    raise AssertionError(f"no outcome for {type(exc).__name__} in {phase}")  # KlingError row
