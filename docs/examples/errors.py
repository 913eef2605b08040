"""What goes wrong, typed: bad input, a moderation refusal, a failed task, a deadline.

Run: python docs/examples/errors.py
"""

from __future__ import annotations

import asyncio

from kling_async import (
    KlingClient,
    KolorsElements,
    ModerationError,
    RequestValidationError,
    TaskFailedError,
)
from kling_async.testing import KlingSimulator

IMAGES = ["https://example.com/a.jpg", "https://example.com/b.jpg"]


async def main() -> None:
    # Bad input fails when the request is built, before anything is sent.
    try:
        KolorsElements(prompt="one image is not enough", subject_images=IMAGES[:1])
    except RequestValidationError as exc:
        print("RequestValidationError:", exc.field)

    # The simulator refuses prompts with "nsfw" and fails tasks whose prompt says "fail".
    async with KlingSimulator(accounts={"me@example.com": 2}, job_seconds=0.05) as sim:
        async with KlingClient(token=sim.token, base_url=sim.base_url) as kling:
            try:
                await kling.kolors_elements(prompt="nsfw poster", subject_images=IMAGES)
            except ModerationError as exc:
                print("ModerationError:", exc.status)
            try:
                await kling.kolors_elements(prompt="this will fail", subject_images=IMAGES)
            except TaskFailedError as exc:
                print("TaskFailedError: task", exc.task.task_id, exc.task.status_name)


if __name__ == "__main__":
    asyncio.run(main())
