"""Ctrl-C while a command runs, the exit statuses, and the resume hint printed after it."""

from __future__ import annotations

import argparse
import asyncio
import shlex
import signal
import sys
from collections.abc import Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Final

from ..batch import JOURNAL_NAME

__all__ = [
    "CTRL_C",
    "EXIT_BROKEN_PIPE",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "INTERRUPT_GRACE",
    "CtrlC",
    "Interrupted",
    "UsageError",
    "interrupted_text",
    "resume_command",
]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130
#: 128 + SIGPIPE: what a shell shows for a program whose stdout reader went away.
EXIT_BROKEN_PIPE: Final = 141
#: Seconds a Ctrl-C'd command gives the submissions it has out to answer.
INTERRUPT_GRACE: Final = 10.0


class UsageError(Exception):
    """Bad arguments or input: reported with exit status 2, nothing was sent."""


class Interrupted(Exception):
    """The command was stopped by Ctrl-C; ``unanswered`` POSTs were left without answer,
    ``tasks`` (task id, email) had answered."""

    def __init__(self, unanswered: int, tasks: Sequence[tuple[int, str | None]] = ()) -> None:
        super().__init__(unanswered, tasks)
        self.unanswered = unanswered
        self.tasks = tuple(tasks)


class CtrlC:
    """Ctrl-C (SIGINT) while a command runs, handled on the event loop.

    The first press cancels the command, whose cleanup runs: a batch waits for the POSTs it
    has out (`INTERRUPT_GRACE` s at most; `announce` says so) so that their task ids reach
    the journal. A second press, or the grace running out, stops at once: every other task
    is cancelled, and the rows of unanswered POSTs stay ``submitting`` (a re-run looks them
    up). From then on SIGINT is Python's default again (KeyboardInterrupt wherever the
    program is), so a command that still does not end can be stopped.

    Being a loop signal handler, it wakes an idle loop at once whichever thread the signal
    reached, and runs between callbacks, never in the middle of one. Before `install`,
    ``asyncio.run``'s handler cancels the command; after `uninstall`, Ctrl-C raises
    KeyboardInterrupt.
    """

    def __init__(self) -> None:
        self.presses = 0
        self.unanswered = 0
        #: (task id, email) of the submissions that answered before the command stopped.
        self.tasks: list[tuple[int, str | None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main: asyncio.Task[Any] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._stopped = False

    def install(self) -> None:
        """Handle SIGINT on the running loop for the current task (the command)."""
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGINT, self._pressed)
        except (NotImplementedError, RuntimeError, ValueError):  # Windows; not main thread
            return
        self._loop, self._main = loop, asyncio.current_task()

    def uninstall(self) -> None:
        """Give SIGINT back to Python's default handler (idempotent)."""
        if self._timer is not None:
            self._timer.cancel()
        loop, self._loop = self._loop, None
        if loop is not None and not loop.is_closed():
            loop.remove_signal_handler(signal.SIGINT)

    def _pressed(self) -> None:
        self.presses += 1
        if self.presses > 1:
            self.stop_now()
        elif self._main is not None and self._loop is not None:
            self._main.cancel()
            self._timer = self._loop.call_later(INTERRUPT_GRACE, self.stop_now)

    def stop_now(self) -> None:
        """Stop waiting for anything: cancel every task but the command's own."""
        if self._stopped:
            return
        self._stopped = True
        loop = self._loop
        self.uninstall()
        if loop is None:
            return
        for task in asyncio.all_tasks(loop):
            if task is not self._main:
                task.cancel()

    def announce(self, posts: int, *, batch: bool = True) -> None:
        """A command stopped by the first press waits for ``posts`` POSTs: say so (and,
        for a batch, that a re-run looks up what is left without answer)."""
        if self.presses != 1 or self._stopped or not posts:
            return
        what = "1 submission" if posts == 1 else f"{posts} submissions"
        then = (
            "a re-run then looks them up in the account's task list"
            if batch
            else "'kling-async tasks' then lists the account's tasks"
        )
        print(
            f"interrupted: waiting up to {INTERRUPT_GRACE:g} s for the answer to {what} "
            "already sent, so that no task id is lost; press Ctrl-C again to stop at once "
            f"({then})",
            file=sys.stderr,
            flush=True,
        )


#: The Ctrl-C handling of the running command (None: Python's default).
CTRL_C: ContextVar[CtrlC | None] = ContextVar("kling_async_ctrl_c", default=None)


def interrupted_text(
    args: argparse.Namespace,
    unanswered: int = 0,
    tasks: Sequence[tuple[int, str | None]] = (),
) -> str:
    """What was left running after Ctrl-C (``unanswered`` POSTs, the ``tasks`` that
    answered: task id and email), and the command that picks it up."""
    if args.command != "batch":
        if tasks:
            out = getattr(args, "out", None) or Path()
            lines = ["interrupted; the submitted task goes on (and is paid for); fetch it with:"]
            for task_id, email in tasks:
                words = ["kling-async", "task", str(task_id)]
                words += ["--email", email] if email else []
                lines.append("  " + shlex.join([*words, "--wait", "--out", str(out)]))
            return "\n".join(lines)
        if unanswered:
            return (
                "interrupted before the submission answered: a task may have been created; "
                "look for it with 'kling-async tasks'"
            )
        return "interrupted; nothing was submitted"
    journal = args.out / JOURNAL_NAME
    if unanswered:
        what = "1 submission" if unanswered == 1 else f"{unanswered} submissions"
        kept = (
            f"interrupted; the task ids received are kept in {journal}; {what} had not "
            "answered: a re-run looks them up in the account's task list before sending "
            "anything again."
        )
    else:
        kept = f"interrupted; every task id is kept in {journal}."
    return f"{kept}\nResume with the same command:\n  {resume_command(args)}"


#: Batch options a resume repeats: (attribute, flag); the token is never one of them.
_BATCH_OPTIONS: Final = (
    ("email", "--email"),
    ("max_jobs", "--max-jobs"),
    ("webhook_url", "--webhook-url"),
)


def resume_command(args: argparse.Namespace) -> str:
    """The batch command again, rebuilt from the parsed options (never the token)."""
    from ..client import DEFAULT_BASE_URL

    words = ["kling-async", "batch", str(args.jobs), "--out", str(args.out)]
    if getattr(args, "base_url", DEFAULT_BASE_URL) != DEFAULT_BASE_URL:
        words += ["--base-url", args.base_url]
    for attr, flag in _BATCH_OPTIONS:
        value = getattr(args, attr, None)
        if value is not None:
            words += [flag, str(value)]
    for email, count in getattr(args, "account", None) or ():
        words += ["--account", email if count is None else f"{email}:{count}"]
    if getattr(args, "webhook", None) is not None:
        host, port, path = args.webhook
        words += ["--webhook", f"{host}:{port}{path}"]
    for attr, flag in (
        ("retry_failed", "--retry-failed"),
        ("resubmit_unknown", "--resubmit-unknown"),
    ):
        if getattr(args, attr, False):
            words.append(flag)
    if getattr(args, "verbose", False):
        words.append("--verbose")
    return shlex.join(words)
