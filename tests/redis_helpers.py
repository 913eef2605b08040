"""Fixtures and helpers of the tests that need a real Redis (``from redis_helpers import``).

A redis-server is started per test module on a free loopback port (`RedisServer`), or
``$KLING_TEST_REDIS_URL`` is used; each test gets a key prefix of its own.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest

from kling_async.testing.redis_server import RedisServer, find_redis_server

#: The account (maxJobs 3) and token of the Redis tests' simulators: loopback only.
ACCOUNT = "shared@example.com"
TOKEN = "redis-test-token"


@pytest.fixture(scope="module", name="redis_server")
def redis_server_fixture() -> Iterator[RedisServer | str]:
    """The module's Redis: a RedisServer we own, or the URL from $KLING_TEST_REDIS_URL."""
    pytest.importorskip("redis", reason="redis-py is not installed (kling-async[redis])")
    external = os.environ.get("KLING_TEST_REDIS_URL")
    if external:
        yield external
        return
    if find_redis_server() is None:
        pytest.skip("no redis-server binary on PATH and no $KLING_TEST_REDIS_URL")
    with RedisServer() as server:
        yield server


@pytest.fixture(name="redis_url")
def redis_url_fixture(redis_server: RedisServer | str) -> str:
    """The URL of the module's Redis."""
    return redis_server if isinstance(redis_server, str) else redis_server.url


@pytest.fixture(name="prefix")
def prefix_fixture() -> str:
    """A key prefix of its own per test, so tests never see each other's slots."""
    return f"test:{os.urandom(6).hex()}:"


async def until(count: Callable[[], Awaitable[int]], at_least: int, timeout: float = 30) -> None:
    """Poll ``count()`` until it reaches ``at_least``, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while await count() < at_least:  # the state is in Redis (or another process): poll it
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)
