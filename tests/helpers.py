"""Small helpers shared by the test modules (``from helpers import ...``).

tests/ is not a package: pytest's default ("prepend") import mode puts it on ``sys.path``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pickle
import socket
import subprocess
import time
import traceback
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from kling_async import Image2VideoElements, KlingClient, KolorsElements, RequestInfo, TaskResponse
from kling_async.config import TIME_SCALE_ENV
from kling_async.testing import FaultPlan, FaultRates, KlingSimulator
from kling_async.testing.media import png

#: The token and account of the shared fixtures (conftest.py) and the tests that use them.
TOKEN = "test-token"
EMAIL = "a@example.com"
#: Input URLs of requests the simulator does not fetch (it only checks they are URLs).
URL1 = "https://example.com/a.png"
URL2 = "https://example.com/b.png"
#: Two uploadable PNGs (320x320, the service's minimum side is 300 px).
IMAGE = png(320, 320, (10, 20, 30))
OTHER_IMAGE = png(320, 320, (40, 50, 60))


def kolors(prompt: str = "a cat in a gallery", **fields: Any) -> KolorsElements:
    """A kolors-elements request with two subject image URLs unless ``fields`` say otherwise."""
    fields.setdefault("subject_images", [URL1, URL2])
    return KolorsElements(prompt=prompt, **fields)


def video(prompt: str = "they dance", **fields: Any) -> Image2VideoElements:
    """An image2video-elements request with one image URL unless ``fields`` say otherwise."""
    fields.setdefault("images", [URL1])
    return Image2VideoElements(prompt=prompt, **fields)


async def fetch(url: str) -> bytes:
    """What the simulator serves at ``url``, fetched with a plain session."""
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200
        data = await resp.read()
    await asyncio.sleep(0)
    return data


#: Answers as api/errors.md documents them: moderation (500), not found (404), and the
#: nginx 502 page a gateway sends instead of JSON.
MODERATION = {
    "error": "The content you uploaded appears to violate the community guidelines. "
    "(CM_EXT.POther)",
    "message": "Service busy (CM_EXT.POther)",
}
NOT_FOUND = {
    "error": "Sorry, the requested resource was not found (VALID.ResourceNotFound)",
    "message": "Not Found",
}
NGINX_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


async def wait_until(condition: Callable[[], object], timeout: float = 10.0) -> None:
    """Poll a condition (no fixed sleeps), failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def closed_port() -> int:
    """A loopback port nothing listens on (bound once, then let go)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


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


#: The subject images of `job`.
IMGS = (URL1, URL2)


def job(n: int) -> KolorsElements:
    """Job number ``n``: its prompt says its number (so each answer can be told apart)."""
    return KolorsElements(prompt=f"job number {n}", subject_images=[URL1, URL2])


class Recorder:
    """Hooks that record requests and retries."""

    def __init__(self) -> None:
        self.requests: list[RequestInfo] = []
        self.retries: list[tuple[BaseException, int, float]] = []

    def on_request(self, info: RequestInfo) -> None:
        self.requests.append(info)

    def on_retry(self, exc: BaseException, tries: int, wait: float) -> None:
        self.retries.append((exc, tries, wait))

    def calls(self, method: str, prefix: str) -> list[RequestInfo]:
        return [r for r in self.requests if r.method == method and r.path.startswith(prefix)]


#: The ``make_client`` fixture (conftest.py): ``make_client(recorder=None, **config)``.
MakeClient = Callable[..., KlingClient]


def plan(group: str, seed: int = 1, **rates: float) -> FaultPlan:
    """A fault plan for one endpoint group (``delay`` faults last 1 s)."""
    return FaultPlan(seed=seed, rules={group: FaultRates(**rates)}, delay_seconds=1.0)


async def run_jobs(kling: KlingClient, n: int) -> list[TaskResponse]:
    """Submit jobs 0 to ``n - 1`` at once (no job slots held); their answers in order."""
    return list(await asyncio.gather(*(kling.submit(job(i)) for i in range(n))))


def assert_one_task_per_job(sim: KlingSimulator, answers: list[TaskResponse]) -> None:
    """The money rule: each job of `run_jobs` got a task of its own and no task was made twice."""
    stats = sim.stats
    assert stats["tasks_created"] == len(answers)
    ids = [a.task_id for a in answers]
    assert len(set(ids)) == len(ids)
    assert set(ids) == {t["id"] for t in stats["tasks"]}
    for n, answer in enumerate(answers):  # each job got its own task, not a sibling's
        assert answer.arguments["prompt"] == f"job number {n}"
        assert sim.tasks[answer.task_id or 0].body["prompt"] == f"job number {n}"


#: The published answers (api/ examples) as JSON files.
PAYLOADS = Path(__file__).parent / "payloads"


def load(name: str) -> Any:
    """The JSON of ``tests/payloads/NAME``."""
    return json.loads((PAYLOADS / name).read_text(encoding="utf-8"))


def json_diff(expected: Any, got: Any, path: str = "$") -> tuple[list[str], list[str]]:
    """Compare wire JSON ``expected`` with an unstructured model ``got``.

    Returns (mismatches, ignored): keys whose values differ, and keys of ``expected`` that
    ``got`` lacks (fields the model does not know). Nulls in ``expected`` are skipped, and
    numbers compare by value (JSON has one number type) but never equal to a bool.
    """
    mismatches: list[str] = []
    ignored: list[str] = []
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return [f"{path}: expected an object, got {got!r}"], []
        for key, value in expected.items():
            if value is None:
                continue
            if key not in got:
                ignored.append(f"{path}.{key}")
                continue
            sub_m, sub_i = json_diff(value, got[key], f"{path}.{key}")
            mismatches += sub_m
            ignored += sub_i
    elif isinstance(expected, list):
        if not isinstance(got, list) or len(got) != len(expected):
            return [f"{path}: expected {expected!r}, got {got!r}"], []
        for i, (e, g) in enumerate(zip(expected, got, strict=True)):
            sub_m, sub_i = json_diff(e, g, f"{path}[{i}]")
            mismatches += sub_m
            ignored += sub_i
    elif isinstance(expected, bool) or isinstance(got, bool):
        if expected is not got:
            mismatches.append(f"{path}: expected {expected!r}, got {got!r}")
    elif expected != got or type(got) not in (type(expected), int, float):
        mismatches.append(f"{path}: expected {expected!r}, got {got!r}")
    return mismatches, ignored


def every_path_plan(seed: int) -> FaultPlan:
    """Retries, recoveries and error answers: every code path that logs, raises or notes."""
    return FaultPlan(
        seed=seed,
        rules={
            "tasks": FaultRates(server_error=0.2, reset=0.1, malformed=0.05),
            "submit": FaultRates(rate_limit=0.2, reset_after=0.15, malformed=0.1),
        },
        retry_after=0.01,
    )


def texts_of(exc: BaseException) -> list[str]:
    """Everything an exception shows: str, repr, the traceback with causes, pickle, and the
    attributes of every exception in the chain (aiohttp's carry request headers)."""
    texts = [
        "".join(traceback.format_exception(exc)),
        # Tracebacks that render locals (rich, Sentry) see every frame's variables.
        "".join(traceback.TracebackException.from_exception(exc, capture_locals=True).format()),
        pickle.dumps(exc).decode("latin-1"),
    ]
    seen: BaseException | None = exc
    while seen is not None:
        texts += [str(seen), repr(seen), repr(vars(seen)), repr(getattr(seen, "request_info", ""))]
        seen = seen.__cause__ or seen.__context__
    return texts


def fault_first_post(sim: KlingSimulator, kind: str = "reset") -> Callable[[RequestInfo], None]:
    """Fault ``kind`` (``reset``: nothing created; ``reset_after``: created, answer lost) on
    the next POST only: the returned ``on_request`` hook ends the faults after it."""
    sim.set_fault_plan(FaultPlan(rules={"submit": FaultRates(**{kind: 1.0})}))

    def hook(info: RequestInfo) -> None:
        if info.method == "POST":
            sim.set_fault_plan(None)

    return hook
