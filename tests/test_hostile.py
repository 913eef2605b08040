"""Hostile servers on loopback: every misbehaviour ends in a bounded, typed outcome and
nothing is written outside the output folder (no stray ``.part`` either)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from helpers import files_under, serve

from kling_async import (
    ClientConfig,
    ConfigurationError,
    KlingClient,
    PayloadError,
    RateLimitError,
    RetryPolicy,
    TransportError,
)
from kling_async.convert import structure_task
from kling_async.testing import media

#: Not helpers.TOKEN: the servers here echo it back, and the checks that it never shows
#: need a token that no answer contains by chance.
TOKEN = "sk-hostile-0123456789abcdef"
PNG = media.png(4, 4, (1, 2, 3))
# Small caps, so each test stays fast while the server would send far more.
CONFIG = ClientConfig(
    max_answer_bytes=64 << 10,
    max_download_bytes={"image": 256 << 10, "video": 256 << 10},
    retry=RetryPolicy(max_tries=3, base=0.001, max_delay=0.002, max_time=5.0),
)


def task_with(url: str, content_type: str = "image") -> Any:
    works = [{"workId": None, "contentType": content_type, "resource": {"resource": url}}]
    return structure_task(
        {"status": 99, "status_name": "succeed", "status_final": True, "task": {"id": 7},
         "works": works}
    )  # fmt: skip


async def endless(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "image/png"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    chunk = b"\x89PNG\r\n\x1a\n" + bytes(1 << 16)
    try:
        while True:  # until the client hangs up
            await resp.write(chunk)
    except (ConnectionError, RuntimeError):
        pass
    return resp


async def huge_answer(request: web.Request) -> web.StreamResponse:
    # 100 MB announced and streamed chunked: the client must stop long before the end.
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    try:
        await resp.write(b'{"history": [')
        for _ in range(100 * 16):
            await resp.write(b'"' + b"x" * (1 << 16) + b'",')
    except (ConnectionError, RuntimeError):
        pass
    return resp


async def huge_declared(request: web.Request) -> web.Response:
    return web.Response(body=b"{}" + b" " * (200 << 10), content_type="application/json")


async def html(request: web.Request) -> web.Response:
    page = "<!DOCTYPE html><html><body>login</body></html>"
    return web.Response(text=page, content_type="text/html")


async def short_png(request: web.Request) -> web.StreamResponse:
    # No Content-Length, no chunking: the body ends when the connection closes, half a PNG.
    resp = web.StreamResponse(headers={"Content-Type": "image/png", "Connection": "close"})
    resp.force_close()
    await resp.prepare(request)
    await resp.write(PNG[: len(PNG) // 2])
    return resp


async def short_declared(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "image/png"})
    resp.content_length = len(PNG) * 4
    await resp.prepare(request)
    await resp.write(PNG)
    request.transport.close()  # type: ignore[union-attr]
    return resp


async def good_png(request: web.Request) -> web.Response:
    return web.Response(body=PNG, content_type="image/png")


async def echo_token(request: web.Request) -> web.Response:
    auth = request.headers.get("Authorization", "")
    return web.json_response({"error": f"bad credentials {auth}", "code": 400}, status=400)


RETRY_AFTER_HITS: list[int] = []
BUSY_VALUE = ["-5"]


async def busy(request: web.Request) -> web.Response:
    RETRY_AFTER_HITS.append(1)
    value = BUSY_VALUE[0]
    return web.json_response(
        {"error": "busy", "code": 429}, status=429, headers={"Retry-After": value}
    )


async def video_upload(request: web.Request) -> web.Response:
    # The documented video answer: resourceUrl and coverUrl, no url.
    root = f"http://{request.host}"
    return web.json_response(
        {"status": 1, "message": "", "fileName": "v.mp4", "resourceUrl": f"{root}/u/v.mp4",
         "coverUrl": f"{root}/u/v.png"}
    )  # fmt: skip


@pytest.fixture
async def host() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/files/endless.png", endless)
    app.router.add_get("/files/page.png", html)
    app.router.add_get("/files/short.png", short_png)
    app.router.add_get("/files/declared.png", short_declared)
    app.router.add_get("/files/good.png", good_png)
    app.router.add_get("/v1/kling/tasks/", huge_answer)
    app.router.add_get("/v1/kling/tasks/{task_id}", huge_declared)
    app.router.add_get("/v1/kling/accounts", busy)
    app.router.add_get("/v1/kling/assets/uploaded/", echo_token)
    app.router.add_post("/v1/kling/assets/", video_upload)
    async with serve(app) as root:
        yield root


@pytest.fixture
async def kling(host: str) -> AsyncIterator[KlingClient]:
    async with KlingClient(
        token=TOKEN, base_url=f"{host}/v1/kling", email="h@example.com", max_jobs=1, config=CONFIG
    ) as client:
        yield client


@pytest.mark.parametrize(
    ("name", "error", "text"),
    [
        ("endless.png", PayloadError, "cap"),
        ("page.png", PayloadError, "not a PNG image"),
        ("short.png", PayloadError, "cut short"),
        ("declared.png", TransportError, "download of 7-0"),
    ],
)
async def test_bad_download_is_typed_and_leaves_nothing(
    host: str, kling: KlingClient, tmp_path: Path, name: str, error: type[Exception], text: str
) -> None:
    out = tmp_path / "out"
    with pytest.raises(error, match=text):
        await kling.download(task_with(f"{host}/files/{name}"), out, clean=False)
    assert files_under(tmp_path) == []


async def test_a_good_download_still_works(host: str, kling: KlingClient, tmp_path: Path) -> None:
    paths = await kling.download(task_with(f"{host}/files/good.png"), tmp_path, clean=False)
    assert [p.read_bytes() for p in paths] == [PNG]


async def test_a_huge_api_answer_is_stopped(kling: KlingClient) -> None:
    with pytest.raises(PayloadError, match="max_answer_bytes"):
        await kling.list_tasks()


async def test_a_large_declared_answer_is_refused_unread(kling: KlingClient) -> None:
    with pytest.raises(PayloadError, match="max_answer_bytes"):
        await kling.get_task(5)


async def test_a_server_echoing_the_token_never_shows_it(kling: KlingClient) -> None:
    with pytest.raises(Exception) as caught:  # noqa: PT011 - the type is not the point
        await kling.assets.uploaded()
    shown = f"{caught.value} {caught.value!r} {getattr(caught.value, 'body', '')}"
    assert TOKEN not in shown
    assert "***" in shown


@pytest.mark.parametrize("value", ["-5", "0", "soon", "1e9999"])
async def test_odd_retry_after_uses_the_policys_backoff(kling: KlingClient, value: str) -> None:
    waits: list[float] = []
    kling.on_retry = lambda exc, tries, wait: waits.append(wait)
    RETRY_AFTER_HITS.clear()
    BUSY_VALUE[0] = value
    with pytest.raises(RateLimitError):
        await kling.list_accounts()
    assert len(RETRY_AFTER_HITS) == CONFIG.retry.max_tries  # bounded
    assert all(0 <= w <= CONFIG.retry.max_retry_after for w in waits)
    if value != "1e9999":
        assert all(w <= CONFIG.retry.max_delay for w in waits)  # the policy's own backoff


def test_download_caps_are_validated() -> None:
    with pytest.raises(ConfigurationError, match="max_download_bytes"):
        ClientConfig(max_download_bytes={"pictures": 5})
    with pytest.raises(ConfigurationError, match="max_download_bytes"):
        ClientConfig(max_download_bytes={"image": -1})
    with pytest.raises(ConfigurationError, match="max_answer_bytes"):
        ClientConfig(max_answer_bytes=0)


async def test_a_video_upload_answer_without_url_works(host: str, kling: KlingClient) -> None:
    url = await kling.upload_asset(media.mp4(1280, 720, 2000, b"v"), "video/mp4")
    assert url == f"{host}/u/v.mp4"
