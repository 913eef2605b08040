"""Uploads (`KlingClient.upload_asset` and local files in requests) against the simulator:
bytes, paths, content types, the documented image checks before upload, one upload per
content, a failed upload tried again, the documented video upload answer.
Downloads: tests/test_files_downloads.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from helpers import EMAIL, IMAGE, OTHER_IMAGE, TOKEN, URL1, fetch, video

from kling_async import (
    ClientConfig,
    KlingClient,
    KolorsElements,
    RequestValidationError,
    RetryPolicy,
    ServerError,
)
from kling_async.testing import FaultPlan, FaultRates, KlingSimulator, media


async def test_a_video_upload_gives_the_processed_file(
    sim: KlingSimulator, client: KlingClient
) -> None:
    url = await client.upload_asset(media.mp4(1280, 720, 2000, b"v"), "video/mp4")
    assert url.startswith(sim.root_url + "/uploads/")
    assert url.endswith(".mp4")


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (media.png(299, 400, (1, 1, 1)), "299x400 px"),
        (media.png(400, 120, (1, 1, 1)), "minimum side is 300 px"),
        (b"\x89PNG\r\n\x1a\n" + b"garbage", "not a readable PNG"),
    ],
)
async def test_images_the_service_refuses_are_refused_before_upload(
    sim: KlingSimulator, client: KlingClient, data: bytes, text: str
) -> None:
    with pytest.raises(RequestValidationError, match=text) as caught:
        await client.upload_asset(data)
    assert caught.value.field == "source"
    assert sim.stats["uploads"] == 0


async def test_a_jpeg_header_gives_its_size(client: KlingClient, sim: KlingSimulator) -> None:
    # A baseline JPEG whose SOF0 says 200x100: refused by its dimensions, not by type.
    sof = b"\xff\xc0\x00\x11\x08" + (100).to_bytes(2, "big") + (200).to_bytes(2, "big")
    jpeg = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + sof
    with pytest.raises(RequestValidationError, match="200x100"):
        await client.upload_asset(jpeg + bytes(20) + b"\xff\xd9")
    assert sim.stats["uploads"] == 0


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


async def test_a_video_upload_answer_without_url_works(
    hostile_server: str, hostile_client: KlingClient
) -> None:
    url = await hostile_client.upload_asset(media.mp4(1280, 720, 2000, b"v"), "video/mp4")
    assert url == f"{hostile_server}/u/v.mp4"
