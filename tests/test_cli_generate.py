"""``kling-async generate`` and ``kling-async endpoints`` through the real entry point,
against the simulator on a real socket (its own loop, in a thread)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import ACCOUNT, SimThread, is_mp4, run
from helpers import Durations

from kling_async import REQUEST_TYPES, cli
from kling_async.testing.media import png, video, wav


def assert_nothing_sent(sim_thread: SimThread) -> None:
    stats = sim_thread.stats
    assert (stats["posts"], stats["uploads"], stats["polls"], stats["lists"]) == (0, 0, 0, 0)


def test_generate_text2video_v3_writes_the_video_and_its_cover(
    sim_thread: SimThread, tmp_path: Path, capsys: Any
) -> None:
    out = tmp_path / "out"
    code = run(
        sim_thread,
        "generate",
        "videos/text2video",
        "prompt=a fox",
        "model_name=kling-v3-0",
        "duration=10",
        "--out",
        str(out),
    )
    assert code == 0
    [task] = sim_thread.stats["tasks"]
    assert task["body"]["prompt"] == "a fox"
    assert task["body"]["duration"] == "10"
    [video] = out.glob("*.mp4")
    assert is_mp4(video.read_bytes())
    assert len(list(out.glob("*-cover.png"))) == 1
    assert str(video) in capsys.readouterr().out


def test_generate_uploads_local_files_and_parses_list_fields(
    sim_thread: SimThread, images: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    fields = [
        f"subject_images={images / 'a.png'}",
        f"subject_images={images / 'b.png'}",
        "sceneImage=https://example.com/b.png",
    ]
    code = run(
        sim_thread, "generate", "images/kolors-elements", "prompt=two", *fields, "--out", str(out)
    )
    assert code == 0
    assert sim_thread.stats["uploads"] >= 1
    [task] = sim_thread.stats["tasks"]
    assert task["body"]["sceneImage"] == "https://example.com/b.png"
    assert task["body"]["subjectImage2"].startswith("http")
    assert list(out.glob("*.png"))


def test_generate_uploads_local_video_and_audio(sim_thread: SimThread, tmp_path: Path) -> None:
    (tmp_path / "talk.mp4").write_bytes(video())
    (tmp_path / "voice.wav").write_bytes(wav(400))
    args = [f"video={tmp_path / 'talk.mp4'}", f"audio={tmp_path / 'voice.wav'}"]
    assert run(sim_thread, "generate", "videos/lipsync", *args, "--out", str(tmp_path / "o")) == 0
    assert sim_thread.stats["uploads"] == 2


def test_generate_no_wait_prints_the_task_id_and_how_to_follow_it(
    sim_thread: SimThread, tmp_path: Path, capsys: Any
) -> None:
    code = run(
        sim_thread, "generate", "tts/create", "speaker_id=sp1", "text=hello", "extra.other=x",
        "--no-wait", "--extra", "newField=3",
    )  # fmt: skip
    assert code == 0
    [task] = sim_thread.stats["tasks"]
    assert (task["body"]["newField"], task["body"]["other"]) == (3, "x")
    text = capsys.readouterr().out
    assert f"task {task['id']} submitted" in text
    assert f"kling-async task {task['id']}" in text


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        (["prompt=a fox", "duration=ten"], "duration: must be an integer, got 'ten'"),
        (["prompt=a fox", "duration=12"], "duration: 12 is not allowed"),
        (["prompt=a fox", "colour=red"], "colour: unknown field for videos/text2video"),
        (["prompt=a fox", "enable_audio=maybe"], "enable_audio: must be true or false"),
        (["negative_prompt=x"], "prompt: is required"),
    ],
)
def test_generate_bad_fields_are_one_line_exit_2_nothing_sent(
    sim_thread: SimThread, fields: list[str], named: str, capsys: Any
) -> None:
    assert run(sim_thread, "generate", "videos/text2video", *fields) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("kling-async generate: error: ")
    assert named in err
    assert "Traceback" not in err
    assert_nothing_sent(sim_thread)


def test_generate_checks_local_files_before_sending(
    sim_thread: SimThread, tmp_path: Path, capsys: Any
) -> None:
    tiny = tmp_path / "tiny.png"
    tiny.write_bytes(png(100, 100, (1, 2, 3)))
    assert run(sim_thread, "generate", "videos/image2video-frames", f"image={tiny}") == 2
    err = capsys.readouterr().err
    assert "image: file" in err
    assert "at least 300 px" in err
    assert_nothing_sent(sim_thread)


def test_generate_unknown_endpoint_and_unwritable_out(
    sim_thread: SimThread, tmp_path: Path, capsys: Any
) -> None:
    assert run(sim_thread, "generate", "videos/nope", "prompt=x") == 2
    assert "ENDPOINT: unknown endpoint 'videos/nope'" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert (
        run(sim_thread, "generate", "videos/text2video", "prompt=x", "--out", str(blocker / "o"))
        == 2
    )
    assert "--out: cannot write to" in capsys.readouterr().err
    assert_nothing_sent(sim_thread)


def test_endpoints_lists_every_endpoint_with_its_fields(capsys: Any) -> None:
    assert cli.main(["endpoints"]) == 0
    text = capsys.readouterr().out
    for endpoint, cls in REQUEST_TYPES.items():
        assert f"{endpoint}  ({cls.__name__}" in text
    assert cli.main(["endpoints", "videos/text2video", "--json"]) == 0
    [item] = json.loads(capsys.readouterr().out)
    rows = {row["name"]: row for row in item["fields"]}
    assert item["class"] == "Text2Video"
    assert rows["duration"]["default"] == 5
    assert "3..15 with model_name 'kling-v3-0'" in rows["duration"]["rules"]
    assert "kling-v3-0" in rows["model_name"]["rules"]
    assert rows["cfg_scale"]["rules"] == "0..1"
    assert "email" in rows
    assert cli.main(["endpoints", "nope"]) == 2
    assert cli.main(["endpoints", "/tts/create"]) == 0
    assert cli.main(["endpoints", "text2video"]) == 0  # the class name, any case
    assert "videos/text2video  (Text2Video" in capsys.readouterr().out


def test_generate_with_the_token_from_nowhere_is_a_usage_error(capsys: Any) -> None:
    assert cli.main(["generate", "videos/text2video", "prompt=x"]) == 2
    assert "no API token" in capsys.readouterr().err


def test_generate_takes_fields_after_options(sim_thread: SimThread, tmp_path: Path) -> None:
    """argparse's subcommands cannot intermix positionals and options: the fields after
    an option are still fields, in their order."""
    out = str(tmp_path / "out")
    args = ["--out", out, "prompt=a fox", "--timeout", "60", "model_name=kling-v3-0"]
    code = run(
        sim_thread, "generate", "videos/text2video", "duration=10", *args, "--json", "mode=pro"
    )
    assert code == 0
    [task] = sim_thread.stats["tasks"]
    body = task["body"]
    assert (body["prompt"], body["duration"], body["mode"]) == ("a fox", "10", "pro")
    assert body["model_name"] == "kling-v3-0"
    assert list((tmp_path / "out").glob("*.mp4"))


def test_a_word_that_is_no_field_after_options_is_refused(
    sim_thread: SimThread, capsys: Any
) -> None:
    assert run(sim_thread, "generate", "videos/text2video", "--json", "prompt=x", "stray") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "unrecognized arguments: (not shown)" in err
    assert "stray" not in err  # a stray word may be a token put in the wrong place
    assert_nothing_sent(sim_thread)


@pytest.mark.parametrize("value", ["-1", "nan", "NaN", "inf", "0", "soon", ""])
@pytest.mark.parametrize(
    "command",
    [
        ["generate", "videos/text2video", "prompt=x"],
        ["image", "--prompt", "x", "--subject", "a.png", "--subject", "b.png"],
        ["video", "--prompt", "x", "--image", "a.png"],
        ["batch", "jobs.jsonl", "--out", "o"],
        ["task", "1", "--wait"],
    ],
    ids=lambda c: c[0],
)
def test_a_bad_timeout_is_one_line_exit_2_nothing_sent(
    sim_thread: SimThread, command: list[str], value: str, capsys: Any
) -> None:
    assert run(sim_thread, *command, "--timeout", value) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"kling-async {command[0]}: error: argument --timeout: "), err
    assert "Traceback" not in err
    assert_nothing_sent(sim_thread)


def test_generate_timeout_ends_the_wait_and_prints_how_to_fetch_the_task(
    sim_thread: SimThread, durations: Durations, tmp_path: Path, capsys: Any
) -> None:
    """The task runs on (and is paid for): the command that waits for it is printed."""
    durations.seconds = 3600.0
    out = tmp_path / "out"
    code = run(sim_thread, "generate", "videos/text2video", "--out", str(out), "--timeout", "0.2",
               "prompt=a fox", "--email", ACCOUNT)  # fmt: skip
    assert code == 1
    [task] = sim_thread.stats["tasks"]
    text = capsys.readouterr().out
    assert f"task {task['id']}: submitted: " in text
    assert "not final after 0.2 s" in text
    assert "re-run" not in text  # running it again would pay again
    fetch = f"fetch it with: kling-async task {task['id']} --email {ACCOUNT} --wait --out {out}\n"
    assert fetch in text
    assert sim_thread.stats["tasks_created"] == 1
