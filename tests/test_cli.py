"""The ``kling-async`` command through its real entry point, against the simulator.

The simulator runs on its own event loop in a thread, so `cli.main` (which runs
``asyncio.run``) can be called in process, and subprocesses can reach it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from helpers import Durations, run_command, wait_until_blocking

from kling_async import cli
from kling_async.batch import JOURNAL_NAME
from kling_async.cli import demo as cli_demo
from kling_async.cli import interrupt as cli_interrupt
from kling_async.testing import FaultPlan, FaultRates, KlingSimulator

T = TypeVar("T")
ACCOUNT = "a@example.com"
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
    env = {k: v for k, v in os.environ.items() if k != "USEAPI_TOKEN"}
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


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["image", "--prompt", "x", "--subject", "{a}"], "--subject: subject_images: At least two"),
        (
            ["image", "--subject", "{a}", "--subject", "{a}", "--count", "10"],
            "--count: image_count",
        ),
        (["image", "--subject", "{a}", "--subject", "nope.png"], "subject_images[1]"),
        (["video", "--prompt", "x", "--image", "{a}", "--duration", "7"], "--duration: duration"),
        (["video", "--prompt", "x"], "--image: images"),
        (["upload", "missing.png"], "FILE: no such file"),
    ],
)
def test_bad_arguments_send_nothing(
    sim: SimThread, images: Path, capsys: Any, args: list[str], expected: str
) -> None:
    args = [a.format(a=images / "a.png") for a in args]
    assert run(sim, *args) == 2
    assert expected in capsys.readouterr().err
    assert (sim.stats["posts"], sim.stats["uploads"]) == (0, 0)


def test_argparse_errors_exit_2(capsys: Any) -> None:
    assert cli.main(["video", "--image", "a.png"]) == 2  # --prompt is required
    assert "--prompt" in capsys.readouterr().err
    assert cli.main(["task", "abc"]) == 2
    assert cli.main(["--help"]) == 0


def test_missing_token(images: Path, capsys: Any) -> None:
    assert cli.main(image_args(images)) == 2
    assert "no API token" in capsys.readouterr().err


def test_bad_jsonl_lines_send_nothing(
    sim: SimThread, images: Path, tmp_path: Path, capsys: Any
) -> None:
    jobs = images / "jobs.jsonl"
    good = {"kind": "image", "prompt": "ok", "subject_images": ["a.png", "b.png"]}
    lines = [
        good,
        {"kind": "image", "prompt": "x", "subject_images": ["a.png", "b.png"], "image_count": 0},
        good,
        {"kind": "video", "images": ["a.png"]},
    ]
    jobs.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    assert run(sim, "batch", str(jobs), "--out", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert "jobs.jsonl line 2: image_count: must be from 1 to 9, got 0" in err
    assert "jobs.jsonl line 4: prompt: is required" in err
    assert "nothing was sent" in err
    assert (sim.stats["posts"], sim.stats["uploads"]) == (0, 0)


def test_batch_account_not_configured(
    sim: SimThread, images: Path, tmp_path: Path, capsys: Any
) -> None:
    jobs = images / "jobs.jsonl"
    line = {"kind": "video", "prompt": "x", "images": ["a.png"], "email": "b@example.com"}
    jobs.write_text(json.dumps(line) + "\n")
    code = run(sim, "batch", str(jobs), "--out", str(tmp_path), "--account", f"{ACCOUNT}:2")
    assert code == 2
    assert "1: email: 'b@example.com' is not one of --account" in capsys.readouterr().err
    assert sim.stats["posts"] == 0


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


@pytest.fixture(params=["foreground", "background job"])
def launched_as(request: pytest.FixtureRequest) -> Iterator[str]:
    """The test as in a suite started from a terminal, then as in one started as a
    background job of a non-interactive shell, which leaves SIGINT ignored."""
    foreground = request.param == "foreground"
    with sigint_action(signal.default_int_handler if foreground else signal.SIG_IGN):
        yield request.param


def batch_process(
    sim: SimThread, jobs: Path, out: Path, *extra: str, stderr: Any = subprocess.PIPE
) -> subprocess.Popen[str]:
    env = {**os.environ, "USEAPI_TOKEN": TOKEN}
    command = [sys.executable, "-m", "kling_async.cli", "--base-url", sim.base_url, "batch"]
    with ctrl_c_reaches_children():
        return subprocess.Popen(
            [*command, str(jobs), "--out", str(out), *extra],
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )


def interrupt_mid_run(
    sim: SimThread, durations: Durations, jobs: Path, out: Path, signum: int, *extra: str
) -> tuple[int, str, str]:
    """Start a batch whose jobs never end, stop it once two are submitted."""
    durations.seconds = 3600.0
    proc = batch_process(sim, jobs, out, *extra)
    try:
        wait_until_blocking(lambda: sum(r[2] is not None for r in journal_rows(out)) == 2)
        assert sim.stats["tasks_created"] == 2
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    durations.seconds = 0.05
    sim.call(sim.sim.finish_all)
    return proc.returncode, stdout, stderr


def assert_each_job_once_with_files(sim: SimThread, out: Path, count: int) -> None:
    stats = sim.stats
    assert stats["tasks_created"] == count
    prompts = sorted(t["body"]["prompt"] for t in stats["tasks"])
    assert prompts == sorted(f"job {i}" for i in range(count))
    rows = journal_rows(out)
    assert [r[1] for r in rows] == ["succeeded"] * count
    for line, _, task_id in rows:
        # A video's cover (its gallery poster) is saved beside it.
        [file] = [f for f in (out / f"line-{line:04d}").iterdir() if "-cover." not in f.name]
        data = file.read_bytes()
        assert file.name.startswith(f"{task_id}-")
        assert data.startswith(PNG) or is_mp4(data)


def test_batch_resumes_after_sigkill(
    sim: SimThread, durations: Durations, images: Path, tmp_path: Path
) -> None:
    jobs = write_batch(images, 6)
    out = tmp_path / "out"
    code, _, _ = interrupt_mid_run(sim, durations, jobs, out, signal.SIGKILL, "--max-jobs", "2")
    assert code == -signal.SIGKILL
    states = sorted(r[1] for r in journal_rows(out))
    assert states == ["pending"] * 4 + ["submitted"] * 2

    again = batch_process(sim, jobs, out, "--max-jobs", "2")
    stdout, stderr = again.communicate(timeout=120)
    assert again.returncode == 0, stderr
    assert stdout.count("resuming task") == 2
    assert max(sim.stats["peak_running"].values()) <= 2
    assert_each_job_once_with_files(sim, out, 6)


def test_batch_ctrl_c_says_how_to_resume(
    sim: SimThread, durations: Durations, images: Path, tmp_path: Path, launched_as: str
) -> None:
    jobs = write_batch(images, 4)
    out = tmp_path / "out"
    code, stdout, stderr = interrupt_mid_run(
        sim, durations, jobs, out, signal.SIGINT, "--account", f"{ACCOUNT}:2", "--token", TOKEN
    )
    assert code == 130
    assert "Resume with the same command" in stderr
    # Rebuilt from the parsed options: every option given but the token, in a fixed order.
    expected = f"batch {jobs} --out {out} --base-url {sim.base_url} --account {ACCOUNT}:2\n"
    assert expected in stderr
    assert TOKEN not in stdout + stderr
    assert TOKEN.encode() not in (out / JOURNAL_NAME).read_bytes()

    again = batch_process(sim, jobs, out, "--account", ACCOUNT, "--verbose")
    stdout, stderr = again.communicate(timeout=120)
    assert again.returncode == 0, stderr
    assert TOKEN not in stdout + stderr
    assert_each_job_once_with_files(sim, out, 4)


def hold_submissions(sim: SimThread) -> None:
    """From now on the simulator creates each task but holds the POST's answer."""
    plan = FaultPlan(rules={"submit": FaultRates(delay=1.0)}, delay_seconds=3600.0)
    sim.call(lambda: sim.sim.set_fault_plan(plan))


def resume_and_check(sim: SimThread, durations: Durations, jobs: Path, out: Path) -> None:
    """Re-run the batch on a normal simulator: the held submissions are found, not resent.

    Their tasks still run, so the resume finds each by its own tag in GET /scheduler; only
    then do they end. (A task that ended before the resume looked cannot be told from an
    identical request's, and would be reported unknown: tests/test_money.py.)"""
    sim.call(lambda: sim.sim.set_fault_plan(None))
    durations.seconds = 0.05
    again = batch_process(sim, jobs, out, "--account", ACCOUNT)
    wait_until_blocking(lambda: all(row[1] != "submitting" for row in journal_rows(out)), 60)
    sim.call(sim.sim.finish_all)
    stdout, stderr = again.communicate(timeout=120)
    assert again.returncode == 0, stderr
    assert stdout.count("of an interrupted submission") == 2
    assert_each_job_once_with_files(sim, out, 4)


def test_batch_second_ctrl_c_stops_at_once(
    sim: SimThread, durations: Durations, images: Path, tmp_path: Path
) -> None:
    """Ctrl-C while POSTs are out: the wait is announced at once; Ctrl-C again ends it."""
    jobs = write_batch(images, 4)
    out = tmp_path / "out"
    errors = tmp_path / "stderr.txt"
    durations.seconds = 3600.0
    hold_submissions(sim)
    with errors.open("w") as sink:
        proc = batch_process(sim, jobs, out, "--account", f"{ACCOUNT}:2", stderr=sink)
        try:
            wait_until_blocking(lambda: sim.stats["tasks_created"] == 2)  # both POSTs held
            proc.send_signal(signal.SIGINT)
            wait_until_blocking(lambda: "press Ctrl-C again" in errors.read_text())
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    stderr = errors.read_text()
    assert proc.returncode == 130, stderr
    waiting = f"waiting up to {cli_interrupt.INTERRUPT_GRACE:g} s for the answer to 2 submissions"
    assert waiting in stderr
    assert "2 submissions had not answered" in stderr
    # Rebuilt from the parsed options: every option given but the token, in a fixed order.
    expected = f"batch {jobs} --out {out} --base-url {sim.base_url} --account {ACCOUNT}:2\n"
    assert expected in stderr
    assert sorted(r[1] for r in journal_rows(out)) == ["pending"] * 2 + ["submitting"] * 2
    resume_and_check(sim, durations, jobs, out)


def test_batch_ctrl_c_gives_unanswered_posts_a_grace(
    sim: SimThread,
    durations: Durations,
    images: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
) -> None:
    """One Ctrl-C ends the command even when the server never answers its POSTs."""
    monkeypatch.setattr(cli_interrupt, "INTERRUPT_GRACE", 0.05)
    jobs = write_batch(images, 4)
    out = tmp_path / "out"
    durations.seconds = 3600.0
    hold_submissions(sim)

    def press_ctrl_c() -> None:  # the command runs in process, in the main thread
        wait_until_blocking(lambda: sim.stats["tasks_created"] == 2)
        os.kill(os.getpid(), signal.SIGINT)

    presser = threading.Thread(target=press_ctrl_c)
    with sigint_action(signal.default_int_handler):
        presser.start()
        try:
            code = run(sim, "batch", str(jobs), "--out", str(out), "--account", f"{ACCOUNT}:2")
        finally:
            presser.join(timeout=60)
    stderr = capsys.readouterr().err
    assert code == 130, stderr
    assert "waiting up to 0.05 s" in stderr
    assert "2 submissions had not answered" in stderr
    assert sorted(r[1] for r in journal_rows(out)) == ["pending"] * 2 + ["submitting"] * 2
    resume_and_check(sim, durations, jobs, out)
