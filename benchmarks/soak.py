"""Fault soak: many jobs through the client against a faulty simulator; nothing may be lost.

::

    python benchmarks/soak.py --jobs 1000 --json soak.json --seed 7

Runs ``--jobs`` jobs (images and videos, a few moderated, a few failing) with
``KlingClient.run`` against a `KlingSimulator` that injects a seeded fault plan: 10 % of
GET /tasks answered 5xx, 5 % of connections reset (before or after the job is created on
POSTs), 5 % of POSTs answered 429 with Retry-After, 1 % malformed JSON, 2 % of answers
slower than the client's request timeout, 5 % of POSTs held 0.2 s before the job is
created (the service still processing them); 3 % of the jobs are cancelled by their
caller at a random moment. About 20 % of the jobs run as batches of 20 (`BatchRunner`,
one journal each), and each batch run is killed once one of its POSTs has been out
0.1 s (the service still processing it), then resumed by a new client on the same
journal (`soak_batch`). The simulator runs on its own event loop in a thread, so what is
left pending on the client's loop after close is the client's.

Then every job's outcome is compared with the simulator's record and these figures are
printed (one ``key: value`` line each) and written to ``--json``:

- ``jobs``: jobs run.
- ``matched``: outcome equals the simulator's truth (a `SubmissionUnknownError` whose
  candidates include the job's task, if it has one, counts: reported unknown, not adopted):
  succeeded with the same task id and
  works, failed (`TaskFailedError`) for a failure-word prompt, `ModerationError` for a
  moderated prompt (and then no task at all); a cancelled job created no task, or one
  whose id reached the caller (``on_submitted``) all the same; a batch job's journal row
  holds its one task (failed, or succeeded with its files), or is ``unknown`` naming it.
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
- ``killed_mid_post``: batch runs killed with a POST out (informative: how often the
  resume had a lost POST to settle).

The exit status is 0 only when ``matched == jobs`` and every other figure but
``killed_mid_post`` is 0. Details of
mismatches and the fault counts go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

import attrs
from soak_batch import BatchOutcome, run_killed_batch
from soak_mix import batches, cancellations, job_durations, make_jobs
from soak_outcomes import CANCELLED, FAILURE_WORD, MODERATION_WORD, check
from soak_support import SimulatorThread, captured_warnings, settle

from kling_async import (
    ClientConfig,
    GenerationRequest,
    KlingClient,
    PollPolicy,
    RetryPolicy,
    SubmissionUnknownError,
    TaskResponse,
    TaskTimeoutError,
)
from kling_async.batch import JobState
from kling_async.reconcile import new_tag, tagged
from kling_async.testing import FaultPlan, FaultRates

ACCOUNTS = {"soak-a@example.com": 40, "soak-b@example.com": 30}
#: The batches' own account (a batch POST is then never held by a busy account), and
#: each batch client's share of it; at most BATCHES_AT_ONCE batch runs share it at a time.
BATCH_EMAIL: Final = "soak-batch@example.com"
BATCH_JOBS: Final = 10
BATCHES_AT_ONCE: Final = 5
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
    "killed_mid_post",
)

#: The client's request timeout in the soak; a "slow" answer waits DELAY_SECONDS.
REQUEST_TIMEOUT = 0.5
DELAY_SECONDS = 1.0
#: How long the service processes a ``slow_create`` POST before the task exists; under
#: the clients' recovery_confirm_delay, as the real service's time to create a task is
#: under the default 30 s.
CREATE_SECONDS = 0.3


def fault_plan(seed: int) -> FaultPlan:
    """The issue's plan: 10 % 5xx on GET /tasks, 5 % resets, 5 % 429 on POSTs, 1 % malformed
    JSON, 2 % answers slower than the client's timeout, 5 % of POSTs slow to create."""
    return FaultPlan(
        seed=seed,
        rules={
            "tasks": FaultRates(server_error=0.10, reset=0.05, malformed=0.01, delay=0.02),
            # Half the resets come before the job is created, half after: the client must
            # adopt the latter from the task list, and send the former again.
            # Slow creations: a batch run is killed while the service processes one.
            "submit": FaultRates(
                rate_limit=0.05,
                reset=0.025,
                reset_after=0.025,
                malformed=0.01,
                delay=0.02,
                slow_create=0.05,
            ),
        },
        retry_after=0.1,
        delay_seconds=DELAY_SECONDS,
        create_seconds=CREATE_SECONDS,
    )


def client_config() -> ClientConfig:
    """Short timeouts and waits so a soak of 1,000 jobs takes seconds, not hours."""
    return ClientConfig(
        connect_timeout=REQUEST_TIMEOUT,
        read_timeout=REQUEST_TIMEOUT,
        request_timeout=REQUEST_TIMEOUT,
        transfer_timeout=5.0,
        retry=RetryPolicy(max_tries=6, base=0.01, max_delay=0.1, max_time=30.0),
        # The soak's jobs last well under a second: the service's 5 s floor scaled down.
        poll=PollPolicy(
            interval=0.05, max_interval=0.3, max_polls_per_second=None, min_interval=0.05
        ),
        recovery_confirm_delay=2.5 * CREATE_SECONDS,
    )


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
    in_batches = batches(jobs, seed)
    batched = {i for batch in in_batches for i in batch}
    # The twin: the same request from a second client, with its own tag.
    requests += [attrs.evolve(requests[i], reply_ref=new_tag()) for i in twins]
    on_second = set(range(jobs, len(requests)))
    jobs = len(requests)
    cancel_after = {i: t for i, t in cancellations(jobs, seed).items() if i not in batched}
    deadline = deadline if deadline is not None else 60.0 + jobs * 0.1
    slow = frozenset(str(getattr(requests[i], "prompt", "")) for i in batched)
    simulator = SimulatorThread(
        accounts={**ACCOUNTS, BATCH_EMAIL: BATCH_JOBS * BATCHES_AT_ONCE},
        job_duration=job_durations(job_seconds, slow),
        seed=seed,
        moderation_words=(MODERATION_WORD,),
        failure_words=(FAILURE_WORD,),
        fault_plan=fault_plan(seed),
    )
    loop = asyncio.get_running_loop()
    loop_reports: list[str] = []
    loop.set_exception_handler(lambda _loop, ctx: loop_reports.append(str(ctx.get("message"))))
    learned: set[int] = set()
    outcomes: list[object] = [None] * jobs
    hung = killed = adopted = 0
    batch_turns = asyncio.Semaphore(BATCHES_AT_ONCE)
    started = time.perf_counter()
    with captured_warnings() as caught, tempfile.TemporaryDirectory() as scratch:
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

            async def batch(indices: list[int]) -> None:
                nonlocal hung, killed, adopted
                folder = Path(scratch, f"batch-{indices[0]}")
                try:
                    async with batch_turns:
                        ends, kill = await run_killed_batch(
                            [requests[i] for i in indices], folder, batch_client, deadline=deadline
                        )
                except asyncio.TimeoutError as exc:  # 3.10: not TimeoutError
                    hung += len(indices)
                    for i in indices:
                        outcomes[i] = exc
                    return
                killed += kill.kills
                adopted += kill.adopted
                for i, end in zip(indices, ends, strict=True):
                    outcomes[i] = end

            def make_client() -> KlingClient:
                return KlingClient(
                    token=sim.token,
                    base_url=sim.base_url,
                    accounts=ACCOUNTS,
                    config=client_config(),
                    on_submitted=remember,
                )

            def batch_client() -> KlingClient:
                # No on_submitted: a batch job's task id counts once its journal holds it.
                return KlingClient(
                    token=sim.token,
                    base_url=sim.base_url,
                    accounts={BATCH_EMAIL: BATCH_JOBS},
                    config=client_config(),
                )

            async with make_client() as kling, make_client() as second:
                for client in (kling, second):  # a cancelled caller's unknown outcome
                    client.jobs.submitter.on_unknown = lambda e: learned.update(e.candidates)
                await asyncio.gather(
                    *(one(i, r) for i, r in enumerate(requests) if i not in batched),
                    *(batch(indices) for indices in in_batches),
                )
            await asyncio.sleep(0)
            me = asyncio.current_task()
            pending = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
            open_connections = await settle(
                lambda: simulator.call(lambda s: s.open_connections),
                loop.time() + DELAY_SECONDS + 2.0,
            )
            stats = sim.stats
            tasks = list(sim.tasks.values())
            mismatches, twice, wrong = check(requests, outcomes, tasks, learned)
    elapsed = time.perf_counter() - started
    lost = [t.id for t in tasks if t.id not in learned]
    figures = {
        "jobs": jobs,
        "matched": jobs - len(mismatches),
        "submitted_twice": twice,
        "lost": len(lost),
        "adopted_wrongly": wrong,
        "hung": hung,
        "open_connections": open_connections,
        "pending_tasks": len(pending),
        "warnings": len(caught) + len(loop_reports),
        "killed_mid_post": killed,
    }
    unknown = sum(
        isinstance(o, SubmissionUnknownError)
        or (isinstance(o, BatchOutcome) and o.record.state is JobState.UNKNOWN)
        for o in outcomes
    )
    say(
        f"soak: {jobs} jobs, seed {seed}, {elapsed:.1f} s; posts {stats['posts']}, "
        f"polls {stats['polls']}, lists {stats['lists']}, faults {stats['faults']}; "
        f"{unknown} reported unknown; {len(in_batches)} batch runs, {killed} killed mid-POST, "
        f"{adopted} lost POSTs adopted on resume"
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
    """Every job matched and every other figure (but the informative ones) is 0."""
    return figures["matched"] == figures["jobs"] and all(
        figures[key] == 0 for key in KEYS if key not in ("jobs", "matched", "killed_mid_post")
    )


if __name__ == "__main__":
    sys.exit(main())
