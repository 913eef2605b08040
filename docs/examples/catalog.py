"""The non-generation endpoints: effects, elements, generated assets, deleting a task.

Run: python docs/examples/catalog.py
"""

from __future__ import annotations

import asyncio

from kling_async import Image2VideoEffects, KlingClient, NotFoundError
from kling_async.testing import KlingSimulator


async def main() -> None:
    async with KlingSimulator(accounts={"me@example.com": 2}, job_seconds=0.1) as sim:
        async with KlingClient(token=sim.token, base_url=sim.base_url) as kling:
            names = [e["name"] for e in (await kling.catalog.effects())["effects"]]
            print("effects include hug:", "hug" in names)
            hug = await kling.run(
                Image2VideoEffects(effect=names[0], image="https://example.com/pair.jpg")
            )

            element = await kling.catalog.create_element(
                name="fox", cover_image="https://example.com/fox.jpg", tag="animal"
            )
            print("element", element["id"].startswith("u_"), element["name"].startswith("fox_"))
            await kling.catalog.delete_element(element["id"])

            assets = await kling.catalog.assets(content_type="video")
            print("generated videos:", len(assets.urls))
            gone = await kling.catalog.delete_task(hug.task_id or 0)
            print("deleted:", gone.deleted, "works:", len(gone.work_ids))
            try:
                await kling.get_task(hug.task_id or 0)
            except NotFoundError as exc:
                print("then GET /tasks:", exc.status)


if __name__ == "__main__":
    asyncio.run(main())
