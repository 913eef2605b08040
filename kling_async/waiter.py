"""TaskWaiter: poll ``GET /tasks/{id}`` until ``status_final``, cheaply and with a deadline.

When to poll:

1. If the last answer carries the service's ETA (``etaTime``/``queuingEtaTime``, time left),
   the next poll is timed for just after it: one or two polls per job.
2. Otherwise the delay grows geometrically from ``interval`` by ``growth`` up to
   ``max_interval`` (a `backoff.expo` generator), with a little jitter, so a job is
   detected within about ``growth - 1`` of its run time after it ends.

Every poll first takes a turn from the client's `PollLimiter`, a cap on polls per second
shared by all waiters of a client, so 1,000 waiting jobs never become a request storm.
Transient poll failures (after the client's own retries) are retried inside the same
deadline. At the deadline `TaskTimeoutError` is raised; the job may still finish and can
be waited on again.

Default deadlines (seconds, ``timeout`` not given): `DEFAULT_IMAGE_TIMEOUT` for image
tasks, `DEFAULT_VIDEO_TIMEOUT` for video tasks; ``timeout=None`` waits without a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable
from typing import Any, Final, Protocol

import attrs
import backoff

from ._places import Places
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
    NotFoundError,
    PayloadError,
    PaymentRequiredError,
    RateLimitError,
    ServerError,
    TaskFailedError,
    TaskTimeoutError,
    TransportError,
)
from .models import TaskResponse

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


#: Seconds a poll started at (or just before) the deadline may take to answer.
_POLL_GRACE: Final = 10.0


#: Failures of a poll that are worth another poll before the deadline.
_TRANSIENT = (TransportError, ServerError, RateLimitError, PayloadError)


class PollLimiter(Places):
    """Spaces polls at least ``1 / rate`` seconds apart across every waiter of a client,
    and lets at most ``in_flight`` polls be under way at once (its `Places`: `try_enter`,
    `enter`, `leave`).

    The second bound keeps memory flat when thousands of waiters come due together: a
    waiter queued here holds only its own frame, not a request being built (the
    connection pool would queue those anyway).
    """

    __slots__ = ("_next", "rate")

    def __init__(self, rate: float | None, in_flight: int | None = None) -> None:
        if rate is not None and rate <= 0:
            raise ValueError(f"max_polls_per_second must be > 0 or None, got {rate}")
        if in_flight is not None and in_flight < 1:
            raise ValueError(f"in_flight must be >= 1 or None, got {in_flight}")
        super().__init__(in_flight)
        self.rate = rate
        self._next = 0.0

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the in-flight places for the duration of a poll (``async with``)."""
        if not self.try_enter():
            await self.enter()
        try:
            yield
        finally:
            self.leave()

    async def turn(self) -> None:
        """Wait for this caller's turn to poll."""
        if self.rate is None:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        slot = max(now, self._next)
        self._next = slot + scaled(1.0 / self.rate)
        if slot > now:
            await asyncio.sleep(slot - now)


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


#: The longest table of grown delays; past its end the last delay repeats.
_DELAY_STEPS: Final = 128


def _delay_table(policy: PollPolicy) -> tuple[float, ...]:
    """The delays a `backoff.expo` generator gives for ``policy``, up to the first that
    reaches ``max_interval`` (it then repeats): worked out once per policy, not per wait."""
    gen = backoff.expo(base=policy.growth, factor=policy.interval, max_value=policy.max_interval)
    next(gen)  # backoff's generators are primed with a first next()
    table: list[float] = []
    for delay in gen:
        table.append(delay)
        if delay >= policy.max_interval or len(table) >= _DELAY_STEPS:
            return tuple(table)
    raise AssertionError("backoff.expo ended")  # pragma: no cover - it never does


class _Delays:
    """The grown delays of one wait, read from its waiter's table on first use (a task
    whose answers carry an ETA never needs them)."""

    __slots__ = ("_next", "_push", "_table", "_waiter")

    def __init__(self, waiter: TaskWaiter, push: bool) -> None:
        self._waiter, self._push = waiter, push
        self._table: tuple[float, ...] = ()
        self._next = 0

    def next(self) -> float:
        table = self._table or self._waiter._delays(self._push)
        self._table = table
        i = self._next
        self._next = i + 1
        return table[i] if i < len(table) else table[-1]


class _Step:
    """One wait's state, moved on by `advance` one poll (or callback) at a time."""

    __slots__ = (
        "_delays",
        "_email",
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
        self._delays = _Delays(waiter, push is not None)
        self._unconfirmed: TaskResponse | None = None  # a final callback one GET did not confirm

    async def advance(self) -> None:
        """Wait for the next poll (or callback) and take its answer as `last`; a poll that
        failed transiently leaves `last` as it was. Raises `TaskTimeoutError` at the
        deadline."""
        waiter, last, deadline, push = self._waiter, self.last, self.deadline, self._push
        # Seconds of real waiting: policy delays are scaled by the test mode, the service's
        # ETA is not (it is the service's own clock).
        if push is None:
            delay = waiter._next_delay(last, self._delays)
        else:
            delay = scaled(self._delays.next())
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
            budget = None if deadline is None else max(deadline - self._loop.time(), _POLL_GRACE)
            self.last = await waiter._poll(self.task_id, self._email, budget)
        except (NotFoundError, PaymentRequiredError):
            raise
        except _TRANSIENT as exc:
            log.info("poll of task %s failed (%s); polling again", self.task_id, exc)
        except _PollTimeout:
            raise waiter._timed_out(self.task_id, self._timeout, last) from None

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
        self._tables: dict[bool, tuple[PollPolicy, tuple[float, ...]]] = {}

    def _delays(self, push: bool) -> tuple[float, ...]:
        """The grown delays of a wait (``push``: the fallback waits for a callback), worked
        out again when ``policy`` was replaced."""
        policy = self.policy
        known = self._tables.get(push)
        if known is not None and known[0] is policy:
            return known[1]
        table = _delay_table(
            attrs.evolve(policy, interval=policy.push_fallback) if push else policy
        )
        self._tables[push] = (policy, table)
        return table

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
        if limiter.rate is not None:
            await limiter.turn()
        # Not `async with limiter.slot()`: two coroutines fewer on every poll.
        if not limiter.try_enter():
            await limiter.enter()
        try:
            return await self._client.get_task(task_id, email)
        finally:
            limiter.leave()

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

    def _next_delay(self, last: TaskResponse | None, delays: _Delays) -> float:
        policy = self.policy
        eta = last.eta_seconds if last is not None else None
        if eta and not (last is not None and last.eta_time_over_sla):
            return eta * (1 + policy.eta_margin) + scaled(policy.eta_slack)
        delay = delays.next()
        if policy.jitter:
            delay *= random.uniform(1 - policy.jitter, 1 + policy.jitter)  # noqa: S311
        return scaled(delay)
