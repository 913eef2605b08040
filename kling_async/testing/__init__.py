"""A faithful local useapi.net Kling API v1 server, for tests, benchmarks and demos.

::

    from kling_async.testing import KlingSimulator

    async with KlingSimulator(accounts={"a@example.com": 5}, job_seconds=0.1) as sim:
        ...  # talk to sim.base_url with "Authorization: Bearer " + sim.token

For your own test suite, ``with fast_mode():`` zeroes the client's poll and retry waits
(the service's ETA and the simulator's short jobs still set the pace).

Standalone: ``python -m kling_async.testing --port 8787 --account a@example.com:5``.
"""

from kling_async.config import fast_mode
from kling_async.testing.cli import add_simulator_arguments, run_from_args
from kling_async.testing.faults import FaultPlan, FaultRates
from kling_async.testing.simulator import KlingSimulator
from kling_async.testing.state import SimTask

__all__ = [
    "FaultPlan",
    "FaultRates",
    "KlingSimulator",
    "SimTask",
    "add_simulator_arguments",
    "fast_mode",
    "run_from_args",
]
