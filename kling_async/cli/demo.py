"""``kling-async demo``: a small batch against the built-in simulator."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Final

from ..batch import Job, job_from_request
from ..client import KlingClient
from ..requests import GenerationRequest, Image2VideoElements, KolorsElements
from ..testing.media import png
from .commands import run_jobs
from .display import Display
from .interrupt import EXIT_FAILED, EXIT_OK

__all__ = ["DEMO_ACCOUNT", "DEMO_JOB_SECONDS", "cmd_demo"]

DEMO_ACCOUNT: Final = "demo@example.com"
DEMO_JOB_SECONDS: Final = 1.5
#: The colours of the demo's input images (two subjects and a scene).
_INPUT_COLOURS: Final = ((230, 120, 40), (40, 160, 90), (60, 90, 200))


_DEMO_PROMPTS: Final = (
    "a lighthouse on a cliff at dawn, in the style of the reference",
    "a cat wearing a tiny astronaut helmet in a sunlit kitchen",
    "a vintage tram crossing a rainy city square at night",
    "a paper boat drifting on a mountain lake",
    "a robot gardener watering tulips",
)


def _demo_jobs(inputs: Path, count: int) -> list[Job]:
    inputs.mkdir(parents=True, exist_ok=True)
    files = []
    for hue, name in enumerate(("subject-a.png", "subject-b.png", "scene.png")):
        path = inputs / name
        path.write_bytes(png(320, 320, _INPUT_COLOURS[hue]))
        files.append(str(path))
    subject_a, subject_b, scene = files
    requests: list[GenerationRequest] = [
        KolorsElements(
            prompt=_DEMO_PROMPTS[i % len(_DEMO_PROMPTS)],
            subject_images=[subject_a, subject_b],
            scene_image=scene if i % 2 == 0 else None,
            aspect_ratio=("1:1", "16:9", "3:4")[i % 3],
        )
        for i in range(count)
    ]
    requests.append(
        Image2VideoElements(
            prompt="the two shapes dance around each other", images=[subject_a, subject_b]
        )
    )
    return [job_from_request(i, r) for i, r in enumerate(requests, start=1)]


async def cmd_demo(args: argparse.Namespace, display: Display) -> int:
    from ..testing import KlingSimulator

    out: Path = args.out
    jobs = _demo_jobs(out / "inputs", args.jobs)
    started = time.monotonic()
    simulator = KlingSimulator(
        accounts={DEMO_ACCOUNT: 2}, job_seconds=DEMO_JOB_SECONDS, strict_assets=True
    )
    async with simulator as sim:
        display.line(f"simulator at {sim.base_url} (account {DEMO_ACCOUNT}, maxJobs 2)")
        display.line(f"{len(jobs)} jobs; input images in {out / 'inputs'}")
        async with KlingClient(token=sim.token, base_url=sim.base_url, email=DEMO_ACCOUNT) as kling:
            summary = await run_jobs(kling, jobs, out, display)
        stats = sim.stats
    display.summary(summary, out)
    display.line(
        f"{stats['tasks_created']} tasks, {stats['polls']} polls, peak running "
        f"{max(stats['peak_running'].values())} in {time.monotonic() - started:.1f} s"
    )
    gallery = out / "index.html"  # written by the batch with its manifest
    if gallery.is_file():
        display.line(f"gallery: {gallery.resolve()}")
    return EXIT_OK if summary.ok else EXIT_FAILED
