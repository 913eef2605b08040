"""Jobs: one job's lifecycle — slot, submit, wait, follow, and accounts set aside.

`JobRunner.run` holds one of the account's job slots while it submits a request and waits
for the final state. The slot stays held until the job is final on the server: when the
caller is cancelled or its deadline passes after the POST went out, the runner keeps
polling the task in the background ("following" it) and frees the slot when it ends, so
new jobs never find the account over its maxJobs. An account that answers 596 (error
state) is set aside when there are others to go to (api/errors.md), and a job it refused
(nothing was created) goes to another account unless it names that one.

`JobEvents` is how a caller (the batch runner, to journal them) hears of the job's steps.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

import attrs

from .config import UNSET, Unset, sleep_scaled
from .errors import (
    AccountError,
    KlingError,
    RequestValidationError,
    SubmissionUnknownError,
    TaskFailedError,
    TaskTimeoutError,
)
from .models import ScheduledJob, TaskResponse
from .requests import GenerationRequest
from .slots import JobSlots, SlotHold
from .submit import Submission, Submitter
from .transport import Hook, call_hook, describe_error
from .waiter import TaskWaiter, default_timeout

__all__ = ["JobEvents", "JobPhase", "JobRunner", "Timeout", "check_timeout"]

log = logging.getLogger("kling_async")

#: What a follower waits for: a task id, a task, or a POST still under way.
Followed = int | TaskResponse | asyncio.Task[TaskResponse | None]
#: A wait's deadline: seconds, UNSET (the request's default) or None (no limit).
Timeout = float | Unset | None


class JobPhase(enum.Enum):
    """The step of a job that failed (`JobEvents.failed`)."""

    SLOT = "slot"  # no slot: the account (or every account) is set aside; nothing sent
    UPLOAD = "upload"  # a local image's upload; nothing was sent
    POST = "post"  # the POST: whether a job was created depends on the error
    WAIT = "wait"  # waiting for the final state; the task goes on at Kling


class JobEvents:
    """Callbacks of one job; subclass and override the ones you need (all do nothing).

    In order: ``started``, ``posted``, ``posting``, ``sending``, ``submitted``, ``final``.
    A step that fails calls ``failed``; after a 596 to the upload or POST, with another
    account to go to, the job starts over there (``started`` again).

    ``started``, ``posted`` and ``sending`` may raise to stop the job before anything is
    sent (`JobRunner.run` raises that exception); the others are hooks: their failures are
    logged, never raised, so a task id is never lost to them. ``sending``, ``submitted``
    and a POST's ``failed`` run in the POST's own task: they come even when the job was
    cancelled while its POST was out.
    """

    def started(self, email: str | None) -> None:
        """A job slot of ``email`` is held (None: the default account); the job starts."""

    def posted(self, request: GenerationRequest, email: str | None) -> None:
        """The request (its images uploaded) is about to be POSTed to ``email``."""

    def posting(self, post: asyncio.Task[TaskResponse | None]) -> None:
        """The POST runs in ``post``, a task of its own: it goes on when the job is
        cancelled (withdrawn if not yet sent), and ends after ``submitted`` or ``failed``
        (with the answer, or None)."""

    def sending(self, body: dict[str, Any], email: str | None) -> None:
        """The exact JSON body (with its ``replyRef`` tag) goes out to ``email`` now, after
        any identical request's turn: never called for a POST that is not sent."""

    def submitted(self, response: TaskResponse, email: str | None) -> None:
        """The server answered the POST (or recovery found the task): ``response.task_id``."""

    def failed(self, phase: JobPhase, error: KlingError, email: str | None) -> None:
        """The job's ``phase`` on ``email`` failed with ``error``; `JobRunner.run` raises it
        next, unless a 596 sends the job to another account."""

    def final(self, response: TaskResponse) -> None:
        """The task reached its final state (succeeded or failed)."""


_NO_EVENTS = JobEvents()


def check_timeout(timeout: object) -> None:
    """`RequestValidationError` unless ``timeout`` is UNSET, None or seconds >= 0."""
    if isinstance(timeout, Unset) or timeout is None:
        return
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or math.isnan(timeout)
        or timeout < 0
    ):
        raise RequestValidationError(
            f"timeout: must be a number of seconds >= 0 or None, got {timeout!r}", field="timeout"
        )


@attrs.frozen
class _Job:
    """What one `JobRunner.run` call was given."""

    request: GenerationRequest
    named: bool  # for that account only: never sent to another one
    timeout: Timeout | Callable[[], Timeout]
    on_submitted: Hook | None
    events: JobEvents
    follow: bool  # a cancelled job's slot is kept until the job ends

    async def failed(self, phase: JobPhase, error: KlingError, email: str | None) -> None:
        await call_hook(self.events.failed, phase, error, email)


class JobRunner:
    """Runs jobs on a client's slots, submitter and waiter.

    ``default_email(email)`` resolves the account a job goes to when neither the request
    nor the slots name one (the client reads the token's only account once).
    """

    def __init__(
        self,
        slots: JobSlots,
        submitter: Submitter,
        waiter: TaskWaiter,
        accounts: Mapping[str, int | None],
        default_email: Callable[[str | None], Awaitable[str | None]],
    ) -> None:
        self.slots = slots
        self._submitter = submitter
        self._waiter = waiter
        self._accounts = accounts
        self._default_email = default_email
        self._following: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def submitter(self) -> Submitter:
        """The submitter jobs go through (its `Reconciler` settles lost POSTs)."""
        return self._submitter

    @property
    def following(self) -> int:
        """How many jobs nobody waits for are followed (their slots still held)."""
        return len(self._following)

    async def run(
        self,
        request: GenerationRequest,
        *,
        email: str | None = None,
        timeout: Timeout | Callable[[], Timeout] = UNSET,
        on_submitted: Hook | None = None,
        events: JobEvents | None = None,
        follow_cancelled: bool = True,
    ) -> TaskResponse:
        """Hold a job slot, submit ``request``, wait for the final state; return it.

        ``email``: the account (a configured one), else any with a free slot. Raises
        `TaskFailedError` when the task failed, `TaskTimeoutError` past ``timeout``
        (UNSET: the request's default deadline; a function: asked when the wait begins).
        ``follow_cancelled=False``: a cancelled job frees its slot at once instead of
        keeping it until the job ends (for a caller that stops for good, as a cancelled
        batch run does; a POST under way still finishes and reports to ``events``).
        """
        events = events or _NO_EVENTS
        named = email in self._accounts
        job = _Job(request, named, timeout, on_submitted, events, follow_cancelled)
        while True:
            # No email (or none configured): the slots pick the account with a free slot.
            hold = self.slots.acquire(email if job.named else None)
            try:
                account = await hold.take()
            except AccountError as exc:  # that account, or every account, is set aside
                await job.failed(JobPhase.SLOT, exc, email)
                raise
            try:
                chosen = account or email or await self._default_email(None)
                resp = await self._submit(job, hold, chosen)
                if resp is None:
                    continue  # its account was set aside: another one takes the job
                return await self._wait_held(job, hold, resp, chosen)
            finally:
                hold.release()  # nothing, when the slot was handed on to a follower

    async def _submit(self, job: _Job, hold: SlotHold, email: str | None) -> TaskResponse | None:
        """Upload and POST on ``hold``'s slot of ``email``: the answer, or None when a 596
        set the account aside and the job goes to another one."""
        events, request = job.events, job.request
        events.started(email)
        try:
            if request.has_local_images():  # uploaded per account: again on another one
                request = await self._submitter.upload_images(request, email)
        except KlingError as exc:
            await job.failed(JobPhase.UPLOAD, exc, email)
            if self._elsewhere(exc, email, job.named):
                return None
            raise

        async def answered(resp: TaskResponse) -> None:
            await call_hook(job.on_submitted, resp)
            await call_hook(events.submitted, resp, email)

        async def post_failed(exc: BaseException) -> None:  # in the POST's task
            if isinstance(exc, AccountError):
                self.set_aside(email, exc)  # at once: also when the job has left
            if isinstance(exc, KlingError):
                await job.failed(JobPhase.POST, exc, email)

        events.posted(request, email)
        sub: Submission | None = None
        try:
            quiet = events is _NO_EVENTS  # KlingClient.run: no event costs a call
            sub = self._submitter.start(
                request, email, job.on_submitted if quiet else answered,
                None if quiet else lambda body: events.sending(body, email),
                on_failed=post_failed,
            )  # fmt: skip
            if not quiet:
                await call_hook(events.posting, sub.posting)
            return await sub.answer
        except KlingError as exc:
            if sub is None:  # raised before the POST's task started: told here
                await job.failed(JobPhase.POST, exc, email)
            if isinstance(exc, SubmissionUnknownError):
                self.hold_while_unknown(hold.detach(), exc, email)  # it may be running
            if self._elsewhere(exc, email, job.named):
                return None
            raise
        except asyncio.CancelledError:
            if sub is not None and job.follow:  # the POST goes on: its job may hold the slot
                self.hold_until_final(hold.detach(), sub.posting, email)
            raise

    def _elsewhere(self, error: KlingError, email: str | None, named: bool) -> bool:
        """Whether the job goes to another account after ``error`` on the upload or POST:
        a 596 (nothing was created; this account is set aside), the job names no account,
        and one is left."""
        if not isinstance(error, AccountError) or not self.set_aside(email, error) or named:
            return False
        return len(self.slots.disabled()) < len(self._accounts)

    async def _wait_held(
        self, job: _Job, hold: SlotHold, resp: TaskResponse, email: str | None
    ) -> TaskResponse:
        limit = job.timeout() if callable(job.timeout) else job.timeout
        deadline = job.request.default_timeout if isinstance(limit, Unset) else limit
        try:
            final = await self._waiter.wait(resp, email=email, timeout=deadline)
        except (asyncio.CancelledError, TaskTimeoutError) as exc:
            why = "cancelled" if isinstance(exc, asyncio.CancelledError) else "timed out"
            log.warning("stopped waiting for task %s (%s); the job goes on", resp.task_id, why)
            if job.follow or isinstance(exc, TaskTimeoutError):
                self.hold_until_final(hold.detach(), resp, email)
            if isinstance(exc, TaskTimeoutError):
                await job.failed(JobPhase.WAIT, exc, email)
            raise
        except KlingError as exc:
            if isinstance(exc, TaskFailedError) and exc.task is not None:
                await call_hook(job.events.final, exc.task)
            elif isinstance(exc, AccountError):
                self.set_aside(email, exc)  # the task stays; wait on it once repaired
            await job.failed(JobPhase.WAIT, exc, email)
            raise
        if job.events is not _NO_EVENTS:
            await call_hook(job.events.final, final)
        return final

    async def wait_holding(
        self, task: int | TaskResponse, email: str | None, timeout: float | Unset | None
    ) -> TaskResponse:
        """Wait for a task started elsewhere while holding one of its account's slots
        (kept until the job ends when the wait is cancelled or times out)."""
        hold = self.slots.acquire(email if email in self._accounts else None)
        async with hold as account:
            try:
                return await self._waiter.wait(task, email=account or email, timeout=timeout)
            except (asyncio.CancelledError, TaskTimeoutError):
                self.hold_until_final(hold.detach(), task, account or email)  # still runs
                raise

    def hold_until_final(self, hold: SlotHold, submission: Followed, email: str | None) -> None:
        """Keep a job's slot in the background until the job is final on the server."""
        self._keep(hold, self._follow(submission, email))

    def hold_while_unknown(
        self, hold: SlotHold, error: SubmissionUnknownError, email: str | None
    ) -> None:
        """Keep the slot of a POST whose outcome is unknown (the job may be running) until
        its tag shows the job final, or gone from the scheduler, or its kind's deadline."""
        self._keep(hold, self._follow_unknown(error, email))

    def _keep(self, hold: SlotHold, following: Coroutine[Any, Any, None]) -> None:
        if self._closed:  # closing: no one will submit again, and no poll could go out
            following.close()
            hold.release()
            return
        follow = asyncio.get_running_loop().create_task(following)
        self._following.add(follow)
        follow.add_done_callback(self._following.discard)
        # A callback, not a finally: a task cancelled before its first step runs no code.
        follow.add_done_callback(lambda _: hold.release())

    async def _follow(self, submission: Followed, email: str | None) -> None:
        """Wait for a job nobody waits for, at most its kind's default deadline (a task
        id alone: the longest, a video's)."""
        task: int | TaskResponse
        if isinstance(submission, asyncio.Task):
            await asyncio.wait({submission})
            answered = None if submission.cancelled() else submission.result()
            if answered is None:
                return  # no job to wait for (the failure was reported to the caller or logged)
            task = answered
        else:
            task = submission
        resp = task if isinstance(task, TaskResponse) else None
        task_id = resp.task_id if resp is not None else task
        log.info(
            "task %s: nobody waits for it any more; its job slot on %s stays taken until it ends",
            task_id,
            email or "the default account",
        )
        try:
            await self._waiter.wait(task, email=email, timeout=default_timeout(resp))
        except TaskFailedError:
            pass
        except KlingError as exc:
            log.warning(
                "task %s: no longer followed (%s); its job slot is free again",
                task_id,
                describe_error(exc),
            )
        except Exception:  # nobody awaits this task: its error would only reach the loop
            log.exception("task %s: following it failed; its job slot is free again", task_id)

    async def _follow_unknown(self, error: SubmissionUnknownError, email: str | None) -> None:
        """Look for the tag of a POST whose outcome is unknown until its job is found (then
        follow it), the scheduler twice answers without it (not running: no slot used), or
        the kind's deadline passes."""
        request = error.request
        tag = request.reply_ref if request is not None else None
        limit = request.default_timeout if request is not None else default_timeout(None)
        loop = asyncio.get_running_loop()
        deadline = None if limit is None else loop.time() + limit
        reconciler = self._submitter.reconciler
        absent = 0
        while deadline is None or loop.time() < deadline:
            found = await reconciler.find_tag(tag, email) if tag else None
            if isinstance(found, ScheduledJob) and found.id is not None:
                log.warning("task %s: found by its tag after an unknown outcome", found.id)
                await self._follow(found.id, email)
                return
            absent = absent + 1 if found is False else 0
            if absent >= 2:
                return  # not running on the server: it holds no slot there
            await sleep_scaled(reconciler.follow_interval)
        log.warning("the job of an unknown POST was not found by its deadline; slot freed")

    def set_aside(self, email: str | None, error: AccountError) -> bool:
        """Stop giving jobs to an account in error state (with several accounts, stop
        using that one). True when it was set aside."""
        if not email or len(self._accounts) < 2 or email not in self._accounts:
            return False
        if email not in self.slots.disabled():
            log.warning("account %s is in error state (%s); no more jobs go to it", email, error)
            self.slots.disable(email, error)
        return True

    async def aclose(self) -> None:
        """Stop following jobs (they go on running on the server)."""
        self._closed = True
        if self._following:
            log.info(
                "closing: %d jobs nobody waits for still run on the server; no longer followed",
                len(self._following),
            )
            for follow in self._following:
                follow.cancel()
            await asyncio.wait(self._following)
