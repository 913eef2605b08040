"""Text-to-video with Kling v3: one prompt, then a multi-shot video, against the simulator.

Run: python docs/examples/text2video.py
"""

from __future__ import annotations

import asyncio

from kling_async import KlingClient, Text2Video
from kling_async.testing import KlingSimulator


async def main() -> None:
    async with KlingSimulator(accounts={"me@example.com": 2}, job_seconds=0.1) as sim:
        async with KlingClient(token=sim.token, base_url=sim.base_url) as kling:
            # The one-call form: the keywords are Text2Video's own.
            fox = await kling.text2video(
                prompt="a fox in the snow", model_name="kling-v3-0", duration=10
            )
            print("text2video", fox.status_name, fox.urls[0].rsplit(".", 1)[-1])

            # Multi-shot (v3 only): up to 6 (prompt, seconds) shots, 3-15 s in all.
            story = Text2Video(
                model_name="kling-v3-0",
                shots=[("a fox wakes up", 4), ("it runs through the forest", 6)],
            )
            print("body:", sorted(story.to_wire()))
            done = await kling.run(story)
            print("multi-shot", done.status_name)


if __name__ == "__main__":
    asyncio.run(main())
