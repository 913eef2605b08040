"""A worker process of the Redis fleet tests: ``KlingClient(slots=URL)`` running jobs.

    python tests/redis_worker.py BASE_URL SLOTS_URL EMAIL JOBS [--hang]

Runs JOBS jobs at once on the simulator at BASE_URL (EMAIL "": none configured, the
client reads the token's only account) and prints ``submitted ID`` as each POST is
answered, ``done ID`` as each job ends, and ``finished`` at the end. ``--hang``: each
job's ``on_submitted`` hook never returns, so the process keeps its slots until killed.
"""

from __future__ import annotations

import asyncio
import sys

from helpers import TOKEN

from kling_async import KlingClient, KolorsElements, TaskResponse, fast_mode

IMAGES = ["https://cdn.example.com/a.png", "https://cdn.example.com/b.png"]


async def main(base_url: str, slots: str, email: str, jobs: int, hang: bool) -> None:
    """Run the jobs, printing one line per step."""

    async def submitted(resp: TaskResponse) -> None:
        print(f"submitted {resp.task_id}", flush=True)
        if hang:
            await asyncio.Event().wait()

    async def one(n: int) -> None:
        request = KolorsElements(prompt=f"job {n}", subject_images=IMAGES)
        final = await kling.run(request, on_submitted=submitted)
        print(f"done {final.task_id}", flush=True)

    with fast_mode(0.05):
        async with KlingClient(
            token=TOKEN, email=email or None, base_url=base_url, slots=slots
        ) as kling:
            await asyncio.gather(*(one(n) for n in range(jobs)))
    print("finished", flush=True)


if __name__ == "__main__":
    _base, _slots, _email, _jobs = sys.argv[1:5]
    asyncio.run(main(_base, _slots, _email, int(_jobs), "--hang" in sys.argv[5:]))
