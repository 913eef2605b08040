"""The ``kling-async`` command through its real entry point, against the simulator.

The simulator runs on its own event loop in a thread, so `cli.main` (which runs
``asyncio.run``) can be called in process, and subprocesses can reach it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from helpers import Durations, fast_env, run_command

from kling_async import cli
from kling_async.batch import JOURNAL_NAME
from kling_async.cli import demo as cli_demo
from kling_async.testing import KlingSimulator

T = TypeVar("T")
ACCOUNT = "a@example.com"
#: Not helpers.TOKEN: the CLI tests' leak checks (``TOKEN not in stdout``) need a token
#: that no output contains by chance.
TOKEN = "sim-secret-token-4f1c"
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


@pytest.fixture
def sim(durations: Durations) -> Iterator[SimThread]:
    server = SimThread(durations)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("USEAPI_TOKEN", raising=False)


def run(sim: SimThread, *args: str) -> int:
    return cli.main(["--token", TOKEN, "--base-url", sim.base_url, *args])


def is_mp4(data: bytes) -> bool:
    return data[4:8] == b"ftyp"


def image_args(images: Path, prompt: str = "a cat") -> list[str]:
    """An ``image`` command with two subject files from the ``images`` fixture."""
    subjects = ["--subject", str(images / "a.png"), "--subject", str(images / "b.png")]
    return ["image", "--prompt", prompt, *subjects]


# --------------------------------------------------------------------------- demo


def test_demo_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.setattr(cli_demo, "DEMO_JOB_SECONDS", 0.05)
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out), "--jobs", "3"]) == 0
    pngs = sorted(p for p in out.glob("line-*/*.png") if not p.stem.endswith("-cover"))
    mp4s = sorted(out.glob("line-*/*.mp4"))
    assert len(pngs) == 3
    assert len(list(out.glob("line-*/*-cover.png"))) == 1  # the video's poster
    assert len(mp4s) == 1
    assert all(p.read_bytes().startswith(PNG) for p in pngs)
    assert is_mp4(mp4s[0].read_bytes())
    inputs = sorted(out.glob("inputs/*.png"))
    assert len(inputs) == 3
    assert inputs[0].read_bytes()[16:24] == (320).to_bytes(4, "big") * 2  # >= 300 px
    text = capsys.readouterr().out
    assert "4 job(s): 4 succeeded" in text
    assert text.splitlines()[-1] == f"gallery: {(out / 'index.html').resolve()}"


def test_demo_console_script(tmp_path: Path) -> None:
    """README's run command, as a user runs it: no token, no network."""
    script = Path(sys.executable).with_name("kling-async")
    env = {k: v for k, v in fast_env().items() if k != "USEAPI_TOKEN"}
    done = run_command([str(script), "demo", "--jobs", "1"], cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert (next((tmp_path / "kling-demo").glob("line-0001/*.png"))).read_bytes().startswith(PNG)
    assert is_mp4(next((tmp_path / "kling-demo").glob("line-0002/*.mp4")).read_bytes())
    assert "2 job(s): 2 succeeded" in done.stdout


# --------------------------------------------------------------------------- single jobs


def test_image_command(sim: SimThread, images: Path, tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "out"
    code = run(sim, *image_args(images), "--count", "2", "--aspect-ratio", "1:1", "--out", str(out))
    assert code == 0
    printed = capsys.readouterr().out.split()
    assert len(printed) == 2
    assert all(Path(p).read_bytes().startswith(PNG) for p in printed)
    stats = sim.stats
    assert stats["tasks_created"] == 1
    assert stats["uploads"] == 2
    assert stats["tasks"][0]["body"]["imageCount"] == 2


def test_video_command_json(sim: SimThread, images: Path, tmp_path: Path, capsys: Any) -> None:
    code = run(
        sim,
        "video",
        "--prompt",
        "they dance",
        "--image",
        str(images / "a.png"),
        "--duration",
        "10",
        "--mode",
        "pro",
        "--audio",
        "--json",
        "--out",
        str(tmp_path),
    )
    assert code == 0
    task = json.loads(capsys.readouterr().out)
    assert task["status_name"] == "succeed"
    assert task["status_final"] is True
    assert is_mp4(next(tmp_path.glob("*.mp4")).read_bytes())
    body = sim.stats["tasks"][0]["body"]
    assert (body["duration"], body["mode"], body["enable_audio"]) == ("10", "pro", True)


def test_failed_video_exits_1(sim: SimThread, images: Path, tmp_path: Path, capsys: Any) -> None:
    code = run(
        sim,
        "video",
        "--prompt",
        "please fail",
        "--image",
        str(images / "a.png"),
        "--out",
        str(tmp_path),
    )
    assert code == 1
    assert "failed" in capsys.readouterr().out


def test_task_and_upload_commands(
    sim: SimThread, images: Path, tmp_path: Path, capsys: Any
) -> None:
    assert run(sim, "upload", str(images / "a.png")) == 0
    url = capsys.readouterr().out.strip()
    assert url.startswith(sim.sim.root_url)
    assert sim.stats["uploads"] == 1

    assert run(sim, "video", "--prompt", "p", "--image", url, "--json", "--out", str(tmp_path)) == 0
    task_id = json.loads(capsys.readouterr().out)["task"]["id"]

    assert run(sim, "task", str(task_id)) == 0
    text = capsys.readouterr().out
    assert f"task {task_id}: succeed (final)" in text
    assert "prompt: p" in text

    out = tmp_path / "again"
    assert run(sim, "task", str(task_id), "--wait", "--json", "--out", str(out)) == 0
    assert json.loads(capsys.readouterr().out)["task"]["id"] == task_id
    assert is_mp4(next(out.glob("*.mp4")).read_bytes())

    assert run(sim, "task", "999999") == 1
    assert "404" in capsys.readouterr().err


# --------------------------------------------------------------------------- batch


def write_batch(images: Path, count: int, *, fail: int | None = None) -> Path:
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


def test_batch_end_to_end(sim: SimThread, images: Path, tmp_path: Path, capsys: Any) -> None:
    jobs = write_batch(images, 5, fail=3)
    out = tmp_path / "out"
    assert run(sim, "batch", str(jobs), "--out", str(out)) == 1  # maxJobs read from the server
    text = capsys.readouterr().out
    assert "5 job(s): 4 succeeded, 1 failed" in text
    assert "line 4: failed:" in text
    assert len(list(out.glob("line-*/*.png"))) == 3 + 1  # and the video's cover
    assert len(list(out.glob("line-*/*.mp4"))) == 1
    assert sim.stats["tasks_created"] == 5
    assert max(sim.stats["peak_running"].values()) <= 2

    # The same command again: nothing is submitted, the failure is still reported.
    assert run(sim, "batch", str(jobs), "--out", str(out), "--max-jobs", "2") == 1
    assert "line 4 (image): already failed" in capsys.readouterr().out
    assert sim.stats["tasks_created"] == 5

    # An edited line that was sent is refused, nothing is sent.
    jobs.write_text(jobs.read_text().replace("job 0", "job zero"))
    assert run(sim, "batch", str(jobs), "--out", str(out)) == 2
    assert "line 1 (task " in capsys.readouterr().err
    assert sim.stats["posts"] == 5


def test_simulate_command(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "kling_async.cli", "simulate", "--port", "0", "--token", TOKEN],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        assert base_url.endswith("/v1/kling")
        proc.send_signal(signal.SIGINT)  # stops it whether or not its handlers are set yet
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_rich_summary_and_plain_without_rich(tmp_path: Path) -> None:
    import io

    from kling_async.batch import BatchSummary, JobRecord, JobState

    records = (
        JobRecord(line=1, kind="image", text="{}", digest="x", state=JobState.SUCCEEDED,
                  task_id=7, files=("line-0001/7-0.png",)),
        JobRecord(line=2, kind="video", text="{}", digest="y", state=JobState.FAILED,
                  error="boom"),
    )  # fmt: skip
    stream = io.StringIO()
    cli.Display(fancy=True, stream=stream).summary(BatchSummary(records=records), tmp_path)
    text = stream.getvalue()
    assert "┃ line" in text
    assert "line-0001/7-0.png" in text
    assert "line 2: failed: boom" in text

    code = (
        "import sys; sys.modules['rich'] = None\n"
        "from kling_async import cli\nfrom kling_async.cli.display import rich_available\n"
        "assert not rich_available() and not cli.Display().fancy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def journal_rows(out: Path) -> list[tuple[Any, ...]]:
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
