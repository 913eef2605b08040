"""An Avatar 2.0 avatar (POST /avatars), a talking video of it, then deleting it.

Run: python docs/examples/avatars.py
"""

from __future__ import annotations

import asyncio

from kling_async import AvatarVideo, KlingClient
from kling_async.testing import KlingSimulator


async def main() -> None:
    async with KlingSimulator(accounts={"me@example.com": 2}, job_seconds=0.1) as sim:
        async with KlingClient(token=sim.token, base_url=sim.base_url) as kling:
            avatar = await kling.catalog.create_avatar(
                image_url="https://example.com/face.jpg", nickname="Ann"
            )
            print(
                "avatar",
                avatar["nickname"],
                "listed:",
                len((await kling.catalog.avatars())["avatars"]),
            )
            speaker = (await kling.catalog.tts_voices())["voices"][0]["speakerId"]
            video = await kling.run(
                AvatarVideo(avatar_id=avatar["avatarId"], text="Welcome!", speaker_id=speaker)
            )
            print("avatar video", video.status_name)
            await kling.catalog.delete_avatar(avatar["avatarId"])
            print("avatars left:", len((await kling.catalog.avatars())["avatars"]))


if __name__ == "__main__":
    asyncio.run(main())
