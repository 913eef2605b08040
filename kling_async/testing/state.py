"""Accounts, tasks, job slots and counters of the simulator: everything but HTTP.

A task's status is never stored: it is computed from its timestamps whenever it is read, so
thousands of tasks in flight cost no timers. Each account keeps a heap of its unfinished
tasks ordered by the time they become final; a submission prunes it to count running jobs.
"""

from __future__ import annotations

import heapq
import math
import random
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import attrs

from kling_async.testing import wire
from kling_async.testing.answers import (
    BUSY,
    MODERATION_BODY,
    RESOURCE_NOT_FOUND_BODY,
    ErrorAnswer,
    account_error,
    bad_request,
    format_retry_after,
    out_of_credits,
)
from kling_async.testing.counters import Counters
from kling_async.testing.validation import Generation
from kling_async.testing.wire import FAILED, PROCESSING, SUBMITTED, SUCCEED

__all__ = ["Account", "Counters", "JobDuration", "SimState", "SimTask"]

JobDuration = Callable[[str, dict[str, Any], random.Random], float]
"""``(endpoint, body, rng) -> seconds``: a custom job duration."""

QUEUE_FRACTION: Final = 0.1  # the first tenth of a job is spent "submitted" (queued)
FIRST_TASK_ID: Final = 123456789
FIRST_USER_ID: Final = 12345


@attrs.define(kw_only=True, eq=False)
class SimTask:
    """One simulated task and its schedule.

    ``created_at``, ``started_at`` and ``final_at`` are ``time.monotonic()`` seconds;
    ``created_ms``, ``started_ms`` and ``final_ms`` are the same instants in epoch milliseconds
    (the form of ``createTime``). ``finish_all()`` moves ``final_at`` to the present.
    """

    id: int
    account: str
    user_id: int
    endpoint: str
    body: dict[str, Any]
    request: Generation
    created_at: float
    started_at: float
    final_at: float
    duration: float
    failure: str | None
    root_url: str
    wall_offset_ms: float
    info: dict[str, Any]  # taskInfo, fixed at submission
    deleted: bool = False  # DELETE /tasks/{id}: polls answer 404, listings skip it
    vanish: str | None = None  # why the task answers 404 once processing (moderation, ...)
    expired: bool = False  # polls answer 410

    def ms(self, t: float) -> int:
        """Epoch milliseconds of monotonic instant ``t``."""
        return int(t * 1000 + self.wall_offset_ms)

    @property
    def created_ms(self) -> int:
        """``createTime`` in epoch milliseconds."""
        return self.ms(self.created_at)

    @property
    def started_ms(self) -> int:
        """When the task went from submitted to processing, epoch milliseconds."""
        return self.ms(self.started_at)

    @property
    def final_ms(self) -> int:
        """When the task became (or will become) final, epoch milliseconds."""
        return self.ms(self.final_at)

    def status_at(self, now: float) -> tuple[int, str, bool]:
        """(status, status_name, status_final) at monotonic instant ``now``."""
        if now >= self.final_at:
            return FAILED if self.failure is not None else SUCCEED
        return PROCESSING if now >= self.started_at else SUBMITTED

    @property
    def final_status_name(self) -> str:
        """The name the task has or will have once final: "succeed" or "failed"."""
        return "failed" if self.failure is not None else "succeed"

    @property
    def status_name(self) -> str:
        """The status name now."""
        return self.status_at(time.monotonic())[1]

    @property
    def is_final(self) -> bool:
        """True once the task has succeeded or failed."""
        return time.monotonic() >= self.final_at

    @property
    def works(self) -> list[dict[str, Any]]:
        """The ``works`` list as GET /tasks/{id} shows it now."""
        return wire.works(self, time.monotonic())


@attrs.define(eq=False)
class Account:
    """A configured Kling account and its running jobs.

    ``error`` is the reason of an error state (None: healthy): every call that uses the
    account's Kling session answers 596 while it is set. ``out_of_credits`` makes its
    generation requests answer 412. Neither stops the jobs already running.
    """

    email: str
    max_jobs: int
    user_id: int
    running: list[tuple[float, int]] = attrs.field(factory=list)  # heap of (final_at, id)
    task_ids: list[int] = attrs.field(factory=list)  # creation order
    peak: int = 0
    error: str | None = None
    out_of_credits: bool = False

    def prune(self, now: float) -> int:
        """Drop finished jobs from the heap; the number still running."""
        heap = self.running
        while heap and heap[0][0] <= now:
            heapq.heappop(heap)
        return len(heap)


class SimState:
    """The simulated service's data: accounts, tasks, uploads, counters."""

    def __init__(
        self,
        *,
        accounts: Mapping[str, int],
        job_seconds: float,
        duration_sigma: float,
        job_duration: JobDuration | None,
        seed: int,
        moderation_words: tuple[str, ...],
        failure_words: tuple[str, ...],
        strict_assets: bool,
        busy_retry_after: float | None,
        vanish_on_moderation: bool = False,
        vanish_on_no_credits: bool = False,
    ) -> None:
        self.accounts: dict[str, Account] = {}
        for email, max_jobs in accounts.items():
            self.add_account(email, max_jobs)
        self.tasks: dict[int, SimTask] = {}
        self.order: list[int] = []
        self.uploads: dict[str, tuple[str, bytes]] = {}
        self.counters = Counters()
        self.job_seconds = job_seconds
        self.duration_sigma = duration_sigma
        self.job_duration = job_duration
        self.moderation_words = tuple(w.lower() for w in moderation_words)
        self.failure_words = tuple(w.lower() for w in failure_words)
        self.strict_assets = strict_assets
        self.busy_retry_after = busy_retry_after
        self.vanish_on = {"moderation": vanish_on_moderation, "credits": vanish_on_no_credits}
        self.root_url = ""
        self.subscription_active = True  # False: every API call answers 402
        self._durations = random.Random(f"{seed}:durations")  # noqa: S311 (seeded on purpose)
        ids = random.Random(f"{seed}:ids")  # noqa: S311 (seeded on purpose)
        self._next_id = FIRST_TASK_ID + ids.randrange(1_000_000)
        self.wall_offset_ms = time.time() * 1000 - time.monotonic() * 1000

    # accounts ---------------------------------------------------------------------------
    def add_account(self, email: str, max_jobs: int) -> Account:
        """Configure (or reconfigure) an account; ``max_jobs`` 1..50."""
        if not 1 <= max_jobs <= 50:
            raise ValueError(f"maxJobs must be 1..50, got {max_jobs}")
        account = self.accounts.get(email)
        if account is None:
            account = Account(email, max_jobs, FIRST_USER_ID + len(self.accounts))
            self.accounts[email] = account
        account.max_jobs = max_jobs
        return account

    def resolve(self, email: str | None) -> Account:
        """The account an ``email`` parameter selects, for a call that uses its Kling session.

        400 when missing or unknown, 596 when the account is in error state.
        """
        account = self._select(email)
        if account.error is not None:
            raise account_error(account.email, account.error)
        return account

    def _select(self, email: str | None) -> Account:
        if email:
            account = self.accounts.get(email)
            if account is None:
                raise bad_request(f"Unable to find configuration for account {email}")
            return account
        if len(self.accounts) == 1:
            return next(iter(self.accounts.values()))
        if not self.accounts:
            raise bad_request("No Kling accounts configured, add one with POST /accounts")
        raise bad_request("Parameter email is required when several accounts are configured")

    # submissions ------------------------------------------------------------------------
    def submit(self, gen: Generation, body: dict[str, Any]) -> SimTask:
        """Create a task or raise the answer that refuses it (404, 412, 429, 500, 596)."""
        account = self.resolve(gen.email)
        if self.strict_assets:
            for _, url in gen.images:
                if not self._known_asset(url):
                    raise ErrorAnswer(404, dict(RESOURCE_NOT_FOUND_BODY))
        now = time.monotonic()
        # per-request maxJobs overrides the account's in both directions (accounts.md)
        limit = account.max_jobs if gen.max_jobs is None else gen.max_jobs
        if account.prune(now) >= limit:
            self.counters.rate_limited += 1
            wait: float = self.busy_retry_after or max(1, math.ceil(account.running[0][0] - now))
            raise ErrorAnswer(
                429,
                {"error": BUSY, "retryAfter": wait},
                headers={"Retry-After": format_retry_after(wait)},
            )
        vanish = None
        if account.out_of_credits:
            if not self.vanish_on["credits"]:
                raise out_of_credits()
            vanish = "credits"
        prompt = gen.prompt.lower()
        if any(word in prompt for word in self.moderation_words):
            if not self.vanish_on["moderation"]:
                raise ErrorAnswer(500, dict(MODERATION_BODY))
            vanish = vanish or "moderation"
        self.counters.tasks_vanished += vanish is not None
        word = next((w for w in self.failure_words if w in prompt), None)
        failure = None if word is None else f"Generation failed (simulated: prompt has {word!r})"
        duration = self._duration(gen, body)
        task = SimTask(
            id=self._next_id,
            account=account.email,
            user_id=account.user_id,
            endpoint=gen.endpoint,
            body=body,
            request=gen,
            created_at=now,
            started_at=now + duration * QUEUE_FRACTION,
            final_at=now + duration,
            duration=duration,
            failure=failure,
            root_url=self.root_url,
            wall_offset_ms=self.wall_offset_ms,
            info=wire.task_info(gen),
            vanish=vanish,
        )
        self._next_id += 1
        self.tasks[task.id] = task
        self.order.append(task.id)
        account.task_ids.append(task.id)
        heapq.heappush(account.running, (task.final_at, task.id))
        account.peak = max(account.peak, len(account.running))
        return task

    def _duration(self, gen: Generation, body: dict[str, Any]) -> float:
        if self.job_duration is not None:
            return max(0.0, float(self.job_duration(gen.endpoint, body, self._durations)))
        mean = self.job_seconds
        if gen.is_video:  # video ~2x an image, pro ~1.5x std, duration proportional
            mean *= 2.0 * (1.5 if gen.mode == "pro" else 1.0) * gen.duration / 5
        sigma = self.duration_sigma
        if sigma <= 0:
            return mean
        return mean * math.exp(self._durations.gauss(0.0, sigma) - sigma * sigma / 2)

    def _known_asset(self, url: str) -> bool:
        path = urlsplit(url).path
        if path.startswith("/files/"):
            return True
        return path.startswith("/uploads/") and path.removeprefix("/uploads/") in self.uploads

    # lifecycle --------------------------------------------------------------------------
    def finish(self, task_ids: Collection[int] | None = None) -> list[SimTask]:
        """Make the given (default: all) running tasks final now; the tasks changed."""
        now = time.monotonic()
        wanted = None if task_ids is None else set(task_ids)
        changed = []
        for account in self.accounts.values():
            account.prune(now)
            keep = []
            for entry in account.running:
                if wanted is None or entry[1] in wanted:
                    task = self.tasks[entry[1]]
                    task.final_at = now
                    task.started_at = min(task.started_at, now)
                    changed.append(task)
                else:
                    keep.append(entry)
            heapq.heapify(keep)
            account.running = keep
        return changed

    def running(self, account: Account, now: float) -> Iterator[SimTask]:
        """The account's unfinished tasks."""
        account.prune(now)
        return (self.tasks[task_id] for _, task_id in account.running)

    def release(self, task_id: int) -> bool:
        """Stop tracking a running job (DELETE /scheduler): its slot frees, the job goes on."""
        for account in self.accounts.values():
            kept = [entry for entry in account.running if entry[1] != task_id]
            if len(kept) != len(account.running):
                heapq.heapify(kept)
                account.running = kept
                return True
        return False

    # lookups ----------------------------------------------------------------------------
    def task_for(self, task_id: str, email: str | None) -> SimTask:
        """The task GET /tasks/{task_id}?email= names (400 bad id, 404 unknown)."""
        if not task_id.isdigit():
            raise bad_request("Invalid task_id parameter")
        account = self.resolve(email)
        task = self.tasks.get(int(task_id))
        gone = task is not None and (
            task.deleted or (task.vanish is not None and time.monotonic() >= task.started_at)
        )
        if task is None or task.account != account.email or gone:
            self.counters.polls_gone += gone
            raise ErrorAnswer(404, {"error": f"Task {task_id} not found", "message": "Not Found"})
        if task.expired:
            self.counters.polls_expired += 1
            raise ErrorAnswer(410, {"error": f"Task {task_id} has expired", "message": "Gone"})
        return task

    # counters ---------------------------------------------------------------------------
    def reset_stats(self) -> None:
        """Zero the counters; peaks restart from the jobs running now."""
        self.counters = Counters(first_task=len(self.order))
        now = time.monotonic()
        for account in self.accounts.values():
            account.peak = account.prune(now)

    def snapshot(self) -> dict[str, Any]:
        """The counters and derived figures (see ``KlingSimulator.stats``)."""
        c = self.counters
        now = time.monotonic()
        tasks = [self.tasks[i] for i in self.order[c.first_task :]]
        return {
            "tasks_created": len(tasks),
            "tasks": [
                {
                    "id": t.id,
                    "account": t.account,
                    "endpoint": t.endpoint,
                    "body": t.body,
                    "status_name": t.status_at(now)[1],
                }
                for t in tasks
            ],
            "posts": c.posts,
            "polls": c.polls,
            "polls_by_task": dict(c.polls_by_task),
            "lists": c.lists,
            "running": {e: a.prune(now) for e, a in self.accounts.items()},
            "peak_running": {e: a.peak for e, a in self.accounts.items()},
            "rate_limited": c.rate_limited,
            "faults": dict(c.faults),
            "uploads": c.uploads,
            "downloads": c.downloads,
            "file_requests": c.file_requests,
            "file_requests_with_auth": c.file_requests_with_auth,
            "callbacks_sent": c.callbacks_sent,
            "callbacks_dropped": c.callbacks_dropped,
            "callbacks_failed": c.callbacks_failed,
            "account_errors": c.account_errors,
            "payment_required": c.payment_required,
            "tasks_vanished": c.tasks_vanished,
            "polls_gone": c.polls_gone,
            "polls_expired": c.polls_expired,
        }
