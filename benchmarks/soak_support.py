"""Plumbing of the fault soak (benchmarks/soak.py): the simulator in a thread, warnings."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

from kling_async.testing import KlingSimulator

__all__ = ["SimulatorThread", "captured_warnings", "settle"]

T = TypeVar("T")


class SimulatorThread:
    """A `KlingSimulator` serving from its own event loop in a daemon thread."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.sim: KlingSimulator | None = None

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def call(self, fn: Callable[[KlingSimulator], T]) -> T:
        """Run ``fn(sim)`` on the simulator's loop, from another loop."""

        async def inside() -> T:
            assert self.sim is not None
            return fn(self.sim)

        future = asyncio.run_coroutine_threadsafe(inside(), self._loop)
        return await asyncio.wrap_future(future)

    def __enter__(self) -> KlingSimulator:
        self._thread.start()

        async def start() -> KlingSimulator:
            sim = KlingSimulator(**self._options)
            await sim.start()
            return sim

        self.sim = self._run(start())
        return self.sim

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self.sim is not None:
                self._run(self.sim.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()


@contextlib.contextmanager
def captured_warnings() -> Iterator[list[str]]:
    """Record every warning (ResourceWarning included) raised inside the block."""
    found: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # backoff 2.2.1 deprecates itself on Python 3.14: not the client's leak.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="backoff")
        try:
            yield found
        finally:
            gc.collect()
            found.extend(f"{w.category.__name__}: {w.message}" for w in caught)


async def settle(check: Callable[[], Awaitable[int]], deadline: float) -> int:
    """``check()`` until it is 0 or ``deadline`` (loop time) passes; its last value."""
    loop = asyncio.get_running_loop()
    value = await check()
    while value and loop.time() < deadline:
        await asyncio.sleep(0.01)
        value = await check()
    return value
