"""TaskWaiter: poll ``GET /tasks/{id}`` until ``status_final``, cheaply and with a deadline.

When to poll is `kling_async.polling`'s job: a growing delay, the service's ETA when it is
plausible, a floor per poll and a client-wide cap (`PollLimiter`).
Transient poll failures (after the client's own retries) are retried inside the same
deadline. At the deadline `TaskTimeoutError` is raised; the job may still finish and can
be waited on again. A 404 on a poll of a task seen before (the submission's answer, or an
earlier poll) ends the wait with `TaskGoneError` (deleted, failed at
moderation, or out of credits), a 410 with `TaskExpiredError`; an answer about another task
is not taken for the polled one (it is polled again); a ``succeed`` without works is an
`EmptyResultError`.

Default deadlines (seconds, ``timeout`` not given): `DEFAULT_IMAGE_TIMEOUT` for image
tasks, `DEFAULT_VIDEO_TIMEOUT` for video tasks; ``timeout=None`` waits without a deadline.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import Any, Protocol

import attrs

from .config import (
    DEFAULT_IMAGE_TIMEOUT,
    DEFAULT_POLL,
    DEFAULT_VIDEO_TIMEOUT,
    UNSET,
    PollPolicy,
    Unset,
    default_deadline,
    scaled,
)
from .errors import (
    EmptyResultError,
    NotFoundError,
    PayloadError,
    PaymentRequiredError,
    RateLimitError,
    ServerError,
    TaskExpiredError,
    TaskFailedError,
    TaskGoneError,
    TaskTimeoutError,
    TransportError,
)
from .models import TaskResponse
from .polling import EtaReader, PollLimiter, poll_delays

__all__ = [
    "DEFAULT_IMAGE_TIMEOUT",
    "DEFAULT_POLL",
    "DEFAULT_VIDEO_TIMEOUT",
    "UNSET",
    "PollLimiter",
    "PollPolicy",
    "TaskWaiter",
    "default_timeout",
]

log = logging.getLogger("kling_async")


class _PollTimeout(Exception):
    """A poll did not answer within the time left before the deadline."""


#: Failures of a poll that are worth another poll before the deadline.
_TRANSIENT = (TransportError, ServerError, RateLimitError, PayloadError)


class PushSource(Protocol):
    """What a waiter needs from a push receiver (see `kling_async.webhooks`)."""

    @property
    def trusted(self) -> bool: ...

    async def next_update(
        self, task_id: int, after: TaskResponse | None, timeout: float
    ) -> TaskResponse | None: ...

    def forget(self, task_id: int) -> None: ...

    def tracks(self, task_id: int) -> bool: ...


class TaskSource(Protocol):
    """What a waiter needs from a client."""

    @property
    def poll_policy(self) -> PollPolicy: ...

    @property
    def poll_limiter(self) -> PollLimiter: ...

    async def get_task(self, task_id: int, email: str | None = None) -> TaskResponse: ...

    @property
    def push(self) -> PushSource | None: ...


def default_timeout(response: TaskResponse | None) -> float:
    """The default deadline for a task, by its type (video or image): `default_deadline`."""
    kind = response.task.type if response is not None and response.task is not None else None
    return default_deadline(kind)


class _Step:
    """One wait's state, moved on by `advance` one poll (or callback) at a time."""

    __slots__ = (
        "_delays",
        "_email",
        "_eta",
        "_loop",
        "_push",
        "_timeout",
        "_unconfirmed",
        "_waiter",
        "deadline",
        "last",
        "task_id",
    )

    def __init__(
        self,
        waiter: TaskWaiter,
        task: int | TaskResponse,
        email: str | None,
        timeout: float | Unset | None,
    ) -> None:
        last = task if isinstance(task, TaskResponse) else None
        task_id = last.task_id if last is not None else task
        if not isinstance(task_id, int):
            raise TypeError(f"task: expected a task id or a TaskResponse, got {task!r}")
        self._waiter, self._email, self._timeout = waiter, email, timeout
        self.task_id, self.last = task_id, last
        self._loop = asyncio.get_running_loop()
        self.deadline = waiter._deadline(timeout, last)
        push = waiter._client.push
        if push is not None and not push.tracks(task_id):
            push = None  # submitted without our replyUrl: no callback will come
        self._push = push
        policy = waiter.policy
        self._delays = poll_delays(policy, policy.push_fallback if push is not None else None)
        self._eta = EtaReader()
        self._unconfirmed: TaskResponse | None = None  # a final callback one GET did not confirm

    async def advance(self) -> None:
        """Wait for the next poll (or callback) and take its answer as `last`; a poll that
        failed transiently leaves `last` as it was. Raises `TaskTimeoutError` at the
        deadline."""
        waiter, last, deadline, push = self._waiter, self.last, self.deadline, self._push
        # Seconds of real waiting: policy delays are scaled by the test mode, the service's
        # ETA is not (it is the service's own clock).
        delay = waiter._next_delay(last, self._delays, self._eta if push is None else None)
        if deadline is not None:
            left = deadline - self._loop.time()
            if left <= 0:
                raise waiter._timed_out(self.task_id, self._timeout, last)
            delay = min(delay, left)
        if push is None:
            await asyncio.sleep(delay)
        else:
            pushed = await push.next_update(self.task_id, last, delay)
            if pushed is not None and (push.trusted or not pushed.is_final):
                self.last = pushed
                return
            if pushed is not None and pushed is self._unconfirmed:
                # Checked already and the server did not agree yet: ask again at the
                # fallback pace, not in a loop paced only by the poll cap.
                await asyncio.sleep(delay)
            self._unconfirmed = pushed
            # No callback for a while, or a final one to confirm: one GET.
        try:
            # The deadline holds while a poll is out too (its retries may take minutes),
            # but the poll due at the deadline gets a moment to answer.
            grace = waiter.policy.deadline_grace
            budget = None if deadline is None else max(deadline - self._loop.time(), grace)
            answer = await waiter._poll(self.task_id, self._email, budget)
        except NotFoundError as exc:
            if last is None:
                raise  # never seen: an unknown id (a typo), not a task that went away
            raise _gone(self.task_id, exc, last) from exc
        except PaymentRequiredError:
            raise
        except _TRANSIENT as exc:
            log.info("poll of task %s failed (%s); polling again", self.task_id, exc)
        except _PollTimeout:
            raise waiter._timed_out(self.task_id, self._timeout, last) from None
        else:
            if answer.task_id != self.task_id:
                log.warning(
                    "poll of task %s answered about task %s; polling again",
                    self.task_id,
                    answer.task_id,
                )
                return
            self.last = answer
            self._eta.answered(answer)

    def close(self) -> None:
        """The wait is over: a push source stops keeping callbacks for the task."""
        if self._push is not None:
            self._push.forget(self.task_id)


class TaskWaiter:
    """Waits for tasks to become final by polling ``GET /tasks/{id}``.

    ``interval``, ``max_interval`` (seconds) default to the client's `PollPolicy`;
    ``timeout`` is the deadline per wait in seconds (not given: by task kind, see the module
    docstring; None: no deadline)::

        waiter = TaskWaiter(kling, interval=2, timeout=600)
        final = await waiter.wait(task_id)
        async for update in waiter.watch(task_id):
            print(update.status_name)
    """

    def __init__(
        self,
        client: TaskSource,
        *,
        interval: float | None = None,
        max_interval: float | None = None,
        timeout: float | Unset | None = UNSET,
    ) -> None:
        policy = client.poll_policy
        changes: dict[str, float] = {}
        if interval is not None:
            changes["interval"] = interval
        if max_interval is not None:
            changes["max_interval"] = max_interval
        self.policy = attrs.evolve(policy, **changes) if changes else policy
        self.timeout = timeout
        self._client = client

    async def wait(
        self,
        task: int | TaskResponse,
        *,
        email: str | None = None,
        timeout: float | Unset | None = UNSET,
    ) -> TaskResponse:
        """Poll until the task is final; return the final response.

        Raises `TaskFailedError` (``.task`` is the final response) when it ended in any
        state but ``succeed``, `TaskTimeoutError` at the deadline.
        """
        # A plain loop, not `async for` over `watch`: an async generator costs a weak
        # reference and its finalizer hooks per wait, and every step an awaitable object.
        step = _Step(self, task, email, timeout)
        try:
            while True:
                last = step.last
                if last is not None and last.is_final:
                    break
                await step.advance()
        finally:
            step.close()
        if not last.succeeded:
            raise TaskFailedError(
                f"task {last.task_id} {last.status_name or 'failed'}: {last.failure_reason}",
                task=last,
            )
        if not last.works:
            raise EmptyResultError(
                f"task {last.task_id} ended {last.status_name or 'succeed'} without any works: "
                "nothing to download",
                task=last,
            )
        return last

    def watch(
        self,
        task: int | TaskResponse,
        *,
        email: str | None = None,
        timeout: float | Unset | None = UNSET,
    ) -> AsyncIterator[TaskResponse]:
        """Yield the task each time its status changes (never the same status twice).

        Ends after yielding the final state. A `TaskResponse` given as ``task`` (say, the
        submission's answer) is the starting point and is yielded first.
        """
        return self._updates(task, email, timeout)

    async def _updates(
        self, task: int | TaskResponse, email: str | None, timeout: float | Unset | None
    ) -> AsyncIterator[TaskResponse]:
        step = _Step(self, task, email, timeout)
        seen: tuple[Any, ...] | None = None
        try:
            while True:
                last = step.last
                if last is not None:
                    key = (last.status, last.status_name, last.is_final)
                    if key != seen:
                        seen = key
                        yield last
                    if last.is_final:
                        return
                await step.advance()
        finally:
            step.close()

    def _poll(
        self, task_id: int, email: str | None, budget: float | None
    ) -> Awaitable[TaskResponse]:
        """One poll, given up after ``budget`` seconds (None: no bound)."""
        bound = getattr(self._client, "poll_time_bound", None)
        if budget is None or (bound is not None and budget > bound):
            # The poll cannot outlast the budget: no need for a task of its own.
            return self._poll_once(task_id, email)
        return self._poll_bounded(task_id, email, budget)

    async def _poll_bounded(self, task_id: int, email: str | None, budget: float) -> TaskResponse:
        # Not asyncio.wait_for: on Python 3.10 and 3.11 it can swallow a cancellation that
        # arrives as the poll completes, and the waiter would then outlive its caller.
        poll = asyncio.ensure_future(self._poll_once(task_id, email))
        try:
            done, _ = await asyncio.wait({poll}, timeout=budget)
        except BaseException:
            poll.cancel()
            raise
        if not done:
            poll.cancel()
            await asyncio.wait({poll})  # let it wind down (its connection goes back)
        if poll.cancelled():
            raise _PollTimeout
        return poll.result()

    async def _poll_once(self, task_id: int, email: str | None) -> TaskResponse:
        limiter = self._client.poll_limiter
        await limiter.turn()
        async with limiter.slot():
            return await self._client.get_task(task_id, email)

    def _deadline(self, timeout: float | Unset | None, last: TaskResponse | None) -> float | None:
        chosen = self.timeout if isinstance(timeout, Unset) else timeout
        if isinstance(chosen, Unset):
            chosen = default_timeout(last)
        if chosen is None:
            return None
        # Deadlines are not scaled by the test mode: only waits shrink.
        return asyncio.get_running_loop().time() + chosen

    def _timed_out(
        self, task_id: int, timeout: float | Unset | None, last: TaskResponse | None
    ) -> TaskTimeoutError:
        return TaskTimeoutError(
            f"task {task_id} not final after {self._timeout_text(timeout, last)}; "
            "it may still finish: wait on it again",
            task_id=task_id,
            last=last,
        )

    def _timeout_text(self, timeout: float | Unset | None, last: TaskResponse | None) -> str:
        chosen = self.timeout if isinstance(timeout, Unset) else timeout
        seconds = default_timeout(last) if isinstance(chosen, Unset) else chosen
        return f"{seconds:g} s"

    def _next_delay(
        self, last: TaskResponse | None, delays: Iterator[float], eta: EtaReader | None
    ) -> float:
        """Seconds until the next poll: after the service's ETA when it is plausible (not
        in push mode: there the callback is awaited), else the next grown delay."""
        policy = self.policy
        seconds = eta.seconds_left(last) if eta is not None else None
        if seconds is None:
            return next(delays)
        # Not floored: a plausible ETA may time a poll sooner than ``min_interval``, and
        # one that is wrong twice is dropped, so it can cost at most two early polls.
        return seconds * (1 + policy.eta_margin) + scaled(policy.eta_slack)


def _gone(task_id: int, exc: NotFoundError, last: TaskResponse | None) -> TaskGoneError:
    """The typed end of a wait whose task answered 404 (gone) or 410 (expired)."""
    if exc.status == 410:
        return TaskExpiredError(
            f"task {task_id} expired (410: results are kept 7 days): {exc.error}",
            task=last,
            gone_id=task_id,
        )
    return TaskGoneError(
        f"task {task_id} is gone (404): it was deleted, failed at moderation, or its "
        f"account ran out of credits: {exc.error}",
        task=last,
        gone_id=task_id,
    )
