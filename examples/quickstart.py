"""The README quick start, against the local simulator: submit, get_task, wait, download.

Run: python examples/quickstart.py
"""

from __future__ import annotations

import asyncio
import tempfile

from kling_async import KlingClient, KolorsElements
from kling_async.testing import KlingSimulator


async def main() -> None:
    async with KlingSimulator(accounts={"me@example.com": 3}, job_seconds=1.0) as sim:
        async with KlingClient(token=sim.token, base_url=sim.base_url) as kling:
            sub = await kling.submit(
                KolorsElements(
                    prompt="a cat and a dog in a gallery",
                    subject_images=["https://example.com/cat.jpg", "https://example.com/dog.jpg"],
                    image_count=2,
                )
            )
            print("submitted task", sub.task_id, sub.status_name)
            task = await kling.get_task(sub.task_id or 0)
            print("now", task.status_name)
            done = await kling.wait(sub)
            print("final", done.status_name, done.urls)
            folder = tempfile.mkdtemp(prefix="kling-quickstart-")
            for path in await kling.download(done, folder):
                print("wrote", path)


if __name__ == "__main__":
    asyncio.run(main())
