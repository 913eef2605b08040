"""Push mode against the local simulator: jobs finish from replyUrl callbacks, no polling.

Run: python examples/push_mode.py
"""

from __future__ import annotations

import asyncio

from kling_async import KlingClient, KlingWebhookReceiver, KolorsElements
from kling_async.testing import KlingSimulator


async def main() -> None:
    # The simulator calls back as useapi.net documents it: the task model, once, at the end.
    async with KlingSimulator(accounts={"me@example.com": 5}, job_seconds=0.5) as sim:
        receiver = KlingWebhookReceiver(trust_callbacks=True)  # serves on 127.0.0.1, any port
        async with KlingClient(token=sim.token, base_url=sim.base_url, webhook=receiver) as kling:
            jobs = [
                KolorsElements(
                    prompt=f"poster number {i}",
                    subject_images=["https://example.com/a.jpg", "https://example.com/b.jpg"],
                )
                for i in range(10)
            ]
            results = await asyncio.gather(*(kling.run(job) for job in jobs))
        print(f"{sum(r.succeeded for r in results)} jobs done")
        print(f"GET /tasks polls: {sim.stats['polls']}, callbacks received: {receiver.received}")


if __name__ == "__main__":
    asyncio.run(main())
