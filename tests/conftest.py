"""Shared fixtures: a simulator on a real socket, a client bound to it, zero client waits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from helpers import EMAIL, TOKEN, Durations

from kling_async import KlingClient
from kling_async.retry import fast_mode
from kling_async.testing import KlingSimulator
from kling_async.testing.media import png


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


@pytest.fixture
def durations() -> Durations:
    """50 ms jobs, for a simulator built with ``job_duration=durations``; a test may change it."""
    return Durations(0.05)


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """A folder ``in`` with two 320x320 PNGs, a.png (red) and b.png (green)."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name, rgb in (("a.png", (200, 0, 0)), ("b.png", (0, 200, 0))):
        (folder / name).write_bytes(png(320, 320, rgb))
    return folder


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A raw aiohttp session sending the simulator's token (tests of the simulator itself)."""
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as session:
        yield session
    await asyncio.sleep(0)
