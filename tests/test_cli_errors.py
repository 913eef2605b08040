"""Errors a CLI user can cause: one line on stderr in CLI terms, exit 2, no traceback."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import ACCOUNT, TOKEN, SimThread, image_args, run, write_batch
from helpers import URL1, URL2, closed_port

from kling_async import cli
from kling_async.batch import JOURNAL_NAME, Journal
from kling_async.testing import FaultPlan, FaultRates


def one_error_line(capsys: Any, command: str) -> str:
    err: str = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith(f"kling-async {command}: error: "), err
    return lines[0]


def test_unwritable_out_is_refused_before_submitting(
    sim_thread: SimThread, images: Path, tmp_path: Path, capsys: Any
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    args = image_args(images)
    assert run(sim_thread, *args, "--email", ACCOUNT, "--out", str(blocker / "sub")) == 2
    assert "--out: cannot write to" in one_error_line(capsys, "image")
    jobs = write_batch(images, 2)
    assert run(sim_thread, "batch", str(jobs), "--out", str(blocker), "--account", ACCOUNT) == 2
    assert "--out: cannot write to" in one_error_line(capsys, "batch")
    assert sim_thread.stats["tasks_created"] == 0


def test_missing_jobs_file_is_told_once(sim_thread: SimThread, tmp_path: Path, capsys: Any) -> None:
    missing = tmp_path / "nope.jsonl"
    assert run(sim_thread, "batch", str(missing), "--out", str(tmp_path / "o")) == 2
    assert str(missing) in one_error_line(capsys, "batch")


def test_wrong_token_names_the_flag(sim_thread: SimThread, capsys: Any) -> None:
    argv = [
        "--token",
        "wrong-token-0000",
        "--base-url",
        sim_thread.base_url,
        "tasks",
        "--email",
        ACCOUNT,
    ]
    assert cli.main(argv) == 2
    line = one_error_line(capsys, "tasks")
    assert line.endswith("check USEAPI_TOKEN/--token")
    assert "wrong-token-0000" not in line


def test_wrong_base_url_shows_the_url(sim_thread: SimThread, capsys: Any) -> None:
    base = sim_thread.base_url.rstrip("/") + "/not-kling"
    assert cli.main(["--token", TOKEN, "--base-url", base, "task", "123", "--email", ACCOUNT]) == 2
    line = one_error_line(capsys, "task")
    assert f"{base}/tasks/123" in line
    assert line.endswith("check --base-url)")


def test_dead_base_url_shows_the_url(capsys: Any) -> None:
    base = f"http://127.0.0.1:{closed_port()}/v1/kling"
    assert cli.main(["--token", TOKEN, "--base-url", base, "task", "5", "--email", ACCOUNT]) == 2
    line = one_error_line(capsys, "task")
    assert f"{base}/tasks/5" in line
    assert "check --base-url" in line


def test_json_errors_are_json(sim_thread: SimThread, capsys: Any) -> None:
    assert (
        cli.main(
            ["--token", "wrong-token-0000", "--base-url", sim_thread.base_url, "accounts", "--json"]
        )
        == 2
    )
    captured = capsys.readouterr()
    error = json.loads(captured.out)
    assert error["exit"] == 2
    assert "check USEAPI_TOKEN/--token" in error["error"]


def test_repeated_account_keeps_the_jobs_file() -> None:
    args = cli.build_parser().parse_args(
        [
            "batch",
            "--account",
            "a@example.com",
            "--account",
            "b@example.com:3",
            "jobs.jsonl",
            "--out",
            "o",
        ]
    )
    assert str(args.jobs) == "jobs.jsonl"
    assert args.account == [("a@example.com", None), ("b@example.com", 3)]


def test_second_writer_on_the_same_out_is_refused(
    sim_thread: SimThread, images: Path, tmp_path: Path, capsys: Any
) -> None:
    jobs = write_batch(images, 2)
    out = tmp_path / "out"
    out.mkdir()
    with Journal(out / JOURNAL_NAME):  # the first writer, still running
        assert run(sim_thread, "batch", str(jobs), "--out", str(out), "--account", ACCOUNT) == 2
    assert "another run is using the journal" in one_error_line(capsys, "batch")
    assert sim_thread.stats["tasks_created"] == 0


def test_tasks_and_accounts_commands(
    sim_thread: SimThread, images: Path, tmp_path: Path, capsys: Any
) -> None:
    args = image_args(images)
    assert run(sim_thread, *args, "--email", ACCOUNT, "--out", str(tmp_path)) == 0
    capsys.readouterr()
    assert run(sim_thread, "tasks", "--email", ACCOUNT, "--status", "succeeded", "--json") == 0
    tasks = json.loads(capsys.readouterr().out)
    assert len(tasks) == 1
    assert run(sim_thread, "tasks", "--email", ACCOUNT, "--limit", "5") == 0
    assert "a cat" in capsys.readouterr().out
    assert run(sim_thread, "tasks", "--status", "bogus") == 2
    assert "--status: expected one of" in one_error_line(capsys, "tasks")
    assert run(sim_thread, "accounts", "--json") == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["email"] == ACCOUNT
    assert row["maxJobs"] == 2


def test_extra_fields_reach_the_request(
    sim_thread: SimThread, images: Path, tmp_path: Path
) -> None:
    args = image_args(images)
    assert (
        run(sim_thread, *args, "--email", ACCOUNT, "--out", str(tmp_path), "--extra", "seed=7") == 0
    )


def test_busy_simulator_port(capsys: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["simulate", "--host", "127.0.0.1", "--port", str(port)]) == 2
    line = one_error_line(capsys, "simulate")
    assert "address already in use" in line.lower()


def test_moderation_is_named(
    sim_thread: SimThread, images: Path, tmp_path: Path, capsys: Any
) -> None:
    out = str(tmp_path / "o")
    assert run(sim_thread, *image_args(images, "nsfw cat"), "--email", ACCOUNT, "--out", out) == 1
    captured = capsys.readouterr()
    assert "failed: refused by moderation: The content you uploaded" in captured.out
    assert "500 Internal Server Error" not in captured.out + captured.err


def test_a_failed_download_prints_the_command_that_fetches_the_task(
    sim_thread: SimThread, images: Path, tmp_path: Path, capsys: Any
) -> None:
    """The job ran (and is paid for) but its files could not be fetched: the exact
    `kling-async task ID --email E --out DIR` command is printed, never "re-run"."""
    plan = FaultPlan(rules={"files": FaultRates(server_error=1.0)})
    sim_thread.call(lambda: sim_thread.sim.set_fault_plan(plan))
    out = tmp_path / "out"
    code = run(sim_thread, *image_args(images), "--email", ACCOUNT, "--out", str(out))
    assert code == 1
    (task,) = sim_thread.stats["tasks"]
    stdout = capsys.readouterr().out
    assert f"fetch it with: kling-async task {task['id']} --email {ACCOUNT}" in stdout
    assert f"--out {out}" in stdout
    assert "re-run" not in stdout  # running it again would pay again
    assert sim_thread.stats["tasks_created"] == 1


def test_the_base_url_comes_from_the_environment_when_not_given(
    monkeypatch: Any,
) -> None:
    monkeypatch.setenv("KLING_BASE_URL", "http://127.0.0.1:8787/v1/kling")
    args = cli.build_parser().parse_args(["tasks"])
    assert args.base_url == "http://127.0.0.1:8787/v1/kling"
    given = cli.build_parser().parse_args(["--base-url", "http://127.0.0.1:1/v1/kling", "tasks"])
    assert given.base_url == "http://127.0.0.1:1/v1/kling"


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["image", "--prompt", "x", "--subject", "{a}"],
            "error: --subject: At least two images must be provided (any combination of "
            "--subject, --scene and --style); got 1\n",
        ),
        (
            ["image", "--subject", "{a}", "--subject", "{a}", "--count", "10"],
            "error: --count: must be from 1 to 9, got 10\n",
        ),
        (
            ["image", "--subject", "{a}", "--subject", "nope.png"],
            "error: --subject #2: 'nope.png' is neither an http(s) URL nor an existing file\n",
        ),
        (
            [
                "image",
                "--subject",
                "{a}",
                "--subject",
                "{a}",
                "--prompt",
                "x",
                "--extra",
                "prompt=y",
            ],
            "error: --extra: prompt also set by an option; give it once\n",
        ),
        (
            ["video", "--prompt", "x", "--image", "{a}", "--duration", "7"],
            "error: --duration: 7 is not allowed; must be 5 or 10\n",
        ),
        (["video", "--prompt", "x"], "error: --image: At least one image"),
        (["upload", "missing.png"], "FILE: no such file"),
    ],
)
def test_bad_arguments_send_nothing(
    sim_thread: SimThread, images: Path, capsys: Any, args: list[str], expected: str
) -> None:
    args = [a.format(a=images / "a.png") for a in args]
    assert run(sim_thread, *args) == 2
    assert expected in capsys.readouterr().err
    assert (sim_thread.stats["posts"], sim_thread.stats["uploads"]) == (0, 0)


def test_argparse_errors_exit_2(capsys: Any) -> None:
    assert cli.main(["video", "--image", "a.png"]) == 2  # --prompt is required
    assert "--prompt" in capsys.readouterr().err
    assert cli.main(["task", "abc"]) == 2
    assert cli.main(["--help"]) == 0


def test_an_unreachable_service_says_nothing_was_submitted(
    images: Path, tmp_path: Path, capsys: Any
) -> None:
    base = f"http://127.0.0.1:{closed_port()}/v1/kling"
    args = ["--token", TOKEN, "--base-url", base, *image_args(images), "--out", str(tmp_path)]
    assert cli.main(args) == 1
    out = capsys.readouterr().out
    assert out.startswith("nothing was submitted: upload: POST assets/ failed: ClientConnector")
    assert "fetch it with" not in out


def test_missing_token(images: Path, capsys: Any) -> None:
    assert cli.main(image_args(images)) == 2
    assert "no API token" in capsys.readouterr().err


def test_bad_jsonl_lines_send_nothing(
    sim_thread: SimThread, images: Path, tmp_path: Path, capsys: Any
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
    assert run(sim_thread, "batch", str(jobs), "--out", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert "jobs.jsonl line 2: image_count: must be from 1 to 9, got 0" in err
    assert "jobs.jsonl line 4: prompt: is required" in err
    assert "nothing was sent" in err
    assert (sim_thread.stats["posts"], sim_thread.stats["uploads"]) == (0, 0)


def test_batch_account_not_configured(
    sim_thread: SimThread, images: Path, tmp_path: Path, capsys: Any
) -> None:
    jobs = images / "jobs.jsonl"
    line = {"kind": "video", "prompt": "x", "images": ["a.png"], "email": "b@example.com"}
    jobs.write_text(json.dumps(line) + "\n")
    code = run(sim_thread, "batch", str(jobs), "--out", str(tmp_path), "--account", f"{ACCOUNT}:2")
    assert code == 2
    assert "1: email: 'b@example.com' is not one of --account" in capsys.readouterr().err
    assert sim_thread.stats["posts"] == 0


async def test_command_line_refuses_plain_http(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--token", TOKEN, "--base-url", "http://api.example.com/v1/kling", "task", "123"]
    status = await asyncio.to_thread(cli.main, argv)
    err = capsys.readouterr().err
    assert status == 2
    assert err == (
        "kling-async task: error: --base-url 'http://api.example.com/v1/kling' is plain http on "
        "a non-loopback host: the token would be sent in clear text; give an https --base-url\n"
    )
    assert TOKEN not in err


#: A token shaped like useapi.net's (long, not a word): the refusals below never show it.
SECRET = f"sk-live-{secrets.token_hex(20)}"


@pytest.mark.parametrize(
    "argv",
    [
        ["image", "--tok", SECRET, "--prompt", "x", "a.png", "b.png"],
        [f"--tok={SECRET}", "task", "1"],
        ["--toke", SECRET, "-v", "tasks"],
        # A token that looks like a word (lowercase, dashes) is no exception.
        ["--toke", "sim-secret-token-4f1c", "-v", "tasks"],
        ["batch", "jobs.jsonl", "--out", "o", f"--to={SECRET}"],
    ],
)
def test_a_mistyped_token_flag_is_refused_without_showing_its_value(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """No abbreviations (``--tok`` is not ``--token``), and the refusal names the flag but
    never echoes a value: the value of a mistyped ``--token`` is the token."""
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert SECRET not in out + err
    assert "sim-secret-token-4f1c" not in out + err
    assert err.count("\n") == 1
    assert "not shown" in err  # "unrecognized arguments: --tok (values are not shown)", or
    # "invalid choice (not shown)" when the token stood where the command goes


def test_a_mistyped_command_is_shown_with_the_closest_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["imgae"]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'imgae' (did you mean 'image'?)" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("bad", ["nohost", "host:", "host:port", "h:70000"])
def test_batch_webhook_address_is_checked(
    tmp_path: Path, bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"kind": "image", "subject_images": [URL1, URL2]}) + "\n")
    args = ["--token", TOKEN, "batch", str(jobs), "--out", str(tmp_path), "--webhook", bad]
    assert cli.main(args) == 2
    assert f"expected HOST:PORT[/path], got {bad!r}" in capsys.readouterr().err
