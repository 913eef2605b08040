"""What ``GET /scheduler`` and ``GET /scheduler/available`` answer: the jobs useapi.net is
tracking and each account's capacity as the server counts it (re-exported by
`kling_async.models`)."""

from __future__ import annotations

import attrs

__all__ = ["AccountCapacity", "ScheduledJob", "SchedulerCapacity"]


@attrs.frozen(kw_only=True)
class ScheduledJob:
    """A job useapi.net is tracking (``GET /scheduler``): running now, with the
    ``replyUrl`` / ``replyRef`` it was submitted with; ``elapsed`` is "MM:SS"."""

    id: int | None = None
    email: str | None = None
    started: str | None = None
    elapsed: str | None = None
    reply_url: str | None = None
    reply_ref: str | None = None

    @property
    def elapsed_seconds(self) -> int | None:
        """``elapsed`` in seconds (None when absent or not "MM:SS")."""
        minutes, _, seconds = (self.elapsed or "").partition(":")
        if not (minutes.isdigit() and seconds.isdigit()):
            return None
        return int(minutes) * 60 + int(seconds)


@attrs.frozen(kw_only=True)
class AccountCapacity:
    """One account's capacity as the server sees it (``GET /scheduler/available``), jobs
    started elsewhere on the same token included."""

    email: str | None = None
    max_jobs: int | None = None
    executing: int | None = None
    available: int | None = None


@attrs.frozen(kw_only=True)
class SchedulerCapacity:
    """``GET /scheduler/available``: the running jobs and each account's free capacity."""

    executing: tuple[ScheduledJob, ...] = ()
    available: tuple[AccountCapacity, ...] = ()
