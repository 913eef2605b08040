"""Ctrl-C and SIGKILL in the middle of a batch, as real processes (and in process, with a
real SIGINT): the resume hint, the grace for POSTs already sent, and a re-run that
submits nothing twice; against the simulator on a real socket."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import (
    ACCOUNT,
    PNG,
    TOKEN,
    SimThread,
    ctrl_c_reaches_children,
    is_mp4,
    journal_rows,
    run,
    sigint_action,
    write_batch,
)
from helpers import Durations, fast_env, wait_until_blocking

from kling_async import cli
from kling_async.batch import JOURNAL_NAME
from kling_async.cli import interrupt as cli_interrupt
from kling_async.testing import FaultPlan, FaultRates


@pytest.fixture(params=["foreground", "background job"])
def launched_as(request: pytest.FixtureRequest) -> Iterator[str]:
    """The test as in a suite started from a terminal, then as in one started as a
    background job of a non-interactive shell, which leaves SIGINT ignored."""
    foreground = request.param == "foreground"
    with sigint_action(signal.default_int_handler if foreground else signal.SIG_IGN):
        yield request.param


def batch_process(
    sim_thread: SimThread, jobs: Path, out: Path, *extra: str, stderr: Any = subprocess.PIPE
) -> subprocess.Popen[str]:
    env = fast_env(USEAPI_TOKEN=TOKEN)
    command = [sys.executable, "-m", "kling_async.cli", "--base-url", sim_thread.base_url, "batch"]
    with ctrl_c_reaches_children():
        return subprocess.Popen(
            [*command, str(jobs), "--out", str(out), *extra],
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )


def interrupt_mid_run(
    sim_thread: SimThread, durations: Durations, jobs: Path, out: Path, signum: int, *extra: str
) -> tuple[int, str, str]:
    """Start a batch whose jobs never end, stop it once two are submitted."""
    durations.seconds = 3600.0
    proc = batch_process(sim_thread, jobs, out, *extra)
    try:
        wait_until_blocking(lambda: sum(r[2] is not None for r in journal_rows(out)) == 2)
        assert sim_thread.stats["tasks_created"] == 2
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    durations.seconds = 0.05
    sim_thread.call(sim_thread.sim.finish_all)
    return proc.returncode, stdout, stderr


def assert_each_job_once_with_files(sim_thread: SimThread, out: Path, count: int) -> None:
    stats = sim_thread.stats
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
    sim_thread: SimThread, durations: Durations, images: Path, tmp_path: Path
) -> None:
    jobs = write_batch(images, 6)
    out = tmp_path / "out"
    code, _, _ = interrupt_mid_run(
        sim_thread, durations, jobs, out, signal.SIGKILL, "--max-jobs", "2"
    )
    assert code == -signal.SIGKILL
    states = sorted(r[1] for r in journal_rows(out))
    assert states == ["pending"] * 4 + ["submitted"] * 2

    again = batch_process(sim_thread, jobs, out, "--max-jobs", "2")
    stdout, stderr = again.communicate(timeout=120)
    assert again.returncode == 0, stderr
    assert stdout.count("resuming task") == 2
    assert max(sim_thread.stats["peak_running"].values()) <= 2
    assert_each_job_once_with_files(sim_thread, out, 6)


def test_batch_ctrl_c_says_how_to_resume(
    sim_thread: SimThread, durations: Durations, images: Path, tmp_path: Path, launched_as: str
) -> None:
    jobs = write_batch(images, 4)
    out = tmp_path / "out"
    code, stdout, stderr = interrupt_mid_run(
        sim_thread,
        durations,
        jobs,
        out,
        signal.SIGINT,
        "--account",
        f"{ACCOUNT}:2",
        "--token",
        TOKEN,
    )
    assert code == 130
    assert "Resume with the same command" in stderr
    # Rebuilt from the parsed options: every option given but the token, in a fixed order.
    expected = f"batch {jobs} --out {out} --base-url {sim_thread.base_url} --account {ACCOUNT}:2\n"
    assert expected in stderr
    assert TOKEN not in stdout + stderr
    assert TOKEN.encode() not in (out / JOURNAL_NAME).read_bytes()

    again = batch_process(sim_thread, jobs, out, "--account", ACCOUNT, "--verbose")
    stdout, stderr = again.communicate(timeout=120)
    assert again.returncode == 0, stderr
    assert TOKEN not in stdout + stderr
    assert_each_job_once_with_files(sim_thread, out, 4)


@contextlib.contextmanager
def ctrl_c_once(condition: Callable[[], object]) -> Iterator[None]:
    """Press Ctrl-C (a real SIGINT) once ``condition`` holds, while the block runs the
    command in process, in the main thread."""

    def press() -> None:
        wait_until_blocking(condition)
        os.kill(os.getpid(), signal.SIGINT)

    presser = threading.Thread(target=press)
    with sigint_action(signal.default_int_handler):
        presser.start()
        try:
            yield
        finally:
            presser.join(timeout=60)


def hold_submissions(sim_thread: SimThread) -> None:
    """From now on the simulator creates each task but holds the POST's answer."""
    plan = FaultPlan(rules={"submit": FaultRates(delay=1.0)}, delay_seconds=3600.0)
    sim_thread.call(lambda: sim_thread.sim.set_fault_plan(plan))


def resume_and_check(sim_thread: SimThread, durations: Durations, jobs: Path, out: Path) -> None:
    """Re-run the batch on a normal simulator: the held submissions are found, not resent.

    Their tasks still run, so the resume finds each by its own tag in GET /scheduler; only
    then do they end. (A task that ended before the resume looked cannot be told from an
    identical request's, and would be reported unknown: tests/test_money.py.)"""
    sim_thread.call(lambda: sim_thread.sim.set_fault_plan(None))
    durations.seconds = 0.05
    again = batch_process(sim_thread, jobs, out, "--account", ACCOUNT)
    wait_until_blocking(lambda: all(row[1] != "submitting" for row in journal_rows(out)), 60)
    sim_thread.call(sim_thread.sim.finish_all)
    stdout, stderr = again.communicate(timeout=120)
    assert again.returncode == 0, stderr
    assert stdout.count("of an interrupted submission") == 2
    assert_each_job_once_with_files(sim_thread, out, 4)


def test_batch_second_ctrl_c_stops_at_once(
    sim_thread: SimThread, durations: Durations, images: Path, tmp_path: Path
) -> None:
    """Ctrl-C while POSTs are out: the wait is announced at once; Ctrl-C again ends it."""
    jobs = write_batch(images, 4)
    out = tmp_path / "out"
    errors = tmp_path / "stderr.txt"
    durations.seconds = 3600.0
    hold_submissions(sim_thread)
    with errors.open("w") as sink:
        proc = batch_process(sim_thread, jobs, out, "--account", f"{ACCOUNT}:2", stderr=sink)
        try:
            wait_until_blocking(lambda: sim_thread.stats["tasks_created"] == 2)  # both POSTs held
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
    expected = f"batch {jobs} --out {out} --base-url {sim_thread.base_url} --account {ACCOUNT}:2\n"
    assert expected in stderr
    assert sorted(r[1] for r in journal_rows(out)) == ["pending"] * 2 + ["submitting"] * 2
    resume_and_check(sim_thread, durations, jobs, out)


def test_batch_ctrl_c_gives_unanswered_posts_a_grace(
    sim_thread: SimThread,
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
    hold_submissions(sim_thread)

    with ctrl_c_once(lambda: sim_thread.stats["tasks_created"] == 2):
        code = run(sim_thread, "batch", str(jobs), "--out", str(out), "--account", f"{ACCOUNT}:2")
    stderr = capsys.readouterr().err
    assert code == 130, stderr
    assert "waiting up to 0.05 s" in stderr
    assert "2 submissions had not answered" in stderr
    assert sorted(r[1] for r in journal_rows(out)) == ["pending"] * 2 + ["submitting"] * 2
    resume_and_check(sim_thread, durations, jobs, out)


def test_generate_no_wait_ctrl_c_says_it_waits_for_the_post(
    sim_thread: SimThread, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """Ctrl-C while the POST of ``generate --no-wait`` is out: the command says it waits
    for the answer (and how to stop at once), then that a task may have been created."""
    monkeypatch.setattr(cli_interrupt, "INTERRUPT_GRACE", 0.05)
    hold_submissions(sim_thread)

    with ctrl_c_once(lambda: sim_thread.stats["tasks_created"] == 1):
        code = run(sim_thread, "generate", "tts/create", "speaker_id=sp1", "text=hi", "--no-wait")
    stderr = capsys.readouterr().err
    assert code == 130, stderr
    assert "interrupted: waiting up to 0.05 s for the answer to 1 submission already sent" in stderr
    assert "press Ctrl-C again to stop at once ('kling-async tasks' then lists" in stderr
    assert "a task may have been created; look for it with 'kling-async tasks'" in stderr


def test_resume_hint_drops_the_token() -> None:
    argv = ["--token", TOKEN, "batch", "j.jsonl", "--out", "o", f"--token={TOKEN}"]
    hint = cli_interrupt.resume_command(cli.build_parser().parse_args(argv))
    assert TOKEN not in hint
    assert hint == "kling-async batch j.jsonl --out o"
