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
import gc
import json
import statistics
import time
from typing import Any

import aiohttp
import attrs
import run as bench

from kling_async import DEFAULT_POLL, ClientConfig, KlingClient, Text2Video

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


async def _raw(raw: bench.Raw, n: int, start: int, concurrency: int) -> float:
    slots = asyncio.Semaphore(concurrency)
    url = f"{raw.sim.base_url}/{ENDPOINT}"

    async def one(i: int) -> dict[str, Any]:
        async with slots:
            body = text2video_body(start + i)
            while True:
                async with raw.session.post(url, json=body, headers=raw.headers) as resp:
                    data = json.loads(await resp.read())
                    if resp.status != 429:
                        assert resp.status == 200, data
                        break
                await asyncio.sleep(0.01)
            task_id = data["task"]["id"]
            while True:
                await asyncio.sleep(0.001)
                final = await raw.get(task_id, EMAIL)
                if final["status_final"]:
                    return final

    cpu = time.process_time()
    await asyncio.gather(*(one(i) for i in range(n)))
    return time.process_time() - cpu


async def _client(kling: KlingClient, n: int, start: int) -> float:
    requests = [text2video_request(start + i) for i in range(n)]
    cpu = time.process_time()
    await asyncio.gather(*(kling.run(r) for r in requests))
    return time.process_time() - cpu


async def bench_overhead_text2video(sim: bench.SimProcess, mode: bench.Mode) -> dict[str, Any]:
    """run.py's overhead method on text2video; the figures as a dict."""
    n, concurrency = mode.overhead_jobs, 20
    # As run.py: a first poll 1 ms after the submission, no floor (the jobs last 0 s).
    policy = attrs.evolve(
        DEFAULT_POLL, interval=0.001, min_interval=0.0, jitter=0.0, max_polls_per_second=None
    )
    config = ClientConfig(poll=policy)
    raw_cpu: list[float] = []
    client_cpu: list[float] = []
    async with (
        aiohttp.ClientSession() as session,
        bench._client(sim, config, email=EMAIL, max_jobs=concurrency) as kling,
    ):
        raw = bench.Raw(session, sim)
        await _raw(raw, 20, 10**7, concurrency)  # warm-up: connections, imports
        await _client(kling, 20, 2 * 10**7)
        for r in range(mode.overhead_pairs):
            for side in ("raw", "client") if r % 2 == 0 else ("client", "raw"):
                gc.collect()
                if side == "raw":
                    raw_cpu.append(await _raw(raw, n, 2 * r * n, concurrency))
                else:
                    client_cpu.append(await _client(kling, n, (2 * r + 1) * n))
    ratios = sorted(c / r for c, r in zip(client_cpu, raw_cpu, strict=True))
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    return {
        "overhead_text2video_ratio": statistics.median(ratios),
        "overhead_text2video_ratio_q1": quartiles[0],
        "overhead_text2video_ratio_q3": quartiles[2],
        "overhead_text2video_client_us_per_job": statistics.median(client_cpu) / n * 1e6,
        "overhead_text2video_raw_us_per_job": statistics.median(raw_cpu) / n * 1e6,
    }


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
