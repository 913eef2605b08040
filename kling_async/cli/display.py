"""Output: rich progress bars and tables on a terminal, plain lines otherwise."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, TextIO

from ..batch import BatchSummary, JobEvent, JobRecord, JobState
from ..errors import MODERATION_MARKERS

__all__ = ["Display", "ProgressObserver", "error_text", "rich_available"]

_TABLE_ROWS: Final = 40  # longer batches get counts and the failed lines only


class Display:
    """Where output goes: rich (progress bars, tables) on a terminal, plain lines otherwise."""

    def __init__(self, *, fancy: bool | None = None, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        if fancy is None:
            fancy = self.stream.isatty() and rich_available()
        self.fancy = fancy
        self._console: Any = None
        if fancy:
            from rich.console import Console

            self._console = Console(file=self.stream, highlight=False)

    def line(self, text: str = "") -> None:
        """Print one line (not interpreted as markup)."""
        if self._console is not None:
            self._console.print(text, markup=False)
        else:
            print(text, file=self.stream, flush=True)

    def json(self, data: Any) -> None:
        """Print JSON (always plain, so it can be piped)."""
        print(json.dumps(data, indent=2, ensure_ascii=False), file=self.stream, flush=True)

    @contextmanager
    def batch_progress(self, total: int, title: str) -> Iterator[ProgressObserver]:
        """A progress display fed by batch events."""
        if self._console is None:
            yield ProgressObserver(total, self.line, None)
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self._console,
        )
        with progress:
            bar = progress.add_task(title, total=total, counts="")
            console = progress.console

            def say(text: str) -> None:
                console.print(text, markup=False, highlight=False)

            yield ProgressObserver(total, say, (progress, bar))

    def summary(self, summary: BatchSummary, out_dir: Path | None) -> None:
        """The end-of-batch table and the failed lines with their errors."""
        records = summary.records
        if self._console is not None and len(records) <= _TABLE_ROWS:
            self._rich_table(records)
        elif len(records) <= _TABLE_ROWS:
            for rec in records:
                self.line("  ".join(_row(rec)))
        counts = ", ".join(
            f"{summary.count(state)} {state.value}" for state in JobState if summary.count(state)
        )
        self.line(f"{len(records)} job(s): {counts}")
        for email, why in summary.accounts_set_aside.items():
            self.line(f"account {email} was set aside, it is in error state: {why}")
        for rec in summary.problems:
            self.line(
                f"line {rec.line}: {rec.state.value}: {error_text(rec.error) or 'not finished'}"
            )
        if out_dir is not None and summary.count(JobState.SUCCEEDED):
            self.line(f"results in {out_dir}")

    def _rich_table(self, records: Sequence[JobRecord]) -> None:
        from rich.table import Table

        table = Table(title="kling-async batch")
        for name in ("line", "kind", "state", "task", "files / error"):
            table.add_column(name, overflow="fold")
        for rec in records:
            table.add_row(*_row(rec))
        self._console.print(table)


def _row(rec: JobRecord) -> tuple[str, str, str, str, str]:
    detail = ", ".join(rec.files) if rec.state is JobState.SUCCEEDED else error_text(rec.error)
    task = str(rec.task_id) if rec.task_id is not None else "-"
    return str(rec.line), rec.kind, rec.state.value, task, detail


def error_text(error: str | None) -> str:
    """A job's error as a user reads it: a moderation verdict says so (not "500 ...")."""
    if not error:
        return ""
    if any(marker in error.lower() for marker in MODERATION_MARKERS):
        _, sep, verdict = error.partition(": ")
        return f"refused by moderation: {verdict if sep else error}"
    return error


def rich_available() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


class ProgressObserver:
    """Turns batch events into a progress bar (rich) or one plain line per event."""

    def __init__(self, total: int, say: Any, bar: tuple[Any, Any] | None) -> None:
        self.total = total
        self.say = say
        self.bar = bar
        self.done = self.failed = 0
        self.running: set[int] = set()

    def job_event(self, event: JobEvent, record: JobRecord) -> None:
        """Count the event and show it."""
        line = record.line
        if event in (JobEvent.SUBMITTED, JobEvent.RESUMED, JobEvent.ADOPTED):
            self.running.add(line)
        elif event in (JobEvent.SUCCEEDED, JobEvent.SKIPPED) and record.state is JobState.SUCCEEDED:
            self.running.discard(line)
            self.done += 1
        elif event in (JobEvent.FAILED, JobEvent.UNKNOWN, JobEvent.INCOMPLETE, JobEvent.SKIPPED):
            self.running.discard(line)
            self.failed += 1
        text = _event_text(event, record)
        if text:
            self.say(text)
        if self.bar is not None:
            progress, task = self.bar
            counts = f"done {self.done} · running {len(self.running)} · failed {self.failed}"
            progress.update(task, completed=self.done + self.failed, counts=counts)


def _event_text(event: JobEvent, rec: JobRecord) -> str:
    head = f"line {rec.line} ({rec.kind})"
    account = f" on {rec.email}" if rec.email else ""
    if event is JobEvent.QUEUED:
        return ""
    if event is JobEvent.SKIPPED:
        return f"{head}: already {rec.state.value}"
    if event is JobEvent.SUBMITTED:
        return f"{head}: submitted task {rec.task_id}{account}"
    if event is JobEvent.RESUMED:
        return f"{head}: resuming task {rec.task_id}{account}"
    if event is JobEvent.ADOPTED:
        return f"{head}: found task {rec.task_id} of an interrupted submission"
    if event is JobEvent.SUCCEEDED:
        return f"{head}: succeeded, {len(rec.files)} file(s)"
    return f"{head}: {event.value}: {error_text(rec.error) or rec.final_state or ''}"
