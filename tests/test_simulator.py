"""The simulator over real sockets: generation endpoints, validation, lifecycle, files."""

from __future__ import annotations

import asyncio
import struct
import time
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from helpers import TOKEN

from kling_async.testing import KlingSimulator
from kling_async.testing.media import WATERMARKED_RGB

AUTH = {"Authorization": f"Bearer {TOKEN}"}
KOLORS = "images/kolors-elements"
VIDEO = "videos/image2video-elements"
IMG = "https://example.com/a.jpg"
IMG2 = "https://example.com/b.jpg"
AT_LEAST_TWO = "At least two images must be provided"
AT_LEAST_ONE = "At least one image (image_0, image_1, image_2 or image_3) is required"
MODERATION = {
    "error": "The content you uploaded appears to violate the community guidelines. "
    "(CM_EXT.POther)",
    "message": "Service busy (CM_EXT.POther)",
}


@pytest.fixture
async def sim() -> AsyncIterator[KlingSimulator]:
    async with KlingSimulator(token=TOKEN, job_seconds=30, duration_sigma=0) as simulator:
        yield simulator


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
    await asyncio.sleep(0)


async def call(
    http: aiohttp.ClientSession,
    sim: KlingSimulator,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> tuple[int, Any]:
    async with http.request(
        method, f"{sim.base_url}/{path}", headers=AUTH if headers is None else headers, **kwargs
    ) as response:
        return response.status, await response.json(content_type=None)


async def submit(
    http: aiohttp.ClientSession, sim: KlingSimulator, endpoint: str, body: dict[str, Any]
) -> dict[str, Any]:
    status, answer = await call(http, sim, "POST", endpoint, json=body)
    assert status == 200, answer
    return answer  # type: ignore[no-any-return]


async def fetch(http: aiohttp.ClientSession, url: str) -> bytes:
    async with http.get(url) as response:
        assert response.status == 200
        return await response.read()


def png_info(data: bytes) -> tuple[int, int, tuple[int, int, int]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert zlib.crc32(data[12:29]) == struct.unpack(">I", data[29:33])[0]
    idat = data.index(b"IDAT")
    (length,) = struct.unpack(">I", data[idat - 4 : idat])
    raw = zlib.decompress(data[idat + 4 : idat + 4 + length])
    assert len(raw) == height * (1 + 3 * width)
    return width, height, (raw[1], raw[2], raw[3])


def mp4_boxes(data: bytes) -> list[bytes]:
    kinds, i = [], 0
    while i < len(data):
        size, kind = struct.unpack(">I4s", data[i : i + 8])
        assert size >= 8
        kinds.append(kind)
        i += size
    assert i == len(data)
    return kinds


# --- auth --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", KOLORS),
        ("POST", VIDEO),
        ("GET", "tasks/123456789"),
        ("GET", "tasks/"),
        ("POST", "assets/"),
        ("GET", "assets/download?workIds=1&fileTypes=PNG"),
        ("GET", "accounts"),
        ("GET", "accounts/user@example.com"),
        ("GET", "scheduler/available"),
        ("GET", "no/such/endpoint"),
    ],
)
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"X": "y"}])
async def test_unauthorized(
    sim: KlingSimulator,
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    headers: dict[str, str],
) -> None:
    status, body = await call(http, sim, method, path, headers=headers, json={})
    assert (status, body) == (401, {"error": "Unauthorized", "code": 401})


async def test_stats_endpoint_needs_the_token(
    sim: KlingSimulator, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{sim.root_url}/simulator/stats") as response:
        assert response.status == 401
    async with http.get(f"{sim.root_url}/simulator/stats", headers=AUTH) as response:
        assert response.status == 200
        assert set(await response.json()) == set(sim.stats)


# --- submissions -------------------------------------------------------------------------
async def test_kolors_submission_shape(sim: KlingSimulator, http: aiohttp.ClientSession) -> None:
    body = {
        "prompt": "a gallery",
        "subjectImage1": IMG,
        "subjectImage3": IMG2,
        "styleImage": "https://example.com/style.jpg",
        "sceneImage": "https://example.com/scene.jpg",
        "aspect_ratio": "4:3",
        "imageCount": "3",
    }
    answer = await submit(http, sim, KOLORS, body)
    task = answer["task"]
    assert task["type"] == task["taskInfo"]["type"] == "mmu_multi_img2img_aiweb"
    assert (answer["status"], answer["status_name"], answer["status_final"]) == (
        5,
        "submitted",
        False,
    )
    assert (task["status"], task["status_name"], task["status_final"]) == (5, "submitted", False)
    names = [(i["name"], i["url"]) for i in task["taskInfo"]["inputs"]]
    assert names == [
        ("subject_image_0", IMG),
        ("raw_subject_image_0", IMG),
        ("subject_image_1", IMG2),
        ("raw_subject_image_1", IMG2),
        ("scene_image", "https://example.com/scene.jpg"),
        ("style_image", "https://example.com/style.jpg"),
    ]
    for item in task["taskInfo"]["inputs"]:
        assert item["inputType"] == "URL"
        assert item["token"] is item["blobStorage"] is item["cover"] is item["fromWorkId"] is None
    arguments = {a["name"]: a["value"] for a in task["taskInfo"]["arguments"]}
    assert all(isinstance(v, str) for v in arguments.values())
    assert list(arguments) == [
        "prompt", "aspect_ratio", "imageCount", "kolors_version", "img_resolution", "style",
        "imageList", "biz",
    ]  # fmt: skip
    assert arguments["imageCount"] == "3"
    assert arguments["aspect_ratio"] == "4:3"
    assert (arguments["kolors_version"], arguments["img_resolution"]) == ("2.0", "2k")
    assert (arguments["style"], arguments["biz"]) == ("默认", "klingai")
    assert arguments["imageList"] == '[{"top":0,"left":0,"width":1,"height":1}]'.replace(
        "}]", "}" + ',{"top":0,"left":0,"width":1,"height":1}' * 3 + "]"
    )
    assert answer["works"] == []
    assert answer["message"] == ""
    assert answer["limitation"] == {
        "type": "mmu_multi_img2img_aiweb",
        "remaining": 10000,
        "limit": 10000,
    }
    assert answer["userPoints"] == {"points": [], "total": 0}
    assert answer["userTickets"] == {"ticket": []}
    assert answer["editProject"] is None
    assert task["id"] > 123456789
    assert sim.tasks[task["id"]].body == body


async def test_video_submission_multipart(sim: KlingSimulator, http: aiohttp.ClientSession) -> None:
    form = aiohttp.FormData()
    fields = {"prompt": "dance", "image_0": IMG, "image_2": IMG2, "duration": "10",
              "mode": "pro", "enable_audio": "true", "negative_prompt": "blur"}  # fmt: skip
    for key, value in fields.items():
        form.add_field(key, value)
    status, answer = await call(http, sim, "POST", VIDEO, data=form)
    assert status == 200, answer
    task = answer["task"]
    assert task["type"] == "m2v_img2video_hq"
    assert [i["name"] for i in task["taskInfo"]["inputs"]] == [
        "ref_img_0", "raw_ref_img_0", "ref_img_1", "raw_ref_img_1",
    ]  # fmt: skip
    assert [(a["name"], a["value"]) for a in task["taskInfo"]["arguments"]][:5] == [
        ("prompt", "dance"),
        ("negative_prompt", "blur"),
        ("duration", "10"),
        ("aspect_ratio", "16:9"),
        ("kling_version", "1.6"),
    ]
    assert sim.tasks[task["id"]].body["mode"] == "pro"
    # pro and 10 s make a job last 2 (video) * 1.5 (pro) * 2 (10 s) = 6 times an image job
    assert sim.tasks[task["id"]].duration == pytest.approx(30 * 6)


async def test_extra_fields_are_accepted_and_kept(
    sim: KlingSimulator, http: aiohttp.ClientSession
) -> None:
    body = {"prompt": "p", "image_0": IMG, "element_1": "x", "model_name": "kling-v3-0",
            "duration": 12}  # fmt: skip
    answer = await submit(http, sim, VIDEO, body)
    arguments = {a["name"]: a["value"] for a in answer["task"]["taskInfo"]["arguments"]}
    assert (arguments["duration"], arguments["kling_version"]) == ("12", "3.0")
    assert sim.tasks[answer["task"]["id"]].body["element_1"] == "x"


def long(n: int) -> str:
    return "x" * n


KOLORS_OK = {"subjectImage1": IMG, "subjectImage2": IMG2}
KOLORS_ERRORS = [
    ({}, AT_LEAST_TWO),
    ({"subjectImage1": IMG}, AT_LEAST_TWO),
    ({"sceneImage": IMG, "prompt": "x"}, AT_LEAST_TWO),
    ({**KOLORS_OK, "prompt": long(2501)}, "prompt must be at most 2500 characters, got 2501"),
    ({**KOLORS_OK, "prompt": 5}, "prompt must be a string"),
    (
        {**KOLORS_OK, "aspect_ratio": "5:4"},
        "aspect_ratio must be one of 1:1, 16:9, 4:3, 3:2, 2:3, 3:4, 9:16, 21:9, got '5:4'",
    ),
    ({**KOLORS_OK, "imageCount": 0}, "imageCount must be an integer from 1 to 9, got 0"),
    ({**KOLORS_OK, "imageCount": "10"}, "imageCount must be an integer from 1 to 9, got '10'"),
    ({**KOLORS_OK, "imageCount": 1.5}, "imageCount must be an integer from 1 to 9, got 1.5"),
    ({**KOLORS_OK, "imageCount": True}, "imageCount must be an integer from 1 to 9, got True"),
    ({**KOLORS_OK, "maxJobs": 51}, "maxJobs must be an integer from 1 to 50, got 51"),
    ({**KOLORS_OK, "maxJobs": "0"}, "maxJobs must be an integer from 1 to 50, got '0'"),
    (
        {"subjectImage1": IMG, "subjectImage2": "b.jpg"},
        "subjectImage2 must be an http(s) URL (upload files with POST /assets)",
    ),
    (
        {**KOLORS_OK, "replyUrl": "ftp://x"},
        "replyUrl must be an http(s) URL (upload files with POST /assets)",
    ),
    ({**KOLORS_OK, "email": 3}, "email must be a string"),
    ({**KOLORS_OK, "replyRef": {"a": 1}}, "replyRef must be a string"),
]
VIDEO_OK = {"prompt": "p", "image_0": IMG}
VIDEO_ERRORS = [
    ({"image_0": IMG}, "prompt is required"),
    ({"image_0": IMG, "prompt": ""}, "prompt is required"),
    ({"prompt": "p"}, AT_LEAST_ONE),
    ({"prompt": "p", "subjectImage1": IMG}, AT_LEAST_ONE),
    ({**VIDEO_OK, "prompt": long(2501)}, "prompt must be at most 2500 characters, got 2501"),
    (
        {**VIDEO_OK, "negative_prompt": long(2501)},
        "negative_prompt must be at most 2500 characters, got 2501",
    ),
    ({**VIDEO_OK, "duration": "7"}, "duration must be 5 or 10, got '7'"),
    ({**VIDEO_OK, "duration": 15}, "duration must be 5 or 10, got 15"),
    ({**VIDEO_OK, "aspect_ratio": "4:3"}, "aspect_ratio must be one of 16:9, 9:16, 1:1, got '4:3'"),
    ({**VIDEO_OK, "mode": "turbo"}, "mode must be one of std, pro, got 'turbo'"),
    (
        {**VIDEO_OK, "model_name": "kling-v2-1"},
        "model_name must be one of kling-v1-6, kling-v3-0, got 'kling-v2-1'",
    ),
    ({**VIDEO_OK, "enable_audio": "maybe"}, "enable_audio must be true or false, got 'maybe'"),
    (
        {**VIDEO_OK, "model_name": "kling-v3-0", "duration": 16},
        "duration must be an integer from 3 to 15, got 16",
    ),
    ({**VIDEO_OK, "maxJobs": -1}, "maxJobs must be an integer from 1 to 50, got -1"),
]


@pytest.mark.parametrize(("body", "error"), KOLORS_ERRORS)
async def test_kolors_validation(
    sim: KlingSimulator, http: aiohttp.ClientSession, body: dict[str, Any], error: str
) -> None:
    assert await call(http, sim, "POST", KOLORS, json=body) == (400, {"error": error})


@pytest.mark.parametrize(("body", "error"), VIDEO_ERRORS)
async def test_video_validation(
    sim: KlingSimulator, http: aiohttp.ClientSession, body: dict[str, Any], error: str
) -> None:
    assert await call(http, sim, "POST", VIDEO, json=body) == (400, {"error": error})


@pytest.mark.parametrize(
    ("endpoint", "fields", "error"),
    [
        (KOLORS, {"subjectImage1": IMG}, AT_LEAST_TWO),
        (
            KOLORS,
            {**KOLORS_OK, "imageCount": "x"},
            "imageCount must be an integer from 1 to 9, got 'x'",
        ),
        (VIDEO, {"prompt": "p"}, AT_LEAST_ONE),
        (VIDEO, {"image_0": IMG}, "prompt is required"),
    ],
)
async def test_multipart_validation(
    sim: KlingSimulator,
    http: aiohttp.ClientSession,
    endpoint: str,
    fields: dict[str, str],
    error: str,
) -> None:
    form = aiohttp.FormData()
    for key, value in fields.items():
        form.add_field(key, value)
    assert await call(http, sim, "POST", endpoint, data=form) == (400, {"error": error})


async def test_multipart_file_instead_of_url(
    sim: KlingSimulator, http: aiohttp.ClientSession
) -> None:
    form = aiohttp.FormData()
    form.add_field("prompt", "p")
    form.add_field("image_0", b"\x89PNG", filename="a.png", content_type="image/png")
    status, body = await call(http, sim, "POST", VIDEO, data=form)
    assert (status, body) == (
        400,
        {"error": "image_0 must be an http(s) URL (upload files with POST /assets)"},
    )


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"{not json", "Request body is not valid JSON"),
        (b"[1]", "Request body must be a JSON object"),
    ],
)
async def test_bad_json(
    sim: KlingSimulator, http: aiohttp.ClientSession, data: bytes, error: str
) -> None:
    headers = {**AUTH, "Content-Type": "application/json"}
    assert await call(http, sim, "POST", KOLORS, data=data, headers=headers) == (
        400,
        {"error": error},
    )


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        (KOLORS, {**KOLORS_OK, "imageCount": 9, "maxJobs": 50, "aspect_ratio": "21:9"}),
        (KOLORS, {**KOLORS_OK, "imageCount": 2.0, "prompt": long(2500)}),
        (VIDEO, {**VIDEO_OK, "duration": 10, "aspect_ratio": "9:16", "enable_audio": True}),
        (VIDEO, {**VIDEO_OK, "duration": "5", "model_name": "kling-v1-6", "mode": "std"}),
        (VIDEO, {**VIDEO_OK, "image_0": None, "image_3": IMG, "negative_prompt": None}),
    ],
)
async def test_valid_edge_bodies(
    sim: KlingSimulator, http: aiohttp.ClientSession, endpoint: str, body: dict[str, Any]
) -> None:
    await submit(http, sim, endpoint, body)


async def test_moderation_creates_nothing(sim: KlingSimulator, http: aiohttp.ClientSession) -> None:
    body = {**VIDEO_OK, "prompt": "an NSFW scene"}
    assert await call(http, sim, "POST", VIDEO, json=body) == (500, MODERATION)
    stats = sim.stats
    assert (stats["posts"], stats["tasks_created"], sim.tasks) == (1, 0, {})


# --- lifecycle ---------------------------------------------------------------------------
async def test_kolors_lifecycle_and_files(sim: KlingSimulator, http: aiohttp.ClientSession) -> None:
    answer = await submit(http, sim, KOLORS, {**KOLORS_OK, "imageCount": 3, "aspect_ratio": "4:3"})
    task_id = answer["task"]["id"]
    status, polled = await call(http, sim, "GET", f"tasks/{task_id}")
    assert status == 200
    assert (polled["status"], polled["status_name"], polled["status_final"]) == (
        5,
        "submitted",
        False,
    )
    assert 0 < polled["queuingEtaTime"] <= polled["originQueuingEtaTime"] == 3000
    assert 0 < polled["etaTime"] <= polled["originEtaTime"] == 30000
    assert polled["works"] == []
    assert polled["task"]["taskInfo"] == answer["task"]["taskInfo"]

    sim.tasks[task_id].started_at = time.monotonic()  # skip the queue
    _, polled = await call(http, sim, "GET", f"tasks/{task_id}")
    assert (polled["status"], polled["status_name"], polled["queuingEtaTime"]) == (
        10,
        "processing",
        0,
    )

    sim.finish_all()
    assert sim.tasks[task_id].status_name == "succeed"
    _, done = await call(http, sim, "GET", f"tasks/{task_id}?email=user@example.com")
    assert (done["status"], done["status_name"], done["status_final"]) == (99, "succeed", True)
    assert (done["task"]["status"], done["task"]["status_final"]) == (99, True)
    assert (done["message"], done["etaTime"], done["queuingEtaTime"]) == ("success", 0, 0)
    works = done["works"]
    assert [w["workItemId"] for w in works] == [0, 1, 2]
    assert len({w["workId"] for w in works}) == 3
    for work in works:
        assert work["taskId"] == task_id
        assert (work["contentType"], work["status_name"], work["status_final"]) == (
            "image",
            "succeed",
            True,
        )
        resource = work["resource"]
        assert (resource["width"], resource["height"]) == (64, 48)
        assert resource["resource"].startswith(sim.root_url + "/files/")
        width, height, rgb = png_info(await fetch(http, resource["resource"]))
        assert (width, height, rgb) == (64, 48, WATERMARKED_RGB)
    assert sim.stats["polls_by_task"] == {task_id: 3}
    assert sim.tasks[task_id].final_ms >= sim.tasks[task_id].created_ms


async def test_video_lifecycle_and_files(sim: KlingSimulator, http: aiohttp.ClientSession) -> None:
    answer = await submit(http, sim, VIDEO, {**VIDEO_OK, "duration": 10, "aspect_ratio": "9:16"})
    sim.finish_all()
    _, done = await call(http, sim, "GET", f"tasks/{answer['task']['id']}")
    [work] = done["works"]
    assert work["contentType"] == "video"
    assert work["type"] == "m2v_img2video_hq"
    resource, cover = work["resource"], work["cover"]
    assert (resource["width"], resource["height"], resource["duration"]) == (36, 64, 10041)
    assert resource["resource"].endswith(".mp4")
    data = await fetch(http, resource["resource"])
    assert data[4:8] == b"ftyp"
    # the playable clip (moov first: faststart), then the watermarked copy's marker box
    assert mp4_boxes(data) == [b"ftyp", b"moov", b"free", b"mdat", b"free"]
    assert png_info(await fetch(http, cover["resource"]))[:2] == (36, 64)


async def test_failure_word_ends_failed(sim: KlingSimulator, http: aiohttp.ClientSession) -> None:
    answer = await submit(http, sim, KOLORS, {**KOLORS_OK, "prompt": "this will FAIL"})
    assert answer["status_name"] == "submitted"
    sim.finish(answer["task"]["id"])
    _, done = await call(http, sim, "GET", f"tasks/{answer['task']['id']}")
    assert (done["status"], done["status_name"], done["status_final"]) == (50, "failed", True)
    assert done["message"] == "Generation failed (simulated: prompt has 'fail')"
    assert done["works"] == []
    assert sim.tasks[answer["task"]["id"]].final_status_name == "failed"


async def test_unknown_and_bad_task_ids(sim: KlingSimulator, http: aiohttp.ClientSession) -> None:
    assert await call(http, sim, "GET", "tasks/42") == (
        404,
        {"error": "Task 42 not found", "message": "Not Found"},
    )
    assert await call(http, sim, "GET", "tasks/abc") == (
        400,
        {"error": "Invalid task_id parameter"},
    )
    assert sim.stats["polls"] == 2


async def test_files_are_cdn_urls(sim: KlingSimulator, http: aiohttp.ClientSession) -> None:
    answer = await submit(http, sim, KOLORS, KOLORS_OK)
    task_id = answer["task"]["id"]
    async with http.get(f"{sim.root_url}/files/{task_id}/0.png") as response:
        assert response.status == 404  # not done yet
    sim.finish_all()
    await fetch(http, f"{sim.root_url}/files/{task_id}/0.png")
    assert sim.stats["file_requests_with_auth"] == 0
    async with http.get(f"{sim.root_url}/files/{task_id}/0.png", headers=AUTH) as response:
        assert response.status == 200
    for missing in ("1.png", "0.mp4", "cover.png", "x.png"):
        async with http.get(f"{sim.root_url}/files/{task_id}/{missing}") as response:
            assert response.status == 404
    stats = sim.stats
    assert (stats["file_requests"], stats["file_requests_with_auth"]) == (7, 1)


async def test_no_eta(http: aiohttp.ClientSession) -> None:
    async with KlingSimulator(token=TOKEN, job_seconds=30, eta=False) as sim:
        answer = await submit(http, sim, KOLORS, KOLORS_OK)
        _, polled = await call(http, sim, "GET", f"tasks/{answer['task']['id']}")
    eta_keys = ("etaTime", "queuingEtaTime", "originEtaTime", "originQueuingEtaTime")
    assert [polled[k] for k in eta_keys] == [0, 0, 0, 0]
    assert polled["etaTimeOverSla"] is False


async def test_ids_are_seeded_unique_and_large(http: aiohttp.ClientSession) -> None:
    ids = []
    for _ in range(2):
        async with KlingSimulator(token=TOKEN, seed=7, accounts={"a@x.com": 50}) as sim:
            ids.append(
                [(await submit(http, sim, KOLORS, KOLORS_OK))["task"]["id"] for _ in range(3)]
            )
    assert ids[0] == ids[1]
    assert len(set(ids[0])) == 3
    assert min(ids[0]) >= 123456789


async def test_durations_are_seeded(http: aiohttp.ClientSession) -> None:
    durations = []
    for _ in range(2):
        async with KlingSimulator(token=TOKEN, seed=3, job_seconds=1.0, duration_sigma=0.5) as sim:
            for _ in range(3):
                await submit(http, sim, KOLORS, KOLORS_OK)
            durations.append([t.duration for t in sim.tasks.values()])
    assert durations[0] == durations[1]
    assert len(set(durations[0])) == 3


async def test_job_duration_callable(http: aiohttp.ClientSession) -> None:
    seen = []

    def duration(endpoint: str, body: dict[str, Any], rng: object) -> float:
        seen.append((endpoint, body["prompt"]))
        return 0.0

    async with KlingSimulator(token=TOKEN, job_duration=duration) as sim:
        answer = await submit(http, sim, VIDEO, VIDEO_OK)
        assert answer["status_name"] == "submitted"
        _, polled = await call(http, sim, "GET", f"tasks/{answer['task']['id']}")
    assert seen == [(VIDEO, "p")]
    assert polled["status_name"] == "succeed"


# --- package -----------------------------------------------------------------------------
def test_public_names() -> None:
    import kling_async.testing as testing

    assert testing.__all__ == sorted(testing.__all__)
    assert all(hasattr(testing, name) for name in testing.__all__)


def test_cli_arguments() -> None:
    import argparse

    from kling_async.testing import add_simulator_arguments

    parser = add_simulator_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--account", "a@x.com:7", "--account", "b@x.com", "--no-eta"])
    assert args.account == [("a@x.com", 7), ("b@x.com", 5)]
    assert (args.port, args.no_eta, args.token) == (8787, True, None)
    with pytest.raises(SystemExit):
        parser.parse_args(["--account", "a@x.com:99"])
