"""Helpers of the CLI tests (``from cli_helpers import ...``): a simulator on its own event
loop in a thread (`SimThread`), so `cli.main` (which runs ``asyncio.run``) can be called in
process and subprocesses can reach it too; its fixture ``sim_thread`` is in conftest.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from helpers import Durations

from kling_async import cli
from kling_async.batch import JOURNAL_NAME
from kling_async.testing import KlingSimulator

T = TypeVar("T")
#: The account (maxJobs 2) of `SimThread`'s simulator.


ACCOUNT = "a@example.com"


#: Not helpers.TOKEN: the CLI tests' leak checks (``TOKEN not in stdout``) need a token
#: that no output contains by chance.
TOKEN = "sim-secret-token-4f1c"


#: The first bytes of every PNG file.
PNG = b"\x89PNG\r\n\x1a\n"


class SimThread:
    """A KlingSimulator serving from its own event loop in a background thread."""

    def __init__(self, durations: Durations, *, token: str = TOKEN, **options: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.sim = KlingSimulator(
            token=token, accounts={ACCOUNT: 2}, job_duration=durations, duration_sigma=0, **options
        )
        self._await(self.sim.start())
        self._servers: list[asyncio.Server] = []

    def raw_server(
        self, handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]
    ) -> str:
        """Serve ``handle`` (raw asyncio streams) on this loop; its base URL."""
        server = self._await(asyncio.start_server(handle, "127.0.0.1", 0))
        self._servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/kling"

    def _await(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the simulator's loop (its state is not thread-safe)."""

        async def run() -> T:
            return fn()

        result: T = self._await(run())
        return result

    @property
    def stats(self) -> dict[str, Any]:
        return self.call(lambda: self.sim.stats)

    @property
    def base_url(self) -> str:
        return self.sim.base_url

    def close(self) -> None:
        for server in self._servers:
            server.close()
        self._await(self.sim.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


def run(sim: SimThread, *args: str) -> int:
    """``kling-async --token TOKEN --base-url SIM ARGS...`` in process; its exit status."""
    return cli.main(["--token", TOKEN, "--base-url", sim.base_url, *args])


def is_mp4(data: bytes) -> bool:
    """Whether ``data`` starts like an MP4 file (its ``ftyp`` box)."""
    return data[4:8] == b"ftyp"


def image_args(images: Path, prompt: str = "a cat") -> list[str]:
    """An ``image`` command with two subject files from the ``images`` fixture."""
    subjects = ["--subject", str(images / "a.png"), "--subject", str(images / "b.png")]
    return ["image", "--prompt", prompt, *subjects]


def write_batch(images: Path, count: int, *, fail: int | None = None) -> Path:
    """A jobs file of ``count`` lines in ``images`` (every third a video; line ``fail``'s
    prompt fails); its path."""
    lines = []
    for i in range(count):
        prompt = f"job {i}" + (" fail" if i == fail else "")
        if i % 3 == 2:
            lines.append({"kind": "video", "prompt": prompt, "images": ["a.png"]})
        else:
            lines.append({"kind": "image", "prompt": prompt, "subject_images": ["a.png", "b.png"]})
    path = images / "jobs.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return path


def journal_rows(out: Path) -> list[tuple[Any, ...]]:
    """(line, state, task_id) of every row of the batch journal in ``out``, read only."""
    path = out / JOURNAL_NAME
    if not path.exists():
        return []
    try:
        # closing(): a connection's own `with` only ends a transaction, and an unclosed
        # connection is a ResourceWarning (an error here) from Python 3.13 on.
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
            return db.execute("SELECT line, state, task_id FROM jobs").fetchall()
    except sqlite3.OperationalError:  # created but not yet initialised
        return []


@contextlib.contextmanager
def sigint_action(action: Any) -> Iterator[None]:
    """SIGINT's action in this process for the block: ``signal.default_int_handler`` (as
    started from a terminal) or ``signal.SIG_IGN`` (as a background job of a script)."""
    previous = signal.signal(signal.SIGINT, action)
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def ctrl_c_reaches_children() -> Iterator[None]:
    """Children started in the block get SIGINT's default action, as a command started from
    a terminal does, even when this process ignores SIGINT.

    A test run launched as a background job of a non-interactive shell (``pytest ... &`` in
    a script, a CI runner) ignores SIGINT, and so does every child it starts: the child's
    Python then never sees the test's Ctrl-C. A handler (not SIG_IGN) set here is reset to
    the default action by exec.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with sigint_action(signal.default_int_handler):
        yield
