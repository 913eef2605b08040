"""Shared job slots: 4 processes on one account (maxJobs 3), Redis pool vs in-process pools.

One KlingSimulator runs in this process; each worker process runs its share of the jobs
with raw aiohttp (POST images/kolors-elements, GET tasks/{id} until final), holding a
slot of the client's `JobSlots` (with the Redis pool, or in-process) around each job,
and sleeping the 429 answer's Retry-After before trying again.
Printed per case: wall time, 429 answers (the simulator's ``rate_limited``), the
simulator's ``peak_running``, and throughput relative to one process at the bound.

    .venv/bin/python benchmarks/shared_slots.py [--jobs 12] [--seconds 0.3] [--poll 0.02]
        [--redis URL]

Without ``--redis`` a redis-server is started on a free loopback port (and stopped).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from typing import Any

import aiohttp

from kling_async.slots import JobSlots, RedisSlotPool
from kling_async.testing import KlingSimulator
from kling_async.testing.redis_server import RedisServer

TOKEN = "bench-token"  # the simulator's token: loopback only
ACCOUNT = "bench@example.com"
MAX_JOBS = 3
IMAGES = ("https://cdn.example.com/a.png", "https://cdn.example.com/b.png")


async def one_job(
    session: aiohttp.ClientSession, base: str, slots: JobSlots, index: int, poll: float
) -> None:
    """Hold a slot around one job: POST (again after a 429's Retry-After), GET until final."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    body = {"prompt": f"job {index}", "subjectImage1": IMAGES[0], "subjectImage2": IMAGES[1]}
    body["email"] = ACCOUNT
    async with slots.acquire(ACCOUNT):
        while True:
            url = f"{base}/images/kolors-elements"
            async with session.post(url, json=body, headers=headers) as resp:
                data: Any = await resp.json()
                if resp.status != 429:
                    assert resp.status == 200, data
                    break
                await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))
        task_id = data["task"]["id"]
        while True:
            await asyncio.sleep(poll)
            params = {"email": ACCOUNT}
            url = f"{base}/tasks/{task_id}"
            async with session.get(url, params=params, headers=headers) as resp:
                if (await resp.json())["status_final"]:
                    return


async def worker(base: str, slots: str, prefix: str, first: int, jobs: int, poll: float) -> None:
    """One process: ``jobs`` jobs, at most maxJobs of them at once as its pool allows.
    Says "ready" and waits for a line on stdin, so that start-up is not timed."""
    # The client's own slots: a local slot first (at most maxJobs waiters per process in
    # the pool's queue), then the pool's lease when a pool is given.
    pool = (
        None
        if slots == "local"
        else RedisSlotPool.from_url(slots, prefix=prefix, poll_seconds=poll)
    )
    held = JobSlots({ACCOUNT: MAX_JOBS}, pool=pool)
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(one_job(session, base, held, first + i, 0.02) for i in range(jobs)))
    await held.aclose()


async def case(
    sim: KlingSimulator, name: str, slots: str, procs: int, jobs: int, poll: float
) -> float:
    """Run one case with ``procs`` worker processes; print its line; its wall time (from
    the moment every worker is ready)."""
    prefix = f"bench:{os.urandom(4).hex()}:"
    pipe = asyncio.subprocess.PIPE
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--worker", sim.base_url, slots, prefix,
            str(n * jobs), str(jobs), str(poll), stdin=pipe, stdout=pipe,
        )
        for n in range(procs)
    ]  # fmt: skip
    for child in children:
        assert child.stdout is not None
        assert (await child.stdout.readline()).strip() == b"ready"
    sim.reset_stats()
    started = time.monotonic()
    for child in children:
        assert child.stdin is not None
        child.stdin.write(b"go\n")
        await child.stdin.drain()
    codes = [await child.wait() for child in children]
    wall = time.monotonic() - started
    assert codes == [0] * procs, codes
    stats = sim.stats
    print(
        f"{name:<28} procs={procs} jobs={procs * jobs:<3} wall={wall:6.2f}s "
        f"429s={stats['rate_limited']:<4} peak_running={stats['peak_running'][ACCOUNT]}"
    )
    return wall


async def main(args: argparse.Namespace) -> None:
    with contextlib.ExitStack() as stack:
        url = args.redis or stack.enter_context(RedisServer()).url  # else a throwaway one
        sim = KlingSimulator(
            token=TOKEN, accounts={ACCOUNT: MAX_JOBS}, job_seconds=args.seconds, seed=1
        )
        async with sim:
            total = 4 * args.jobs
            poll = args.poll
            one = await case(sim, "1 process (the bound)", "local", 1, total, poll)
            shared = await case(sim, "4 processes, Redis pool", url, 4, args.jobs, poll)
            local = await case(sim, "4 processes, in-process", "local", 4, args.jobs, poll)
            print(
                f"throughput vs 1 process: Redis pool {one / shared:.1%}, "
                f"in-process pools {one / local:.1%}"
            )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        base, slots, prefix, first, jobs, poll = sys.argv[2:]
        asyncio.run(worker(base, slots, prefix, int(first), int(jobs), float(poll)))
    else:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--jobs", type=int, default=12, help="jobs per process")
        parser.add_argument("--seconds", type=float, default=0.3, help="mean job duration")
        parser.add_argument("--poll", type=float, default=0.02, help="Redis waiters' poll")
        parser.add_argument("--redis", help="use this Redis instead of starting one")
        asyncio.run(main(parser.parse_args()))
