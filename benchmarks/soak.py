"""Fault soak: many jobs through the client against a faulty simulator; nothing may be lost.

::

    python benchmarks/soak.py --jobs 1000 --json soak.json --seed 7

Runs ``--jobs`` jobs (images and videos, a few moderated, a few failing) with
``KlingClient.run`` against a `KlingSimulator` that injects a seeded fault plan: 10 % of
GET /tasks answered 5xx, 5 % of connections reset (before or after the job is created on
POSTs), 5 % of POSTs answered 429 with Retry-After, 1 % malformed JSON, 2 % of answers
slower than the client's request timeout; 3 % of the jobs are cancelled by their caller
at a random moment. The simulator runs on its own event loop in a
thread, so what is left pending on the client's loop after close is the client's.

Then every job's outcome is compared with the simulator's record and these figures are
printed (one ``key: value`` line each) and written to ``--json``:

- ``jobs``: jobs run.
- ``matched``: outcome equals the simulator's truth (a `SubmissionUnknownError` whose
  candidates include the job's task, if it has one, counts: reported unknown, not adopted):
  succeeded with the same task id and
  works, failed (`TaskFailedError`) for a failure-word prompt, `ModerationError` for a
  moderated prompt (and then no task at all); a cancelled job created no task, or one
  whose id reached the caller (``on_submitted``) all the same.
- ``submitted_twice``: jobs for which the simulator created more than one task.
- ``lost``: tasks the simulator created whose id the caller never learned.
- ``adopted_wrongly``: tasks held by a job whose inputs differ (another submission's
  tag), or held by two jobs. About 10 % of the jobs are also sent, identical but for their
  tag, by a second client at the same time (same prompt, same images), so a recovery that
  went by resemblance would adopt the twin's task.
- ``hung``: jobs still running at their deadline.
- ``open_connections``: connections the server still held once the client had closed.
- ``pending_tasks``: asyncio tasks still pending on the client's loop after close.
- ``warnings``: warnings (ResourceWarning...) and loop exception reports during the run.

The exit status is 0 only when ``matched == jobs`` and every other figure is 0. Details of
mismatches and the fault counts go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import random
import sys
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

import attrs

from kling_async import (
    ClientConfig,
    GenerationRequest,
    Image2VideoElements,
    KlingClient,
    KolorsElements,
    ModerationError,
    PollPolicy,
    RetryPolicy,
    SubmissionUnknownError,
    TaskFailedError,
    TaskResponse,
    TaskTimeoutError,
)
from kling_async.reconcile import new_tag, tagged
from kling_async.testing import FaultPlan, FaultRates, KlingSimulator

T = TypeVar("T")

ACCOUNTS = {"soak-a@example.com": 40, "soak-b@example.com": 30}
MODERATION_WORD = "nsfw"
FAILURE_WORD = "fail"
KEYS = (
    "jobs",
    "matched",
    "submitted_twice",
    "lost",
    "adopted_wrongly",
    "hung",
    "open_connections",
    "pending_tasks",
    "warnings",
)

#: The outcome of a job its caller cancelled.
CANCELLED: Final = object()

#: The client's request timeout in the soak; a "slow" answer waits DELAY_SECONDS.
REQUEST_TIMEOUT = 0.5
DELAY_SECONDS = 1.0


def fault_plan(seed: int) -> FaultPlan:
    """The issue's plan: 10 % 5xx on GET /tasks, 5 % resets, 5 % 429 on POSTs, 1 % malformed
    JSON, 2 % answers slower than the client's timeout."""
    return FaultPlan(
        seed=seed,
        rules={
            "tasks": FaultRates(server_error=0.10, reset=0.05, malformed=0.01, delay=0.02),
            # Half the resets come before the job is created, half after: the client must
            # adopt the latter from the task list, and send the former again.
            "submit": FaultRates(
                rate_limit=0.05, reset=0.025, reset_after=0.025, malformed=0.01, delay=0.02
            ),
        },
        retry_after=0.1,
        delay_seconds=DELAY_SECONDS,
    )


def client_config() -> ClientConfig:
    """Short timeouts and waits so a soak of 1,000 jobs takes seconds, not hours."""
    return ClientConfig(
        connect_timeout=REQUEST_TIMEOUT,
        read_timeout=REQUEST_TIMEOUT,
        request_timeout=REQUEST_TIMEOUT,
        transfer_timeout=5.0,
        retry=RetryPolicy(max_tries=6, base=0.01, max_delay=0.1, max_time=30.0),
        poll=PollPolicy(interval=0.05, max_interval=0.3, max_polls_per_second=None),
        recovery_confirm_delay=0.1,
    )


def cancellations(count: int, seed: int) -> dict[int, float]:
    """Jobs whose caller cancels them, and after how many seconds (3 %, up to 1 s in)."""
    rng = random.Random(f"{seed}:cancel")  # a seeded mix, not a secret
    return {i: rng.uniform(0.0, 1.0) for i in range(count) if rng.random() < 0.03}


def make_jobs(count: int, seed: int) -> list[GenerationRequest]:
    """``count`` requests, each with a unique prompt (the key to the simulator's record)."""
    rng = random.Random(f"{seed}:jobs")  # a seeded mix, not a secret
    jobs: list[GenerationRequest] = []
    for i in range(count):
        roll = rng.random()
        word = MODERATION_WORD if roll < 0.03 else FAILURE_WORD if roll < 0.06 else ""
        prompt = f"soak {seed} job {i}: a cat in a hat {word}".strip()
        images = [f"https://cdn.example.com/soak/{i}-{n}.png" for n in range(rng.randint(1, 3))]
        if rng.random() < 0.15:
            jobs.append(Image2VideoElements(prompt=prompt, images=images))
        else:
            jobs.append(
                KolorsElements(
                    prompt=prompt,
                    subject_images=[*images, "https://cdn.example.com/soak/common.png"],
                    image_count=rng.randint(1, 3),
                )
            )
    return jobs


class SimulatorThread:
    """A `KlingSimulator` serving from its own event loop in a daemon thread."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.sim: KlingSimulator | None = None

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def call(self, fn: Callable[[KlingSimulator], T]) -> T:
        """Run ``fn(sim)`` on the simulator's loop, from another loop."""

        async def inside() -> T:
            assert self.sim is not None
            return fn(self.sim)

        future = asyncio.run_coroutine_threadsafe(inside(), self._loop)
        return await asyncio.wrap_future(future)

    def __enter__(self) -> KlingSimulator:
        self._thread.start()

        async def start() -> KlingSimulator:
            sim = KlingSimulator(**self._options)
            await sim.start()
            return sim

        self.sim = self._run(start())
        return self.sim

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self.sim is not None:
                self._run(self.sim.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()


@contextlib.contextmanager
def captured_warnings() -> Iterator[list[str]]:
    """Record every warning (ResourceWarning included) raised inside the block."""
    found: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # backoff 2.2.1 deprecates itself on Python 3.14: not the client's leak.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="backoff")
        try:
            yield found
        finally:
            gc.collect()
            found.extend(f"{w.category.__name__}: {w.message}" for w in caught)


async def _settle(check: Callable[[], Awaitable[int]], deadline: float) -> int:
    """``check()`` until it is 0 or ``deadline`` (loop time) passes; its last value."""
    loop = asyncio.get_running_loop()
    value = await check()
    while value and loop.time() < deadline:
        await asyncio.sleep(0.01)
        value = await check()
    return value


async def run_soak(
    jobs: int,
    seed: int,
    *,
    job_seconds: float = 0.1,
    deadline: float | None = None,
    report: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Run the soak and return the figures (see the module docstring)."""
    say = report or (lambda _text: None)
    # Every job's tag is known up front: the simulator's tasks are attributed by it.
    requests = [tagged(r) for r in make_jobs(jobs, seed)]
    twin_rng = random.Random(f"{seed}:twins")  # a seeded mix, not a secret
    twins = [i for i in range(jobs) if twin_rng.random() < 0.10]
    # The twin: the same request from a second client, with its own tag.
    requests += [attrs.evolve(requests[i], reply_ref=new_tag()) for i in twins]
    on_second = set(range(jobs, len(requests)))
    jobs = len(requests)
    cancel_after = cancellations(jobs, seed)
    deadline = deadline if deadline is not None else 60.0 + jobs * 0.1
    simulator = SimulatorThread(
        accounts=ACCOUNTS,
        job_seconds=job_seconds,
        seed=seed,
        moderation_words=(MODERATION_WORD,),
        failure_words=(FAILURE_WORD,),
        fault_plan=fault_plan(seed),
    )
    loop = asyncio.get_running_loop()
    loop_reports: list[str] = []
    loop.set_exception_handler(lambda _loop, ctx: loop_reports.append(str(ctx.get("message"))))
    learned: set[int] = set()
    outcomes: list[TaskResponse | BaseException | None] = [None] * jobs
    hung = 0
    started = time.perf_counter()
    with captured_warnings() as caught:
        with simulator as sim:

            def remember(resp: TaskResponse) -> None:
                if resp.task_id is not None:
                    learned.add(resp.task_id)

            async def one(index: int, request: GenerationRequest) -> None:
                nonlocal hung
                expired = False
                runner = second if index in on_second else kling
                job = asyncio.ensure_future(runner.run(request, timeout=deadline))
                if index in cancel_after:  # the caller gives up on this job
                    loop.call_later(cancel_after[index], job.cancel)
                try:
                    outcomes[index] = await asyncio.wait_for(job, deadline)
                except asyncio.CancelledError:
                    if not job.cancelled():
                        raise
                    outcomes[index] = CANCELLED
                except TaskTimeoutError as exc:  # the client's own deadline: an outcome
                    outcomes[index] = exc
                except asyncio.TimeoutError as exc:  # wait_for's (3.10: not TimeoutError)
                    expired = True
                    outcomes[index] = exc
                except Exception as exc:
                    outcomes[index] = exc
                hung += expired

            def make_client() -> KlingClient:
                return KlingClient(
                    token=sim.token,
                    base_url=sim.base_url,
                    accounts=ACCOUNTS,
                    config=client_config(),
                    on_submitted=remember,
                )

            async with make_client() as kling, make_client() as second:
                await asyncio.gather(*(one(i, r) for i, r in enumerate(requests)))
            await asyncio.sleep(0)
            me = asyncio.current_task()
            pending = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
            open_connections = await _settle(
                lambda: simulator.call(lambda s: s.open_connections),
                loop.time() + DELAY_SECONDS + 2.0,
            )
            stats = sim.stats
    elapsed = time.perf_counter() - started
    for outcome in outcomes:
        if isinstance(outcome, TaskFailedError) and outcome.task.task_id is not None:
            learned.add(outcome.task.task_id)
        elif isinstance(outcome, TaskResponse) and outcome.task_id is not None:
            learned.add(outcome.task_id)
        elif isinstance(outcome, SubmissionUnknownError):
            learned.update(outcome.candidates)  # the caller is told every candidate

    by_tag: dict[str, list[Any]] = {}
    for task in sim.tasks.values():
        by_tag.setdefault(str(task.body.get("replyRef")), []).append(task)
    tag_of = {task.id: task.body.get("replyRef") for task in sim.tasks.values()}
    holders: dict[int, int] = {}
    wrong = 0
    for request, outcome in zip(requests, outcomes, strict=True):
        held = _held(outcome)
        if held is not None:
            holders[held] = holders.get(held, 0) + 1
            wrong += tag_of.get(held) != request.reply_ref  # another submission's task
    wrong += sum(n - 1 for n in holders.values() if n > 1)  # one task, several jobs
    matched = twice = 0
    mismatches: list[str] = []
    for index, (request, outcome) in enumerate(zip(requests, outcomes, strict=True)):
        prompt = str(getattr(request, "prompt", ""))
        tasks = by_tag.get(str(request.reply_ref), [])
        twice += len(tasks) > 1
        problem = _compare(prompt, tasks, outcome, learned)
        if problem is None:
            matched += 1
        else:
            mismatches.append(f"job {index}: {problem}")
    lost = [t.id for t in sim.tasks.values() if t.id not in learned]
    figures = {
        "jobs": jobs,
        "matched": matched,
        "submitted_twice": twice,
        "lost": len(lost),
        "adopted_wrongly": wrong,
        "hung": hung,
        "open_connections": open_connections,
        "pending_tasks": len(pending),
        "warnings": len(caught) + len(loop_reports),
    }
    say(
        f"soak: {jobs} jobs, seed {seed}, {elapsed:.1f} s; posts {stats['posts']}, "
        f"polls {stats['polls']}, lists {stats['lists']}, faults {stats['faults']}; "
        f"{sum(isinstance(o, SubmissionUnknownError) for o in outcomes)} reported unknown"
    )
    for line in mismatches[:20]:
        say(f"  mismatch {line}")
    if lost:
        say(f"  lost task ids: {lost[:20]}")
    for text in [*caught, *loop_reports][:20]:
        say(f"  warning: {text}")
    for task in pending[:20]:
        say(f"  pending: {task!r}")
    return figures


def _held(outcome: object) -> int | None:
    """The task id a job's outcome holds (its own, if the client was right)."""
    if isinstance(outcome, TaskFailedError):
        return outcome.task.task_id if outcome.task is not None else None
    if isinstance(outcome, TaskResponse):
        return outcome.task_id
    return None


def _describe(outcome: object) -> str:
    if isinstance(outcome, TaskResponse):
        return f"task {outcome.task_id} {outcome.status_name}"
    return repr(outcome)[:300]


def _compare(prompt: str, tasks: list[Any], outcome: object, learned: set[int]) -> str | None:
    """Why ``outcome`` differs from the simulator's record, or None when it matches."""
    if outcome is CANCELLED:
        # Either nothing was created, or the one task's id reached the caller regardless.
        if len(tasks) > 1 or any(t.id not in learned for t in tasks):
            return f"cancelled job: simulator tasks {[t.id for t in tasks]}, learned none"
        return None
    if MODERATION_WORD in prompt:
        if tasks:
            return f"moderated prompt created tasks {[t.id for t in tasks]}"
        if not isinstance(outcome, ModerationError):
            return f"expected ModerationError, got {_describe(outcome)}"
        return None
    if (
        isinstance(outcome, SubmissionUnknownError)
        and len(tasks) <= 1
        and all(t.id in outcome.candidates for t in tasks)
    ):
        return None  # reported as unknown (its own task, if any, a candidate): not adopted
    if len(tasks) != 1:
        return f"{len(tasks)} simulator tasks {[t.id for t in tasks]}; got {_describe(outcome)}"
    task = tasks[0]
    if FAILURE_WORD in prompt:
        if not isinstance(outcome, TaskFailedError):
            return f"expected TaskFailedError, got {_describe(outcome)}"
        if outcome.task.task_id != task.id:
            return f"failed task {outcome.task.task_id}, simulator's {task.id}"
        return None
    if not isinstance(outcome, TaskResponse):
        return f"expected success, got {_describe(outcome)}"
    if outcome.task_id != task.id or not outcome.succeeded:
        return f"task {outcome.task_id} ({outcome.status_name}), simulator's {task.id}"
    truth = [w["resource"]["resource"] for w in task.works]
    if outcome.urls != truth:
        return f"works {outcome.urls} != simulator's {truth}"[:300]
    return None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000, help="jobs to run (default 1000)")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("--seed", type=int, default=1, help="seeds faults and the job mix")
    parser.add_argument(
        "--job-seconds", type=float, default=0.1, help="mean simulated job time (default 0.1)"
    )
    parser.add_argument("--deadline", type=float, help="seconds after which a job counts as hung")
    parser.add_argument("--log", help="log level for the client's logger (e.g. DEBUG)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs: must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soak; 0 when every job matched and nothing leaked."""
    args = parse_args(argv)
    # The client logs each recovered submission as a warning: expected here, and noisy.
    logging.basicConfig(level=(args.log or "ERROR").upper())
    figures = asyncio.run(
        run_soak(
            args.jobs,
            args.seed,
            job_seconds=args.job_seconds,
            deadline=args.deadline,
            report=lambda text: print(text, file=sys.stderr),
        )
    )
    for key in KEYS:
        print(f"{key}: {figures[key]}")
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if passed(figures) else 1


def passed(figures: dict[str, int]) -> bool:
    """Every job matched and every other figure is 0."""
    return figures["matched"] == figures["jobs"] and all(
        figures[key] == 0 for key in KEYS if key not in ("jobs", "matched")
    )


if __name__ == "__main__":
    sys.exit(main())
