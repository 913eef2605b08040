"""One side of the overhead benchmark alone, for an instruction counter.

CPU time on a shared machine drifts (see README.md); instruction counts do not. Run a side
for two job counts under valgrind's callgrind and subtract: the difference over the extra
jobs is the side's instructions per job, start-up excluded::

    CG="valgrind --tool=callgrind --callgrind-out-file=/dev/null"
    $CG python benchmarks/overhead_loop.py client 1200
    $CG python benchmarks/overhead_loop.py client 200

("Collected" in each summary; the simulator runs in its own process, not counted.) The
client side counts building its request objects too, which the timed benchmark leaves
out (``raw`` builds its bodies inside its loop): run ``requests`` the same way to
subtract that.

``typed`` is the raw loop that also structures each answer with `structure_task`: the
baseline of ``overhead_typed_ratio``.

The cyclic garbage collector is off here: when a full collection falls inside one run and
not the other, it moves the figure by 10-60 K instructions per job. Timed over 4,000 jobs,
collections cost both sides the same (about 20 us per job): the timed benchmark counts them.
"""

from __future__ import annotations

import argparse
import asyncio
import gc

import aiohttp
import run as bench

from kling_async import ClientConfig, KlingClient

ROUND = 200


async def _requests_only(n: int, start: int) -> None:
    async def nothing(_: object) -> None:
        return None

    requests = [bench.kolors_request(start + i, 0.0) for i in range(n)]
    await asyncio.gather(*(nothing(r) for r in requests))


async def _main(sim: bench.SimProcess, side: str, jobs: int) -> None:
    config = ClientConfig(poll=bench.OVERHEAD_POLL)
    kling: KlingClient
    async with (
        aiohttp.ClientSession() as session,
        bench._client(sim, config, email="overhead@bench", max_jobs=20) as kling,
    ):
        raw = bench.Raw(session, sim)
        start = 10**7
        for done in range(0, jobs + ROUND, ROUND):  # the first round warms up
            if side in ("raw", "typed"):
                await bench._overhead_raw(raw, ROUND, start + done, 20, typed=side == "typed")
            elif side == "client":
                await bench._overhead_client(kling, ROUND, start + done)
            else:
                await _requests_only(ROUND, start + done)


def main() -> None:
    """Run ``jobs`` jobs (plus a warm-up round) of one side against the simulator."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("side", choices=("raw", "typed", "client", "requests"))
    parser.add_argument("jobs", type=int, help=f"a multiple of {ROUND}")
    args = parser.parse_args()
    gc.disable()  # see the module docstring
    with bench.simulators(bench.MODES["smoke"]) as sims:
        asyncio.run(_main(sims[True], args.side, args.jobs))


if __name__ == "__main__":
    main()
