"""Judging the fault soak (benchmarks/soak.py): each job's outcome against the simulator's
record of the tasks its tag created."""

from __future__ import annotations

from typing import Any, Final

from soak_batch import BatchOutcome, compare_record

from kling_async import (
    GenerationRequest,
    ModerationError,
    SubmissionUnknownError,
    TaskFailedError,
    TaskResponse,
)

__all__ = ["CANCELLED", "FAILURE_WORD", "MODERATION_WORD", "check"]

MODERATION_WORD: Final = "nsfw"
FAILURE_WORD: Final = "fail"
#: The outcome of a job its caller cancelled.
CANCELLED: Final = object()


def check(
    requests: list[GenerationRequest], outcomes: list[object], tasks: list[Any], learned: set[int]
) -> tuple[list[str], int, int]:
    """Mismatches, jobs submitted twice and tasks adopted wrongly; ``learned`` gets every
    task id an outcome holds or names."""
    for outcome in outcomes:
        held = _held(outcome)
        if held is not None:
            learned.add(held)
        if isinstance(outcome, SubmissionUnknownError | BatchOutcome):
            learned.update(outcome.candidates)  # the caller is told every candidate
    by_tag: dict[str, list[Any]] = {}
    for task in tasks:
        by_tag.setdefault(str(task.body.get("replyRef")), []).append(task)
    tag_of = {task.id: task.body.get("replyRef") for task in tasks}
    holders: dict[int, int] = {}
    wrong = twice = 0
    mismatches: list[str] = []
    for index, (request, outcome) in enumerate(zip(requests, outcomes, strict=True)):
        held = _held(outcome)
        if held is not None:
            holders[held] = holders.get(held, 0) + 1
            wrong += tag_of.get(held) != request.reply_ref  # another submission's task
        prompt = str(getattr(request, "prompt", ""))
        mine = by_tag.get(str(request.reply_ref), [])
        twice += len(mine) > 1
        if isinstance(outcome, BatchOutcome):
            words = {"moderation": MODERATION_WORD, "failure": FAILURE_WORD}
            problem = compare_record(prompt, mine, outcome, **words)
        else:
            problem = _compare(prompt, mine, outcome, learned)
        if problem is not None:
            mismatches.append(f"job {index}: {problem}")
    wrong += sum(n - 1 for n in holders.values() if n > 1)  # one task, several jobs
    return mismatches, twice, wrong


def _held(outcome: object) -> int | None:
    """The task id a job's outcome holds (its own, if the client was right)."""
    if isinstance(outcome, TaskFailedError):
        return outcome.task.task_id if outcome.task is not None else None
    if isinstance(outcome, TaskResponse):
        return outcome.task_id
    if isinstance(outcome, BatchOutcome):
        return outcome.record.task_id
    return None


def _describe(outcome: object) -> str:
    if isinstance(outcome, TaskResponse):
        return f"task {outcome.task_id} {outcome.status_name}"
    return repr(outcome)[:300]


def _compare(prompt: str, tasks: list[Any], outcome: object, learned: set[int]) -> str | None:
    """Why ``outcome`` differs from the simulator's record, or None when it matches."""
    if outcome is CANCELLED:
        # Either nothing was created, or the one task's id reached the caller regardless.
        if len(tasks) > 1 or any(t.id not in learned for t in tasks):
            return f"cancelled job: simulator tasks {[t.id for t in tasks]}, learned none"
        return None
    if MODERATION_WORD in prompt:
        if tasks:
            return f"moderated prompt created tasks {[t.id for t in tasks]}"
        if not isinstance(outcome, ModerationError):
            return f"expected ModerationError, got {_describe(outcome)}"
        return None
    if (
        isinstance(outcome, SubmissionUnknownError)
        and len(tasks) <= 1
        and all(t.id in outcome.candidates for t in tasks)
    ):
        return None  # reported as unknown (its own task, if any, a candidate): not adopted
    if len(tasks) != 1:
        return f"{len(tasks)} simulator tasks {[t.id for t in tasks]}; got {_describe(outcome)}"
    task = tasks[0]
    if FAILURE_WORD in prompt:
        if not isinstance(outcome, TaskFailedError):
            return f"expected TaskFailedError, got {_describe(outcome)}"
        failed = outcome.task.task_id if outcome.task is not None else None
        if failed != task.id:
            return f"failed task {failed}, simulator's {task.id}"
        return None
    if not isinstance(outcome, TaskResponse):
        return f"expected success, got {_describe(outcome)}"
    if outcome.task_id != task.id or not outcome.succeeded:
        return f"task {outcome.task_id} ({outcome.status_name}), simulator's {task.id}"
    truth = [w["resource"]["resource"] for w in task.works]
    if outcome.urls != truth:
        return f"works {outcome.urls} != simulator's {truth}"[:300]
    return None
