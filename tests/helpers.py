"""Small helpers shared by the test modules (``from helpers import ...``).

tests/ is not a package: pytest's default ("prepend") import mode puts it on ``sys.path``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from kling_async.config import TIME_SCALE_ENV
from kling_async.testing import KlingSimulator

#: The token and account of the shared fixtures (conftest.py) and the tests that use them.
TOKEN = "test-token"
EMAIL = "a@example.com"


async def wait_until(condition: Callable[[], object], timeout: float = 10.0) -> None:
    """Poll a condition (no fixed sleeps), failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def wait_until_blocking(condition: Callable[[], object], timeout: float = 30.0) -> None:
    """`wait_until` for code without an event loop (it blocks the thread while it waits)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def fast_env(scale: float = 0.05, **extra: str) -> dict[str, str]:
    """This process's environment for a subprocess whose client waits (poll delays and their
    floor, retry back-offs, confirm delays) are ``scale`` times the real ones, plus ``extra``.

    The subprocess counterpart of ``fast_mode(scale)``, through `TIME_SCALE_ENV`. Not 0 by
    default: a push-mode run still waits a little for its callbacks before polling.
    """
    return {**os.environ, TIME_SCALE_ENV: str(scale), **extra}


def run_command(command: Sequence[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run ``command`` to its end (120 s at most), its output captured as text.

    A non-zero exit does not raise: the test checks ``returncode`` itself.
    """
    return subprocess.run(
        command, capture_output=True, text=True, timeout=120, check=False, **kwargs
    )


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on a free local port; yields its root URL, ``http://127.0.0.1:PORT``."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def callback_receiver(path: str) -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A server that keeps the JSON body of every POST to ``path``; yields its URL and them."""
    received: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({})

    app = web.Application()
    app.router.add_post(path, handle)
    async with serve(app) as root:
        yield f"{root}{path}", received


class HeldPosts:
    """A service whose kolors-elements POSTs wait for `answer` (then create task
    ``task_id``); it keeps every body. Serve `app` with `serve`; the API is at
    ``ROOT/v1/kling``."""

    def __init__(self, task_id: int) -> None:
        self.task_id = task_id
        self.posted = asyncio.Event()  # the first POST arrived
        self.answer = asyncio.Event()  # set it to answer every POST
        self.bodies: list[dict[str, Any]] = []
        self.app = web.Application()
        self.app.router.add_post("/v1/kling/images/kolors-elements", self._kolors)

    async def _kolors(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.json())
        self.posted.set()
        await self.answer.wait()
        task = {"id": self.task_id, "status": 5, "status_name": "submitted"}
        return web.json_response({"status": 5, "status_final": False, "task": task})


class Durations:
    """A job duration the test can change while the simulator runs."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __call__(self, endpoint: str, body: dict[str, Any], rng: Any) -> float:
        return self.seconds


async def call(
    http: aiohttp.ClientSession, sim: KlingSimulator, method: str, path: str, **kwargs: Any
) -> tuple[int, Any]:
    """One raw request to the simulator's API: (status, JSON body or None)."""
    async with http.request(method, f"{sim.base_url}/{path}", **kwargs) as response:
        return response.status, await response.json(content_type=None)


def files_under(folder: Path) -> list[Path]:
    """Every file under ``folder`` (hidden ones too), sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file())
