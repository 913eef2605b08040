"""Push mode vs polling: GET /tasks per job and median detection lag, same jobs, same run.

    python benchmarks/push.py [--jobs 200] [--max-jobs 20] [--job-seconds 2] [--json FILE]

Runs the simulator in process (this measures requests and latency, not CPU). Job times are
lognormal around ``--job-seconds`` (seeded). "Detection lag" is the time from the simulator
marking a task final to the client returning it. The waiter's policy is scaled to the
simulated job length (``scale = job_seconds / 30``: a real image job takes about 30 s), so
polling behaves relative to a job as it would on the real service.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import attrs

from kling_async import KlingClient, KlingWebhookReceiver, KolorsElements, PollPolicy
from kling_async.client import DEFAULT_CONFIG
from kling_async.retry import fast_mode
from kling_async.testing import KlingSimulator

IMAGES = ["https://example.com/a.jpg", "https://example.com/b.jpg"]
#: push: callbacks trusted as they are; push_confirmed: the default, one GET per final
#: callback; poll_eta / poll_no_eta: no receiver, the simulator reporting an ETA or not.
MODES = ("push", "push_confirmed", "poll_eta", "poll_no_eta")


async def _measure(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    async with KlingSimulator(
        accounts={"bench@example.com": args.max_jobs},
        job_seconds=args.job_seconds,
        duration_sigma=0.5,
        seed=args.seed,
        eta=mode != "poll_no_eta",
    ) as sim:
        # The simulator's callbacks are as documented: the GET /tasks model, once, at the end.
        receiver = None
        if mode.startswith("push"):
            receiver = KlingWebhookReceiver(trust_callbacks=mode == "push")
        config = attrs.evolve(DEFAULT_CONFIG, poll=PollPolicy(max_polls_per_second=None))
        detected: dict[int, float] = {}
        with fast_mode(args.job_seconds / 30.0):
            async with KlingClient(
                token=sim.token, base_url=sim.base_url, webhook=receiver, config=config
            ) as kling:

                async def one(i: int) -> None:
                    done = await kling.run(KolorsElements(prompt=f"job {i}", subject_images=IMAGES))
                    assert done.task_id is not None
                    detected[done.task_id] = time.monotonic()

                start = time.monotonic()
                await asyncio.gather(*(one(i) for i in range(args.jobs)))
                elapsed = time.monotonic() - start
        polls = [sim.stats["polls_by_task"].get(tid, 0) for tid in detected]
        lags = [detected[tid] - sim.tasks[tid].final_at for tid in detected]
        fractions = [lag / sim.tasks[tid].duration for tid, lag in zip(detected, lags, strict=True)]
        return {
            "mode": mode,
            "jobs": len(detected),
            "polls_per_job": statistics.median(polls),
            "polls_total": sum(polls),
            "detection_lag_ms_median": round(statistics.median(lags) * 1000, 1),
            "detection_lag_fraction": round(statistics.median(fractions), 4),
            "elapsed_s": round(elapsed, 2),
        }


def main(argv: list[str] | None = None) -> int:
    """Run each mode on the same seeded jobs and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--max-jobs", type=int, default=20)
    parser.add_argument("--job-seconds", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    rows = [asyncio.run(_measure(mode, args)) for mode in MODES]
    print("| mode | jobs | polls/job (median) | polls total | lag median (ms) | lag / job | s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['mode']} | {r['jobs']} | {r['polls_per_job']} | {r['polls_total']} "
            f"| {r['detection_lag_ms_median']} | {r['detection_lag_fraction']} "
            f"| {r['elapsed_s']} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
