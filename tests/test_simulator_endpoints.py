"""Every generation endpoint of the simulator's wire table, over raw HTTP: minimal and full
bodies to a final task with a downloadable file of the right type, and invalid bodies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from helpers import TOKEN, call, callback_receiver, wait_until

from kling_async.testing import KlingSimulator
from kling_async.testing.faults import FaultPlan, FaultRates

IMG = "https://example.com/a.png"
VID = "https://example.com/a.mp4"
WAV = "https://example.com/a.wav"
BUSY = "All configured accounts are currently busy executing jobs, please retry later"
EXTRAS = {"maxJobs": 5, "replyRef": "ref-1"}
SHOTS = {
    "shot_1_prompt": "a fox",
    "shot_1_duration": 4,
    "shot_2_prompt": "runs",
    "shot_2_duration": 6,
}

# endpoint -> (minimal body, body with every documented option, expected content)
VALID: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    "videos/text2video": (
        {"prompt": "a fox"},
        {
            "prompt": "a fox",
            "negative_prompt": "blur",
            "aspect_ratio": "9:16",
            "cfg_scale": 0.7,
            "duration": 12,
            "mode": "pro",
            "model_name": "kling-v3-0",
            "enable_audio": "false",
            **EXTRAS,
        },
        "video",
    ),
    "videos/image2video-frames": (
        {"image": IMG},
        {
            "image": IMG,
            "image_tail": IMG,
            "element_1": "u_1",
            "element_2": "u_2",
            "element_3": "u_3",
            "prompt": "go",
            "negative_prompt": "no",
            "cfg_scale": "0.3",
            "mode": "4k",
            "model_name": "kling-v3-0",
            "enable_audio": True,
            **SHOTS,
            **EXTRAS,
        },
        "video",
    ),
    "videos/image2video-effects": (
        {"effect": "hug", "image": IMG},
        {"effect": "hug", "image": IMG, "mode": "pro", "prompt": "warm", **EXTRAS},
        "video",
    ),
    "videos/lipsync": (
        {"video": VID, "audio": WAV},
        {"video": VID, "audio": WAV, **EXTRAS},
        "video",
    ),
    "videos/motion-create": (
        {"imageUrl": IMG, "motionUrl": VID},
        {
            "imageUrl": IMG,
            "motionUrl": VID,
            "model_name": "kling-v3-0",
            "prompt": "dance",
            "keepAudio": "true",
            "motionDirection": "image_direction",
            "mode": "pro",
            "element_1": "u_1",
        },
        "video",
    ),
    "videos/motion-upload": (
        {"resourceUrl": VID, "coverUrl": IMG},
        {"resourceUrl": VID, "coverUrl": IMG},
        "video",
    ),
    "videos/add-sound": ({"video": VID}, {"video": VID, "cropVideoOriginalSound": False}, "video"),
    "videos/omni": (
        {"prompt": "a fox"},
        {
            "omni_version": "v3",
            "aspect_ratio": "auto",
            "mode": "pro",
            "enable_audio": "true",
            "image_1": IMG,
            "element_1": "u_1",
            "frame_start": IMG,
            "frame_end": IMG,
            **SHOTS,
        },
        "video",
    ),
    "avatars/video": (
        {"avatarId": "av_1", "audioUrl": WAV},
        {
            "imageUrl": IMG,
            "text": "hello",
            "speakerId": "sp_1",
            "speed": 1.5,
            "emotion": "happy",
            "prompt": "smile",
            "mode": "pro",
            **EXTRAS,
        },
        "video",
    ),
    "images/kolors": (
        {"prompt": "a fox"},
        {
            "prompt": "a fox",
            "version": "kling-v2-1",
            "reference": "subject",
            "imageReference": IMG,
            "aspect_ratio": "3:2",
            "imageCount": 2,
            "faceStrength": 70,
            "subjectStrength": 40,
            **EXTRAS,
        },
        "image",
    ),
    "images/virtual-try-on": (
        {"humanImage": IMG, "upperInput": IMG},
        {
            "humanImage": IMG,
            "upperInput": IMG,
            "lowerInput": IMG,
            "dressInput": IMG,
            "imageCount": 3,
            **EXTRAS,
        },
        "image",
    ),
    "images/omni": (
        {"prompt": "a fox"},
        {
            "prompt": "@image_1 at sea",
            "omni_version": "v3",
            "resolution": "4k",
            "aspect_ratio": "auto",
            "imageCount": 2,
            "story_mode": True,
            "image_1": IMG,
            "element_1": "u_1",
        },
        "image",
    ),
    "tts/create": (
        {"speakerId": "sp_1", "text": "hello"},
        {"speakerId": "sp_1", "text": "hello", "speed": 1.2, "emotion": "sad"},
        "audio",
    ),
}

MAGIC = {"video": b"ftyp", "image": b"\x89PNG", "audio": b"RIFF"}
FILE_TYPES = {"video": "MP4", "image": "PNG", "audio": "WAV"}


@pytest.fixture
async def sim() -> AsyncIterator[KlingSimulator]:
    async with KlingSimulator(token=TOKEN, job_seconds=30, duration_sigma=0) as server:
        yield server


async def _final(http: aiohttp.ClientSession, sim: KlingSimulator, body: Any) -> dict[str, Any]:
    task_id = body["task"]["id"]
    sim.finish(task_id)
    status, answer = await call(http, sim, "GET", f"tasks/{task_id}")
    assert status == 200
    assert answer["status_name"] == "succeed"
    return dict(answer)


async def _check_file(
    http: aiohttp.ClientSession, sim: KlingSimulator, answer: dict[str, Any], content: str
) -> None:
    works = answer["works"]
    assert works
    assert {w["contentType"] for w in works} == {content}
    async with http.get(works[0]["resource"]["resource"]) as response:
        data = await response.read()
    magic = MAGIC[content]
    assert magic in data[:12]
    if content == "audio":
        assert data[8:12] == b"WAVE"
    query = {"workIds": str(works[0]["workId"]), "fileTypes": FILE_TYPES[content]}
    status, link = await call(http, sim, "GET", "assets/download", params=query)
    assert status == 200
    async with http.get(link["cdnUrl"]) as response:
        assert magic in (await response.read())[:12]


@pytest.mark.parametrize("full", [False, True], ids=["minimal", "full"])
@pytest.mark.parametrize("endpoint", list(VALID))
async def test_generation_endpoint_to_a_final_file(
    sim: KlingSimulator, http: aiohttp.ClientSession, endpoint: str, full: bool
) -> None:
    minimal, everything, content = VALID[endpoint]
    body = everything if full else minimal
    status, answer = await call(http, sim, "POST", endpoint, json=body)
    assert status == 200, answer
    assert answer["status_name"] == "submitted"
    await _check_file(http, sim, await _final(http, sim, answer), content)
    status, listed = await call(http, sim, "GET", "tasks", params={"contentType": content})
    assert answer["task"]["id"] in [t["task"]["id"] for t in listed["history"]]
    assert sim.stats["tasks"][-1]["endpoint"] == endpoint


async def test_form_body_is_accepted(sim: KlingSimulator, http: aiohttp.ClientSession) -> None:
    form = aiohttp.FormData({"prompt": "a fox", "duration": "10", "enable_audio": "true"})
    status, answer = await call(http, sim, "POST", "videos/text2video", data=form)
    assert status == 200, answer
    args = {a["name"]: a["value"] for a in answer["task"]["taskInfo"]["arguments"]}
    assert args["duration"] == "10"
    assert args["enable_audio"] == "true"


async def _image_task(http: aiohttp.ClientSession, sim: KlingSimulator, kind: str) -> Any:
    endpoint, body = (
        ("images/kolors", {"prompt": "x"})
        if kind == "image"
        else ("videos/text2video", {"prompt": "x"})
    )
    status, answer = await call(http, sim, "POST", endpoint, json=body)
    assert status == 200
    return await _final(http, sim, answer)


async def test_extend_and_upscale_follow_a_finished_task(
    sim: KlingSimulator, http: aiohttp.ClientSession
) -> None:
    video = await _image_task(http, sim, "video")
    image = await _image_task(http, sim, "image")
    body = {"task_id": video["task"]["id"], "prompt": "more", "negative_prompt": "no",
            "cfg_scale": 0.2, "enable_audio": True, **EXTRAS}  # fmt: skip
    status, answer = await call(http, sim, "POST", "videos/extend", json=body)
    assert status == 200, answer
    await _check_file(http, sim, await _final(http, sim, answer), "video")
    body = {"task_id": image["task"]["id"], "workId": image["works"][0]["workId"], "maxJobs": 10}
    status, answer = await call(http, sim, "POST", "images/upscale", json=body)
    assert status == 200, answer
    await _check_file(http, sim, await _final(http, sim, answer), "image")
    bad = [
        ("videos/extend", {"task_id": image["task"]["id"]}, "must be a succeeded video task"),
        ("images/upscale", {"task_id": video["task"]["id"], "workId": 1}, "succeeded image task"),
        ("images/upscale", {"task_id": image["task"]["id"], "workId": 7}, "workId 7 is not a work"),
        ("images/upscale", {"task_id": image["task"]["id"], "workId": 1, "maxJobs": 11}, "maxJobs"),
    ]
    for endpoint, body, text in bad:
        status, answer = await call(http, sim, "POST", endpoint, json=body)
        assert status == 400, (endpoint, body)
        assert text in answer["error"]
    status, answer = await call(http, sim, "POST", "videos/extend", json={"task_id": 999})
    assert status == 404


async def test_recognize_faces_answers_at_once(
    sim: KlingSimulator, http: aiohttp.ClientSession
) -> None:
    status, answer = await call(
        http, sim, "POST", "images/recognize-faces", json={"imageReference": IMG}
    )
    assert status == 200
    assert [f["faceNo"] for f in answer["faces"]] == [1, 2]
    status, answer = await call(http, sim, "POST", "images/recognize-faces", json={})
    assert (status, answer["error"]) == (400, "imageReference is required")
    assert sim.stats["tasks_created"] == 0


async def test_table_endpoints_share_slots_and_callbacks(http: aiohttp.ClientSession) -> None:
    simulator = KlingSimulator(
        token=TOKEN, accounts={"a@example.com": 1}, job_seconds=30, duration_sigma=0
    )
    async with simulator as sim, callback_receiver("/hook") as (hook, received):
        body = {"prompt": "a fox", "replyUrl": hook, "replyRef": "r1"}
        status, answer = await call(http, sim, "POST", "videos/text2video", json=body)
        assert status == 200
        status, busy = await call(http, sim, "POST", "images/kolors", json={"prompt": "x"})
        assert (status, busy["error"]) == (429, BUSY)
        assert sim.stats["rate_limited"] == 1
        sim.finish(answer["task"]["id"])
        await wait_until(lambda: received)
        assert received[0]["task"]["id"] == answer["task"]["id"]
        assert received[0]["status_name"] == "succeed"
        status, _ = await call(http, sim, "POST", "images/kolors", json={"prompt": "x"})
        assert status == 200


async def test_failure_word_fails_a_table_task(
    sim: KlingSimulator, http: aiohttp.ClientSession
) -> None:
    body = {"speakerId": "sp_1", "text": "please fail"}
    status, answer = await call(http, sim, "POST", "tts/create", json=body)
    assert status == 200
    sim.finish(answer["task"]["id"])
    status, task = await call(http, sim, "GET", f"tasks/{answer['task']['id']}")
    assert (task["status_name"], task["works"]) == ("failed", [])
    assert task["task"]["type"] == "tts_create"


async def test_submit_faults_reach_table_endpoints(
    sim: KlingSimulator, http: aiohttp.ClientSession
) -> None:
    sim.set_fault_plan(FaultPlan(rules={"submit": FaultRates(server_error=1.0)}))
    status, answer = await call(http, sim, "POST", "videos/omni", json={"prompt": "fox"})
    assert (status, answer) == (500, {"error": "Internal Server Error"})
    assert sim.stats["faults"] == {"server_error": 1}
    assert sim.stats["tasks_created"] == 0
