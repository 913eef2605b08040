"""Jobs: one job's lifecycle — slot, submit, wait, follow, and accounts set aside.

`JobRunner.run` holds one of the account's job slots while it submits a request and waits
for the final state. The slot stays held until the job is final on the server: when the
caller is cancelled or its deadline passes after the POST went out, the runner keeps
polling the task in the background ("following" it) and frees the slot when it ends, so
new jobs never find the account over its maxJobs. An account that answers 596 (error
state) is set aside when there are others to go to (api/errors.md).

`JobEvents` is how a caller (the batch runner) hears of the job's steps: ``posted`` just
before the POST goes out, ``submitted`` with the server's answer (the task id), ``final``
with the final state.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

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
from .submit import Submitter
from .transport import Hook, call_hook, describe_error
from .waiter import TaskWaiter, default_timeout

__all__ = ["JobEvents", "JobRunner", "check_timeout"]

log = logging.getLogger("kling_async")

#: What a follower waits for: a task id, a task, or a POST still under way.
Followed = int | TaskResponse | asyncio.Task[TaskResponse | None]


class JobEvents:
    """Callbacks of one job; subclass and override the ones you need (all do nothing).

    ``posted`` runs just before the POST goes out (an exception there stops the job
    before anything is sent); ``submitted`` and ``final`` are hooks: their failures are
    logged, never raised, so a task id is never lost to them.
    """

    def posted(self, request: GenerationRequest, email: str | None) -> None:
        """The request (its images uploaded) is about to be POSTed to ``email``."""

    def submitted(self, response: TaskResponse, email: str | None) -> None:
        """The server answered the POST (or recovery found the task): ``response.task_id``."""

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
        timeout: float | Unset | None = UNSET,
        on_submitted: Hook | None = None,
        events: JobEvents | None = None,
    ) -> TaskResponse:
        """Hold a job slot, submit ``request``, wait for the final state; return it.

        ``email``: the account (a configured one), else any with a free slot. Raises
        `TaskFailedError` when the task failed, `TaskTimeoutError` past ``timeout``
        (UNSET: the request's default deadline).
        """
        events = events or _NO_EVENTS
        deadline = request.default_timeout if isinstance(timeout, Unset) else timeout
        while True:
            # No email (or none configured): the slots pick the account with a free slot.
            hold = self.slots.acquire(email if email in self._accounts else None)
            async with hold as account:
                chosen = account or email
                if not chosen:
                    chosen = await self._default_email(chosen)
                posting: asyncio.Task[TaskResponse | None] | None = None
                try:
                    if request.has_local_images():
                        request = await self._submitter.upload_images(request, chosen)
                    events.posted(request, chosen)
                    sub = self._submitter.start(request, chosen, on_submitted)
                    posting = sub.posting
                    resp = await sub.answer
                except AccountError as exc:
                    # Nothing was created (the account cannot take jobs): with another
                    # account to go to, set this one aside and take a slot elsewhere.
                    if not self.set_aside(chosen, exc) or email in self._accounts:
                        raise
                    if len(self.slots.disabled()) == len(self._accounts):
                        raise  # no account left: the server's own answer says why
                    continue
                except SubmissionUnknownError as exc:
                    self.hold_while_unknown(hold.detach(), exc, chosen)  # it may be running
                    raise
                except asyncio.CancelledError:
                    if posting is not None:  # the POST goes on: its job may hold the slot
                        self.hold_until_final(hold.detach(), posting, chosen)
                    raise
                if events is not _NO_EVENTS:
                    await call_hook(events.submitted, resp, chosen)
                return await self._wait_held(hold, resp, chosen, deadline, events)

    async def _wait_held(
        self,
        hold: SlotHold,
        resp: TaskResponse,
        email: str | None,
        deadline: float | Unset | None,
        events: JobEvents,
    ) -> TaskResponse:
        try:
            final = await self._waiter.wait(resp, email=email, timeout=deadline)
        except TaskFailedError as exc:
            if exc.task is not None:
                await call_hook(events.final, exc.task)
            raise
        except AccountError as exc:
            self.set_aside(email, exc)  # the task stays; wait on it once repaired
            raise
        except (asyncio.CancelledError, TaskTimeoutError) as exc:
            why = "cancelled" if isinstance(exc, asyncio.CancelledError) else "timed out"
            log.warning("stopped waiting for task %s (%s); the job goes on", resp.task_id, why)
            self.hold_until_final(hold.detach(), resp, email)
            raise
        if events is not _NO_EVENTS:
            await call_hook(events.final, final)
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
