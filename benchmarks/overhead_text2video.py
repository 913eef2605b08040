"""The overhead figure on text2video: client CPU per job over raw aiohttp's, as run.py
measures it on kolors-elements (adjacent raw/client rounds, the two processes on different
cores, the median of the pairs' ratios), with the request of the README's first example::

    python benchmarks/overhead_text2video.py            # full: 40 pairs of 400 jobs
    python benchmarks/overhead_text2video.py --mode quick --kolors

Prints one JSON object (``overhead_text2video_ratio`` and its quartiles, per-job CPU);
``--kolors`` also measures run.py's kolors-elements figure in the same process, right
after, for a comparison on the same machine state.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import aiohttp
import run as bench

from kling_async import ClientConfig, Text2Video

EMAIL = "overhead@bench"
ENDPOINT = "videos/text2video"


def text2video_body(index: int) -> dict[str, Any]:
    """The raw side's body: what `text2video_request` sends."""
    prompt = f"benchmark fox {index} [d=0.000000]"
    return {"prompt": prompt, "model_name": "kling-v3-0", "duration": "10", "email": EMAIL}


def text2video_request(index: int) -> Text2Video:
    """The client side's request (built outside the timed part, as run.py does)."""
    prompt = f"benchmark fox {index} [d=0.000000]"
    return Text2Video(prompt=prompt, model_name="kling-v3-0", duration=10)


async def bench_overhead_text2video(sim: bench.SimProcess, mode: bench.Mode) -> dict[str, Any]:
    """run.py's overhead method on text2video; the figures as a dict."""
    concurrency = 20
    config = ClientConfig(poll=bench.OVERHEAD_POLL)
    async with (
        aiohttp.ClientSession() as session,
        bench._client(sim, config, email=EMAIL, max_jobs=concurrency) as kling,
    ):
        raw = bench.Raw(session, sim)

        async def raw_round(n: int, start: int) -> float:
            bodies = [text2video_body(start + i) for i in range(n)]
            return await bench.raw_jobs(raw, ENDPOINT, bodies, concurrency)

        async def client_round(n: int, start: int) -> float:
            return await bench.client_jobs(kling, [text2video_request(start + i) for i in range(n)])

        raw_cpu, client_cpu = await bench.paired_rounds(mode, raw_round, client_round)
    return bench.ratio_figures("overhead_text2video_ratio", raw_cpu, client_cpu, mode.overhead_jobs)


async def _main(sim: bench.SimProcess, mode: bench.Mode, kolors: bool) -> dict[str, Any]:
    with bench._cores_apart(sim) as pinned:
        figures = await bench_overhead_text2video(sim, mode)
    figures["overhead_text2video_cores_pinned"] = pinned
    if kolors:
        figures.update(await bench.bench_overhead(sim, mode))
    return figures


def main() -> None:
    """Measure and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=sorted(bench.MODES), default="full")
    parser.add_argument("--kolors", action="store_true", help="run.py's figure too")
    args = parser.parse_args()
    mode = bench.MODES[args.mode]
    with bench.simulators(mode) as sims:
        figures = asyncio.run(_main(sims[True], mode, args.kolors))
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()
