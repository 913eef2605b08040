"""The batch runner: every job through the client's job slots, each step journaled.

What becomes of a job's row after an error is written once, in the outcome table
(`kling_async.batch.outcomes`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ..config import UNSET, Unset
from ..errors import (
    AccountError,
    KlingError,
    SubmissionUnknownError,
    TaskFailedError,
    TaskTimeoutError,
)
from ..jobs import check_timeout
from ..models import TaskResponse
from ..reconcile import tagged
from ..requests import GenerationRequest
from ..slots import SlotHold
from .accounts import AccountGuard, Resend
from .events import BatchObserver, BatchSummary, JobEvent, NullObserver
from .gallery import GALLERY_NAME, write_gallery
from .jobsfile import Job
from .journal import JobRecord, JobState, Journal
from .lost import LostPosts
from .manifest import MANIFEST_NAME, write_manifest
from .outcomes import FATAL, Phase, outcome_of

if TYPE_CHECKING:
    from ..client import KlingClient

#: Events after which ``results.jsonl`` is rewritten: a job got as far as this run takes it.
_ENDS: Final = frozenset(
    {JobEvent.SUCCEEDED, JobEvent.FAILED, JobEvent.UNKNOWN, JobEvent.INCOMPLETE}
)

__all__ = ["BatchRunner"]

log = logging.getLogger("kling_async")


class BatchRunner:
    """Runs jobs through a client's job slots, journaling each step; resumable.

    ``out_dir`` receives each job's files (in ``line-NNNN/`` subfolders, or directly when
    ``subfolders`` is False), and ``results.jsonl`` (`kling_async.batch.manifest`), rewritten
    as jobs finish. ``observer`` gets the events. ``timeout``: seconds each job's wait may
    last (UNSET: the client's; None: no limit); a job past it is noted, its task runs on
    and a re-run waits again. A re-run resumes: finished jobs are skipped, jobs with a task
    id are waited on again, lost POSTs are looked up (never resent blindly;
    ``resubmit_unknown`` sends the ``unknown`` ones again).

    A run that is cancelled (or stopped by an error) waits, up to ``request_timeout``, for
    the POSTs it has out (one not yet sent, behind an identical one, is withdrawn), so that
    their task ids reach the journal; ``on_settle(n)`` is called when that wait begins for
    ``n`` POSTs. Cancelling the run again stops it: those rows stay ``submitting``.

    An account in error state (596) is set aside as `KlingClient.run` does it and the batch
    goes on with the other accounts (see `kling_async.batch.accounts`). The run stops
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
        self._responses: dict[int, TaskResponse] = {}
        # POSTs still out: a cancelled run waits for their task ids to reach the journal.
        self._posting: set[asyncio.Future[TaskResponse]] = set()

    async def run(self, jobs: Sequence[Job], *, retry_failed: bool = False) -> BatchSummary:
        """Bring every job to a final state (or as far as possible); return the summary.

        Raises `JournalConflictError` (nothing sent) when lines were edited after being
        sent, and re-raises an error that stops every job (401, 402, no account left that
        is not in error state) after the other jobs were stopped; the journal stays
        resumable.
        """
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
            await self._settle_posts()
            self._write_manifest()
        aside = {email: str(why) for email, why in self.client.slots.disabled().items()}
        return BatchSummary(
            records=tuple(self.journal.records()),
            responses=self._responses,
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

    def _journal(
        self,
        phase: Phase,
        line: int,
        exc: KlingError,
        final_state: str | None = None,
        *,
        note: str | None = None,
    ) -> None:
        """Write what ``exc`` makes of the row (`OUTCOMES`) and report it; ``note``
        replaces the row's note."""
        outcome = outcome_of(phase, exc)
        if note is None:
            note = outcome.note.format(exc=exc)
        if outcome.state is None:
            rec = self.journal.note_error(line, note, final_state)
        elif outcome.state is JobState.PENDING:
            rec = self.journal.mark_pending(line, note)
        elif outcome.state is JobState.FAILED:
            rec = self.journal.mark_failed(line, note, final_state)
        else:
            rec = self.journal.mark_unknown(line, note)
        self._emit(outcome.event, rec)

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
            except Resend:
                continue  # its account was set aside: another one takes it
            except AccountError as exc:
                if holding:
                    raise  # the batch stops: no account left
                self._accounts.not_sent(job.line, wanted, exc)  # its account is set aside
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
        if self._accounts.halted is not None:
            return None  # the run is stopping: the job stays pending
        try:
            # Uploaded first, so that ``submitting`` covers the POST alone.
            request = await self.client.upload_images(job.request, email=email)
        except AccountError as exc:  # nothing was uploaded, nothing sent
            self._accounts.refused(line, email, exc, named=named)
            return None
        except KlingError as exc:
            self._journal(Phase.UPLOAD, line, exc)
            if isinstance(exc, FATAL):
                self._accounts.halt(exc)
                raise
            return None
        if self._accounts.halted is not None:
            return None
        try:
            response = await self._post(line, request, email, hold)
        except AccountError as exc:  # refused: nothing was created
            self._accounts.refused(line, email, exc, named=named)
            return None
        except FATAL as exc:
            self._accounts.halt(exc)
            raise
        if response is None:
            return None
        return await self._wait(line, response, email, hold)

    async def _post(
        self, line: int, request: GenerationRequest, email: str | None, hold: SlotHold
    ) -> TaskResponse | None:
        """POST the job; its outcome is journaled (by `_posted`) before this returns, even
        when the job is cancelled meanwhile. None when it created no task to wait on;
        raises what stops the job's account or the batch (401, 402, 596)."""

        def submitted(resp: TaskResponse) -> None:
            if resp.task_id is not None:
                rec = self.journal.mark_submitted(line, resp.task_id, email)
                self._emit(JobEvent.SUBMITTED, rec)

        sent: list[bool] = []  # the POST went out (not just waiting for an identical one's turn)

        def sending(body: dict[str, Any]) -> None:
            self.journal.mark_submitting(line, email, body)  # the exact body, with its tag
            sent.append(True)

        if self.client.push is None:  # a push receiver mints its own tags
            request = tagged(request)  # journaled with the body: a resume finds it
        posting = asyncio.ensure_future(
            self.client.submit(request, email=email, on_submitted=submitted, on_sending=sending)
        )
        # Added first, so that it runs before the job's own code learns the outcome.
        posting.add_done_callback(functools.partial(self._posted, line, email))
        self._posting.add(posting)
        posting.add_done_callback(self._posting.discard)
        try:
            return await asyncio.shield(posting)
        except asyncio.CancelledError:
            if not sent:  # still waiting for its turn: withdrawn, never sent
                posting.cancel()
            raise
        except (AccountError, *FATAL):
            raise  # journaled pending: nothing was created
        except SubmissionUnknownError as exc:
            self.client.jobs.hold_while_unknown(hold.detach(), exc, email)  # it may run
            return None  # journaled by _posted
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
            unknown = _unknown_text(exc) if isinstance(exc, SubmissionUnknownError) else None
            self._journal(Phase.POST, line, exc, note=unknown)
            if isinstance(exc, AccountError):
                self._accounts.set_aside(email, exc)  # at once: queued jobs must not get it
        except Exception:  # a callback's error would reach no one but the loop's handler
            log.exception("line %d: the outcome of its POST (%s) was not journaled", line, exc)

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
            final = await self.client.wait(
                task, email=email, timeout=self.timeout, hold_slot=hold is None
            )
        except AccountError as exc:
            self._accounts.poll_refused(line, email, exc)
            return None
        except TaskFailedError as exc:
            done = exc.task
            if done is not None and done.task_id is not None:
                self._responses[line] = done
            state = done.status_name if done is not None else None
            reason = done.failure_reason if done is not None else str(exc)
            self._journal(Phase.WAIT, line, exc, state, note=reason)
            return None
        except KlingError as exc:
            if isinstance(exc, TaskTimeoutError) and hold is not None:
                self.client.jobs.hold_until_final(hold.detach(), task, email)  # it runs on
            self._journal(Phase.WAIT, line, exc)
            if isinstance(exc, FATAL):
                self._accounts.halt(exc)
                raise
            return None
        self._responses[line] = final
        return final

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
