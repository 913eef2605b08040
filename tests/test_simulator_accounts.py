"""The simulator over real sockets: accounts, job slots, task list, assets, downloads."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from helpers import TOKEN, call

from kling_async.testing import KlingSimulator
from kling_async.testing.media import CLEAN_MP4_PAYLOAD, CLEAN_RGB, png

KOLORS = "images/kolors-elements"
VIDEO = "videos/image2video-elements"
IMG = "https://example.com/a.jpg"
KOLORS_OK = {"subjectImage1": IMG, "subjectImage2": IMG}
VIDEO_OK = {"prompt": "p", "image_0": IMG}
A, B = "a@example.com", "b@example.com"
BUSY = "All configured accounts are currently busy executing jobs, please retry later"
NOT_FOUND = {
    "error": "Sorry, the requested resource was not found (VALID.ResourceNotFound)",
    "message": "Not Found",
}
UNSUPPORTED = (
    "Content-Type {} is not supported. Valid values: image/png,image/jpeg,video/mp4,"
    "video/quicktime,audio/wav,audio/wave,audio/mpeg,audio/mp4,audio/flac,audio/aac,audio/ogg"
)


@pytest.fixture
async def sim() -> AsyncIterator[KlingSimulator]:
    async with KlingSimulator(
        token=TOKEN, accounts={A: 2, B: 3}, job_seconds=30, duration_sigma=0
    ) as simulator:
        yield simulator


async def submit(
    http: aiohttp.ClientSession, sim: KlingSimulator, body: dict[str, Any], endpoint: str = KOLORS
) -> dict[str, Any]:
    status, answer = await call(http, sim, "POST", endpoint, json=body)
    assert status == 200, answer
    return answer  # type: ignore[no-any-return]


# --- accounts ----------------------------------------------------------------------------
async def test_email_rules_with_several_accounts(
    sim: KlingSimulator, http: aiohttp.ClientSession
) -> None:
    required = {"error": "Parameter email is required when several accounts are configured"}
    unknown = {"error": "Unable to find configuration for account c@example.com"}
    assert await call(http, sim, "POST", KOLORS, json=KOLORS_OK) == (400, required)
    body = {**KOLORS_OK, "email": "c@example.com"}
    assert await call(http, sim, "POST", KOLORS, json=body) == (400, unknown)
    answer = await submit(http, sim, {**KOLORS_OK, "email": A})
    task_id = answer["task"]["id"]
    assert sim.tasks[task_id].account == A
    assert (
        answer["task"]["userId"]
        != (await submit(http, sim, {**KOLORS_OK, "email": B}))["task"]["userId"]
    )
    assert await call(http, sim, "GET", f"tasks/{task_id}") == (400, required)
    assert (await call(http, sim, "GET", f"tasks/{task_id}?email={A}"))[0] == 200
    status, body = await call(http, sim, "GET", f"tasks/{task_id}?email={B}")
    assert (status, body["error"]) == (404, f"Task {task_id} not found")
    assert await call(http, sim, "GET", f"tasks/{task_id}?email=c@example.com") == (400, unknown)


async def test_accounts_endpoints(sim: KlingSimulator, http: aiohttp.ClientSession) -> None:
    status, accounts = await call(http, sim, "GET", "accounts")
    assert status == 200
    assert list(accounts) == [A, B]
    assert accounts[A]["maxJobs"] == 2
    assert accounts[A]["password"] == "…secured…"
    assert set(accounts[A]["session"]) == {"userId", "ExpireTime", "ExpireTimeUTC"}
    status, account = await call(http, sim, "GET", f"accounts/{B}")
    assert (status, account["email"], account["maxJobs"]) == (200, B, 3)
    assert set(account["balance"]) == {"points", "tickets", "nextApplyTime", "total"}
    assert await call(http, sim, "GET", "accounts/c@example.com") == (
        404,
        {"error": "Unable to find configuration for account c@example.com"},
    )
    sim.add_account("c@example.com", 7)
    assert (await call(http, sim, "GET", "accounts/c@example.com"))[1]["maxJobs"] == 7
    assert sim.accounts == {A: 2, B: 3, "c@example.com": 7}


async def test_no_accounts(http: aiohttp.ClientSession) -> None:
    async with KlingSimulator(token=TOKEN, accounts={}) as sim:
        assert await call(http, sim, "GET", "accounts") == (
            404,
            {"error": "No accounts configured"},
        )
        status, _ = await call(http, sim, "POST", KOLORS, json=KOLORS_OK)
        assert status == 400


async def test_max_jobs_enforced(sim: KlingSimulator, http: aiohttp.ClientSession) -> None:
    for _ in range(2):
        await submit(http, sim, {**KOLORS_OK, "email": A})
    async with http.post(f"{sim.base_url}/{KOLORS}", json={**KOLORS_OK, "email": A}) as response:
        assert response.status == 429
        assert response.headers["Retry-After"] == "30"  # until the first job ends
        assert await response.json() == {"error": BUSY, "retryAfter": 30}
    await submit(http, sim, {**KOLORS_OK, "email": B})  # other account unaffected
    stats = sim.stats
    assert stats["rate_limited"] == 1
    assert stats["posts"] == 4
    assert stats["tasks_created"] == 3
    assert stats["running"] == {A: 2, B: 1}
    assert stats["peak_running"] == {A: 2, B: 1}
    _, available = await call(http, sim, "GET", "scheduler/available")
    assert available["available"] == [
        {"email": A, "maxJobs": 2, "executing": 2, "available": 0},
        {"email": B, "maxJobs": 3, "executing": 1, "available": 2},
    ]
    assert {item["email"] for item in available["executing"]} == {A, B}
    assert len(available["executing"]) == 3
    sim.finish_all()
    assert sim.stats["running"] == {A: 0, B: 0}
    await submit(http, sim, {**KOLORS_OK, "email": A})
    assert sim.stats["peak_running"][A] == 2


async def test_request_max_jobs_lowers_the_limit(
    sim: KlingSimulator, http: aiohttp.ClientSession
) -> None:
    await submit(http, sim, {**VIDEO_OK, "email": B}, VIDEO)
    body = {**VIDEO_OK, "email": B, "maxJobs": 1}
    status, answer = await call(http, sim, "POST", VIDEO, json=body)
    assert (status, answer["error"]) == (429, BUSY)
    await submit(http, sim, {**body, "maxJobs": "2"}, VIDEO)


async def test_busy_retry_after_option(http: aiohttp.ClientSession) -> None:
    async with KlingSimulator(token=TOKEN, accounts={A: 1}, busy_retry_after=0.25) as sim:
        await submit(http, sim, KOLORS_OK)
        async with http.post(f"{sim.base_url}/{KOLORS}", json=KOLORS_OK) as response:
            assert response.status == 429
            assert response.headers["Retry-After"] == "0.25"
            assert (await response.json())["retryAfter"] == 0.25


async def test_scheduler_lists_running_jobs(
    sim: KlingSimulator, http: aiohttp.ClientSession
) -> None:
    body = {**KOLORS_OK, "email": A, "replyUrl": "http://127.0.0.1:9/x", "replyRef": "r1"}
    answer = await submit(http, sim, body)
    status, executing = await call(http, sim, "GET", "scheduler")
    assert status == 200
    [item] = executing
    assert (item["id"], item["email"], item["replyRef"]) == (answer["task"]["id"], A, "r1")
    assert set(item) == {"id", "email", "started", "elapsed", "replyUrl", "replyRef"}


# --- task list ---------------------------------------------------------------------------
async def test_task_list(sim: KlingSimulator, http: aiohttp.ClientSession) -> None:
    sim.add_account(A, 10)
    ids = []
    for i in range(3):
        ids.append(
            (await submit(http, sim, {**KOLORS_OK, "email": A, "prompt": f"p{i}"}))["task"]["id"]
        )
    ids.append((await submit(http, sim, {**VIDEO_OK, "email": A}, VIDEO))["task"]["id"])
    await submit(http, sim, {**KOLORS_OK, "email": B})

    def listed(body: dict[str, Any]) -> list[int]:
        return [item["task"]["id"] for item in body["history"]]

    status, body = await call(http, sim, "GET", f"tasks/?email={A}")
    assert status == 200
    assert listed(body) == ids[::-1]
    assert set(body["history"][0]) >= {"status", "status_name", "status_final", "task", "works"}
    _, body = await call(http, sim, "GET", f"tasks?email={A}&contentType=image&pageSize=2")
    assert listed(body) == [ids[2], ids[1]]
    _, body = await call(http, sim, "GET", f"tasks/?email={A}&contentType=video")
    assert listed(body) == [ids[3]]
    # createTime has millisecond resolution: make the instants distinct for the filters
    for n, task_id in enumerate(ids):
        sim.tasks[task_id].wall_offset_ms += n * 10
    created = [sim.tasks[i].created_ms for i in ids]
    _, body = await call(http, sim, "GET", f"tasks/?email={A}&createdAfter={created[1]}")
    assert listed(body) == [ids[3], ids[2]]
    _, body = await call(http, sim, "GET", f"tasks/?email={A}&createdBefore={created[2]}")
    assert listed(body) == [ids[1], ids[0]]
    both = f"tasks/?email={A}&createdBefore=1&createdAfter=1"
    assert await call(http, sim, "GET", both) == (
        400,
        {"error": "Use createdBefore or createdAfter, not both"},
    )
    assert await call(http, sim, "GET", f"tasks/?email={A}&contentType=gif") == (
        400,
        {"error": "contentType must be video, image or audio, got 'gif'"},
    )
    assert await call(http, sim, "GET", f"tasks/?email={A}&pageSize=0") == (
        400,
        {"error": "pageSize must be an integer from 1 to 500, got '0'"},
    )
    assert (await call(http, sim, "GET", "tasks/"))[0] == 400  # email required here
    assert sim.stats["lists"] == 9


# --- assets ------------------------------------------------------------------------------
def big_png() -> bytes:
    return png(320, 300, (1, 2, 3))


async def test_upload_image_and_serve_it(sim: KlingSimulator, http: aiohttp.ClientSession) -> None:
    data = big_png()
    headers = {"Content-Type": "image/png"}
    status, body = await call(http, sim, "POST", f"assets/?email={A}", data=data, headers=headers)
    assert status == 200
    assert set(body) == {"status", "url", "message", "fileName"}
    assert (body["status"], body["message"]) == (3, "")
    assert body["fileName"].endswith(".png")
    assert body["url"].endswith("/" + body["fileName"])
    async with aiohttp.ClientSession() as plain, plain.get(body["url"]) as response:
        assert await response.read() == data
    assert sim.stats["uploads"] == 1


async def test_upload_video(sim: KlingSimulator, http: aiohttp.ClientSession) -> None:
    headers = {"Content-Type": "video/mp4"}
    status, body = await call(http, sim, "POST", f"assets?email={B}", data=b"mp4", headers=headers)
    assert status == 200
    assert body["status"] == 1
    assert body["resourceUrl"] == body["url"]
    assert body["fileName"].endswith(".mp4")
    async with http.get(body["coverUrl"]) as response:
        assert response.status == 200
        assert response.content_type == "image/png"


@pytest.mark.parametrize("content_type", ["image/gif", "application/octet-stream", "text/plain"])
async def test_upload_unsupported_type(
    sim: KlingSimulator, http: aiohttp.ClientSession, content_type: str
) -> None:
    headers = {"Content-Type": content_type}
    assert await call(http, sim, "POST", f"assets/?email={A}", data=b"x", headers=headers) == (
        400,
        {"error": UNSUPPORTED.format(content_type)},
    )


async def test_upload_limits(sim: KlingSimulator, http: aiohttp.ClientSession) -> None:
    headers = {"Content-Type": "image/jpeg"}
    too_big = io.BytesIO(b"\xff" * (10 * 1024 * 1024 + 1))
    status, body = await call(
        http, sim, "POST", f"assets/?email={A}", data=too_big, headers=headers
    )
    assert (status, body) == (
        400,
        {"error": "File size exceeds the 10MB limit for Content-Type image/jpeg"},
    )
    status, body = await call(http, sim, "POST", f"assets/?email={A}", data=b"", headers=headers)
    assert (status, body) == (400, {"error": "Request body is empty"})
    status, body = await call(http, sim, "POST", "assets/", data=b"x", headers=headers)
    assert status == 400  # email required with several accounts
    assert sim.stats["uploads"] == 0


async def test_strict_assets(http: aiohttp.ClientSession) -> None:
    async with KlingSimulator(token=TOKEN, strict_assets=True, job_seconds=30) as sim:
        assert await call(http, sim, "POST", KOLORS, json=KOLORS_OK) == (404, NOT_FOUND)
        assert await call(http, sim, "POST", VIDEO, json=VIDEO_OK) == (404, NOT_FOUND)
        headers = {"Content-Type": "image/png"}
        small = png(64, 36, (0, 0, 0))
        assert await call(http, sim, "POST", "assets/", data=small, headers=headers) == (
            400,
            {"error": "Image dimensions 64x36 are below the minimum of 300px"},
        )
        assert await call(http, sim, "POST", "assets/", data=b"nope", headers=headers) == (
            400,
            {"error": "File is not a valid PNG image"},
        )
        _, uploaded = await call(http, sim, "POST", "assets/", data=big_png(), headers=headers)
        answer = await submit(http, sim, {**VIDEO_OK, "image_0": uploaded["url"]}, VIDEO)
        sim.finish_all()
        _, done = await call(http, sim, "GET", f"tasks/{answer['task']['id']}")
        cover = done["works"][0]["cover"]["resource"]  # a result file is a known asset too
        await submit(http, sim, {"subjectImage1": uploaded["url"], "sceneImage": cover})
        assert sim.stats["tasks_created"] == 2


# --- downloads ---------------------------------------------------------------------------
async def finished_works(
    http: aiohttp.ClientSession, sim: KlingSimulator, body: dict[str, Any], endpoint: str = KOLORS
) -> list[dict[str, Any]]:
    answer = await submit(http, sim, body, endpoint)
    sim.finish_all()
    _, done = await call(http, sim, "GET", f"tasks/{answer['task']['id']}?email={body['email']}")
    return done["works"]  # type: ignore[no-any-return]


def first_pixel(data: bytes) -> tuple[int, int, int]:
    idat = data.index(b"IDAT")
    (length,) = struct.unpack(">I", data[idat - 4 : idat])
    raw = zlib.decompress(data[idat + 4 : idat + 4 + length])
    return raw[1], raw[2], raw[3]


async def test_download_clean_file(sim: KlingSimulator, http: aiohttp.ClientSession) -> None:
    works = await finished_works(http, sim, {**KOLORS_OK, "email": A, "imageCount": 2})
    work_id = works[1]["workId"]
    status, body = await call(
        http, sim, "GET", f"assets/download?email={A}&workIds={work_id}&fileTypes=PNG"
    )
    assert status == 200
    assert body["status"] == "success"
    async with http.get(body["cdnUrl"]) as response:
        clean = await response.read()
    async with http.get(works[1]["resource"]["resource"]) as response:
        marked = await response.read()
    assert first_pixel(clean) == CLEAN_RGB
    assert first_pixel(marked) != CLEAN_RGB
    assert sim.stats["downloads"] == 1

    [video] = await finished_works(http, sim, {**VIDEO_OK, "email": A}, VIDEO)
    query = f"email={A}&workIds={video['workId']}&fileTypes=MP4"
    _, body = await call(http, sim, "GET", f"assets/download?{query}")
    async with http.get(body["cdnUrl"]) as response:
        assert (await response.read()).endswith(CLEAN_MP4_PAYLOAD)

    ids = f"{works[0]['workId']},{works[1]['workId']}"
    _, body = await call(http, sim, "GET", f"assets/download?email={A}&workIds={ids}&fileTypes=PNG")
    assert body["cdnUrl"].endswith(".zip")
    async with http.get(body["cdnUrl"]) as response:
        archive = zipfile.ZipFile(io.BytesIO(await response.read()))
    assert sorted(archive.namelist()) == sorted(f"{w['workId']}.png" for w in works)


async def test_download_errors(sim: KlingSimulator, http: aiohttp.ClientSession) -> None:
    works = await finished_works(http, sim, {**KOLORS_OK, "email": A})
    work_id = works[0]["workId"]
    w = work_id
    cases = [
        (f"email={A}&fileTypes=PNG", 400, "workIds is required"),
        (f"workIds={w}&fileTypes=GIF", 400, "fileTypes must be MP4, MP3, WAV or PNG, got 'GIF'"),
        ("workIds=x&fileTypes=PNG", 400, "workIds must be comma-separated work ids, got 'x'"),
        ("workIds=5&fileTypes=PNG", 404, "Work 5 not found"),
        (f"email={B}&workIds={w}&fileTypes=PNG", 404, f"Work {w} not found"),
        (f"workIds={w}&fileTypes=MP4", 400, f"fileTypes MP4 not available for work {w} (PNG only)"),
    ]
    for query, status, error in cases:
        full = query if "email=" in query else f"{query}&email={A}"
        assert await call(http, sim, "GET", f"assets/download?{full}") == (
            status,
            {"error": error},
        )
    assert sim.stats["downloads"] == 0
