"""KlingClient against the simulator over real sockets: every method, errors, files, hygiene."""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import web
from helpers import EMAIL, TOKEN, files_under, serve, wait_until
from yarl import URL

from kling_async import (
    Account,
    APIError,
    AuthenticationError,
    BadRequestError,
    ClientConfig,
    ConfigurationError,
    Image2VideoElements,
    KlingClient,
    KlingError,
    KolorsElements,
    ModerationError,
    NotFoundError,
    RateLimitError,
    RequestInfo,
    RequestValidationError,
    RetryPolicy,
    ServerError,
    TaskResponse,
)
from kling_async.testing import FaultPlan, FaultRates, KlingSimulator
from kling_async.testing.media import png

URL1 = "https://example.com/a.png"
URL2 = "https://example.com/b.png"
RESOURCE_NOT_FOUND = "Sorry, the requested resource was not found (VALID.ResourceNotFound)"
IMAGE = png(320, 320, (10, 20, 30))
OTHER_IMAGE = png(320, 320, (40, 50, 60))


def kolors(prompt: str = "a cat in a gallery", **fields: Any) -> KolorsElements:
    fields.setdefault("subject_images", [URL1, URL2])
    return KolorsElements(prompt=prompt, **fields)


def video(prompt: str = "they dance", **fields: Any) -> Image2VideoElements:
    fields.setdefault("images", [URL1])
    return Image2VideoElements(prompt=prompt, **fields)


async def fetch(url: str) -> bytes:
    """What the simulator serves at ``url``, fetched with a plain session."""
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200
        data = await resp.read()
    await asyncio.sleep(0)
    return data


# -- lifecycle and configuration -------------------------------------------------------------


async def test_aclose_is_idempotent_and_closes_the_session(sim: KlingSimulator) -> None:
    kling = KlingClient(token=TOKEN, base_url=sim.base_url)
    async with kling:
        await kling.get_account(EMAIL)
        session = kling.session
        assert session is not None
    assert session.closed
    await kling.aclose()
    await kling.aclose()
    with pytest.raises(ConfigurationError, match="closed"):
        await kling.get_task(1)


async def test_client_used_without_async_with(sim: KlingSimulator) -> None:
    kling = KlingClient(token=TOKEN, base_url=sim.base_url)
    try:
        assert (await kling.get_account(EMAIL)).max_jobs == 3
    finally:
        await kling.aclose()


def drop(holder: list[Any]) -> None:
    """Drop the last reference to what ``holder`` holds and collect it."""
    holder.clear()
    gc.collect()


async def test_dropped_unclosed_client_warns(sim: KlingSimulator) -> None:
    kling = KlingClient(token=TOKEN, base_url=sim.base_url)
    await kling.get_account(EMAIL)
    session = kling.session
    assert session is not None
    holder = [kling]
    del kling
    with pytest.warns(ResourceWarning, match="unclosed"):
        drop(holder)
    await session.close()
    await asyncio.sleep(0)


async def test_closed_client_does_not_warn(sim: KlingSimulator) -> None:
    async with KlingClient(token=TOKEN, base_url=sim.base_url) as kling:
        await kling.get_account(EMAIL)
    del kling
    gc.collect()  # filterwarnings=error turns any ResourceWarning into a failure


async def test_a_users_session_is_used_and_not_closed(sim: KlingSimulator) -> None:
    seen: list[str] = []

    async def on_start(_: Any, __: Any, params: aiohttp.TraceRequestStartParams) -> None:
        seen.append(params.url.path)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        async with KlingClient(token=TOKEN, base_url=sim.base_url, session=session) as kling:
            await kling.get_account(EMAIL)
        await kling.aclose()
        assert not session.closed
        assert seen == [f"/v1/kling/accounts/{EMAIL}"]
    await asyncio.sleep(0)


async def test_missing_token_is_a_clear_error_at_first_request(
    sim: KlingSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("USEAPI_TOKEN", raising=False)
    async with KlingClient(base_url=sim.base_url) as kling:  # constructing is fine
        with pytest.raises(ConfigurationError, match="USEAPI_TOKEN"):
            await kling.get_task(123)
    assert sim.stats["polls"] == 0


async def test_token_from_the_environment(
    sim: KlingSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USEAPI_TOKEN", TOKEN)
    async with KlingClient(base_url=sim.base_url) as kling:
        assert (await kling.get_account(EMAIL)).email == EMAIL


@pytest.mark.parametrize(
    "url",
    ["http://api.example.com/v1/kling", "http://10.0.0.1:8080/v1/kling", "ftp://x/v1", "nope"],
)
def test_insecure_or_bad_base_url_refused(url: str) -> None:
    with pytest.raises(ConfigurationError):
        KlingClient(token=TOKEN, base_url=url)


def test_insecure_base_url_allowed_when_asked() -> None:
    config = ClientConfig(allow_insecure=True)
    kling = KlingClient(token=TOKEN, base_url="http://api.example.com/v1/kling", config=config)
    assert kling.base_url == "http://api.example.com/v1/kling/"
    for url in ("http://127.0.0.1:1/v1/kling", "http://localhost/v1", "https://a.example/v1"):
        assert KlingClient(token=TOKEN, base_url=url).base_url.endswith("/")


# -- submit, tasks, accounts -------------------------------------------------------------------


async def test_submit_kolors(client: KlingClient, sim: KlingSimulator) -> None:
    resp = await client.submit(kolors(aspect_ratio="1:1", image_count=2))
    assert isinstance(resp, TaskResponse)
    assert resp.status_name == "submitted"
    assert not resp.is_final
    task = sim.tasks[resp.task_id or 0]
    assert task.endpoint == "images/kolors-elements"
    assert task.body["subjectImage1"] == URL1
    assert task.body["subjectImage2"] == URL2
    assert task.body["imageCount"] == 2
    assert task.body["aspect_ratio"] == "1:1"
    assert sim.stats["posts"] == 1


async def test_submit_video(client: KlingClient, sim: KlingSimulator) -> None:
    resp = await client.submit(video(duration=10, mode="pro", images=[URL1, URL2]))
    task = sim.tasks[resp.task_id or 0]
    assert task.endpoint == "videos/image2video-elements"
    assert task.body["image_0"] == URL1
    assert task.body["image_1"] == URL2
    assert task.body["mode"] == "pro"
    assert resp.task is not None
    assert resp.task.type == "m2v_img2video_hq"


async def test_submit_rejects_a_non_request(client: KlingClient) -> None:
    with pytest.raises(TypeError):
        await client.submit({"prompt": "x"})  # type: ignore[arg-type]


async def test_get_task_and_list_tasks(client: KlingClient, sim: KlingSimulator) -> None:
    first = await client.submit(kolors("first"))
    second = await client.submit(video("second"))
    task_id = first.task_id or 0
    polled = await client.get_task(task_id)
    assert polled.task_id == task_id
    assert polled.arguments["prompt"] == "first"
    sim.finish_all()
    done = await client.get_task(task_id)
    assert done.succeeded
    assert len(done.works) == 1
    listed = await client.list_tasks()
    assert [t.task_id for t in listed] == [second.task_id, first.task_id]  # newest first
    only_video = await client.list_tasks(content_type="video", page_size=5)
    assert [t.task_id for t in only_video] == [second.task_id]
    assert sim.stats["lists"] == 2


@pytest.mark.parametrize("bad", [0, -1, "12", True, 1.5])
async def test_get_task_rejects_bad_ids(client: KlingClient, bad: Any) -> None:
    with pytest.raises(RequestValidationError):
        await client.get_task(bad)


async def test_accounts(client: KlingClient, sim: KlingSimulator) -> None:
    account = await client.get_account(EMAIL)
    assert isinstance(account, Account)
    assert account.email == EMAIL
    assert account.max_jobs == 3
    sim.add_account("b@example.com", 7)
    accounts = await client.list_accounts()
    assert {e: a.max_jobs for e, a in accounts.items()} == {EMAIL: 3, "b@example.com": 7}


# -- assets ------------------------------------------------------------------------------------


async def test_upload_asset_from_bytes_and_path(
    client: KlingClient, sim: KlingSimulator, tmp_path: Path
) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(IMAGE)
    from_bytes = await client.upload_asset(IMAGE)
    from_path = await client.upload_asset(path)
    from_str = await client.upload_asset(str(path))
    assert from_bytes == from_path == from_str
    assert from_bytes.startswith(f"{sim.root_url}/uploads/")
    assert sim.stats["uploads"] == 1
    assert await fetch(from_bytes) == IMAGE
    other = await client.upload_asset(OTHER_IMAGE)
    assert other != from_bytes
    assert sim.stats["uploads"] == 2


async def test_concurrent_uploads_of_one_content_are_one_upload(
    client: KlingClient, sim: KlingSimulator, tmp_path: Path
) -> None:
    path = tmp_path / "same.png"
    path.write_bytes(IMAGE)
    urls = await asyncio.gather(*(client.upload_asset(p) for p in [IMAGE, path] * 5))
    assert len(set(urls)) == 1
    assert sim.stats["uploads"] == 1


async def test_upload_content_type_by_name_or_given(
    client: KlingClient, sim: KlingSimulator, tmp_path: Path
) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(32))
    assert (await client.upload_asset(clip)).endswith(".mp4")
    assert (await client.upload_asset(b"raw audio", content_type="audio/mpeg")).endswith(".mp3")
    with pytest.raises(RequestValidationError, match="content_type"):
        await client.upload_asset(b"no idea what this is")
    with pytest.raises(RequestValidationError, match="content_type"):
        await client.upload_asset(IMAGE, content_type="image/gif")
    with pytest.raises(RequestValidationError, match="no such file"):
        await client.upload_asset(tmp_path / "missing.png")
    with pytest.raises(RequestValidationError):
        await client.upload_asset(URL1)
    assert sim.stats["uploads"] == 2


async def test_failed_upload_can_be_tried_again(tmp_path: Path) -> None:
    plan = FaultPlan(rules={"assets": FaultRates(server_error=1.0)})
    config = ClientConfig(retry=RetryPolicy(max_tries=2))
    async with (
        KlingSimulator(token=TOKEN, accounts={EMAIL: 3}, fault_plan=plan) as sim,
        KlingClient(token=TOKEN, base_url=sim.base_url, config=config) as kling,
    ):
        with pytest.raises(ServerError):
            await kling.upload_asset(IMAGE)
        sim.set_fault_plan(None)
        assert (await kling.upload_asset(IMAGE)).startswith(sim.root_url)
        assert sim.stats["uploads"] == 1


async def test_local_images_in_requests_are_uploaded_once_and_replaced(tmp_path: Path) -> None:
    path = tmp_path / "subject.png"
    path.write_bytes(IMAGE)
    async with (
        KlingSimulator(token=TOKEN, accounts={EMAIL: 3}, strict_assets=True) as sim,
        KlingClient(token=TOKEN, base_url=sim.base_url) as kling,
    ):
        # The same content three times (path, bytes, str path) plus another: two uploads.
        first = await kling.submit(
            KolorsElements(
                prompt="p", subject_images=[path, IMAGE, str(path)], scene_image=OTHER_IMAGE
            )
        )
        second = await kling.submit(video("v", images=[IMAGE, path]))
        assert sim.stats["uploads"] == 2
        body = sim.tasks[first.task_id or 0].body
        urls = [body[k] for k in ("subjectImage1", "subjectImage2", "subjectImage3", "sceneImage")]
        assert all(u.startswith(f"{sim.root_url}/uploads/") for u in urls)
        assert urls[0] == urls[1] == urls[2] != urls[3]
        assert await fetch(urls[3]) == OTHER_IMAGE
        video_body = sim.tasks[second.task_id or 0].body
        assert video_body["image_0"] == video_body["image_1"] == urls[0]


# -- downloads ---------------------------------------------------------------------------------


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


# -- errors from real answers ------------------------------------------------------------------


async def test_400_keeps_the_servers_text(client: KlingClient) -> None:
    with pytest.raises(BadRequestError) as caught:
        await client.list_tasks(content_type="poems")
    assert caught.value.status == 400
    assert "contentType must be video, image or audio" in str(caught.value)
    with pytest.raises(BadRequestError, match="imageCount must be an integer from 1 to 9"):
        await client.submit(kolors(extra={"imageCount": 12}))
    with pytest.raises(BadRequestError, match="Unable to find configuration for account"):
        await client.get_task(123, email="nobody@example.com")


async def test_401_wrong_token(sim: KlingSimulator) -> None:
    retries: list[Any] = []
    async with KlingClient(
        token="wrong-token", base_url=sim.base_url, on_retry=lambda *a: retries.append(a)
    ) as kling:
        with pytest.raises(AuthenticationError) as caught:
            await kling.get_task(1)
        with pytest.raises(AuthenticationError):
            await kling.submit(kolors())
    error = caught.value
    assert error.status == 401
    assert error.code == 401
    assert error.error == "Unauthorized"
    assert "wrong-token" not in repr(error) + str(error)
    assert retries == []
    assert sim.stats["tasks_created"] == 0


async def test_404_unknown_task(client: KlingClient) -> None:
    with pytest.raises(NotFoundError) as caught:
        await client.get_task(999)
    assert caught.value.status == 404
    assert "999" in str(caught.value)


async def test_404_resource_not_found_with_strict_assets() -> None:
    async with (
        KlingSimulator(token=TOKEN, accounts={EMAIL: 3}, strict_assets=True) as sim,
        KlingClient(token=TOKEN, base_url=sim.base_url) as kling,
    ):
        with pytest.raises(NotFoundError) as caught:
            await kling.submit(kolors())
        assert caught.value.error == RESOURCE_NOT_FOUND
        assert caught.value.message == "Not Found"
        assert sim.stats["tasks_created"] == 0
        assert sim.stats["lists"] == 0  # a 404 is not ambiguous: no recovery needed


async def test_429_busy_after_the_busy_budget() -> None:
    config = ClientConfig(retry=RetryPolicy(busy_tries=3))
    retries: list[tuple[Any, ...]] = []
    async with (
        KlingSimulator(token=TOKEN, accounts={EMAIL: 1}, job_seconds=30, busy_retry_after=4) as sim,
        KlingClient(
            token=TOKEN, base_url=sim.base_url, config=config, on_retry=lambda *a: retries.append(a)
        ) as kling,
    ):
        await kling.submit(kolors("holds the only slot"))
        with pytest.raises(RateLimitError) as caught:
            await kling.submit(kolors("no room"))
        assert caught.value.retry_after == 4
        assert "busy" in caught.value.error
        assert len(retries) == 2
        assert sim.stats["tasks_created"] == 1
        assert sim.stats["rate_limited"] == 3
        sim.finish_all()


async def test_500_moderation(client: KlingClient, sim: KlingSimulator) -> None:
    with pytest.raises(ModerationError) as caught:
        await client.submit(kolors("something nsfw"))
    assert "community guidelines" in str(caught.value)
    assert "Service busy" not in str(caught.value)
    assert caught.value.status == 500
    assert sim.stats["posts"] == 1
    assert sim.stats["lists"] == 0
    assert sim.stats["tasks_created"] == 0


async def test_5xx_becomes_server_error_after_retries(sim: KlingSimulator) -> None:
    sim.set_fault_plan(FaultPlan(rules={"tasks": FaultRates(server_error=1.0)}))
    retries: list[tuple[Any, ...]] = []
    config = ClientConfig(retry=RetryPolicy(max_tries=4))
    async with KlingClient(
        token=TOKEN, base_url=sim.base_url, config=config, on_retry=lambda *a: retries.append(a)
    ) as kling:
        with pytest.raises(ServerError) as caught:
            await kling.get_task(123)
    assert caught.value.status == 500  # 500, 502, 503, 500
    assert [r[1] for r in retries] == [1, 2, 3]
    assert sim.stats["faults"] == {"server_error": 4}


async def test_non_json_502_page(sim: KlingSimulator) -> None:
    sim.set_fault_plan(FaultPlan(rules={"tasks": FaultRates(server_error=1.0)}))
    config = ClientConfig(retry=RetryPolicy(max_tries=2))
    async with KlingClient(token=TOKEN, base_url=sim.base_url, config=config) as kling:
        with pytest.raises(ServerError) as caught:
            await kling.get_task(123)  # 500 then the 502 HTML page
    error = caught.value
    assert error.status == 502
    assert isinstance(error.body, str)
    assert "<html>" in error.body
    assert "502 Bad Gateway" in str(error)
    assert "<" not in str(error)


# -- secrets -----------------------------------------------------------------------------------


async def test_token_never_in_logs_reprs_errors_or_file_requests(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    secret = "s3cr3t-t0ken-value"
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    plan = FaultPlan(rules={"tasks": FaultRates(server_error=0.3, reset=0.2)}, seed=3)
    async with (
        KlingSimulator(token=secret, accounts={EMAIL: 3}, job_seconds=0.05, fault_plan=plan) as sim,
        KlingClient(token=secret, base_url=sim.base_url) as kling,
    ):
        assert secret not in repr(kling)
        done = await kling.kolors_elements(prompt="logged", subject_images=[URL1, IMAGE])
        await kling.download(done, tmp_path, covers=True)
        for attempt in (
            kling.get_task(1),
            kling.submit(kolors("nsfw")),
            kling.kolors_elements(prompt="fail", subject_images=[URL1, URL2]),
            kling.list_tasks(content_type="poems"),
        ):
            with pytest.raises(KlingError) as caught:
                await attempt
            errors.append(caught.value)
        sim.set_fault_plan(FaultPlan(rules={"tasks": FaultRates(server_error=1.0)}))
        with pytest.raises(ServerError) as caught_server:
            await kling.get_task(done.task_id or 0)
        errors.append(caught_server.value)
        assert sim.stats["file_requests"] >= 1
        assert sim.stats["file_requests_with_auth"] == 0
    async with KlingClient(token=secret, base_url="http://127.0.0.1:9/v1/kling") as dead:
        with pytest.raises(KlingError) as caught_dead:
            await dead.get_task(1)
        errors.append(caught_dead.value)
    assert caplog.records, "DEBUG logging was not captured"
    assert any("GET tasks/" in r.getMessage() for r in caplog.records)
    assert secret not in caplog.text
    for error in errors:
        chain: BaseException | None = error
        while chain is not None:
            assert secret not in str(chain)
            assert secret not in repr(chain)
            chain = chain.__cause__ or chain.__context__


# -- hooks -------------------------------------------------------------------------------------


async def test_hooks_sync_and_async(sim: KlingSimulator) -> None:
    requests: list[RequestInfo] = []
    retries: list[tuple[Any, ...]] = []
    submitted: list[int] = []
    per_call: list[int] = []

    async def on_retry(exc: BaseException, tries: int, wait: float) -> None:
        await asyncio.sleep(0)
        retries.append((type(exc), tries, wait))

    async def on_submitted_async(resp: TaskResponse) -> None:
        await asyncio.sleep(0)
        per_call.append(resp.task_id or 0)

    sim.set_fault_plan(FaultPlan(rules={"tasks": FaultRates(server_error=1.0)}))
    async with KlingClient(
        token=TOKEN,
        base_url=sim.base_url,
        config=ClientConfig(retry=RetryPolicy(max_tries=2)),
        on_request=requests.append,
        on_retry=on_retry,
        on_submitted=lambda resp: submitted.append(resp.task_id),
    ) as kling:
        resp = await kling.submit(kolors(), on_submitted=on_submitted_async)
        with pytest.raises(ServerError):
            await kling.get_task(resp.task_id or 0)
    assert submitted == per_call == [resp.task_id]
    assert [(r.method, r.path, r.status) for r in requests] == [
        ("GET", "accounts", 200),  # no email given: the token's only account, read once
        ("POST", "images/kolors-elements", 200),
        ("GET", f"tasks/{resp.task_id}", 500),
        ("GET", f"tasks/{resp.task_id}", 502),
    ]
    assert all(r.elapsed >= 0 and r.error is None for r in requests)
    assert [(t, n) for t, n, _ in retries] == [(ServerError, 1)]


async def test_a_failing_hook_does_not_break_the_job(
    sim: KlingSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_: Any) -> None:
        raise RuntimeError("hook bug")

    async with KlingClient(
        token=TOKEN, base_url=sim.base_url, on_request=broken, on_submitted=broken
    ) as kling:
        done = await kling.kolors_elements(prompt="fine", subject_images=[URL1, URL2])
    assert done.succeeded
    assert "hook bug" in caplog.text


async def test_api_error_pickles_and_reads_well(client: KlingClient) -> None:
    import pickle

    with pytest.raises(APIError) as caught:
        await client.get_task(4242)
    again = pickle.loads(pickle.dumps(caught.value))
    assert type(again) is NotFoundError
    assert str(again) == str(caught.value)
    assert str(caught.value).startswith("404 Not Found from GET tasks/4242: ")


async def test_api_redirects_are_not_followed(caplog: pytest.LogCaptureFixture) -> None:
    """A redirect from the API (to itself or elsewhere) never carries the token on."""
    caplog.set_level(logging.DEBUG)
    secret = "r3direct-s3cret"
    seen: list[str | None] = []

    async def redirect_loop(request: web.Request) -> web.Response:
        raise web.HTTPFound(str(request.url))

    async def redirect_away(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://localhost:{port}/elsewhere")

    async def elsewhere(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.json_response({"task": {"id": 1}})

    app = web.Application()
    app.router.add_get("/v1/kling/tasks/1", redirect_loop)
    app.router.add_get("/v1/kling/tasks/2", redirect_away)
    app.router.add_get("/elsewhere", elsewhere)
    errors: list[BaseException] = []
    async with serve(app) as root:
        port = URL(root).port
        async with KlingClient(token=secret, base_url=f"http://127.0.0.1:{port}/v1/kling") as kling:
            for task_id in (1, 2):
                with pytest.raises(APIError) as caught:
                    await kling.get_task(task_id)
                assert caught.value.status == 302
                errors.append(caught.value)
    assert seen == []
    assert secret not in caplog.text
    for error in errors:
        assert secret not in repr(error) + str(error)


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


async def test_the_tokens_only_account_is_sent_as_email() -> None:
    """useapi.net's scripts always send email (some lookups answer 400 without it)."""
    seen: list[dict[str, str]] = []

    async def accounts(request: web.Request) -> web.Response:
        return web.json_response({"only@example.com": {"email": "only@example.com", "maxJobs": 2}})

    async def task(request: web.Request) -> web.Response:
        seen.append(dict(request.query))
        return web.json_response({"status": 5, "task": {"id": 5}})

    app = web.Application()
    app.router.add_get("/v1/kling/accounts", accounts)
    app.router.add_get("/v1/kling/tasks/{task_id}", task)
    async with serve(app) as root:
        async with KlingClient(token=TOKEN, base_url=f"{root}/v1/kling", max_jobs=2) as kling:
            await kling.get_task(5)
            await kling.get_task(5)
            assert kling.email == "only@example.com"
    assert seen == [{"email": "only@example.com"}] * 2


@pytest.mark.parametrize("caller_left", [True, False])
async def test_aclose_cancelled_while_a_post_is_out_still_closes(
    caplog: pytest.LogCaptureFixture, caller_left: bool
) -> None:
    """aclose() waits for POSTs still out; cancelling that wait (a second Ctrl-C) gives them
    up with a warning each and still closes the session. A submit() still waiting for its
    answer then ends cancelled: it does not hang."""
    posted = asyncio.Event()
    never = asyncio.Event()

    async def post(request: web.Request) -> web.Response:
        posted.set()
        await never.wait()
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/v1/kling/images/kolors-elements", post)
    async with serve(app) as root:
        try:
            kling = KlingClient(token=TOKEN, base_url=f"{root}/v1/kling", email=EMAIL, max_jobs=1)
            submitting = asyncio.ensure_future(kling.submit(kolors()))
            await asyncio.wait_for(posted.wait(), 10)
            if caller_left:
                submitting.cancel()  # the caller leaves; the POST goes on
                with pytest.raises(asyncio.CancelledError):
                    await submitting
            closing = asyncio.ensure_future(kling.aclose())
            await wait_until(lambda: kling.closed)
            closing.cancel()
            with pytest.raises(asyncio.CancelledError):
                await closing
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(submitting, 10)
            assert kling.session is not None
            assert kling.session.closed
        finally:
            never.set()
    assert (
        f"a submission to {KolorsElements.endpoint} on {EMAIL} was cancelled while its POST "
        "was out (the client closed): the job may exist; look for it with find_tasks()"
    ) in caplog.text
