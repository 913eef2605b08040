"""Shared fixtures: a simulator on a real socket, a client bound to it, zero client waits."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cli_helpers import SimThread
from helpers import EMAIL, TOKEN, Durations, MakeClient, Recorder, serve
from hostile import HOSTILE_CONFIG, HOSTILE_TOKEN, hostile_app

from kling_async import ClientConfig, KlingClient
from kling_async.retry import fast_mode
from kling_async.testing import KlingSimulator
from kling_async.testing.media import png
from kling_async.testing.redis_server import RedisServer, find_redis_server


@pytest.fixture(autouse=True)
def _fast_waits() -> Iterator[None]:
    """Every client wait (retry back-off, poll delay) is zero unless a test says otherwise."""
    with fast_mode():
        yield


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "simulator(max_jobs=3, **options): the `sim` fixture's account maxJobs and other "
        "KlingSimulator options, for a test or (as ``pytestmark``) a whole module",
    )


@pytest.fixture
async def sim(request: pytest.FixtureRequest) -> AsyncIterator[KlingSimulator]:
    """One account (`EMAIL`) with maxJobs 3 and 50 ms jobs.

    A ``simulator`` marker changes that (``pytest.mark.simulator(max_jobs=50)``), and an
    indirect parameter sets the job seconds (``parametrize("sim", [5.0], indirect=True)``).
    """
    marker = request.node.get_closest_marker("simulator")
    options: dict[str, Any] = dict(marker.kwargs) if marker else {}
    max_jobs = options.pop("max_jobs", 3)
    options.setdefault("job_seconds", 0.05)
    if hasattr(request, "param"):
        options["job_seconds"] = request.param
    async with KlingSimulator(token=TOKEN, accounts={EMAIL: max_jobs}, **options) as server:
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


@pytest.fixture
async def make_client(sim: KlingSimulator) -> AsyncIterator[MakeClient]:
    """Clients of ``sim`` (its account's maxJobs given, so none reads it), with the hooks of a
    `Recorder` and the given `ClientConfig` options; all closed at the end."""
    made: list[KlingClient] = []

    def make(recorder: Recorder | None = None, **config: Any) -> KlingClient:
        rec = recorder or Recorder()
        kling = KlingClient(
            token=TOKEN,
            base_url=sim.base_url,
            max_jobs=sim.accounts[EMAIL],
            config=ClientConfig(**config),
            on_request=rec.on_request,
            on_retry=rec.on_retry,
        )
        made.append(kling)
        return kling

    yield make
    for kling in made:
        await kling.aclose()


# -- a real Redis (tests of shared job slots) ------------------------------------------------
#: A redis-server is started per test module on a free loopback port (`RedisServer`), or
#: ``$KLING_TEST_REDIS_URL`` is used; each test gets a key prefix of its own.


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


# -- a hostile service (tests/hostile.py) ------------------------------------------------------


@pytest.fixture
async def hostile_server() -> AsyncIterator[str]:
    """The root URL of `hostile.hostile_app` on loopback (the API at ``ROOT/v1/kling``)."""
    async with serve(hostile_app()) as root:
        yield root


@pytest.fixture
async def minute_sim() -> AsyncIterator[KlingSimulator]:
    """Jobs that run a minute: they stay in GET /scheduler while a test looks."""
    async with KlingSimulator(token=TOKEN, accounts={EMAIL: 5}, job_seconds=60) as server:
        yield server


@pytest.fixture
async def hostile_client(hostile_server: str) -> AsyncIterator[KlingClient]:
    """A client of ``hostile_server`` with `HOSTILE_TOKEN` and the small `HOSTILE_CONFIG` caps."""
    async with KlingClient(
        token=HOSTILE_TOKEN,
        base_url=f"{hostile_server}/v1/kling",
        email="h@example.com",
        max_jobs=1,
        config=HOSTILE_CONFIG,
    ) as client:
        yield client


# -- the CLI's simulator (tests/cli_helpers.py) ------------------------------------------------


@pytest.fixture
def sim_thread(durations: Durations) -> Iterator[SimThread]:
    """A simulator serving from its own thread (`SimThread`), for the CLI called in process
    (``cli.main`` runs its own event loop) and CLI subprocesses; jobs last ``durations``."""
    server = SimThread(durations)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def no_token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """``$USEAPI_TOKEN`` unset: a CLI test passes its token itself or means to have none."""
    monkeypatch.delenv("USEAPI_TOKEN", raising=False)
