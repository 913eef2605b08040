"""Security: the token never leaks, plain http is refused, downloads stay in their folder, and
the replyUrl receiver accepts nothing without its secret."""

from __future__ import annotations

import asyncio
import logging
import pickle
import secrets
import traceback
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import web
from helpers import serve

from kling_async import (
    ClientConfig,
    ConfigurationError,
    KlingClient,
    KlingError,
    KlingWebhookReceiver,
    KolorsElements,
    PayloadError,
    PollPolicy,
    RetryPolicy,
    cli,
)
from kling_async.convert import structure_task
from kling_async.testing import FaultPlan, FaultRates, KlingSimulator, media

TOKEN = f"sk-live-{secrets.token_hex(20)}"
WRONG_TOKEN = f"sk-wrong-{secrets.token_hex(20)}"
ACCOUNT = "sec@example.com"
IMG = "https://cdn.example.com/a.png"
IMG2 = "https://cdn.example.com/b.png"
PNG = media.png(2, 2, (0, 0, 0))  # a whole PNG: downloads are checked

FAST = ClientConfig(
    retry=RetryPolicy(max_tries=3, base=0.001, max_delay=0.01, max_retry_after=0.01),
    poll=PollPolicy(interval=0.01, max_interval=0.05, max_polls_per_second=None),
    recovery_confirm_delay=0.001,
    request_timeout=2.0,
)


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


@pytest.fixture
async def sim() -> AsyncIterator[KlingSimulator]:
    async with KlingSimulator(
        token=TOKEN, accounts={ACCOUNT: 5}, job_seconds=0.02, fault_plan=every_path_plan(4)
    ) as simulator:
        yield simulator


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


# --------------------------------------------------------------------------- the token


async def test_token_is_absent_from_logs_reprs_and_exceptions(
    sim: KlingSimulator, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, aiohttp's included
    seen: list[str] = []
    errors: list[BaseException] = []

    def hook(*args: Any) -> None:
        seen.extend(repr(a) for a in args)

    async with KlingClient(
        token=TOKEN,
        base_url=sim.base_url,
        max_jobs=5,
        config=FAST,
        on_request=hook,
        on_retry=hook,
        on_submitted=hook,
    ) as kling:
        seen += [repr(kling), str(kling), repr(kling.config), repr(kling.slots)]
        prompts = ["a cat", "a dog", "this will fail", "nsfw content", "a bird", "a fish"]
        outcomes = await asyncio.gather(
            *(kling.kolors_elements(prompt=p, subject_images=[IMG, IMG2]) for p in prompts),
            kling.get_task(1),  # 404
            kling.upload_asset(PNG),
            return_exceptions=True,
        )
        errors += [o for o in outcomes if isinstance(o, BaseException)]
        assert len(errors) >= 3  # the failure, the moderation and the 404 at least
        done = next(o for o in outcomes if not isinstance(o, BaseException) and hasattr(o, "works"))
        seen.append(repr(done))
        await kling.download(done, tmp_path / "out")
    async with KlingClient(token=WRONG_TOKEN, base_url=sim.base_url, max_jobs=1) as wrong:
        with pytest.raises(KlingError) as unauthorized:
            await wrong.get_task(123)
        errors.append(unauthorized.value)
    dead = "http://127.0.0.1:9/v1/kling"  # nothing listens on the discard port
    async with KlingClient(token=TOKEN, base_url=dead, max_jobs=1, config=FAST) as nowhere:
        with pytest.raises(KlingError) as unreachable:
            await nowhere.submit(KolorsElements(prompt="p", subject_images=[IMG, IMG2]))
        errors.append(unreachable.value)

    assert all(isinstance(e, KlingError) for e in errors), errors
    everything = [caplog.text, *seen, *(t for e in errors for t in texts_of(e))]
    for token in (TOKEN, WRONG_TOKEN):
        assert not [text for text in everything if token in text]
    assert "Authorization" not in caplog.text
    assert "GET tasks/" in caplog.text  # the DEBUG request log was on


async def test_token_is_not_sent_to_file_hosts(sim: KlingSimulator, tmp_path: Path) -> None:
    sim.set_fault_plan(None)
    async with KlingClient(token=TOKEN, base_url=sim.base_url, max_jobs=5, config=FAST) as kling:
        final = await kling.kolors_elements(prompt="p", subject_images=[IMG, IMG2], image_count=2)
        await kling.download(final, tmp_path, clean=False)
        await kling.download(final, tmp_path / "clean")
    stats = sim.stats
    assert stats["file_requests"] >= 4
    assert stats["file_requests_with_auth"] == 0


# The batch journal, its output, broken and echoing answers with their locals rendered:
# tests/test_token_exposure.py, all in one run.


def test_resume_hint_drops_the_token() -> None:
    from kling_async.cli.interrupt import resume_command

    argv = ["--token", TOKEN, "batch", "j.jsonl", "--out", "o", f"--token={TOKEN}"]
    hint = resume_command(cli.build_parser().parse_args(argv))
    assert TOKEN not in hint
    assert hint == "kling-async batch j.jsonl --out o"


# --------------------------------------------------------------------------- plain http


@pytest.mark.parametrize(
    "url",
    [
        "http://api.useapi.net/v1/kling",
        "http://10.0.0.5:8080/v1/kling",
        "http://127.0.0.1.evil.example/v1/kling",
        "http://localhost.evil.example/v1/kling",
        "http://127.0.0.1@evil.example/v1/kling",
        "http://[2001:db8::1]/v1/kling",
    ],
)
def test_plain_http_off_loopback_is_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="allow_insecure") as caught:
        KlingClient(token=TOKEN, base_url=url)
    assert TOKEN not in str(caught.value)
    allowed = KlingClient(token=TOKEN, base_url=url, config=attrs.evolve(FAST, allow_insecure=True))
    assert allowed.base_url.startswith("http://")


@pytest.mark.parametrize(
    "url",
    [
        "https://api.useapi.net/v1/kling",
        "http://127.0.0.1:8787/v1/kling",
        "http://localhost:8787/v1/kling",
        "http://[::1]:8787/v1/kling",
    ],
)
def test_https_and_loopback_are_allowed(url: str) -> None:
    assert KlingClient(token=TOKEN, base_url=url).base_url == url + "/"


@pytest.mark.parametrize("url", ["ftp://api.example/v1", "file:///etc/passwd", "api.useapi.net"])
def test_other_schemes_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="base_url"):
        KlingClient(token=TOKEN, base_url=url, config=attrs.evolve(FAST, allow_insecure=True))


async def test_command_line_refuses_plain_http(
    sim: KlingSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--token", TOKEN, "--base-url", "http://api.example.com/v1/kling", "task", "123"]
    status = await asyncio.to_thread(cli.main, argv)
    err = capsys.readouterr().err
    assert status == 2
    assert err == (
        "kling-async task: error: --base-url 'http://api.example.com/v1/kling' is plain http on "
        "a non-loopback host: the token would be sent in clear text; give an https --base-url\n"
    )
    assert TOKEN not in err


# --------------------------------------------------------------------------- downloads

HOSTILE_NAMES = [
    'attachment; filename="../../../evil.png"',
    "attachment; filename*=UTF-8''..%2F..%2Fevil.png",
    'attachment; filename="/tmp/evil.png"',
    'inline; filename="..\\\\..\\\\evil.png"',
]


@pytest.fixture
async def hostile_host() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """A file host that answers every path with a PNG and a hostile Content-Disposition."""
    requests: list[dict[str, str]] = []

    async def any_file(request: web.Request) -> web.Response:
        requests.append(dict(request.headers))
        disposition = HOSTILE_NAMES[len(requests) % len(HOSTILE_NAMES)]
        return web.Response(
            body=PNG, content_type="image/png", headers={"Content-Disposition": disposition}
        )

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", any_file)
    async with serve(app) as root:
        yield root, requests


def tree(folder: Path) -> set[Path]:
    """Every file and folder under ``folder``, resolved."""
    return {p.resolve() for p in folder.rglob("*")}


def hostile_task(task_id: int, urls: list[str], cover: str) -> Any:
    works = [
        {
            "workId": None,
            "contentType": "image",
            "resource": {"resource": url},
            "cover": {"resource": cover},
        }
        for url in urls
    ]
    return structure_task(
        {"status": 99, "status_name": "succeed", "status_final": True, "task": {"id": task_id},
         "works": works}
    )  # fmt: skip


async def test_hostile_urls_and_names_cannot_leave_the_folder(
    hostile_host: tuple[str, list[dict[str, str]]], tmp_path: Path
) -> None:
    host, requests = hostile_host
    urls = [
        f"{host}/../../../../evil.png",
        f"{host}/a/..%2F..%2F..%2Fevil.sh",
        f"{host}/a/%2e%2e/%2e%2e/evil.png",
        f"{host}/x/evil.png?name=../../../evil.png",
        f"{host}/x/",
        f"{host}/x/..\\..\\evil.jpg",
        f"{host}/x/.bashrc",
    ]
    out = tmp_path / "sandbox" / "out"
    async with KlingClient(token=TOKEN, base_url="https://api.example.com/v1/kling") as kling:
        paths = await kling.download(
            hostile_task(42, urls, f"{host}/../cover.png"), out, covers=True, clean=False
        )
    assert len(paths) == 2 * len(urls)
    assert len(set(paths)) == len(paths)
    root = out.resolve()
    for path in paths:
        assert path.resolve().parent == root
        assert path.name.startswith("42-")
    everything = tree(tmp_path)
    assert everything == {
        tmp_path.joinpath("sandbox").resolve(),
        root,
        *(p.resolve() for p in paths),
    }
    assert len(requests) == len(paths)
    assert not [h for h in requests if "Authorization" in h]


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://files.example/x.png", "/etc/passwd", "../x.png"]
)
async def test_non_http_result_urls_are_refused(url: str, tmp_path: Path) -> None:
    async with KlingClient(token=TOKEN, base_url="https://api.example.com/v1/kling") as kling:
        with pytest.raises(PayloadError, match="non-http"):
            await kling.download(hostile_task(7, [url], ""), tmp_path, clean=False)
    assert tree(tmp_path) == set()


# --------------------------------------------------------------------------- replyUrl receiver


def callback(task_id: int, ref: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": 99,
        "status_name": "succeed",
        "status_final": True,
        "task": {"id": task_id},
        "works": [],
    }
    if ref is not None:
        body["replyRef"] = ref
    return body


async def test_receiver_rejects_callbacks_without_its_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver = KlingWebhookReceiver(secret="the-receivers-secret")
    prefix = await receiver.start("127.0.0.1", 0)
    good, other = receiver.reply_url_for("good"), receiver.reply_url_for("other")
    mac = good.rsplit(".", 1)[1]
    receiver.bind("good", 111)
    receiver.bind("other", 222)
    try:
        async with aiohttp.ClientSession() as http:

            async def post(url: str, body: Any) -> int:
                async with http.post(url, json=body) as resp:
                    return resp.status

            attempts = [
                (prefix, callback(111)),  # no token segment at all
                (prefix + "/", callback(111)),
                (f"{prefix}/good", callback(111)),  # the tag without its mac
                (f"{prefix}/good.{'x' * len(mac)}", callback(111)),  # wrong mac
                (f"{prefix}/good.{mac[:-1]}", callback(111)),  # almost the mac
                (f"{prefix}/good.{mac}extra", callback(111)),
                (f"{prefix}/other.{mac}", callback(222)),  # a tag with another tag's mac
                (f"{prefix}/the-receivers-secret", callback(111)),  # the secret itself
                (other, callback(111)),  # a genuine URL of another task
                (good, callback(111, "other")),  # another task's replyRef
                (good, "not a task model"),
                (good, [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]),
            ]
            statuses = [await post(url, body) for url, body in attempts]
            assert all(400 <= s < 500 for s in statuses), statuses
            assert receiver.received == 0
            assert receiver.latest(111) is None
            assert receiver.latest(222) is None

            assert await post(good, callback(111)) == 200
            latest = receiver.latest(111)
            assert latest is not None
            assert latest.succeeded
    finally:
        await receiver.stop()
        await asyncio.sleep(0)
    assert "the-receivers-secret" not in repr(receiver)
    assert "the-receivers-secret" not in caplog.text
    assert mac not in caplog.text  # a rejected or accepted URL is never logged


@pytest.mark.parametrize(
    "argv",
    [
        ["image", "--tok", TOKEN, "--prompt", "x", "a.png", "b.png"],
        [f"--tok={TOKEN}", "task", "1"],
        ["--toke", TOKEN, "-v", "tasks"],
        ["batch", "jobs.jsonl", "--out", "o", f"--to={TOKEN}"],
    ],
)
def test_a_mistyped_token_flag_is_refused_without_showing_its_value(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """No abbreviations (``--tok`` is not ``--token``), and the refusal names the flag but
    never echoes a value: the value of a mistyped ``--token`` is the token."""
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert TOKEN not in out + err
    assert err.count("\n") == 1
    assert "not shown" in err  # "unrecognized arguments: --tok (values are not shown)", or
    # "invalid choice (not shown)" when the token stood where the command goes
