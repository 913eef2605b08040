"""The sqlite3 journal of a batch (``DIR/.kling-journal.sqlite3``): one row per job.

A row holds the job's line number, the line, a hash of it, its state, the task id once
submitted, the account, the final state, the error text and the downloaded files. Every
change is committed at once, so a process killed at any point loses no task id.

States: ``pending`` (never sent) -> ``submitting`` (the POST may be in flight) ->
``submitted`` (task id known) -> ``succeeded`` | ``failed``; ``unknown`` when a POST's
outcome cannot be established.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

import attrs

from ..errors import JournalConflictError
from .jobsfile import Job

__all__ = ["JOURNAL_NAME", "JobRecord", "JobState", "Journal"]

#: The journal's file name inside the output folder.
JOURNAL_NAME: Final = ".kling-journal.sqlite3"

_SCHEMA_VERSION: Final = 2  # 2: the wire body of each POST (``body``)


def _lock(journal_path: str) -> int:
    """Hold the journal's lock file (``<journal>.lock``) for as long as the descriptor is
    open. An OS lock (``flock``): a killed run's lock goes with its process."""
    lock_path = f"{journal_path}.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise JournalConflictError(
            f"another run is using the journal {journal_path} (locked: {lock_path}); "
            "nothing was sent. Wait for it to end, or use another output folder",
            problems=[f"{lock_path} is locked by another process"],
        ) from None
    except BaseException:
        os.close(fd)
        raise
    return fd


class JobState(enum.Enum):
    """Where a job stands in the journal."""

    PENDING = "pending"
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"

    @property
    def finished(self) -> bool:
        """Whether a resumed run leaves the job alone."""
        return self in _FINISHED


_FINISHED: Final = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.UNKNOWN})


@attrs.frozen(kw_only=True)
class JobRecord:
    """One journal row."""

    line: int
    kind: str
    text: str
    digest: str
    state: JobState
    task_id: int | None = None
    email: str | None = None
    submitting_at: float | None = None
    final_state: str | None = None
    error: str | None = None
    files: tuple[str, ...] = ()
    #: The exact JSON body of the job's POST (uploaded URLs included), from `mark_submitting`.
    body: Mapping[str, Any] | None = None
    #: When the row last changed (epoch seconds).
    updated_at: float | None = None

    @property
    def tag(self) -> str | None:
        """The tag its POST carried (the body's ``replyRef``), found in ``GET /scheduler``."""
        value = (self.body or {}).get("replyRef")
        return value if isinstance(value, str) else None

    @property
    def prompt(self) -> str | None:
        """The job's prompt, from its line."""
        value = json.loads(self.text).get("prompt")
        return value if isinstance(value, str) else None


_DDL: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    line INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    text TEXT NOT NULL,
    digest TEXT NOT NULL,
    state TEXT NOT NULL,
    task_id INTEGER,
    email TEXT,
    submitting_at REAL,
    final_state TEXT,
    error TEXT,
    files TEXT NOT NULL DEFAULT '[]',
    updated_at REAL NOT NULL,
    body TEXT
);
"""

_COLUMNS: Final = (
    "line, kind, text, digest, state, task_id, email, submitting_at, final_state, error, files, "
    "body, updated_at"
)


class Journal:
    """The sqlite3 journal of a batch; every write is committed before it returns.

    ``Journal(path)`` opens (or creates) it and holds its lock: one writer per journal, a
    second one raises `JournalConflictError` at once. ``read_only=True`` opens an existing
    journal to read it (a progress display, a test) while a run writes it: no lock, no
    writes. ``":memory:"`` keeps it in memory. Use it as a context manager or call `close`.
    """

    def __init__(self, path: str | os.PathLike[str], *, read_only: bool = False) -> None:
        self.path = os.fspath(path)
        self._lock_fd: int | None = None
        if read_only:
            uri = Path(self.path).resolve().as_uri() + "?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None)
            return
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = _lock(self.path)  # before reading: one writer per folder
        try:
            # Autocommit: each statement is its own durable transaction.
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        except BaseException:
            self._unlock()
            raise
        try:
            if self.path != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_DDL)
            self._migrate()
        except BaseException:
            self._db.close()  # not a journal (or unwritable): no connection left open
            self._unlock()
            raise

    def _migrate(self) -> None:
        """Bring an older journal to this schema; refuse a newer one."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        found = int(row[0]) if row is not None else _SCHEMA_VERSION
        if found > _SCHEMA_VERSION:
            raise JournalConflictError(
                f"the journal {self.path} was written by a newer kling-async (schema {found}, "
                f"this one knows {_SCHEMA_VERSION}); nothing was sent",
                problems=[f"journal schema {found} > {_SCHEMA_VERSION}"],
            )
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(jobs)")}
        if "body" not in columns:  # schema 1: rows sent then have no body (matched by prompt)
            self._db.execute("ALTER TABLE jobs ADD COLUMN body TEXT")
        self._db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)",
            (str(_SCHEMA_VERSION),),
        )

    def close(self) -> None:
        """Close the database and release the lock (idempotent)."""
        self._db.close()
        self._unlock()

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def records(self) -> list[JobRecord]:
        """Every row, by line number."""
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM jobs ORDER BY line").fetchall()  # noqa: S608
        return [_record(row) for row in rows]

    def record(self, line: int) -> JobRecord:
        """The row of one line."""
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE line = ?",  # noqa: S608
            (line,),
        ).fetchone()
        if row is None:
            raise KeyError(line)
        return _record(row)

    def sync(self, jobs: Sequence[Job], *, retry_failed: bool = False) -> None:
        """Make the journal hold exactly ``jobs``, refusing to forget anything that was sent.

        Rows are matched to lines by content (the line's digest and its occurrence among
        identical lines), not by line number: inserting a comment or reordering lines
        moves rows with their lines. New lines are added as pending; a pending row whose
        line is gone is dropped; a row that was sent and whose line is gone or edited
        raises `JournalConflictError` (nothing is changed then). ``retry_failed`` puts
        failed jobs back to pending (they will be submitted, and paid for, again).
        """
        known = _by_content(self.records())
        wanted = _by_content(jobs)
        at_line = {job.line: job for job in jobs}
        gone = [rec for key, rec in known.items() if key not in wanted]
        problems = [
            _conflict(rec, at_line.get(rec.line))
            for rec in gone
            if rec.state is not JobState.PENDING
        ]
        if problems:
            raise JournalConflictError(
                f"{len(problems)} line(s) changed since they were sent; nothing was sent",
                problems=problems,
            )
        moved = [
            (wanted[key].line, rec.line)
            for key, rec in known.items()
            if key in wanted and wanted[key].line != rec.line
        ]
        with self._transaction():
            for rec in gone:
                self._db.execute("DELETE FROM jobs WHERE line = ?", (rec.line,))
            # Through negative numbers: two rows may swap lines (line is the key).
            for new, old in moved:
                self._db.execute("UPDATE jobs SET line = ? WHERE line = ?", (-new, old))
            for new, _ in moved:
                self._db.execute("UPDATE jobs SET line = ? WHERE line = ?", (new, -new))
            for key, job in wanted.items():
                self._upsert(job, known.get(key), retry_failed=retry_failed)

    def _upsert(self, job: Job, rec: JobRecord | None, *, retry_failed: bool) -> None:
        now = time.time()
        if rec is None or rec.state is JobState.PENDING:
            self._db.execute(
                "INSERT OR REPLACE INTO jobs (line, kind, text, digest, state, updated_at) "
                "VALUES (?, ?, ?, ?, 'pending', ?)",
                (job.line, job.kind, job.text, job.digest, now),
            )
        elif retry_failed and rec.state is JobState.FAILED:
            self._db.execute(
                "UPDATE jobs SET state = 'pending', task_id = NULL, email = NULL, "
                "submitting_at = NULL, final_state = NULL, error = NULL, files = '[]', "
                "updated_at = ? WHERE line = ?",
                (now, job.line),
            )

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _update(self, line: int, **values: Any) -> JobRecord:
        values["updated_at"] = time.time()
        assignments = ", ".join(f"{name} = ?" for name in values)
        self._db.execute(
            f"UPDATE jobs SET {assignments} WHERE line = ?",  # noqa: S608 - names are ours
            (*values.values(), line),
        )
        return self.record(line)

    def mark_submitting(
        self, line: int, email: str | None, body: Mapping[str, Any] | None = None
    ) -> JobRecord:
        """The POST of ``body`` is about to be sent (its outcome is unknown until
        `mark_submitted`); a resume matches the account's tasks against ``body``."""
        return self._update(
            line,
            state=JobState.SUBMITTING.value,
            email=email,
            submitting_at=time.time(),
            body=None if body is None else json.dumps(dict(body), sort_keys=True),
        )

    def mark_submitted(self, line: int, task_id: int, email: str | None) -> JobRecord:
        """The server created task ``task_id``."""
        return self._update(
            line, state=JobState.SUBMITTED.value, task_id=task_id, email=email, error=None
        )

    def mark_succeeded(self, line: int, final_state: str | None, files: Sequence[str]) -> JobRecord:
        """The task succeeded and its files are on disk."""
        return self._update(
            line,
            state=JobState.SUCCEEDED.value,
            final_state=final_state,
            files=json.dumps(list(files)),
            error=None,
        )

    def mark_failed(self, line: int, error: str, final_state: str | None = None) -> JobRecord:
        """The job ended without a result (the task failed, or the POST was refused)."""
        return self._update(line, state=JobState.FAILED.value, error=error, final_state=final_state)

    def mark_unknown(self, line: int, error: str) -> JobRecord:
        """Whether the POST created a task cannot be told: do not resubmit blindly."""
        return self._update(line, state=JobState.UNKNOWN.value, error=error)

    def mark_pending(self, line: int, note: str | None = None) -> JobRecord:
        """Back to never-sent (established that no task exists)."""
        return self._update(
            line, state=JobState.PENDING.value, task_id=None, submitting_at=None, error=note
        )

    def note_error(self, line: int, error: str, final_state: str | None = None) -> JobRecord:
        """Record an error without changing the state (the job is resumable)."""
        if final_state is None:
            return self._update(line, error=error)
        return self._update(line, error=error, final_state=final_state)

    def claimed_task_ids(self) -> set[int]:
        """Every task id some row already owns."""
        rows = self._db.execute("SELECT task_id FROM jobs WHERE task_id IS NOT NULL")
        return {int(r[0]) for r in rows}


def _record(row: tuple[Any, ...]) -> JobRecord:
    (line, kind, text, digest, state, task_id, email, submitting_at, final, error, files) = row[:11]
    body, updated_at = row[11:]
    return JobRecord(
        line=line,
        kind=kind,
        text=text,
        digest=digest,
        state=JobState(state),
        task_id=task_id,
        email=email,
        submitting_at=submitting_at,
        final_state=final,
        error=error,
        files=tuple(json.loads(files)),
        body=None if body is None else json.loads(body),
        updated_at=updated_at,
    )


_R = TypeVar("_R", JobRecord, Job)


def _by_content(items: Sequence[_R]) -> dict[tuple[str, int], _R]:
    """``(digest, n)`` -> the n-th item (by line) of that digest: identical lines are
    interchangeable, so the n-th identical row belongs to the n-th identical line."""
    seen: dict[str, int] = {}
    out: dict[tuple[str, int], _R] = {}
    for item in sorted(items, key=lambda i: i.line):
        seen[item.digest] = seen.get(item.digest, 0) + 1
        out[(item.digest, seen[item.digest])] = item
    return out


def _conflict(rec: JobRecord, job: Job | None) -> str:
    sent = f"task {rec.task_id}" if rec.task_id is not None else rec.state.value
    if job is None:
        return f"line {rec.line} ({sent}) is gone from the jobs file"
    return f"line {rec.line} ({sent}) was edited after it was sent"
