"""image2video-elements: a video from images, then a batch of them within maxJobs.

Run: python docs/examples/videos.py
"""

from __future__ import annotations

import asyncio

from kling_async import Image2VideoElements, KlingClient
from kling_async.testing import KlingSimulator


async def main() -> None:
    async with KlingSimulator(accounts={"me@example.com": 2}, job_seconds=0.1) as sim:
        async with KlingClient(token=sim.token, base_url=sim.base_url) as kling:
            video = await kling.run(
                Image2VideoElements(
                    prompt="they dance",
                    images=["https://example.com/a.jpg", "https://example.com/b.jpg"],
                    duration=5,
                    mode="std",
                )
            )
            print("video", video.status_name, video.urls[0].rsplit(".", 1)[-1])

            # Four jobs, two slots: the client never runs more than maxJobs at once.
            jobs = [
                Image2VideoElements(prompt=f"scene {i}", images=["https://example.com/a.jpg"])
                for i in range(4)
            ]
            results = await asyncio.gather(*(kling.run(job) for job in jobs))
            print(sum(r.succeeded for r in results), "videos;", end=" ")
            print("peak running on the server:", sim.stats["peak_running"]["me@example.com"])


if __name__ == "__main__":
    asyncio.run(main())
