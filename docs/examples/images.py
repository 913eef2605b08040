"""KOLORS-elements images against the local simulator: one call, then the files on disk.

Run: python docs/examples/images.py
"""

from __future__ import annotations

import asyncio
import tempfile

from kling_async import KlingClient, KolorsElements
from kling_async.testing import KlingSimulator


async def main() -> None:
    async with KlingSimulator(accounts={"me@example.com": 2}, job_seconds=0.2) as sim:
        async with KlingClient(token=sim.token, base_url=sim.base_url) as kling:
            # Submit, wait and hold one of the account's job slots, in one call.
            done = await kling.run(
                KolorsElements(
                    prompt="a cat and a dog in a gallery",
                    subject_images=["https://example.com/cat.jpg", "https://example.com/dog.jpg"],
                    aspect_ratio="1:1",
                    image_count=2,
                )
            )
            print("task", done.task_id, done.status_name, len(done.urls), "images")
            with tempfile.TemporaryDirectory() as folder:
                paths = await kling.download(done, folder)
                print("downloaded", len(paths), "files")


if __name__ == "__main__":
    asyncio.run(main())
