"""Speech from text (tts/create) with a voice from GET /tts/voices, then lip-sync.

Run: python docs/examples/audio.py
"""

from __future__ import annotations

import asyncio

from kling_async import KlingClient, LipSync, TextToSpeech
from kling_async.testing import KlingSimulator


async def main() -> None:
    async with KlingSimulator(accounts={"me@example.com": 2}, job_seconds=0.1) as sim:
        async with KlingClient(token=sim.token, base_url=sim.base_url) as kling:
            voices = (await kling.catalog.tts_voices())["voices"]
            speaker = voices[0]["speakerId"]
            speech = await kling.run(TextToSpeech(speaker_id=speaker, text="Hello there!"))
            print("speech", speech.status_name, speech.urls[0].rsplit(".", 1)[-1])

            synced = await kling.run(
                LipSync(video="https://example.com/talk.mp4", audio=speech.urls[0])
            )
            print("lipsync", synced.status_name)


if __name__ == "__main__":
    asyncio.run(main())
