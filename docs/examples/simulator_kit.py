"""The simulator as a test kit: faults, stats and fast_mode, as in your own test suite.

Run: python docs/examples/simulator_kit.py
"""

from __future__ import annotations

import asyncio

from kling_async import KlingClient, KolorsElements, fast_mode
from kling_async.testing import FaultPlan, FaultRates, KlingSimulator

IMAGES = ["https://example.com/a.jpg", "https://example.com/b.jpg"]


async def main() -> None:
    # A fifth of the polls answer 500 and a tenth drop the connection: the client retries.
    faults = FaultPlan(seed=7, rules={"tasks": FaultRates(server_error=0.2, reset=0.1)})
    async with KlingSimulator(
        accounts={"me@example.com": 3}, job_seconds=0.05, fault_plan=faults
    ) as sim:
        async with KlingClient(token=sim.token, base_url=sim.base_url) as kling:
            with fast_mode():  # no poll or retry waits: tests run at the simulator's pace
                jobs = [
                    KolorsElements(prompt=f"poster {i}", subject_images=IMAGES) for i in range(6)
                ]
                results = await asyncio.gather(*(kling.run(job) for job in jobs))
        stats = sim.stats
        print(sum(r.succeeded for r in results), "jobs succeeded")
        print("tasks created:", stats["tasks_created"], "(never twice for one job)")
        print("peak running:", stats["peak_running"]["me@example.com"], "<= maxJobs 3")
        print("faults injected:", sum(stats["faults"].values()) > 0)


if __name__ == "__main__":
    asyncio.run(main())
