"""The non-generation endpoints through `KlingClient.catalog`, against the simulator."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import EMAIL

from kling_async import (
    KlingClient,
    KolorsElements,
    NotFoundError,
    RequestValidationError,
    TaskResponse,
    TransportError,
)
from kling_async.catalog import GeneratedAssets, TaskDeletion
from kling_async.testing import FaultPlan, FaultRates, KlingSimulator

URL = "https://example.com/a.jpg"
IMAGES = [URL, "https://example.com/b.jpg"]


async def test_lists_that_feed_generation_fields(client: KlingClient) -> None:
    effects = await client.catalog.effects()
    assert "hug" in [e["name"] for e in effects["effects"]]
    motions = await client.catalog.motions()
    assert [m["name"] for m in motions["motions"]] == ["Dance", "Wave", "Walk"]
    assert (await client.catalog.motions(mine=True))["motions"] == []
    voices = await client.catalog.tts_voices()
    assert "neutral" in voices["voices"][0]["emotions"]
    assert (await client.catalog.element_tags())["tags"][0]["name"] == "character"
    assert (await client.catalog.element_voices())["voices"][0]["id"] == "sp_101"


async def test_recognize_faces_answers_at_once(client: KlingClient) -> None:
    found = await client.catalog.recognize_faces(image_reference=URL)
    assert [f["faceNo"] for f in found["faces"]] == [1, 2]


async def test_elements_create_get_list_delete(client: KlingClient) -> None:
    made = await client.catalog.create_element(
        name="fox", cover_image=URL, extra_images=[IMAGES[1]], tag="animal"
    )
    assert made["name"].startswith("fox_")
    assert made["extraImages"] == [IMAGES[1]]
    assert await client.catalog.element(made["id"]) == made
    assert [e["id"] for e in (await client.catalog.elements())["elements"]] == [made["id"]]
    await client.catalog.delete_element(made["id"])
    with pytest.raises(NotFoundError, match="not found"):
        await client.catalog.element(made["id"])


async def test_avatars_create_list_delete(client: KlingClient) -> None:
    made = await client.catalog.create_avatar(image_url=URL, nickname="Ann", tts_speed=1.5)
    assert (made["nickname"], made["ttsSpeed"]) == ("Ann", 1.5)
    assert [a["avatarId"] for a in (await client.catalog.avatars())["avatars"]] == [
        made["avatarId"]
    ]
    await client.catalog.delete_avatar(made["avatarId"])
    assert (await client.catalog.avatars())["avatars"] == []
    with pytest.raises(NotFoundError):
        await client.catalog.delete_avatar(made["avatarId"])


async def test_generated_assets_and_delete_task(client: KlingClient, sim: KlingSimulator) -> None:
    done = await client.run(KolorsElements(prompt="two", subject_images=IMAGES, image_count=2))
    assets = await client.catalog.assets(content_type="image", page_size=10)
    assert isinstance(assets, GeneratedAssets)
    assert len(assets.urls) == 2
    assert assets.urls == done.urls
    assert assets.limitations[0].limit == 10000
    assert GeneratedAssets.from_dict(assets.to_dict()) == assets
    assert (await client.catalog.assets(content_type="video")).history == ()
    assert done.task_id is not None
    gone = await client.catalog.delete_task(done.task_id)
    assert gone == TaskDeletion(deleted=True, work_ids=tuple(w.work_id for w in done.works))
    with pytest.raises(NotFoundError, match=f"Task {done.task_id} not found"):
        await client.get_task(done.task_id)
    assert isinstance(TaskResponse.from_dict(done.to_dict()), TaskResponse)


@pytest.mark.parametrize(
    ("call", "kwargs", "field", "message"),
    [
        ("create_element", {"name": "", "cover_image": URL}, "name", "non-empty string"),
        ("create_element", {"name": "x" * 16, "cover_image": URL}, "name", "at most 15"),
        ("create_element", {"name": "fox", "cover_image": "fox.png"}, "cover_image", "http(s)"),
        ("create_element", {"name": "f", "cover_image": URL, "type": "GIF"}, "type", "IMAGE"),
        (
            "create_element",
            {"name": "f", "cover_image": URL, "extra_images": [URL] * 4},
            "extra_images",
            "at most 3",
        ),
        (
            "create_element",
            {"name": "f", "cover_image": URL, "extra_images": [URL], "generate_views": True},
            "generate_views",
            "not both",
        ),
        (
            "create_element",
            {"name": "f", "cover_image": URL, "description": "d" * 101},
            "description",
            "at most 100",
        ),
        ("create_avatar", {"image_url": None}, "image_url", "http(s)"),
        ("create_avatar", {"image_url": URL, "tts_speed": 3}, "tts_speed", "0.8 to 2.0"),
        ("create_avatar", {"image_url": URL, "scene": "moon"}, "scene", "one of all"),
        ("create_avatar", {"image_url": URL, "nickname": "n" * 31}, "nickname", "at most 30"),
        (
            "create_avatar",
            {"image_url": URL, "tts_emotion_key": "bored"},
            "tts_emotion_key",
            "neutral",
        ),
        ("recognize_faces", {"image_reference": "a.png"}, "image_reference", "http(s)"),
        ("element", {"element_id": "../x"}, "element_id", "must be an id"),
        ("delete_avatar", {"avatar_id": ""}, "avatar_id", "must be an id"),
        ("delete_task", {"task_id": "12"}, "task_id", "positive integer"),
        ("delete_task", {"task_id": 0}, "task_id", "positive integer"),
        ("assets", {"page_num": 0}, "page_num", "positive integer"),
        ("assets", {"content_type": "gif"}, "content_type", "video, image, audio"),
        ("assets", {"sort": "up"}, "sort", "asc, desc"),
        ("motions", {"mine": "yes"}, "mine", "True or False"),
    ],
)
async def test_bad_input_fails_before_anything_is_sent(
    client: KlingClient,
    call: str,
    kwargs: dict[str, Any],
    field: str,
    message: str,
) -> None:
    sent: list[object] = []
    client.on_request = sent.append
    with pytest.raises(RequestValidationError, match=f"^{field}") as info:
        await getattr(client.catalog, call)(**kwargs)
    assert info.value.field == field
    assert message in str(info.value)
    assert sent == []


async def test_the_account_goes_in_the_query_and_the_body(sim: KlingSimulator) -> None:
    async with KlingClient(token=sim.token, base_url=sim.base_url, email=EMAIL) as kling:
        made = await kling.catalog.create_element(name="fox", cover_image=URL)
        assert made["email"] == EMAIL
        assert (await kling.catalog.elements(email=EMAIL))["elements"] == [made]
        with pytest.raises(RequestValidationError, match="not a configured account"):
            await kling.catalog.elements(email="other@example.com")


async def test_a_create_is_not_sent_again_after_an_ambiguous_failure(
    client: KlingClient, sim: KlingSimulator
) -> None:
    await client.catalog.elements()  # the account is known before the faults start
    # Every catalog call is reset after the server has read (and acted on) the request.
    sim.set_fault_plan(FaultPlan(seed=1, rules={"accounts": FaultRates(reset_after=1.0)}))
    with pytest.raises(TransportError, match="POST elements"):
        await client.catalog.create_element(name="fox", cover_image=URL)
    sim.set_fault_plan(None)
    assert len((await client.catalog.elements())["elements"]) == 1
