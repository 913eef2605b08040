"""Downloads of a task's results against the simulator and hostile servers: the clean copy
preferred (and when it is not), covers, names and URLs that never leave the folder, bad
files (endless, cut, mislabelled) typed, and never a partial file left behind."""

from __future__ import annotations

import asyncio
import re
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp import web
from helpers import IMAGE, TOKEN, URL1, URL2, fetch, files_under, serve
from hostile import HOSTILE_PNG, task_with

from kling_async import (
    KlingClient,
    KolorsElements,
    PayloadError,
    TaskResponse,
    Text2Video,
    TransportError,
)
from kling_async.convert import structure_task
from kling_async.testing import FaultPlan, FaultRates, KlingSimulator
from kling_async.testing.media import png


async def test_download_prefers_the_clean_copy(
    client: KlingClient, sim: KlingSimulator, tmp_path: Path
) -> None:
    done = await client.kolors_elements(
        prompt="two images", subject_images=[URL1, URL2], image_count=2, aspect_ratio="4:3"
    )
    task_id = done.task_id
    paths = await client.download(done, tmp_path / "out", clean=True)
    assert [p.name for p in paths] == [f"{task_id}-0.png", f"{task_id}-1.png"]
    for index, path in enumerate(paths):
        assert path.parent == tmp_path / "out"
        assert path.read_bytes() == await fetch(f"{sim.root_url}/files/{task_id}/{index}-clean.png")
    assert sim.stats["downloads"] == 2
    assert sim.stats["file_requests_with_auth"] == 0
    assert files_under(tmp_path) == sorted(paths)


async def test_download_watermarked_when_asked_or_when_the_clean_copy_fails(
    client: KlingClient, sim: KlingSimulator, tmp_path: Path
) -> None:
    done = await client.kolors_elements(prompt="one", subject_images=[URL1, URL2])
    watermarked = await fetch(done.urls[0])
    (plain,) = await client.download(done, tmp_path / "plain", clean=False)
    assert plain.read_bytes() == watermarked
    assert sim.stats["downloads"] == 0
    sim.set_fault_plan(FaultPlan(rules={"assets": FaultRates(server_error=1.0)}))
    (fallback,) = await client.download(done, tmp_path / "fallback", clean=True)
    assert fallback.read_bytes() == watermarked
    assert sim.stats["faults"]["server_error"] >= 1
    assert sim.stats["file_requests_with_auth"] == 0


async def test_download_video_with_cover(
    client: KlingClient, sim: KlingSimulator, tmp_path: Path
) -> None:
    done = await client.image2video_elements(prompt="a video", images=[URL1])
    task_id = done.task_id
    paths = await client.download(done, tmp_path, covers=True)
    assert [p.name for p in paths] == [f"{task_id}-0.mp4", f"{task_id}-0-cover.png"]
    assert paths[0].read_bytes() == await fetch(f"{sim.root_url}/files/{task_id}/0-clean.mp4")
    assert paths[1].read_bytes() == await fetch(done.cover_urls[0])
    assert sim.stats["file_requests_with_auth"] == 0


HOSTILE_PATHS = [
    "/../../etc/x.sh",
    "/files/..%2F..%2Fevil.exe",
    "/files/0.png;rm -rf ~",
    "/files/.bashrc",
    "/files/result.PNG/..",
    "/files/" + "a" * 300 + ".mp4",
]


@pytest.fixture
async def hostile() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A fake API whose task names hostile result URLs; records every file request."""
    seen: list[dict[str, Any]] = []

    async def task(request: web.Request) -> web.Response:
        works = [
            {
                "workId": 1000 + i,
                "contentType": "video" if path.endswith(".mp4") else "image",
                "resource": {"resource": root + path},
                "cover": {"resource": root + path + "?cover=../../../x"},
            }
            for i, path in enumerate(HOSTILE_PATHS)
        ]
        return web.json_response(
            {
                "status": 99,
                "status_name": "succeed",
                "status_final": True,
                "task": {"id": 77, "status": 99, "status_name": "succeed", "status_final": True},
                "works": works,
            }
        )

    async def download(request: web.Request) -> web.Response:
        # The work id rides along so the file served can be of the work's type.
        ids = request.query["workIds"]
        return web.json_response(
            {"cdnUrl": root + "/../../../clean/evil.sh?w=" + ids, "status": "success"}
        )

    async def accounts(request: web.Request) -> web.Response:
        return web.json_response({"h@example.com": {"email": "h@example.com", "maxJobs": 1}})

    async def anything(request: web.Request) -> web.Response:
        seen.append({"path": request.raw_path, "auth": request.headers.get("Authorization")})
        # A whole PNG (downloads are checked by type), the path in a text chunk.
        text = request.raw_path.encode()
        if request.path.endswith(".mp4") or (
            request.query.get("w") == str(1000 + len(HOSTILE_PATHS) - 1)
        ):
            free = b"free" + b"hostile bytes " + text
            return web.Response(body=MP4_HEAD + (len(free) + 4).to_bytes(4, "big") + free)
        return web.Response(body=png_with_text(text))

    app = web.Application()
    app.router.add_get("/v1/kling/tasks/{task_id}", task)
    app.router.add_get("/v1/kling/assets/download", download)
    app.router.add_get("/v1/kling/accounts", accounts)
    app.router.add_get("/{tail:.*}", anything)
    async with serve(app) as root:
        yield root, seen


MP4_HEAD = b"\x00\x00\x00\x10ftypisom\x00\x00\x02\x00"


def png_with_text(text: bytes) -> bytes:
    whole = png(2, 2, (0, 0, 0))
    chunk = b"tEXt" + b"hostile bytes " + text
    crc = zlib.crc32(chunk).to_bytes(4, "big")
    return whole[:33] + len(chunk[4:]).to_bytes(4, "big") + chunk + crc + whole[33:]


@pytest.mark.parametrize("clean", [True, False])
async def test_download_names_never_leave_the_folder(
    hostile: tuple[str, list[dict[str, Any]]], tmp_path: Path, clean: bool
) -> None:
    root, seen = hostile
    out = tmp_path / "inside" / "out"
    async with KlingClient(token=TOKEN, base_url=f"{root}/v1/kling") as kling:
        task = await kling.get_task(77)
        paths = await kling.download(task, out, covers=True, clean=clean)
    assert len(paths) == 2 * len(HOSTILE_PATHS)
    for path in paths:
        assert path.parent == out
        assert re.fullmatch(r"77-\d+(-cover)?\.(png|mp4)", path.name), path.name
        assert b"hostile bytes " in path.read_bytes()
    # Nothing was written anywhere else (no partial files either).
    assert files_under(tmp_path) == sorted(paths)
    assert seen
    assert all(request["auth"] is None for request in seen)


async def test_download_refuses_non_http_urls(client: KlingClient, tmp_path: Path) -> None:
    from kling_async import PayloadError

    hostile = TaskResponse(
        status_final=True,
        status_name="succeed",
        works=(attrs.evolve(_work("file:///etc/passwd")),),
    )
    with pytest.raises(PayloadError):
        await client.download(hostile, tmp_path, clean=False)
    assert files_under(tmp_path) == []


def _work(url: str) -> Any:
    from kling_async import Resource, Work

    return Work(resource=Resource(resource=url))


async def test_cancelled_download_leaves_no_partial_file(tmp_path: Path) -> None:
    first_chunk_sent = asyncio.Event()
    never = asyncio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_length = 1 << 20
        await resp.prepare(request)
        await resp.write(b"\x89PNG\r\n\x1a\n" + b"0" * 70_000)
        first_chunk_sent.set()
        await never.wait()  # the rest never comes
        return resp

    app = web.Application()
    app.router.add_get("/slow.png", slow)
    async with serve(app) as root:
        url = f"{root}/slow.png"
        try:
            async with KlingClient(token=TOKEN, base_url="https://api.invalid/v1/kling") as kling:
                task = TaskResponse(status_final=True, status_name="succeed", works=(_work(url),))
                job = asyncio.ensure_future(kling.download(task, tmp_path, clean=False))
                await asyncio.wait_for(first_chunk_sent.wait(), 10)

                async def partial_written() -> None:
                    # The file on disk is the only sign the client has written; bounded below.
                    while not [p for p in tmp_path.glob(".*.part") if p.stat().st_size]:  # noqa: ASYNC110, ASYNC240
                        await asyncio.sleep(0.01)

                await asyncio.wait_for(partial_written(), 10)
                job.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await job
            assert files_under(tmp_path) == []
        finally:
            never.set()  # lets the handler end, so the server can shut down


async def test_images_come_from_resource_videos_from_the_clean_copy(
    sim: KlingSimulator, client: KlingClient, tmp_path: Path
) -> None:
    image = await client.run(KolorsElements(prompt="p", subject_images=[IMAGE, IMAGE]))
    await client.download(image, tmp_path / "img")
    assert sim.stats["downloads"] == 0  # no GET /assets/download for an image by default
    await client.download(image, tmp_path / "img-clean", clean=True)
    assert sim.stats["downloads"] == 1
    video = await client.run(Text2Video(prompt="p"))
    paths = await client.download(video, tmp_path / "vid")
    assert sim.stats["downloads"] == 2
    assert paths[0].suffix == ".mp4"


#: A whole PNG (downloads are checked by type) that the file host below serves.
PNG = png(2, 2, (0, 0, 0))
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
    hostile_server: str,
    hostile_client: KlingClient,
    tmp_path: Path,
    name: str,
    error: type[Exception],
    text: str,
) -> None:
    out = tmp_path / "out"
    with pytest.raises(error, match=text):
        await hostile_client.download(task_with(f"{hostile_server}/files/{name}"), out, clean=False)
    assert files_under(tmp_path) == []


async def test_a_good_download_still_works(
    hostile_server: str, hostile_client: KlingClient, tmp_path: Path
) -> None:
    paths = await hostile_client.download(
        task_with(f"{hostile_server}/files/good.png"), tmp_path, clean=False
    )
    assert [p.read_bytes() for p in paths] == [HOSTILE_PNG]
