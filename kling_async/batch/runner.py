"""The batch runner: every job through the client's `JobRunner`, each step journaled.

A new job's lifecycle (slot, upload, POST, wait, follow, another account after a 596) is
one `JobRunner.run` call, the lifecycle `KlingClient.run` uses; its steps are journaled by
`kling_async.batch.steps`. What becomes of a job's row after an error is written once, in
the outcome table (`kling_async.batch.outcomes`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

from ..config import UNSET, Unset
from ..errors import ConfigurationError, KlingError
from ..jobs import check_timeout
from ..models import TaskResponse
from ..requests import GenerationRequest
from .accounts import AccountGuard
from .events import BatchObserver, BatchSummary, JobEvent, NullObserver
from .gallery import GALLERY_NAME, write_gallery
from .jobsfile import Job
from .journal import JobRecord, JobState, Journal
from .lost import LostPosts
from .manifest import MANIFEST_NAME, write_manifest
from .steps import LineSteps, RunState

if TYPE_CHECKING:
    from ..client import KlingClient

#: Events after which ``results.jsonl`` is rewritten: a job got as far as this run takes it.
_ENDS: Final = frozenset(
    {JobEvent.SUCCEEDED, JobEvent.FAILED, JobEvent.UNKNOWN, JobEvent.INCOMPLETE}
)

__all__ = ["BatchRunner"]

log = logging.getLogger("kling_async")


class BatchRunner:
    """Runs jobs through a client's `JobRunner` (``client.jobs``), journaling each step;
    resumable.

    ``out_dir`` receives each job's files (in ``line-NNNN/`` subfolders, or directly when
    ``subfolders`` is False), and ``results.jsonl`` (`kling_async.batch.manifest`), rewritten
    as jobs finish. ``observer`` gets the events. ``timeout``: seconds each job's wait may
    last (UNSET: the job's default deadline, as `KlingClient.run`; None: no limit; read
    when a wait begins); a job past it is noted, its task runs on (its slot kept until it
    ends) and a re-run waits again. A re-run resumes: finished jobs are skipped, jobs with a task
    id are waited on again, lost POSTs are looked up (never resent blindly;
    ``resubmit_unknown`` sends the ``unknown`` ones again).

    A run that is cancelled (or stopped by an error) waits, up to ``request_timeout``, for
    the POSTs it has out (one not yet sent, behind an identical one, is withdrawn), so that
    their task ids reach the journal; ``on_settle(n)`` is called when that wait begins for
    ``n`` POSTs. Cancelling the run again stops it: those rows stay ``submitting``.

    An account in error state (596) is set aside by the lifecycle `KlingClient.run` uses
    (a job it refused goes to another account unless it names that one) and the batch goes
    on with the other accounts (see `kling_async.batch.accounts`). The run stops
    (raising `AccountError`, the journal resumable) only when every account is set aside,
    or at once with a single account.
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
        timeout: float | Unset | None = UNSET,
    ) -> None:
        check_timeout(timeout)  # before anything is sent
        self.client = client
        self.journal = journal
        self.out_dir = Path(out_dir)
        self.observer: BatchObserver = observer or NullObserver()
        self.resubmit_unknown = resubmit_unknown
        self.subfolders = subfolders
        self.on_settle = on_settle
        self.timeout = timeout
        self._accounts = AccountGuard(client, journal, self.observer, client.jobs.set_aside)
        self._run = RunState(journal, self._emit, self._accounts)

    async def run(self, jobs: Sequence[Job], *, retry_failed: bool = False) -> BatchSummary:
        """Bring every job to a final state (or as far as possible); return the summary.

        Raises `JournalConflictError` (nothing sent) when lines were edited after being
        sent, `ConfigurationError` (nothing sent) when a line names an account the client
        is not configured with, and re-raises an error that stops every job (401, 402, no
        account left that is not in error state) after the other jobs were stopped; the
        journal stays resumable.
        """
        self._check_accounts(jobs)
        self._run.over = False
        self.journal.sync(jobs, retry_failed=retry_failed)
        by_line = {job.line: job for job in jobs}
        await LostPosts(
            self.client,
            self.journal,
            self._accounts,
            self.observer,
            resubmit_unknown=self.resubmit_unknown,
        ).settle()
        work: list[Awaitable[None]] = []
        for rec in self.journal.records():
            if rec.state is JobState.SUBMITTED:
                self._emit(JobEvent.RESUMED, rec)
                work.append(self._resume(rec))
            elif rec.state is JobState.PENDING:
                self._emit(JobEvent.QUEUED, rec)
                work.append(self._submit(by_line[rec.line]))
            elif rec.state is JobState.SUBMITTING:  # left for a later run by LostPosts
                self._emit(JobEvent.INCOMPLETE, rec)
            else:
                self._emit(JobEvent.SKIPPED, rec)
        try:
            await _run_all(work)
        finally:
            try:
                await self._settle_posts()
            finally:
                self._run.over = True  # the caller may close the journal: later answers wait
            self._write_manifest()
        aside = {email: str(why) for email, why in self.client.slots.disabled().items()}
        return BatchSummary(
            records=tuple(self.journal.records()),
            responses=self._run.responses,
            accounts_set_aside=aside,
        )

    def _emit(self, event: JobEvent, rec: JobRecord) -> None:
        self.observer.job_event(event, rec)
        if event in _ENDS:
            self._write_manifest()

    def _write_manifest(self) -> None:
        try:
            write_manifest(self.out_dir, self.journal.records())
            write_gallery(self.out_dir)
        except OSError as exc:  # the journal keeps everything: a re-run writes it again
            log.warning("%s / %s not written: %s", MANIFEST_NAME, GALLERY_NAME, exc)

    def _steps(self, line: int) -> LineSteps:
        return LineSteps(line, self._run)

    # -- new jobs ------------------------------------------------------------------------

    def _wanted_account(self, request: GenerationRequest) -> str | None:
        if request.email:
            return request.email
        default = self.client.email
        return default if default in self.client.slots.accounts else None

    def _check_accounts(self, jobs: Sequence[Job]) -> None:
        """`ConfigurationError` (nothing sent) for a line naming an account the client is
        not configured with; with none configured, any: the token's accounts are the
        server's to know, as for `KlingClient.run`."""
        accounts = self.client.slots.accounts
        if "" in accounts:
            return
        for job in jobs:
            email = job.request.email
            if email and email not in accounts:
                known = ", ".join(sorted(accounts))
                raise ConfigurationError(
                    f"line {job.line}: email: {email!r} is not a configured account ({known})"
                )

    async def _submit(self, job: Job) -> None:
        wanted = self._wanted_account(job.request)
        steps = self._steps(job.line)
        # The timeout as it is when the job's wait begins.
        final = await steps.run(self.client, job.request, wanted, lambda: self.timeout)
        if final is not None:  # the slot is free again: downloading needs none
            await self._download(job.line, final)

    async def _settle_posts(self) -> None:
        """Wait (bounded) for POSTs a cancelled run left out; their steps write the journal
        (a POST not yet sent, behind an identical one, is withdrawn by its submission)."""
        posts = self._run.posts
        if not posts:
            return
        if self.on_settle is not None:
            try:
                self.on_settle(len(posts))
            except Exception:  # a display hook must not cost a task id
                log.exception("on_settle hook %r raised", self.on_settle)
        done, _ = await asyncio.wait(posts, timeout=self.client.config.request_timeout)
        for posting in done:
            if not posting.cancelled():
                posting.exception()  # retrieved: the job's own code reported it, or will not

    # -- resumed jobs and results ----------------------------------------------------------

    async def _resume(self, rec: JobRecord) -> None:
        assert rec.task_id is not None
        steps = self._steps(rec.line)
        final = await steps.resume(self.client, rec.task_id, rec.email, self.timeout)
        if final is not None:
            await self._download(rec.line, final)

    async def _download(self, line: int, final: TaskResponse) -> None:
        folder = self._folder(line)
        try:
            # With covers: a video's cover is its poster in the gallery.
            paths = await self.client.download(final, folder, covers=True)
        except (KlingError, OSError) as exc:
            note = f"download failed: {exc} (re-run to download)"
            self._emit(JobEvent.INCOMPLETE, self.journal.note_error(line, note, final.status_name))
            return
        files = [_relative(p, self.out_dir) for p in paths]
        rec = self.journal.mark_succeeded(line, final.status_name, files)
        self._emit(JobEvent.SUCCEEDED, rec)

    def _folder(self, line: int) -> Path:
        return self.out_dir / f"line-{line:04d}" if self.subfolders else self.out_dir


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


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
