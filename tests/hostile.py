"""A service on loopback that misbehaves in every way a client must survive: endless,
cut, mislabelled and oversized files and answers, an answer that echoes the token, the
documented video upload answer (``from hostile import ...``; the fixtures
``hostile_server`` and ``hostile_client`` are in conftest.py).

Every misbehaviour must end in a bounded, typed outcome with nothing written outside the
output folder (no stray ``.part`` either)."""

from __future__ import annotations

from aiohttp import web

from kling_async import ClientConfig, RetryPolicy, TaskResponse
from kling_async.convert import structure_task
from kling_async.testing.media import png

#: Not helpers.TOKEN: the servers here echo it back, and the checks that it never shows
#: need a token that no answer contains by chance.
HOSTILE_TOKEN = "sk-hostile-0123456789abcdef"
#: The whole PNG the good file serves (the bad ones are cut or endless copies of it).
HOSTILE_PNG = png(4, 4, (1, 2, 3))
#: Small caps, so each test stays fast while the server would send far more.
HOSTILE_CONFIG = ClientConfig(
    max_answer_bytes=64 << 10,
    max_download_bytes={"image": 256 << 10, "video": 256 << 10},
    retry=RetryPolicy(max_tries=3, base=0.001, max_delay=0.002, max_time=5.0),
)


def task_with(url: str, content_type: str = "image") -> TaskResponse:
    """A final task (id 7) whose one work's file is at ``url``."""
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
    await resp.write(HOSTILE_PNG[: len(HOSTILE_PNG) // 2])
    return resp


async def short_declared(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "image/png"})
    resp.content_length = len(HOSTILE_PNG) * 4
    await resp.prepare(request)
    await resp.write(HOSTILE_PNG)
    request.transport.close()  # type: ignore[union-attr]
    return resp


async def good_png(request: web.Request) -> web.Response:
    return web.Response(body=HOSTILE_PNG, content_type="image/png")


async def echo_token(request: web.Request) -> web.Response:
    auth = request.headers.get("Authorization", "")
    return web.json_response({"error": f"bad credentials {auth}", "code": 400}, status=400)


async def video_upload(request: web.Request) -> web.Response:
    # The documented video answer: resourceUrl and coverUrl, no url.
    root = f"http://{request.host}"
    return web.json_response(
        {"status": 1, "message": "", "fileName": "v.mp4", "resourceUrl": f"{root}/u/v.mp4",
         "coverUrl": f"{root}/u/v.png"}
    )  # fmt: skip


def hostile_app() -> web.Application:
    """The misbehaving service: files at ``/files/NAME`` (endless, page, short, declared,
    good ``.png``); ``GET tasks/`` streams 100 MB, ``GET tasks/ID`` declares 200 KB,
    ``GET assets/uploaded/`` echoes the Authorization header in its error, and
    ``POST assets/`` answers a video upload as documented (no ``url``)."""
    app = web.Application()
    app.router.add_get("/files/endless.png", endless)
    app.router.add_get("/files/page.png", html)
    app.router.add_get("/files/short.png", short_png)
    app.router.add_get("/files/declared.png", short_declared)
    app.router.add_get("/files/good.png", good_png)
    app.router.add_get("/v1/kling/tasks/", huge_answer)
    app.router.add_get("/v1/kling/tasks/{task_id}", huge_declared)
    app.router.add_get("/v1/kling/assets/uploaded/", echo_token)
    app.router.add_post("/v1/kling/assets/", video_upload)
    return app
