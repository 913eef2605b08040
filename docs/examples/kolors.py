"""KOLORS images from a prompt (images/kolors), saved as JSON and read back.

Run: python docs/examples/kolors.py
"""

from __future__ import annotations

import asyncio
import json

from kling_async import KlingClient, TaskResponse
from kling_async.testing import KlingSimulator


async def main() -> None:
    async with KlingSimulator(accounts={"me@example.com": 2}, job_seconds=0.1) as sim:
        async with KlingClient(token=sim.token, base_url=sim.base_url) as kling:
            done = await kling.kolors(
                prompt="a lighthouse at dawn", aspect_ratio="3:2", image_count=3
            )
            print("kolors", done.status_name, len(done.urls), "images")
            # Any result as JSON with the service's wire names, and back.
            text = done.to_json()
            print("round trip:", TaskResponse.from_dict(json.loads(text)) == done)


if __name__ == "__main__":
    asyncio.run(main())
