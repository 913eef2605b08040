"""The ``kling-async`` command as a real process: Ctrl-C on one job, a closed stdout pipe,
and a batch's per-job ``--timeout``; against the simulator on a real socket."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from cli_helpers import (
    ACCOUNT,
    TOKEN,
    SimThread,
    ctrl_c_reaches_children,
    image_args,
    journal_rows,
    run,
    write_batch,
)
from helpers import Durations, fast_env

from kling_async.batch import JOURNAL_NAME


def cli_process(*args: str, stdout: Any = subprocess.PIPE) -> subprocess.Popen[str]:
    """``kling-async ARGS`` started as from a terminal (the token from the environment)."""
    env = fast_env(USEAPI_TOKEN=TOKEN)
    with ctrl_c_reaches_children():
        return subprocess.Popen(
            [sys.executable, "-m", "kling_async.cli", *args],
            env=env,
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
        )


def test_ctrl_c_on_one_job_prints_the_command_that_fetches_its_task(
    sim_thread: SimThread, durations: Durations, images: Path, tmp_path: Path
) -> None:
    """The task goes on (and is paid for): the message names its real id and account, and
    the exact command that waits for it and downloads it; nothing is submitted again."""
    durations.seconds = 3600.0  # until the test finishes it
    out = tmp_path / "out"
    proc = cli_process("--base-url", sim_thread.base_url, *image_args(images), "--email", ACCOUNT,
                       "--out", str(out))  # fmt: skip
    try:
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:  # the progress lines of one job go to stderr
            seen.append(line)
            if "submitted task" in line:
                break
        else:
            raise AssertionError(f"never submitted: {''.join(seen)}")
        proc.send_signal(signal.SIGINT)
        stdout, rest = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    [task] = sim_thread.stats["tasks"]
    assert proc.returncode == 130, rest
    assert rest.endswith(
        "interrupted; the submitted task goes on (and is paid for); fetch it with:\n"
        f"  kling-async task {task['id']} --email {ACCOUNT} --wait --out {out}\n"
    ), rest
    assert "Traceback" not in rest
    assert TOKEN not in stdout + rest
    assert sim_thread.stats["tasks_created"] == 1

    # The printed command, as the user runs it, fetches the files without paying again.
    durations.seconds = 0.05
    sim_thread.call(sim_thread.sim.finish_all)
    assert (
        run(sim_thread, "task", str(task["id"]), "--email", ACCOUNT, "--wait", "--out", str(out))
        == 0
    )
    assert list(out.glob(f"{task['id']}-*.png"))
    assert sim_thread.stats["tasks_created"] == 1


def test_a_listing_into_a_closed_pipe_ends_quietly(sim_thread: SimThread) -> None:
    """``kling-async endpoints | head -1``: the reader goes away after one line; the
    command stops without a traceback or an error line, as Unix tools do."""
    for command in (
        ["endpoints"],
        ["--base-url", sim_thread.base_url, "tasks", "--email", ACCOUNT],
    ):
        read, write = os.pipe()
        with os.fdopen(write, "w") as sink:
            proc = cli_process(*command, stdout=sink)
        with os.fdopen(read) as source:
            source.readline()  # then the reader is gone, as head -1 is
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode in (0, 141), stderr  # 0: it had written all before
        assert stderr == "", stderr


def test_a_closed_pipe_before_the_first_line(sim_thread: SimThread) -> None:
    """The reader is gone before anything is written: 141, as a shell shows for SIGPIPE."""
    read, write = os.pipe()
    os.close(read)
    with os.fdopen(write, "w") as sink:
        proc = cli_process("endpoints", stdout=sink)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 141
    assert stderr == ""


def test_batch_timeout_leaves_the_jobs_for_a_rerun(
    sim_thread: SimThread, durations: Durations, images: Path, tmp_path: Path, capsys: Any
) -> None:
    """Each job's wait ends after --timeout; its task runs on, and the same command
    again waits for it without submitting anything again."""
    durations.seconds = 3600.0
    jobs = write_batch(images, 2)
    out = tmp_path / "out"
    args = ["batch", str(jobs), "--out", str(out), "--account", ACCOUNT]
    assert run(sim_thread, *args, "--timeout", "0.2") == 1
    assert "not final after 0.2 s" in capsys.readouterr().out
    assert [row[1] for row in journal_rows(out)] == ["submitted", "submitted"]
    assert TOKEN.encode() not in (out / JOURNAL_NAME).read_bytes()
    durations.seconds = 0.05
    sim_thread.call(sim_thread.sim.finish_all)
    assert run(sim_thread, *args) == 0
    assert [row[1] for row in journal_rows(out)] == ["succeeded", "succeeded"]
    assert sim_thread.stats["tasks_created"] == 2
