"""Helpers of the tests that need a real Redis (``from redis_helpers import``); their
fixtures (``redis_server``, ``redis_url``, ``prefix``) are in conftest.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

#: The account (maxJobs 3) of the Redis tests' simulators.
ACCOUNT = "shared@example.com"


async def until(count: Callable[[], Awaitable[int]], at_least: int, timeout: float = 30) -> None:
    """Poll ``count()`` until it reaches ``at_least``, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while await count() < at_least:  # the state is in Redis (or another process): poll it
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)
