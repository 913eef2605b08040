"""Resumable batch runs: a JSON-lines file of jobs, a sqlite3 journal, and the runner.

One job per line of the jobs file::

    {"kind": "image", "prompt": "a cat", "subject_images": ["cat.png", "https://x/hat.jpg"]}
    {"kind": "video", "prompt": "they dance", "images": ["a.jpg"], "duration": 10}

Fields are the Python names of `KolorsElements` (``kind: image``) and `Image2VideoElements`
(``kind: video``); relative local paths are read from the jobs file's folder. Blank lines
and lines starting with ``#`` are skipped. Every line is parsed and validated before
anything is sent (`parse_jobs_file` reports every bad line at once).

The journal (`Journal`, ``DIR/.kling-journal.sqlite3``) keeps one row per job: its line
number, the line, a hash of it, its state, the task id once submitted, the account, the
final state, the error text and the downloaded files. Every change is committed at once;
the task id is committed from the client's ``on_submitted`` hook, before the client starts
waiting, so a process killed at any point loses no task id.

States: ``pending`` (never sent) -> ``submitting`` (the POST may be in flight) ->
``submitted`` (task id known) -> ``succeeded`` | ``failed``; ``unknown`` when a POST's
outcome cannot be established (see below).

Re-running the same batch (`BatchRunner.run` with the same journal) resumes it: finished
jobs are skipped, jobs with a task id are waited on again (holding a job slot each, as a
running job occupies one on the server), and only jobs that never reached the server are
submitted. A line edited after it was sent is refused (`JournalConflictError`).

Money rule: a job left ``submitting`` (the process died between the POST and the journal
write, or the client raised `SubmissionUnknownError`) is never blindly resubmitted. On
resume it is looked up in the account's task list (``KlingClient.find_tasks``, which pages
back through ``GET /tasks/``): a task of the same kind with the same prompt, created since
shortly before the POST and not claimed by another journal row, is adopted and waited on.
When the list, read back to the POST, holds no such task, the POST never created one and
the job is submitted again. When the list cannot be read, or cannot be read back that far
(a very busy account), the job is marked ``unknown`` and left alone:
check the account's tasks, then re-run with ``resubmit_unknown=True``
(``kling-async batch --resubmit-unknown``) to send it again.

Accounts in error state (596, see `BatchRunner`): with several accounts the broken one is
set aside and the batch goes on with the others; what it holds (jobs that name it, tasks
it runs, lost POSTs in its task list) is left for a run after its repair. The batch stops
only when no account is left, or, with a single account, at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import hashlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

import aiohttp
import attrs

from .errors import (
    AccountError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    JobsFileError,
    JournalConflictError,
    KlingError,
    ModerationError,
    NotFoundError,
    PaymentRequiredError,
    RateLimitError,
    RequestValidationError,
    SubmissionUnknownError,
    TaskFailedError,
    TaskTimeoutError,
    TransportError,
)
from .models import TaskResponse
from .requests import GenerationRequest, Image2VideoElements, KolorsElements, is_remote
from .slots import SlotHold

if TYPE_CHECKING:
    from .client import KlingClient

__all__ = [
    "JOURNAL_NAME",
    "KINDS",
    "BatchObserver",
    "BatchRunner",
    "BatchSummary",
    "Job",
    "JobEvent",
    "JobRecord",
    "JobState",
    "JobsFileError",
    "Journal",
    "JournalConflictError",
    "job_from_request",
    "parse_job",
    "parse_jobs_file",
]

log = logging.getLogger("kling_async")

#: The journal's file name inside the output folder.
JOURNAL_NAME: Final = ".kling-journal.sqlite3"

#: ``kind`` of a jobs line -> its request type.
KINDS: Final[Mapping[str, type[GenerationRequest]]] = {
    "image": KolorsElements,
    "video": Image2VideoElements,
}

#: How far before the recorded POST time a task may have been created (server clock skew).
LOOKUP_SLACK_SECONDS: Final = 600.0
#: How many of the account's newest tasks a lookup reads.

_SCHEMA_VERSION: Final = 1


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


# --------------------------------------------------------------------------- jobs file


@attrs.frozen(kw_only=True)
class Job:
    """One job: its line number, the line as canonical JSON, its hash, and the request."""

    line: int
    text: str
    digest: str
    request: GenerationRequest

    @property
    def kind(self) -> str:
        """``image`` or ``video``."""
        return self.request.kind


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _canonical(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


class _LineError(Exception):
    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field


def _allowed_fields(cls: type[GenerationRequest]) -> list[str]:
    return [f.name for f in attrs.fields(cls)]


def _local_path(value: str, base_dir: Path) -> str:
    if is_remote(value) or not value.strip():
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else base_dir / path)


def _resolve_images(
    cls: type[GenerationRequest], fields: dict[str, Any], base_dir: Path
) -> dict[str, Any]:
    """Check the JSON types of image fields and resolve relative paths against base_dir."""
    out = dict(fields)
    for name in cls.image_fields:
        value = out.get(name)
        if value is None:
            continue
        many = name in ("subject_images", "images")
        if many and isinstance(value, str):
            value = [value]
        if many:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise _LineError(name, f"{name}: must be a list of URLs or file paths")
            out[name] = [_local_path(v, base_dir) for v in value]
        elif isinstance(value, str):
            out[name] = _local_path(value, base_dir)
        else:
            raise _LineError(name, f"{name}: must be a URL or a file path")
    return out


def parse_job(obj: object, *, line: int, base_dir: Path) -> Job:
    """Build the job of one parsed JSON line; raises ``_LineError`` naming the field."""
    if not isinstance(obj, dict):
        raise _LineError(None, f"expected a JSON object, got {type(obj).__name__}")
    kind = obj.get("kind")
    cls = KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise _LineError("kind", f'kind: must be "image" or "video", got {kind!r}')
    fields = {k: v for k, v in obj.items() if k != "kind"}
    allowed = _allowed_fields(cls)
    for key in fields:
        if key not in allowed:
            raise _LineError(
                key, f"{key}: unknown field for kind {kind!r} (known: {', '.join(allowed)})"
            )
    fields = _resolve_images(cls, fields, base_dir)
    try:
        request = cls(**fields)
    except RequestValidationError as exc:
        raise _LineError(exc.field, str(exc)) from exc
    except (TypeError, ValueError) as exc:
        raise _LineError(None, str(exc)) from exc
    text = _canonical(obj)
    return Job(line=line, text=text, digest=_digest(text), request=request)


def parse_jobs_file(path: str | os.PathLike[str]) -> list[Job]:
    """Read and validate every line of a jobs file.

    Raises `JobsFileError` listing every bad line (``jobs.jsonl line 3: prompt: ...``).
    """
    path = Path(path)
    try:
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise JobsFileError(f"cannot read {path}: {exc}", problems=[str(exc)]) from exc
    jobs: list[Job] = []
    problems: list[str] = []
    base_dir = path.resolve().parent
    for number, raw in enumerate(content.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            try:
                obj = json.loads(stripped)
            except ValueError as exc:
                raise _LineError(None, f"not valid JSON: {exc}") from exc
            jobs.append(parse_job(obj, line=number, base_dir=base_dir))
        except _LineError as exc:
            problems.append(f"{path.name} line {number}: {exc}")
    if not problems and not jobs:
        problems.append(f"{path.name}: no jobs (one JSON object per line)")
    if problems:
        raise JobsFileError(
            f"{len(problems)} problem(s) in {path}, nothing was sent", problems=problems
        )
    return jobs


def _json_safe(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_json_safe(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes sha256:{hashlib.sha256(value).hexdigest()[:16]}>"
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    return value


def job_from_request(line: int, request: GenerationRequest) -> Job:
    """A `Job` for a request built in code (the journal keeps its fields as JSON)."""
    obj: dict[str, Any] = {"kind": request.kind}
    for field in attrs.fields(type(request)):
        value = getattr(request, field.name)
        if value is None or value == () or (field.name == "extra" and not value):
            continue
        obj[field.name] = _json_safe(value)
    text = _canonical(obj)
    return Job(line=line, text=text, digest=_digest(text), request=request)


# --------------------------------------------------------------------------- journal


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
    updated_at REAL NOT NULL
);
"""

_COLUMNS: Final = (
    "line, kind, text, digest, state, task_id, email, submitting_at, final_state, error, files"
)


class Journal:
    """The sqlite3 journal of a batch; every write is committed before it returns.

    ``Journal(path)`` opens (or creates) it; ``":memory:"`` keeps it in memory. Use it as a
    context manager or call `close`.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # Autocommit: each statement is its own durable transaction.
        self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            if self.path != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_DDL)
            self._db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?)",
                (str(_SCHEMA_VERSION),),
            )
        except BaseException:
            self._db.close()  # not a journal (or unwritable): no connection left open
            raise

    def close(self) -> None:
        """Close the database (idempotent)."""
        self._db.close()

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

        New lines are added as pending; an edited or removed line is updated or dropped
        only while it is pending; a changed or removed line that was sent raises
        `JournalConflictError` (nothing is changed then). ``retry_failed`` puts failed jobs
        back to pending (they will be submitted, and paid for, again).
        """
        known = {r.line: r for r in self.records()}
        wanted = {j.line: j for j in jobs}
        problems = [
            _conflict(rec, wanted.get(line))
            for line, rec in known.items()
            if rec.state is not JobState.PENDING
            and (line not in wanted or wanted[line].digest != rec.digest)
        ]
        if problems:
            raise JournalConflictError(
                f"{len(problems)} line(s) changed since they were sent; nothing was sent",
                problems=problems,
            )
        with self._transaction():
            for line in known.keys() - wanted.keys():
                self._db.execute("DELETE FROM jobs WHERE line = ?", (line,))
            for job in jobs:
                self._upsert(job, known.get(job.line), retry_failed=retry_failed)

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

    def mark_submitting(self, line: int, email: str | None) -> JobRecord:
        """The POST is about to be sent (its outcome is unknown until `mark_submitted`)."""
        return self._update(
            line, state=JobState.SUBMITTING.value, email=email, submitting_at=time.time()
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
    line, kind, text, digest, state, task_id, email, submitting_at, final, error, files = row
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
    )


def _conflict(rec: JobRecord, job: Job | None) -> str:
    sent = f"task {rec.task_id}" if rec.task_id is not None else rec.state.value
    if job is None:
        return f"line {rec.line} ({sent}) is gone from the jobs file"
    return f"line {rec.line} ({sent}) was edited after it was sent"


# --------------------------------------------------------------------------- runner


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


class _NullObserver:
    def job_event(self, event: JobEvent, record: JobRecord) -> None:
        pass


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


# Errors after which nothing can succeed in this run: stop and leave the journal resumable.
# (A broken account, 596 `AccountError`, stops the run only when no other account is left;
# see `BatchRunner`.)
_FATAL: Final = (AuthenticationError, PaymentRequiredError, ConfigurationError)
# Answers to a POST that mean the server refused the job: it exists nowhere, retrying as is
# cannot help.
_REFUSED: Final = (BadRequestError, NotFoundError, ModerationError, RequestValidationError)


def _repair(them: str = "it") -> str:
    """What to do about an account in error state (api/errors.md), in the journal's words."""
    return f"repair {them} (delete {them} and add {them} again with POST /accounts), then re-run"


_E = TypeVar("_E", bound=KlingError)


class _Resend(Exception):
    """The job's account refused it (596, nothing created): take a slot on another one."""


class BatchRunner:
    """Runs jobs through a client's job slots, journaling each step; resumable.

    ``out_dir`` receives each job's files (in ``line-NNNN/`` subfolders, or directly when
    ``subfolders`` is False). ``observer`` gets the events. See the module docstring for
    what a re-run does, and ``resubmit_unknown``.

    A run that is cancelled (or stopped by an error) waits, up to the client's
    ``request_timeout``, for the POSTs it has out, so that their task ids reach the journal;
    ``on_settle(n)`` is called when that wait for ``n`` POSTs begins (the command line says
    so on Ctrl-C). Cancelling the run again stops the wait: those rows stay ``submitting``
    and a re-run looks them up. A POST's answer is journaled when it comes, whether or not
    its job is still running: a refused POST (nothing created) is never left ``submitting``.

    An account in error state (596, api/errors.md: "with several accounts, stop using that
    one") is set aside as `KlingClient.run` does it (``client.slots.disable``) and the batch
    goes on with the other accounts: a job whose upload or POST it refused (nothing was
    created) goes back to ``pending`` and to another account; a job that names it stays
    ``pending``; a job whose task it holds (a refused poll) stays ``submitted``; a lost POST
    that cannot be looked up in its task list stays ``submitting``. A later run, once the
    account is repaired, takes them up. The run stops (raising `AccountError`, the journal
    resumable) only when every account is set aside, or at once with a single account.
    """

    def __init__(
        self,
        client: KlingClient,
        journal: Journal,
        out_dir: str | os.PathLike[str],
        *,
        observer: BatchObserver | None = None,
        resubmit_unknown: bool = False,
        subfolders: bool = True,
        on_settle: Callable[[int], object] | None = None,
    ) -> None:
        self.client = client
        self.journal = journal
        self.out_dir = Path(out_dir)
        self.observer: BatchObserver = observer or _NullObserver()
        self.resubmit_unknown = resubmit_unknown
        self.subfolders = subfolders
        self.on_settle = on_settle
        self._responses: dict[int, TaskResponse] = {}
        # POSTs still out: a cancelled run waits for them, so that the task ids they return
        # reach the journal before the caller closes it.
        self._posting: set[asyncio.Future[TaskResponse]] = set()
        # The error that stops the run, once one was raised: a job handed a slot meanwhile
        # (by the stopping job, leaving it) sends nothing.
        self._halted: KlingError | None = None

    async def run(self, jobs: Sequence[Job], *, retry_failed: bool = False) -> BatchSummary:
        """Bring every job to a final state (or as far as possible); return the summary.

        Raises `JournalConflictError` (nothing sent) when lines were edited after being
        sent, and re-raises an error that stops every job (401, 402, no account left that
        is not in error state) after the other jobs were stopped; the journal stays
        resumable.
        """
        self.journal.sync(jobs, retry_failed=retry_failed)
        by_line = {job.line: job for job in jobs}
        await self._recover_lost()
        work: list[Awaitable[None]] = []
        for rec in self.journal.records():
            if rec.state is JobState.SUBMITTED:
                self._emit(JobEvent.RESUMED, rec)
                work.append(self._resume(rec))
            elif rec.state is JobState.PENDING:
                self._emit(JobEvent.QUEUED, rec)
                work.append(self._submit(by_line[rec.line]))
            elif rec.state is JobState.SUBMITTING:  # left for a later run by _recover_lost
                self._emit(JobEvent.INCOMPLETE, rec)
            else:
                self._emit(JobEvent.SKIPPED, rec)
        try:
            await _run_all(work)
        finally:
            await self._settle_posts()
        aside = {email: str(why) for email, why in self.client.slots.disabled().items()}
        return BatchSummary(
            records=tuple(self.journal.records()),
            responses=self._responses,
            accounts_set_aside=aside,
        )

    def _emit(self, event: JobEvent, rec: JobRecord) -> None:
        self.observer.job_event(event, rec)

    def _folder(self, line: int) -> Path:
        return self.out_dir / f"line-{line:04d}" if self.subfolders else self.out_dir

    # -- new jobs ------------------------------------------------------------------------

    def _wanted_account(self, request: GenerationRequest) -> str | None:
        if request.email:
            return request.email
        default = self.client.email
        return default if default in self.client.slots.accounts else None

    async def _submit(self, job: Job) -> None:
        wanted = self._wanted_account(job.request)
        final: TaskResponse | None = None
        while True:
            holding = False
            try:
                hold = self.client.slots.acquire(wanted)
                async with hold as account:
                    holding = True
                    final = await self._send(job, account or None, hold, named=wanted is not None)
            except _Resend:
                continue  # its account was set aside: another one takes it
            except AccountError as exc:
                if holding:
                    raise  # the batch stops: no account left
                self._not_sent(job.line, wanted, exc)  # no slot: its account is set aside
                return
            break
        if final is not None:  # the slot is free again: downloading needs none
            await self._download(job.line, final)

    async def _send(
        self, job: Job, email: str | None, hold: SlotHold, *, named: bool
    ) -> TaskResponse | None:
        """Upload, POST and wait, on a slot of ``email`` (``hold``); the final response of a
        task that succeeded, or None after journaling any other end."""
        line = job.line
        if self._halted is not None:
            return None  # the run is stopping: the job stays pending
        try:
            # Uploaded first, so that ``submitting`` covers the POST alone.
            request = await self.client.upload_images(job.request, email=email)
        except AccountError as exc:  # nothing was uploaded, nothing sent
            self._account_refused(line, email, exc, named=named)
            return None
        except _FATAL as exc:
            self._emit(JobEvent.QUEUED, self.journal.note_error(line, str(exc)))
            self._halt(exc)
            raise
        except _REFUSED as exc:
            self._emit(JobEvent.FAILED, self.journal.mark_failed(line, f"upload: {exc}"))
            return None
        except KlingError as exc:  # network trouble: nothing was sent, a re-run sends it
            self._emit(JobEvent.INCOMPLETE, self.journal.note_error(line, f"upload: {exc}"))
            return None
        if self._halted is not None:
            return None
        try:
            response = await self._post(line, request, email)
        except AccountError as exc:  # refused: nothing was created
            self._account_refused(line, email, exc, named=named)
            return None
        except _FATAL as exc:
            self._halt(exc)
            raise
        if response is None:
            return None
        return await self._wait(line, response, email, hold)

    async def _post(
        self, line: int, request: GenerationRequest, email: str | None
    ) -> TaskResponse | None:
        """POST the job; its outcome is journaled (by `_posted`) before this returns, even
        when the job is cancelled meanwhile. None when it created no task to wait on;
        raises what stops the job's account or the batch (401, 402, 596)."""

        def submitted(resp: TaskResponse) -> None:
            if resp.task_id is not None:
                rec = self.journal.mark_submitted(line, resp.task_id, email)
                self._emit(JobEvent.SUBMITTED, rec)

        self.journal.mark_submitting(line, email)
        posting = asyncio.ensure_future(
            self.client.submit(request, email=email, on_submitted=submitted)
        )
        # Added first, so that it runs before the job's own code learns the outcome.
        posting.add_done_callback(functools.partial(self._posted, line, email))
        self._posting.add(posting)
        posting.add_done_callback(self._posting.discard)
        try:
            return await asyncio.shield(posting)
        except (AccountError, *_FATAL):
            raise  # journaled pending: nothing was created
        except KlingError:
            return None  # journaled by _posted

    def _posted(self, line: int, email: str | None, posting: asyncio.Future[TaskResponse]) -> None:
        """Journal a failed POST's outcome (a task id was journaled by the hook)."""
        if posting.cancelled():  # the client closed: the job may exist, a re-run looks
            return
        exc = posting.exception()
        if not isinstance(exc, KlingError):
            return  # succeeded, or a bug: the row stays ``submitting``, a re-run looks
        try:
            self._journal_post_error(line, email, exc)
        except Exception:  # a callback's error would reach no one but the loop's handler
            log.exception("line %d: the outcome of its POST (%s) was not journaled", line, exc)

    def _journal_post_error(self, line: int, email: str | None, exc: KlingError) -> None:
        if isinstance(exc, SubmissionUnknownError):
            self._emit(JobEvent.UNKNOWN, self.journal.mark_unknown(line, _unknown_text(exc)))
        elif isinstance(exc, (AccountError, *_FATAL)):  # refused before anything was created
            self._emit(JobEvent.QUEUED, self.journal.mark_pending(line, str(exc)))
            if isinstance(exc, AccountError):
                self._set_aside(email, exc)  # at once: queued jobs must not get its slots
        elif isinstance(exc, RateLimitError):  # busy past the retry budget: nothing created
            self._emit(JobEvent.INCOMPLETE, self.journal.mark_pending(line, str(exc)))
        elif isinstance(exc, _REFUSED):
            self._emit(JobEvent.FAILED, self.journal.mark_failed(line, str(exc)))
        elif isinstance(exc, TransportError) and isinstance(
            exc.__cause__, aiohttp.ClientConnectorError
        ):  # never connected
            self._emit(JobEvent.INCOMPLETE, self.journal.mark_pending(line, str(exc)))
        else:
            # Whatever else the client raises here it could not rule out a created job.
            self._emit(JobEvent.UNKNOWN, self.journal.mark_unknown(line, str(exc)))

    async def _settle_posts(self) -> None:
        """Wait (bounded) for POSTs a cancelled run left out; their hooks write the journal."""
        if not self._posting:
            return
        if self.on_settle is not None:
            try:
                self.on_settle(len(self._posting))
            except Exception:  # a display hook must not cost a task id
                log.exception("on_settle hook %r raised", self.on_settle)
        done, _ = await asyncio.wait(self._posting, timeout=self.client.config.request_timeout)
        for posting in done:
            if not posting.cancelled():
                posting.exception()  # retrieved: the job's own code reported it, or will not

    # -- accounts in error state -----------------------------------------------------------

    def _set_aside(self, email: str | None, exc: AccountError) -> bool:
        """Give ``email`` no more jobs, as the client does; False with a single account."""
        return self.client._set_aside(email, exc)

    def _account_refused(
        self, line: int, email: str | None, exc: AccountError, *, named: bool
    ) -> None:
        """596 to the job's upload or POST (nothing was created): back to pending, and to
        another account (raises `_Resend`) unless the job names this one; raises the
        batch's stop when no account is left."""
        self.journal.mark_pending(line, str(exc))
        if not self._set_aside(email, exc):
            raise self._stopped(email, exc) from exc
        self._stop_if_no_account_left(exc)
        if not named:
            raise _Resend
        note = (
            f"{self._in_error(email, exc)}; nothing was created. The job names that account: "
            f"{_repair()} to send it"
        )
        self._emit(JobEvent.INCOMPLETE, self.journal.note_error(line, note))

    def _not_sent(self, line: int, wanted: str | None, exc: AccountError) -> None:
        """No slot for the job: its account (or every account) is set aside."""
        self._stop_if_no_account_left(exc)
        if wanted is None:
            raise exc  # not expected: a job for any account is refused only when none is left
        note = f"{self._in_error(wanted, exc)}; not sent. The job names that account: {_repair()}"
        self._emit(JobEvent.INCOMPLETE, self.journal.note_error(line, f"{note} to send it"))

    def _in_error(self, email: str | None, exc: KlingError) -> str:
        """``account X is in error state (<the server's 596 answer>)``."""
        reason = self.client.slots.disabled().get(email or "", exc)
        return f"account {email or '(default)'} is in error state ({reason})"

    def _stop_if_no_account_left(self, exc: KlingError) -> None:
        slots = self.client.slots
        if len(slots.disabled()) == len(slots.accounts):
            raise self._stopped(None, exc) from exc

    def _stopped(self, email: str | None, exc: KlingError) -> AccountError:
        """The error that stops the batch: its only account, or every one, is in error state."""
        out = self.client.slots.disabled()
        if len(out) > 1 and len(out) == len(self.client.slots.accounts):
            reasons = "; ".join(f"{account}: {why}" for account, why in out.items())
            what, them = f"every account is in error state ({reasons})", "them"
        else:
            what, them = self._in_error(email or next(iter(out), None), exc), "it"
        return self._halt(
            AccountError(
                f"{what}: the batch stopped, no job can be sent. The journal keeps every job; "
                f"{_repair(them)} the same batch to resume",
                status=596,
                code=596,
            )
        )

    def _halt(self, exc: _E) -> _E:
        """Note that ``exc`` stops the run (before the slot of the job raising it is free)."""
        if self._halted is None:
            self._halted = exc
        return exc

    # -- waiting and results ---------------------------------------------------------------

    async def _resume(self, rec: JobRecord) -> None:
        assert rec.task_id is not None
        final = await self._wait(rec.line, rec.task_id, rec.email, None)
        if final is not None:
            await self._download(rec.line, final)

    async def _wait(
        self,
        line: int,
        task: int | TaskResponse,
        email: str | None,
        hold: SlotHold | None,
    ) -> TaskResponse | None:
        """The final response of a task that succeeded; None after journaling any other end.
        ``hold``: the slot the job holds (None: resuming, the wait takes one). A task that
        outlives its deadline keeps its slot until it ends (the client follows it), as
        `KlingClient.run` does."""
        try:
            final = await self.client.wait(task, email=email, hold_slot=hold is None)
        except TaskFailedError as exc:
            done = exc.task
            state = done.status_name if done is not None else None
            reason = done.failure_reason if done is not None else str(exc)
            if done is not None and done.task_id is not None:
                self._responses[line] = done
            self._emit(JobEvent.FAILED, self.journal.mark_failed(line, reason, state))
            return None
        except NotFoundError as exc:  # deleted, moderated, or out of credits
            self._emit(JobEvent.FAILED, self.journal.mark_failed(line, str(exc)))
            return None
        except AccountError as exc:
            # A refused poll (or, resuming, no slot of a set-aside account): the task goes
            # on at Kling; the row keeps its task id for a run after the repair.
            note = f"{self._in_error(email, exc)}; its task goes on: {_repair()} to wait for it"
            self._emit(JobEvent.INCOMPLETE, self.journal.note_error(line, note))
            if not self._set_aside(email, exc):
                raise self._stopped(email, exc) from exc
            self._stop_if_no_account_left(exc)
            return None
        except _FATAL as exc:
            self._emit(JobEvent.INCOMPLETE, self.journal.note_error(line, str(exc)))
            self._halt(exc)
            raise
        except TaskTimeoutError as exc:
            if hold is not None:
                self.client._hold_until_final(hold.detach(), task, email)  # it runs on
            note = f"{exc} (re-run to keep waiting)"
            self._emit(JobEvent.INCOMPLETE, self.journal.note_error(line, note))
            return None
        except KlingError as exc:
            note = f"{exc} (re-run to keep waiting)"
            self._emit(JobEvent.INCOMPLETE, self.journal.note_error(line, note))
            return None
        self._responses[line] = final
        return final

    async def _download(self, line: int, final: TaskResponse) -> None:
        folder = self._folder(line)
        try:
            paths = await self.client.download(final, folder)
        except (KlingError, OSError) as exc:
            note = f"download failed: {exc} (re-run to download)"
            self._emit(JobEvent.INCOMPLETE, self.journal.note_error(line, note, final.status_name))
            return
        files = [_relative(p, self.out_dir) for p in paths]
        rec = self.journal.mark_succeeded(line, final.status_name, files)
        self._emit(JobEvent.SUCCEEDED, rec)

    # -- lost submissions ------------------------------------------------------------------

    async def _recover_lost(self) -> None:
        """Settle jobs whose POST outcome is unknown; see the module docstring."""
        lost = [
            r for r in self.journal.records() if r.state in (JobState.SUBMITTING, JobState.UNKNOWN)
        ]
        for rec in lost:
            reason = self.client.slots.disabled().get(rec.email or "")
            if reason is not None:  # set aside by an earlier lookup: no request
                self._leave_lost(rec, reason)
                continue
            try:
                task_id = await self._lookup(rec)
            except AccountError as exc:  # the account's task list answers 596
                if not self._set_aside(rec.email, exc):
                    self.journal.note_error(rec.line, str(exc))
                    raise self._stopped(rec.email, exc) from exc
                self._leave_lost(rec, exc)
                continue
            except _FATAL:
                raise
            except _LookupIncomplete as exc:
                self._settle_unknown(rec, str(exc))
                continue
            except KlingError as exc:
                self._settle_unknown(rec, f"the task list could not be read ({exc})")
                continue
            if task_id is not None:
                adopted = self.journal.mark_submitted(rec.line, task_id, rec.email)
                log.warning("line %d: found task %s of an interrupted POST", rec.line, task_id)
                self._emit(JobEvent.ADOPTED, adopted)
            else:
                log.warning("line %d: the interrupted POST created no task; sending it", rec.line)
                self.journal.mark_pending(rec.line, "the interrupted POST created no task")
        slots = self.client.slots
        if lost and slots.disabled() and len(slots.disabled()) == len(slots.accounts):
            raise self._stopped(None, next(iter(slots.disabled().values())))

    def _leave_lost(self, rec: JobRecord, exc: KlingError) -> None:
        """Keep a lost POST's row as it is: its account cannot be asked now."""
        note = (
            f"{self._in_error(rec.email, exc)}; its task list cannot be read to look up the "
            f"interrupted POST, which is left for a later run (never sent blindly): {_repair()}"
        )
        log.warning("line %d: %s", rec.line, note)
        self.journal.note_error(rec.line, note)

    def _settle_unknown(self, rec: JobRecord, why: str) -> None:
        if self.resubmit_unknown:
            self.journal.mark_pending(rec.line, f"resubmitted on request; {why}")
            return
        text = (
            f"the POST's outcome is unknown: {why}; check the account's tasks, then re-run "
            "with --resubmit-unknown to send it again"
        )
        self.journal.mark_unknown(rec.line, text)  # reported as skipped by the run

    async def _lookup(self, rec: JobRecord) -> int | None:
        """The id of the task the lost POST created, or None when the account has none."""
        since = (rec.submitting_at or time.time()) - LOOKUP_SLACK_SECONDS
        claimed = self.journal.claimed_task_ids()
        wanted = rec.prompt or None

        def same_job(task: TaskResponse) -> bool:
            return (
                task.task_id is not None
                and task.task_id not in claimed
                and (task.arguments.get("prompt") or None) == wanted
            )

        tasks, complete = await self.client.find_tasks(
            same_job, since=int(since * 1000), email=rec.email, content_type=rec.kind
        )
        if tasks:
            return tasks[-1].task_id  # the oldest match: the list is newest first
        if not complete:
            raise _LookupIncomplete(
                "too many tasks were created since the POST to read back to it, and the "
                "newest of them do not include it"
            )
        return None


class _LookupIncomplete(Exception):
    """The task list could not rule out that a lost POST created a task."""


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def _unknown_text(exc: SubmissionUnknownError) -> str:
    text = str(exc)
    if exc.candidates:
        text += f" (candidate tasks: {', '.join(map(str, exc.candidates))})"
    return text


async def _run_all(work: Sequence[Awaitable[None]]) -> None:
    """Run every job; on the first error cancel the others, wait for them, and re-raise."""
    tasks = [asyncio.ensure_future(w) for w in work]
    if not tasks:
        return
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            error = None if task.cancelled() else task.exception()
            if error is not None:
                raise error
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
