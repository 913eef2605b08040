"""The simulator's non-generation endpoints over raw HTTP: lists, elements, avatars,
generated and uploaded assets, deleting tasks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from helpers import TOKEN, call

from kling_async.testing import KlingSimulator
from kling_async.testing.media import png

IMG = "https://example.com/a.png"


@pytest.fixture
async def sim() -> AsyncIterator[KlingSimulator]:
    async with KlingSimulator(token=TOKEN, job_seconds=30, duration_sigma=0) as server:
        yield server


@pytest.mark.parametrize(
    ("path", "key", "item_keys"),
    [
        ("videos/effects", "effects", {"name", "title"}),
        ("videos/motions", "motions", {"id", "name", "resourceUrl", "coverUrl"}),
        ("tts/voices", "voices", {"speakerId", "name", "emotions"}),
        ("elements/tags", "tags", {"id", "name"}),
        ("elements/voices", "voices", {"id", "name"}),
    ],
)
async def test_lists_answer_their_items(
    sim: KlingSimulator, http: aiohttp.ClientSession, path: str, key: str, item_keys: set[str]
) -> None:
    status, answer = await call(http, sim, "GET", path)
    assert status == 200
    assert answer[key]
    assert all(item_keys <= set(item) for item in answer[key])


async def test_own_motions_are_empty(sim: KlingSimulator, http: aiohttp.ClientSession) -> None:
    status, answer = await call(http, sim, "GET", "videos/motions", params={"mine": "true"})
    assert (status, answer) == (200, {"motions": []})
    status, answer = await call(http, sim, "GET", "videos/motions", params={"mine": "x"})
    assert (status, answer["error"]) == (400, "mine must be true or false, got 'x'")


async def test_element_lifecycle(sim: KlingSimulator, http: aiohttp.ClientSession) -> None:
    body = {"name": "fox", "coverImage": IMG, "extraImage1": IMG, "tag": "animal"}
    status, element = await call(http, sim, "POST", "elements", json=body)
    assert status == 200, element
    assert element["name"].startswith("fox_")
    assert len(element["name"]) == len("fox_") + 5
    assert (element["type"], element["extraImages"], element["tag"]) == ("IMAGE", [IMG], "animal")
    status, listed = await call(http, sim, "GET", "elements")
    assert [e["id"] for e in listed["elements"]] == [element["id"]]
    status, got = await call(http, sim, "GET", f"elements/{element['id']}")
    assert got == element
    status, _ = await call(http, sim, "DELETE", f"elements/{element['id']}")
    assert status == 200
    status, answer = await call(http, sim, "GET", f"elements/{element['id']}")
    assert (status, answer["error"]) == (404, f"{element['id']} not found")
    assert (await call(http, sim, "GET", "elements"))[1] == {"elements": []}


@pytest.mark.parametrize(
    ("path", "body", "text"),
    [
        ("elements", {"coverImage": IMG}, "name is required"),
        ("elements", {"name": "x" * 16, "coverImage": IMG}, "name must be at most 15 characters"),
        ("elements", {"name": "fox"}, "coverImage is required"),
        ("elements", {"name": "f", "coverImage": IMG, "type": "GIF"}, "type must be one of"),
        ("elements", {"name": "f", "coverImage": IMG, "voice": "v"}, "voice requires type VIDEO"),
        (
            "elements",
            {"name": "f", "coverImage": IMG, "extraImage2": IMG, "generateViews": True},
            "Use either extraImageN or generateViews, not both",
        ),
        ("avatars", {}, "imageUrl is required"),
        ("avatars", {"imageUrl": IMG, "nickname": "n" * 31}, "nickname must be at most 30"),
        ("avatars", {"imageUrl": IMG, "scene": "war"}, "scene must be one of all, social_media"),
        ("avatars", {"imageUrl": IMG, "ttsSpeed": 0.5}, "ttsSpeed must be a number from 0.8 to 2"),
    ],
)
async def test_invalid_element_or_avatar_is_refused(
    sim: KlingSimulator, http: aiohttp.ClientSession, path: str, body: dict[str, Any], text: str
) -> None:
    status, answer = await call(http, sim, "POST", path, json=body)
    assert status == 400
    assert text in answer["error"]


async def test_avatar_lifecycle(sim: KlingSimulator, http: aiohttp.ClientSession) -> None:
    status, avatar = await call(http, sim, "POST", "avatars", json={"imageUrl": IMG})
    assert status == 200
    assert (avatar["prompt"], avatar["ttsEmotionKey"]) == ("Natural speaking", "neutral")
    status, listed = await call(http, sim, "GET", "avatars")
    assert [a["avatarId"] for a in listed["avatars"]] == [avatar["avatarId"]]
    body = {"avatarId": avatar["avatarId"], "text": "hi", "speakerId": avatar["ttsSpeaker"]}
    status, task = await call(http, sim, "POST", "avatars/video", json=body)
    assert (status, task["status_name"]) == (200, "submitted")
    assert (await call(http, sim, "DELETE", f"avatars/{avatar['avatarId']}"))[0] == 200
    assert (await call(http, sim, "DELETE", f"avatars/{avatar['avatarId']}"))[0] == 404


async def test_delete_task_then_poll_is_404(
    sim: KlingSimulator, http: aiohttp.ClientSession
) -> None:
    status, answer = await call(http, sim, "POST", "videos/text2video", json={"prompt": "fox"})
    task_id = answer["task"]["id"]
    status, _ = await call(http, sim, "DELETE", f"tasks/{task_id}")
    assert status == 200
    status, answer = await call(http, sim, "GET", f"tasks/{task_id}")
    assert (status, answer["error"]) == (404, f"Task {task_id} not found")
    status, listed = await call(http, sim, "GET", "tasks")
    assert listed["history"] == []


async def test_generated_assets_are_paged_and_filtered(
    sim: KlingSimulator, http: aiohttp.ClientSession
) -> None:
    for endpoint, body in [
        ("images/kolors", {"prompt": "a", "imageCount": 2}),
        ("tts/create", {"speakerId": "sp_101", "text": "hi"}),
        ("videos/text2video", {"prompt": "b"}),
    ]:
        assert (await call(http, sim, "POST", endpoint, json=body))[0] == 200
    sim.finish_all()
    status, answer = await call(http, sim, "GET", "assets")
    assert status == 200
    assert {lim["type"] for lim in answer["limitations"]} >= {"image", "video"}
    kinds = [[w["contentType"] for w in h["works"]] for h in answer["history"]]
    assert kinds == [["video"], ["audio"], ["image", "image"]]
    query = {"contentType": "audio", "sort": "asc", "pageSize": "1"}
    status, answer = await call(http, sim, "GET", "assets", params=query)
    assert [h["works"][0]["contentType"] for h in answer["history"]] == ["audio"]
    status, answer = await call(http, sim, "GET", "assets", params={"sort": "up"})
    assert (status, answer["error"]) == (400, "sort must be asc or desc, got 'up'")


async def test_uploaded_assets_list_and_delete(
    sim: KlingSimulator, http: aiohttp.ClientSession
) -> None:
    names = []
    for data, mime in [(png(400, 400, (1, 2, 3)), "image/png"), (b"RIFF....WAVE", "audio/wav")]:
        status, answer = await call(
            http, sim, "POST", "assets/", data=data, headers={"Content-Type": mime}
        )
        assert status == 200
        names.append(answer["fileName"])
    status, answer = await call(http, sim, "GET", "assets/uploaded/")
    listed = answer["uploadAssetsList"]
    assert [a["name"] for a in listed] == names[::-1]
    assert [a["contentType"] for a in listed] == ["audio", "image"]
    query = {"contentType": "image", "fileName": names[0][:6]}
    status, answer = await call(http, sim, "GET", "assets/uploaded/", params=query)
    assert [a["name"] for a in answer["uploadAssetsList"]] == names[:1]
    ids = ",".join(a["id"] for a in listed)
    status, answer = await call(http, sim, "DELETE", "assets/uploaded/", params={"id": ids})
    assert status == 200
    assert (await call(http, sim, "GET", "assets/uploaded/"))[1] == {"uploadAssetsList": []}
    for query, code, text in [
        ({}, 400, "id is required"),
        ({"id": "a,b"}, 400, "id must be up to 10 comma-separated numeric ids"),
        ({"id": ",".join(["1"] * 11)}, 400, "id must be up to 10"),
        ({"id": "42"}, 404, "Uploaded asset 42 not found"),
    ]:
        status, answer = await call(http, sim, "DELETE", "assets/uploaded/", params=query)
        assert status == code
        assert text in answer["error"]
