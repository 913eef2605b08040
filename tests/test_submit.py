"""Submission: the task notes and the one matcher of a lost submission."""

from __future__ import annotations

from kling_async.accounts import KnownTasks


def test_the_task_notes_are_bounded() -> None:
    """A long-running client forgets the oldest tasks' accounts instead of growing."""
    known = KnownTasks(limit=3)
    ids = [101, 102, 103, 104, 105]
    for task_id in ids:
        known.remember(task_id, "a@example.com")
    assert list(known) == ids[2:]
    assert not known.claimed(ids[0])
    assert known.email(ids[0]) is None  # forgotten: the caller falls back to the default
    known.remember(ids[0], None)
    assert list(known) == [*ids[3:], ids[0]]
    assert known.email(ids[4]) == "a@example.com"
