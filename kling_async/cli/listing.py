"""``kling-async tasks`` and ``kling-async accounts``: what the service knows already."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from ..client import KlingClient
from ..convert import unstructure
from ..models import AccountCapacity, TaskResponse, TaskStatus
from .display import Display
from .interrupt import EXIT_OK, UsageError

__all__ = ["cmd_accounts", "cmd_tasks"]

#: What a user may type for --status -> the task states it means.
_STATUS: dict[str, TaskStatus] = {
    "submitted": TaskStatus.SUBMITTED,
    "processing": TaskStatus.PROCESSING,
    "running": TaskStatus.PROCESSING,
    "succeed": TaskStatus.SUCCEED,
    "succeeded": TaskStatus.SUCCEED,
    "failed": TaskStatus.FAILED,
}


async def cmd_tasks(args: argparse.Namespace, display: Display) -> int:
    from .commands import make_client

    wanted = None
    if args.status is not None:
        wanted = _STATUS.get(args.status.strip().lower())
        if wanted is None:
            raise UsageError(f"--status: expected one of {', '.join(_STATUS)}, got {args.status!r}")
    async with make_client(args) as kling:
        tasks = await kling.list_tasks(args.email, content_type=args.type)
    if wanted is not None:
        tasks = [t for t in tasks if t.state is wanted]
    tasks = tasks[: args.limit]
    if args.json:
        display.json([unstructure(t) for t in tasks])
        return EXIT_OK
    for task in tasks:
        display.line(_task_line(task))
    if not tasks:
        display.line("no tasks")
    return EXIT_OK


def _task_line(task: TaskResponse) -> str:
    created = task.created_at.strftime("%Y-%m-%d %H:%M") if task.created_at else "-"
    kind = task.task.type if task.task is not None and task.task.type else "-"
    prompt = str(task.arguments.get("prompt") or "")
    if len(prompt) > 60:
        prompt = prompt[:57] + "..."
    return f"{task.task_id}  {created}  {kind}  {task.state.value}  {prompt}".rstrip()


async def cmd_accounts(args: argparse.Namespace, display: Display) -> int:
    from .commands import make_client

    async with make_client(args) as kling:
        accounts = await kling.list_accounts()
        capacity = await _capacity(kling)
    rows = []
    for email, account in sorted(accounts.items()):
        free = capacity.get(email)
        rows.append(
            {
                "email": email,
                "maxJobs": account.max_jobs,
                "executing": free.executing if free else None,
                "available": free.available if free else None,
                "balance": _balance(account.balance),
            }
        )
    if args.json:
        display.json(rows)
        return EXIT_OK
    display.line("email  maxJobs  executing  available  balance")
    for row in rows:
        display.line("  ".join("-" if value is None else str(value) for value in row.values()))
    return EXIT_OK


async def _capacity(kling: KlingClient) -> dict[str, AccountCapacity]:
    """Each account's capacity from ``GET /scheduler/available``, by email."""
    answer = await kling.available()
    return {entry.email: entry for entry in answer.available if entry.email}


def _balance(balance: Mapping[str, Any] | None) -> Any:
    return balance.get("total") if balance else None
