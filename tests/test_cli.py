"""The ``kling-async`` command through its real entry point, against the simulator (on its
own thread: `cli_helpers.SimThread`, the ``sim_thread`` fixture)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import PNG, TOKEN, SimThread, image_args, is_mp4, run, write_batch
from helpers import URL1, URL2, fast_env, run_command

from kling_async import cli, fast_mode
from kling_async.cli import demo as cli_demo

#: $USEAPI_TOKEN unset: every command here gets its token from --token, or means to have none.
pytestmark = pytest.mark.usefixtures("no_token_env")


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


def test_image_command(sim_thread: SimThread, images: Path, tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "out"
    code = run(
        sim_thread, *image_args(images), "--count", "2", "--aspect-ratio", "1:1", "--out", str(out)
    )
    assert code == 0
    printed = capsys.readouterr().out.split()
    assert len(printed) == 2
    assert all(Path(p).read_bytes().startswith(PNG) for p in printed)
    stats = sim_thread.stats
    assert stats["tasks_created"] == 1
    assert stats["uploads"] == 2
    assert stats["tasks"][0]["body"]["imageCount"] == 2


def test_video_command_json(
    sim_thread: SimThread, images: Path, tmp_path: Path, capsys: Any
) -> None:
    code = run(
        sim_thread,
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
    body = sim_thread.stats["tasks"][0]["body"]
    assert (body["duration"], body["mode"], body["enable_audio"]) == ("10", "pro", True)


def test_failed_video_exits_1(
    sim_thread: SimThread, images: Path, tmp_path: Path, capsys: Any
) -> None:
    code = run(
        sim_thread,
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
    sim_thread: SimThread, images: Path, tmp_path: Path, capsys: Any
) -> None:
    assert run(sim_thread, "upload", str(images / "a.png")) == 0
    url = capsys.readouterr().out.strip()
    assert url.startswith(sim_thread.sim.root_url)
    assert sim_thread.stats["uploads"] == 1

    assert (
        run(sim_thread, "video", "--prompt", "p", "--image", url, "--json", "--out", str(tmp_path))
        == 0
    )
    task_id = json.loads(capsys.readouterr().out)["task"]["id"]

    assert run(sim_thread, "task", str(task_id)) == 0
    text = capsys.readouterr().out
    assert f"task {task_id}: succeed (final)" in text
    assert "prompt: p" in text

    out = tmp_path / "again"
    assert run(sim_thread, "task", str(task_id), "--wait", "--json", "--out", str(out)) == 0
    assert json.loads(capsys.readouterr().out)["task"]["id"] == task_id
    assert is_mp4(next(out.glob("*.mp4")).read_bytes())

    assert run(sim_thread, "task", "999999") == 1
    assert "404" in capsys.readouterr().err


# --------------------------------------------------------------------------- batch


def test_batch_end_to_end(sim_thread: SimThread, images: Path, tmp_path: Path, capsys: Any) -> None:
    jobs = write_batch(images, 5, fail=3)
    out = tmp_path / "out"
    assert (
        run(sim_thread, "batch", str(jobs), "--out", str(out)) == 1
    )  # maxJobs read from the server
    text = capsys.readouterr().out
    assert "5 job(s): 4 succeeded, 1 failed" in text
    assert "line 4: failed:" in text
    assert len(list(out.glob("line-*/*.png"))) == 3 + 1  # and the video's cover
    assert len(list(out.glob("line-*/*.mp4"))) == 1
    assert sim_thread.stats["tasks_created"] == 5
    assert max(sim_thread.stats["peak_running"].values()) <= 2

    # The same command again: nothing is submitted, the failure is still reported.
    assert run(sim_thread, "batch", str(jobs), "--out", str(out), "--max-jobs", "2") == 1
    assert "line 4 (image): already failed" in capsys.readouterr().out
    assert sim_thread.stats["tasks_created"] == 5

    # An edited line that was sent is refused, nothing is sent.
    jobs.write_text(jobs.read_text().replace("job 0", "job zero"))
    assert run(sim_thread, "batch", str(jobs), "--out", str(out)) == 2
    assert "line 1 (task " in capsys.readouterr().err
    assert sim_thread.stats["posts"] == 5


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


def test_batch_command_in_push_mode(sim_thread: SimThread, tmp_path: Path) -> None:
    """`kling-async batch --webhook` finishes every job from callbacks, without polling."""
    jobs = tmp_path / "jobs.jsonl"
    lines = [
        {"kind": "image", "prompt": f"push line {i}", "subject_images": [URL1, URL2]}
        for i in range(6)
    ]
    jobs.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    with fast_mode(1.0):
        code = run(
            sim_thread, "batch", str(jobs), "--out", str(tmp_path / "out"),
            "--webhook", "127.0.0.1:0/hooks",
        )  # fmt: skip
    assert code == 0
    seen = sim_thread.stats
    assert seen["tasks_created"] == 6
    # One confirming GET per job (callbacks are not trusted by default), no more.
    assert sum(seen["polls_by_task"].values()) == 6
    assert all("/hooks/" in t["body"]["replyUrl"] for t in seen["tasks"])
