"""Bad input, table-driven: every kind is refused with an error naming the field, and nothing
reaches the server (the simulator's counters stay at zero).

Four doors in: the two request types (through the client), the client's other calls, the
``kling-async`` command line and the JSON-lines batch file (parsed, and through the CLI).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from kling_async import (
    ClientConfig,
    ConfigurationError,
    KlingClient,
    KolorsElements,
    RequestValidationError,
    cli,
)
from kling_async.batch import JobsFileError, parse_jobs_file
from kling_async.testing import KlingSimulator, media

A = "soak-a@example.com"
B = "soak-b@example.com"
IMG = "https://cdn.example.com/a.png"
IMG2 = "https://cdn.example.com/b.png"
LONG = "x" * 2501
K = {"prompt": "p", "subject_images": [IMG, IMG2]}  # a good image request...
K1 = {"prompt": "p", "subject_images": [IMG]}
V = {"prompt": "p", "images": [IMG]}  # ...and a good video request, to spoil one field each


@pytest.fixture
async def sim() -> AsyncIterator[KlingSimulator]:
    async with KlingSimulator(accounts={A: 3, B: 2}, job_seconds=0.05) as simulator:
        yield simulator


@pytest.fixture
async def kling(sim: KlingSimulator) -> AsyncIterator[KlingClient]:
    # Sizes given, so not even GET /accounts is needed.
    async with KlingClient(
        token=sim.token, base_url=sim.base_url, accounts={A: 3, B: 2}, config=ClientConfig()
    ) as client:
        yield client


def assert_nothing_sent(sim: KlingSimulator) -> None:
    stats = sim.stats
    sent = {k: stats[k] for k in ("posts", "polls", "lists", "uploads", "downloads")}
    assert sent == dict.fromkeys(sent, 0)
    assert stats["tasks_created"] == 0


# --------------------------------------------------------------------------- request types

# (id, fields, field named by the error)
IMAGE_ROWS: list[tuple[str, dict[str, Any], str]] = [
    ("prompt-not-text", {"prompt": 123, "subject_images": [IMG, IMG2]}, "prompt"),
    ("prompt-too-long", {"prompt": LONG, "subject_images": [IMG, IMG2]}, "prompt"),
    ("one-image", {"prompt": "p", "subject_images": [IMG]}, "subject_images"),
    ("five-subjects", {"prompt": "p", "subject_images": [IMG] * 5}, "subject_images"),
    ("image-is-a-number", {"prompt": "p", "subject_images": [7, IMG2]}, "subject_images[0]"),
    ("image-missing-file", {"prompt": "p", "subject_images": [IMG, "no.png"]}, "subject_images[1]"),
    ("image-empty-bytes", {"prompt": "p", "subject_images": [b"", IMG2]}, "subject_images[0]"),
    ("image-url-no-host", {**K, "subject_images": ["https://", IMG2]}, "subject_images[0]"),
    ("scene-empty-string", {**K1, "scene_image": " "}, "scene_image"),
    ("style-wrong-type", {**K1, "style_image": 3.5}, "style_image"),
    ("aspect-ratio", {**K, "aspect_ratio": "5:4"}, "aspect_ratio"),
    ("image-count-zero", {**K, "image_count": 0}, "image_count"),
    ("image-count-ten", {**K, "image_count": 10}, "image_count"),
    ("image-count-bool", {**K, "image_count": True}, "image_count"),
    ("image-count-text", {**K, "image_count": "2"}, "image_count"),
    ("max-jobs-51", {**K, "max_jobs": 51}, "max_jobs"),
    ("reply-url-ftp", {**K, "reply_url": "ftp://h/x"}, "reply_url"),
    ("reply-ref-number", {**K, "reply_ref": 5}, "reply_ref"),
    ("email-no-at", {**K, "email": "nobody"}, "email"),
    ("extra-not-mapping", {**K, "extra": ["x"]}, "extra"),
]  # fmt: skip

VIDEO_ROWS: list[tuple[str, dict[str, Any], str]] = [
    ("prompt-missing", {"images": [IMG]}, "prompt"),
    ("prompt-blank", {"prompt": "   ", "images": [IMG]}, "prompt"),
    ("no-images", {"prompt": "p"}, "images"),
    ("five-images", {"prompt": "p", "images": [IMG] * 5}, "images"),
    ("image-none", {"prompt": "p", "images": [None]}, "images[0]"),
    ("duration-7", {**V, "duration": 7}, "duration"),
    ("duration-float", {**V, "duration": 5.0}, "duration"),
    ("duration-bool", {**V, "duration": True}, "duration"),
    ("mode", {**V, "mode": "ultra"}, "mode"),
    ("aspect-ratio", {**V, "aspect_ratio": "4:3"}, "aspect_ratio"),
    ("model-name", {**V, "model_name": "kling-v9"}, "model_name"),
    ("enable-audio-text", {**V, "enable_audio": "yes"}, "enable_audio"),
    ("negative-prompt-number", {**V, "negative_prompt": 3}, "negative_prompt"),
    ("negative-prompt-too-long", {**V, "negative_prompt": LONG}, "negative_prompt"),
    ("max-jobs-zero", {**V, "max_jobs": 0}, "max_jobs"),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "field"), [pytest.param(f, n, id=i) for i, f, n in IMAGE_ROWS])
async def test_bad_image_request(
    sim: KlingSimulator, kling: KlingClient, fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(RequestValidationError) as caught:
        await kling.kolors_elements(**fields)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    assert isinstance(caught.value, ValueError)
    assert_nothing_sent(sim)


@pytest.mark.parametrize(("fields", "field"), [pytest.param(f, n, id=i) for i, f, n in VIDEO_ROWS])
async def test_bad_video_request(
    sim: KlingSimulator, kling: KlingClient, fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(RequestValidationError) as caught:
        await kling.image2video_elements(**fields)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    assert_nothing_sent(sim)


@pytest.mark.parametrize("typo", ["promt", "subject_image", "imageCount"])
async def test_misspelt_field_is_named(sim: KlingSimulator, kling: KlingClient, typo: str) -> None:
    with pytest.raises(TypeError, match=typo):
        await kling.kolors_elements(prompt="p", subject_images=[IMG, IMG2], **{typo: 1})
    assert_nothing_sent(sim)


# --------------------------------------------------------------------------- client calls

ClientCall = Callable[[KlingClient], Awaitable[Any]]

CLIENT_ROWS: list[tuple[str, ClientCall, str]] = [
    ("task-id-zero", lambda k: k.get_task(0), "task_id"),
    ("task-id-text", lambda k: k.get_task("123"), "task_id"),
    ("task-id-bool", lambda k: k.get_task(True), "task_id"),
    ("upload-empty", lambda k: k.upload_asset(b""), "source"),
    ("upload-not-media", lambda k: k.upload_asset(b"plain text, not an image"), "content_type"),
    ("upload-a-url", lambda k: k.upload_asset(IMG), "source"),
    ("upload-missing-file", lambda k: k.upload_asset("no-such-file.png"), "source"),
    (
        "account-not-configured",
        lambda k: k.submit(KolorsElements(prompt="p", subject_images=[IMG, IMG2], email="c@x.io")),
        "email",
    ),
    ("list-unknown-account", lambda k: k.list_tasks("c@x.io"), "email"),
]


@pytest.mark.parametrize(("call", "field"), [pytest.param(c, n, id=i) for i, c, n in CLIENT_ROWS])
async def test_bad_client_call(
    sim: KlingSimulator, kling: KlingClient, call: ClientCall, field: str
) -> None:
    with pytest.raises(RequestValidationError) as caught:
        await call(kling)
    assert caught.value.field == field
    assert field in str(caught.value)
    assert_nothing_sent(sim)


# --------------------------------------------------------------------------- command line

# (id, arguments after the global options, text the error must contain)
IMAGE = ["image", "--prompt", "p", "--subject", IMG, "--subject", IMG2]
VIDEO = ["video", "--prompt", "p", "--image", IMG]
CLI_ROWS: list[tuple[str, list[str], str]] = [
    ("image-one-subject", ["image", "--prompt", "p", "--subject", IMG], "--subject"),
    ("image-count-zero", [*IMAGE, "--count", "0"], "--count"),
    ("image-count-text", [*IMAGE, "--count", "two"], "--count"),
    ("image-aspect-ratio", [*IMAGE, "--aspect-ratio", "5:5"], "--aspect-ratio"),
    ("image-missing-file", ["image", "--subject", "no.png", "--subject", IMG2], "--subject"),
    ("image-empty-scene", ["image", "--subject", IMG, "--scene", ""], "--scene"),
    ("video-no-prompt", ["video", "--image", IMG], "--prompt"),
    ("video-no-image", ["video", "--prompt", "p"], "--image"),
    ("video-duration", [*VIDEO, "--duration", "7"], "--duration"),
    ("video-mode", [*VIDEO, "--mode", "ultra"], "--mode"),
    ("video-aspect-ratio", [*VIDEO, "--aspect-ratio", "4:3"], "--aspect-ratio"),
    ("email-no-at", ["--email", "nobody", "image", "--subject", IMG, "--subject", IMG2], "--email"),
    ("task-id-zero", ["task", "0"], "argument ID"),
    ("upload-missing-file", ["upload", "no-such-file.png"], "FILE"),
    ("batch-no-out", ["batch", "jobs.jsonl"], "--out"),
    ("batch-bad-account", ["batch", "jobs.jsonl", "--out", "o", "--account", "bad"], "--account"),
    ("batch-max-jobs-zero", ["batch", "jobs.jsonl", "--out", "o", "--max-jobs", "0"], "--max-jobs"),
    ("batch-missing-file", ["batch", "no-such.jsonl", "--out", "o"], "no-such.jsonl"),
    ("unknown-command", ["paint"], "paint"),
]  # fmt: skip


async def run_cli(
    sim: KlingSimulator, args: list[str], capsys: pytest.CaptureFixture[str], *, token: bool = True
) -> tuple[int, str]:
    argv = ["--base-url", sim.base_url, *(["--token", sim.token] if token else []), *args]
    # The command runs its own event loop: give it a thread, the simulator keeps this one.
    status = await asyncio.to_thread(cli.main, argv)
    return status, capsys.readouterr().err


@pytest.mark.parametrize(("args", "needle"), [pytest.param(a, n, id=i) for i, a, n in CLI_ROWS])
async def test_bad_command_line(
    sim: KlingSimulator,
    args: list[str],
    needle: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)
    status, err = await run_cli(sim, args, capsys)
    assert status == 2, err
    assert needle in err
    assert sim.token not in err
    assert not (tmp_path / "o").exists()
    assert_nothing_sent(sim)


async def test_command_line_without_token(
    sim: KlingSimulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("USEAPI_TOKEN", raising=False)
    status, err = await run_cli(
        sim, ["image", "--subject", IMG, "--subject", IMG2], capsys, token=False
    )
    assert status == 2
    assert "--token" in err
    assert "USEAPI_TOKEN" in err
    assert_nothing_sent(sim)


# --------------------------------------------------------------------------- JSONL batch file

JOB = {"kind": "image", "prompt": "p", "subject_images": [IMG, IMG2]}
VJOB = {"kind": "video", "prompt": "p", "images": [IMG]}


def line(**changes: Any) -> str:
    return json.dumps({**JOB, **changes})


def vline(**changes: Any) -> str:
    return json.dumps({**VJOB, **changes})


# (id, the file's lines, text the problem must contain)
JSONL_ROWS: list[tuple[str, list[str], str]] = [
    ("not-json", ['{"kind": "image", "prompt": "p"'], "line 1: not valid JSON"),
    ("not-an-object", ["[1, 2]"], "line 1: expected a JSON object"),
    ("kind-missing", [json.dumps({"prompt": "p", "subject_images": [IMG, IMG2]})], "line 1: kind"),
    ("kind-unknown", [line(kind="audio")], "line 1: kind"),
    ("unknown-field", [line(promt="p")], "line 1: promt"),
    ("video-field-on-image", [line(duration=5)], "line 1: duration"),
    ("images-not-list", [line(subject_images=5)], "line 1: subject_images"),
    ("image-number", [line(subject_images=[IMG, 5])], "line 1: subject_images"),
    ("scene-number", [line(scene_image=5)], "line 1: scene_image"),
    ("missing-local-file", [line(subject_images=["no.png", IMG2])], "line 1: subject_images[0]"),
    ("image-count-text", [line(image_count="three")], "line 1: image_count"),
    ("prompt-too-long", [line(prompt=LONG)], "line 1: prompt"),
    ("max-jobs-zero", [line(max_jobs=0)], "line 1: max_jobs"),
    ("reply-url", [line(reply_url="ftp://h/x")], "line 1: reply_url"),
    ("email-no-at", [line(email="nobody")], "line 1: email"),
    ("video-duration", [vline(duration=7)], "line 1: duration"),
    ("video-no-images", [json.dumps({"kind": "video", "prompt": "p"})], "line 1: images"),
    ("video-mode", [vline(mode="ultra")], "line 1: mode"),
    ("video-no-prompt", [json.dumps({"kind": "video", "images": [IMG]})], "line 1: prompt"),
    ("empty-file", ["", "# only a comment"], "no jobs"),
    ("good-then-bad", [json.dumps(JOB), line(aspect_ratio="5:4")], "line 2: aspect_ratio"),
]  # fmt: skip


@pytest.mark.parametrize(("lines", "needle"), [pytest.param(t, n, id=i) for i, t, n in JSONL_ROWS])
async def test_bad_jobs_file(
    sim: KlingSimulator,
    lines: list[str],
    needle: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(JobsFileError) as caught:
        parse_jobs_file(jobs)
    assert any(needle in problem for problem in caught.value.problems), caught.value.problems
    assert "nothing was sent" in str(caught.value) or needle == "no jobs"

    out = tmp_path / "out"
    status, err = await run_cli(sim, ["batch", str(jobs), "--out", str(out)], capsys)
    assert status == 2, err
    assert needle in err
    assert not out.exists()  # no journal, no folder: the run never started
    assert_nothing_sent(sim)


async def test_every_bad_line_is_reported_at_once(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(
        "\n".join(
            [
                json.dumps(JOB),
                line(image_count=0),
                "not json",
                vline(duration=7),
            ]
        ),
        encoding="utf-8",
    )
    with pytest.raises(JobsFileError) as caught:
        parse_jobs_file(jobs)
    problems = caught.value.problems
    assert len(problems) == 3
    assert [p.split(":")[0] for p in problems] == [
        "jobs.jsonl line 2",
        "jobs.jsonl line 3",
        "jobs.jsonl line 4",
    ]


def test_the_table_is_big_enough() -> None:
    kinds = len(IMAGE_ROWS) + len(VIDEO_ROWS) + len(CLIENT_ROWS) + len(CLI_ROWS) + len(JSONL_ROWS)
    assert kinds >= 30
    assert min(len(IMAGE_ROWS), len(VIDEO_ROWS), len(CLI_ROWS), len(JSONL_ROWS)) >= 5


# --------------------------------------------------------------------------- options

# (id, keyword arguments of ClientConfig, the option its error names)
CONFIG_ROWS: list[tuple[str, dict[str, Any], str]] = [
    ("connect-negative", {"connect_timeout": -1}, "connect_timeout"),
    ("connect-nan", {"connect_timeout": float("nan")}, "connect_timeout"),
    ("read-zero", {"read_timeout": 0}, "read_timeout"),
    ("read-inf", {"read_timeout": float("inf")}, "read_timeout"),
    ("request-text", {"request_timeout": "30"}, "request_timeout"),
    ("request-bool", {"request_timeout": True}, "request_timeout"),
    ("transfer-negative", {"transfer_timeout": -600}, "transfer_timeout"),
    ("connections-zero", {"connection_limit": 0}, "connection_limit"),
    ("connections-float", {"connection_limit": 2.5}, "connection_limit"),
    ("recovery-nan", {"recovery_window": float("nan")}, "recovery_window"),
    ("recovery-negative", {"recovery_window": -1}, "recovery_window"),
    ("confirm-negative", {"recovery_confirm_delay": -0.5}, "recovery_confirm_delay"),
    ("insecure-text", {"allow_insecure": "yes"}, "allow_insecure"),
    ("user-agent-crlf", {"user_agent": "x\r\nX-Evil: 1"}, "user_agent"),
    ("user-agent-number", {"user_agent": 5}, "user_agent"),
    ("retry-not-policy", {"retry": {"max_tries": 3}}, "retry"),
    ("poll-not-policy", {"poll": 5}, "poll"),
    ("answer-cap-zero", {"max_answer_bytes": 0}, "max_answer_bytes"),
    ("answer-cap-text", {"max_answer_bytes": "8MB"}, "max_answer_bytes"),
    ("download-caps-list", {"max_download_bytes": [1]}, "max_download_bytes"),
    ("download-caps-kind", {"max_download_bytes": {"pdf": 5}}, "max_download_bytes"),
    ("download-caps-negative", {"max_download_bytes": {"video": -1}}, "max_download_bytes"),
]


@pytest.mark.parametrize(("kwargs", "field"), [pytest.param(k, n, id=i) for i, k, n in CONFIG_ROWS])
def test_bad_config_option(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        ClientConfig(**kwargs)
    assert field in str(caught.value)
    assert isinstance(caught.value, ValueError)


# (id, keyword arguments of KlingClient besides token and base_url, text its error names)
CONSTRUCTOR_ROWS: list[tuple[str, dict[str, Any], str]] = [
    ("max-jobs-float", {"max_jobs": 2.5}, "max_jobs"),
    ("max-jobs-text", {"max_jobs": "5"}, "max_jobs"),
    ("max-jobs-zero", {"max_jobs": 0}, "max_jobs"),
    ("max-jobs-51", {"max_jobs": 51}, "max_jobs"),
    ("config-text", {"config": "x"}, "config"),
    ("accounts-list", {"accounts": ["a@example.com"]}, "accounts"),
    ("accounts-bad-jobs", {"accounts": {A: 2.5}}, A),
    ("token-crlf", {"token": "abc\r\nX-Evil: 1"}, "token"),
    ("token-number", {"token": 12345}, "token"),
    ("base-url-port", {"base_url": "http://127.0.0.1:99999/v1/kling"}, "port"),
    ("base-url-ftp", {"base_url": "ftp://example.com/v1/kling"}, "base_url"),
    ("base-url-plain-http", {"base_url": "http://example.com/v1/kling"}, "base_url"),
    ("email-no-at", {"email": "nobody"}, "email"),
    ("email-crlf", {"email": "a@example.com\r\nX: 1"}, "email"),
    ("email-space", {"email": "a b@example.com"}, "email"),
    ("accounts-not-email", {"accounts": {"nobody": 2}}, "accounts"),
]


@pytest.mark.parametrize(
    ("kwargs", "needle"), [pytest.param(k, n, id=i) for i, k, n in CONSTRUCTOR_ROWS]
)
async def test_bad_client_option(sim: KlingSimulator, kwargs: dict[str, Any], needle: str) -> None:
    options = {"token": sim.token, "base_url": sim.base_url, **kwargs}
    with pytest.raises((ConfigurationError, RequestValidationError)) as caught:
        async with KlingClient(**options) as client:
            await client.list_accounts()
    assert needle in str(caught.value)
    assert sim.token not in str(caught.value)
    assert_nothing_sent(sim)


GOOD = KolorsElements(prompt="p", subject_images=[IMG, IMG2])
PNG_HEAD = b"\x89PNG\r\n\x1a\n"
SURR = "a\ud800"

# More calls: (id, call, field named)
MORE_CLIENT_ROWS: list[tuple[str, ClientCall, str]] = [
    ("run-timeout-text", lambda k: k.run(GOOD, timeout="600"), "timeout"),
    ("run-timeout-negative", lambda k: k.run(GOOD, timeout=-1), "timeout"),
    ("run-timeout-nan", lambda k: k.run(GOOD, timeout=float("nan")), "timeout"),
    ("wait-timeout-text", lambda k: k.wait(123, timeout="10"), "timeout"),
    ("upload-none", lambda k: k.upload_asset(None), "source"),
    ("upload-number", lambda k: k.upload_asset(5), "source"),
    ("upload-small-png", lambda k: k.upload_asset(media.png(10, 10, (0, 0, 0))), "source"),
    ("upload-bad-type", lambda k: k.upload_asset(PNG_HEAD, "text/plain"), "content_type"),
    ("upload-html-as-png", lambda k: k.upload_asset(b"<html></html>", "image/png"), "source"),
    ("extra-not-json", lambda k: k.submit(KolorsElements(**K, extra={"x": object()})), "extra"),
    ("extra-nan", lambda k: k.submit(KolorsElements(**K, extra={"x": float("nan")})), "extra"),
    ("extra-clash", lambda k: k.submit(KolorsElements(**K, extra={"prompt": "q"})), "extra"),
    ("extra-bytes", lambda k: k.submit(KolorsElements(**K, extra={"x": b"raw"})), "extra"),
    ("prompt-surrogate", lambda k: k.submit(KolorsElements(**{**K, "prompt": SURR})), "prompt"),
    ("assets-page-zero", lambda k: k.assets.uploaded(page_num=0), "page_num"),
    ("assets-delete-none", lambda k: k.assets.delete([]), "ids"),
    ("assets-file-type", lambda k: k.assets.download_url([1], ["GIF"]), "file_types"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("call", "field"), [pytest.param(c, n, id=i) for i, c, n in MORE_CLIENT_ROWS]
)
async def test_more_bad_client_calls(
    sim: KlingSimulator, kling: KlingClient, call: ClientCall, field: str
) -> None:
    with pytest.raises((RequestValidationError, ConfigurationError)) as caught:
        await call(kling)
    assert field in str(caught.value)
    assert_nothing_sent(sim)


def test_the_table_has_120_rows() -> None:
    tables = [IMAGE_ROWS, VIDEO_ROWS, CLIENT_ROWS, CLI_ROWS, JSONL_ROWS, CONFIG_ROWS]
    tables += [CONSTRUCTOR_ROWS, MORE_CLIENT_ROWS]
    ids = [row[0] + str(n) for n, table in enumerate(tables) for row in table]
    assert len(set(ids)) == len(ids) >= 120
