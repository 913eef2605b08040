"""The simulator's request counters (rendered by ``SimState.snapshot``)."""

from __future__ import annotations

import attrs

__all__ = ["Counters"]


@attrs.define
class Counters:
    """Request counters; :meth:`SimState.snapshot` renders them with the derived ones."""

    posts: int = 0
    polls: int = 0
    lists: int = 0
    polls_by_task: dict[int, int] = attrs.field(factory=dict)
    rate_limited: int = 0
    faults: dict[str, int] = attrs.field(factory=dict)
    uploads: int = 0
    downloads: int = 0
    file_requests: int = 0
    file_requests_with_auth: int = 0
    callbacks_sent: int = 0
    callbacks_dropped: int = 0
    callbacks_failed: int = 0
    account_errors: int = 0  # 596 answers
    payment_required: int = 0  # 402 and 412 answers
    tasks_vanished: int = 0  # accepted tasks that then vanish (moderation, no credits)
    polls_gone: int = 0  # 404 answers to polls of vanished or deleted tasks
    polls_expired: int = 0  # 410 answers to polls of expired tasks
    first_task: int = 0  # index in SimState.order of the first task since reset
