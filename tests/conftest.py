"""Shared fixtures: a simulator on a real socket, a client bound to it, zero client waits."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from kling_async import KlingClient
from kling_async.retry import fast_mode
from kling_async.testing import KlingSimulator

TOKEN = "test-token"
EMAIL = "a@example.com"


@pytest.fixture(autouse=True)
def _fast_waits() -> Iterator[None]:
    """Every client wait (retry back-off, poll delay) is zero unless a test says otherwise."""
    with fast_mode():
        yield


@pytest.fixture
async def sim() -> AsyncIterator[KlingSimulator]:
    """One account with maxJobs 3 and 50 ms jobs."""
    async with KlingSimulator(token=TOKEN, accounts={EMAIL: 3}, job_seconds=0.05) as server:
        yield server


@pytest.fixture
async def client(sim: KlingSimulator) -> AsyncIterator[KlingClient]:
    """A client of ``sim`` (token given, account and maxJobs read from the server)."""
    async with KlingClient(token=sim.token, base_url=sim.base_url) as kling:
        yield kling
