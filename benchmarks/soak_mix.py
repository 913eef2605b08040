"""The fault soak's seeded job mix (benchmarks/soak.py): requests, batches, cancellations."""

from __future__ import annotations

import math
import random
from typing import Any, Final

from soak_outcomes import FAILURE_WORD, MODERATION_WORD

from kling_async import GenerationRequest, Image2VideoElements, KolorsElements

__all__ = ["BATCH_SIZE", "BATCH_SLOWDOWN", "batches", "cancellations", "job_durations", "make_jobs"]

BATCH_SIZE: Final = 20
#: Batch jobs run this many times longer: still running when the resume looks for them.
BATCH_SLOWDOWN: Final = 10.0


def cancellations(count: int, seed: int) -> dict[int, float]:
    """Jobs whose caller cancels them, and after how many seconds (3 %, up to 1 s in)."""
    rng = random.Random(f"{seed}:cancel")  # a seeded mix, not a secret
    return {i: rng.uniform(0.0, 1.0) for i in range(count) if rng.random() < 0.03}


def batches(count: int, seed: int) -> list[list[int]]:
    """About 20 % of the ``count`` jobs, in batches of `BATCH_SIZE`."""
    rng = random.Random(f"{seed}:batch")  # a seeded mix, not a secret
    chosen = [i for i in range(count) if rng.random() < 0.20]
    return [chosen[n : n + BATCH_SIZE] for n in range(0, len(chosen), BATCH_SIZE)]


def make_jobs(count: int, seed: int) -> list[GenerationRequest]:
    """``count`` requests, each with a unique prompt (the key to the simulator's record)."""
    rng = random.Random(f"{seed}:jobs")  # a seeded mix, not a secret
    jobs: list[GenerationRequest] = []
    for i in range(count):
        roll = rng.random()
        word = MODERATION_WORD if roll < 0.03 else FAILURE_WORD if roll < 0.06 else ""
        prompt = f"soak {seed} job {i}: a cat in a hat {word}".strip()
        images = [f"https://cdn.example.com/soak/{i}-{n}.png" for n in range(rng.randint(1, 3))]
        if rng.random() < 0.15:
            jobs.append(Image2VideoElements(prompt=prompt, images=images))
        else:
            jobs.append(
                KolorsElements(
                    prompt=prompt,
                    subject_images=[*images, "https://cdn.example.com/soak/common.png"],
                    image_count=rng.randint(1, 3),
                )
            )
    return jobs


def job_durations(job_seconds: float, slow_prompts: frozenset[str]) -> Any:
    """The simulator's durations (lognormal around ``job_seconds``, videos twice as long),
    `BATCH_SLOWDOWN` times longer for ``slow_prompts``."""

    def duration(endpoint: str, body: dict[str, Any], rng: random.Random) -> float:
        mean = job_seconds * (2.0 if endpoint.startswith("videos/") else 1.0)
        if body.get("prompt") in slow_prompts:
            mean *= BATCH_SLOWDOWN
        return mean * math.exp(rng.gauss(0.0, 0.25) - 0.25**2 / 2)

    return duration
