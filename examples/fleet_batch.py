"""A fleet: one batch split across worker processes that share the account's job slots.

Each worker process runs its own shard of the jobs file with its own journal (one writer
per journal), and every worker's `KlingClient` takes its job slots from the same Redis
(``$KLING_SLOTS``), so together they never run more than the account's maxJobs, however
many workers there are. A worker that crashes is re-run on its shard: its journal resumes
it without paying twice; its slots come back when their leases expire.

    python examples/fleet_batch.py                        # demo: simulator + redis-server
    python examples/fleet_batch.py --jobs-file jobs.jsonl --out out/ --shards 4 \\
        --redis redis://127.0.0.1:6379/0 --email you@example.com   # for real ($USEAPI_TOKEN)

The same recipe with the CLI: split the file, then per shard
``kling-async batch shard-K.jsonl --out out/shard-K --slots redis://...`` (one process each).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

from kling_async import KlingClient
from kling_async.batch import BatchRunner, JobState, Journal, parse_jobs_file
from kling_async.testing import KlingSimulator
from kling_async.testing.redis_server import RedisServer

DEMO_TOKEN = "fleet-demo-token"  # noqa: S105 -- the simulator's token: loopback only
DEMO_ACCOUNT = "fleet@example.com"
IMAGES = ["https://cdn.example.com/a.png", "https://cdn.example.com/b.png"]


def split(lines: list[str], shards: int, out: Path) -> list[Path]:
    """Write every shards-th line to ``out/shard-K/jobs.jsonl``; the shard folders."""
    folders = [out / f"shard-{k}" for k in range(shards)]
    for k, folder in enumerate(folders):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "jobs.jsonl").write_text("".join(lines[k::shards]))
    return folders


async def worker(folder: Path, email: str | None) -> None:
    """One shard: its jobs, its journal; the slots from ``$KLING_SLOTS``."""
    jobs = parse_jobs_file(folder / "jobs.jsonl")
    async with KlingClient(email=email) as kling:
        with Journal(folder / "journal.sqlite") as journal:
            summary = await BatchRunner(kling, journal, folder / "out").run(jobs)
    done = summary.count(JobState.SUCCEEDED)
    print(f"{folder.name}: {done}/{len(jobs)} succeeded", flush=True)
    if done != len(jobs):
        sys.exit(1)


async def run_fleet(folders: list[Path], env: dict[str, str], email: str | None) -> None:
    """Start one worker process per shard and wait for all of them."""
    extra = ["--email", email] if email else []
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--worker", str(folder), *extra, env=env
        )
        for folder in folders
    ]
    codes = [await w.wait() for w in workers]
    if any(codes):
        raise SystemExit(f"workers ended with {codes}; run again to resume their shards")


async def main(args: argparse.Namespace) -> None:
    out = Path(args.out or tempfile.mkdtemp(prefix="kling-fleet-"))
    if args.jobs_file:
        text = Path(args.jobs_file).read_text()  # noqa: ASYNC240 -- before anything runs
        lines = [line + "\n" for line in text.splitlines() if line.strip()]
    else:
        lines = [
            json.dumps({"kind": "image", "prompt": f"fleet job {n}", "subject_images": IMAGES})
            + "\n"
            for n in range(args.jobs)
        ]
    folders = split(lines, args.shards, out)
    with contextlib.ExitStack() as stack:
        url = args.redis or stack.enter_context(RedisServer()).url  # else a throwaway one
        env = {**os.environ, "KLING_SLOTS": url}
        if args.base_url:
            await run_fleet(folders, {**env, "KLING_BASE_URL": args.base_url}, args.email)
            return
        sim = KlingSimulator(token=DEMO_TOKEN, accounts={DEMO_ACCOUNT: 3}, job_seconds=0.2)
        async with sim:
            demo = {**env, "KLING_BASE_URL": sim.base_url, "USEAPI_TOKEN": DEMO_TOKEN}
            await run_fleet(folders, demo, DEMO_ACCOUNT)
            stats = sim.stats
            print(
                f"{len(lines)} jobs done in {args.shards} shards; "
                f"peak running on the server: {stats['peak_running'][DEMO_ACCOUNT]} "
                f"(maxJobs 3); 429 answers: {stats['rate_limited']}"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--jobs-file", help="JSON lines of jobs (default: a demo batch)")
    parser.add_argument("--jobs", type=int, default=12, help="demo batch size")
    parser.add_argument("--shards", type=int, default=3, help="worker processes")
    parser.add_argument("--out", help="shards, journals and results go here")
    parser.add_argument("--redis", help="the shared Redis (default: start a throwaway one)")
    parser.add_argument("--base-url", help="the API (default: a local simulator)")
    parser.add_argument("--email", help="the account (real runs)")
    arguments = parser.parse_args()
    if arguments.worker:
        asyncio.run(worker(arguments.worker, arguments.email))
    else:
        asyncio.run(main(arguments))
