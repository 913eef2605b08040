"""Command line of the standalone simulator (also reused by ``kling-async simulate``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Sequence

__all__ = ["add_simulator_arguments", "main", "run_from_args"]

DEFAULT_MAX_JOBS = 5


def _account(value: str) -> tuple[str, int]:
    email, sep, max_jobs = value.rpartition(":")
    if not sep:
        return value, DEFAULT_MAX_JOBS
    if not max_jobs.isdigit() or not 1 <= int(max_jobs) <= 50:
        raise argparse.ArgumentTypeError(f"maxJobs must be 1..50 in {value!r}")
    return email, int(max_jobs)


def add_simulator_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the simulator's options to ``parser`` (and return it)."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8787, help="port (8787; 0 picks one)")
    parser.add_argument(
        "--token", default=None, help="API token to accept (default $USEAPI_TOKEN, else generated)"
    )
    parser.add_argument(
        "--account",
        action="append",
        type=_account,
        metavar="EMAIL[:MAXJOBS]",
        help=f"a Kling account, repeatable (default user@example.com:{DEFAULT_MAX_JOBS})",
    )
    parser.add_argument(
        "--job-seconds", type=float, default=3.0, help="mean image job duration (3.0)"
    )
    parser.add_argument(
        "--duration-sigma", type=float, default=0.25, help="lognormal spread of durations"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.add_argument("--no-eta", action="store_true", help="send 0 in the ETA fields")
    parser.add_argument(
        "--strict-assets", action="store_true", help="only accept uploaded image URLs"
    )
    return parser


async def _serve(args: argparse.Namespace) -> None:
    from kling_async.testing.simulator import KlingSimulator

    # Handlers first: a SIGTERM sent as soon as the URL is read must still stop cleanly.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows
            loop.add_signal_handler(signum, stop.set)
    token = args.token or os.environ.get("USEAPI_TOKEN")
    async with KlingSimulator(
        token=token,
        accounts=dict(args.account) if args.account else None,
        job_seconds=args.job_seconds,
        duration_sigma=args.duration_sigma,
        seed=args.seed,
        eta=not args.no_eta,
        strict_assets=args.strict_assets,
        host=args.host,
        port=args.port,
    ) as sim:
        print(sim.base_url, flush=True)
        if token is None:
            print(f"token: {sim.token}", flush=True)
        accounts = ", ".join(f"{e} (maxJobs {n})" for e, n in sim.accounts.items())
        print(f"accounts: {accounts}", flush=True)
        await stop.wait()


def run_from_args(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C or SIGTERM with options parsed by :func:`add_simulator_arguments`."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m kling_async.testing``."""
    parser = argparse.ArgumentParser(
        prog="python -m kling_async.testing",
        description="A local useapi.net Kling API v1 simulator. The first line printed is "
        "the base URL.",
    )
    add_simulator_arguments(parser)
    try:
        return run_from_args(parser.parse_args(argv))
    except OSError as error:  # e.g. the port is taken
        print(f"error: {error}", file=sys.stderr)
        return 1
