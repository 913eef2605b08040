"""Uploads and assets against the simulator: video answers, the documented image checks
before upload, the uploaded-assets calls, downloads of several works (zip) and the default
choice between the clean copy and ``resource.resource``."""

from __future__ import annotations

import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kling_async import KlingClient, KolorsElements, RequestValidationError, Text2Video
from kling_async.testing import KlingSimulator, media

EMAIL = "files@example.com"
BIG = media.png(320, 300, (9, 9, 9))


@pytest.fixture
async def sim() -> AsyncIterator[KlingSimulator]:
    async with KlingSimulator(accounts={EMAIL: 4}, job_seconds=0.01) as simulator:
        yield simulator


@pytest.fixture
async def kling(sim: KlingSimulator) -> AsyncIterator[KlingClient]:
    async with KlingClient(token=sim.token, base_url=sim.base_url, accounts={EMAIL: 4}) as client:
        yield client


async def test_a_video_upload_gives_the_processed_file(
    sim: KlingSimulator, kling: KlingClient
) -> None:
    url = await kling.upload_asset(media.mp4(1280, 720, 2000, b"v"), "video/mp4")
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
    sim: KlingSimulator, kling: KlingClient, data: bytes, text: str
) -> None:
    with pytest.raises(RequestValidationError, match=text) as caught:
        await kling.upload_asset(data)
    assert caught.value.field == "source"
    assert sim.stats["uploads"] == 0


async def test_a_jpeg_header_gives_its_size(kling: KlingClient, sim: KlingSimulator) -> None:
    # A baseline JPEG whose SOF0 says 200x100: refused by its dimensions, not by type.
    sof = b"\xff\xc0\x00\x11\x08" + (100).to_bytes(2, "big") + (200).to_bytes(2, "big")
    jpeg = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + sof
    with pytest.raises(RequestValidationError, match="200x100"):
        await kling.upload_asset(jpeg + bytes(20) + b"\xff\xd9")
    assert sim.stats["uploads"] == 0


async def test_uploaded_assets_are_listed_and_deleted(kling: KlingClient) -> None:
    await kling.upload_asset(BIG)
    await kling.upload_asset(media.png(300, 300, (5, 5, 5)))
    listed = await kling.assets.uploaded()
    assert len(listed) == 2
    assert {item["contentType"] for item in listed} == {"image"}
    only_video = await kling.assets.uploaded(content_type="video")
    assert only_video == []
    await kling.assets.delete([listed[0]["id"]])
    assert len(await kling.assets.uploaded()) == 1


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda k: k.assets.uploaded(page_num=0), "page_num"),
        (lambda k: k.assets.uploaded(page_size=1000), "page_size"),
        (lambda k: k.assets.uploaded(content_type="pdf"), "content_type"),
        (lambda k: k.assets.uploaded(sort="up"), "sort"),
        (lambda k: k.assets.delete([]), "ids"),
        (lambda k: k.assets.delete(list(range(1, 12))), "ids"),
        (lambda k: k.assets.delete(["x"]), "ids"),
        (lambda k: k.assets.download_url([1], ["GIF"]), "file_types"),
        (lambda k: k.assets.download_url([], ["PNG"]), "work_ids"),
    ],
)
async def test_bad_asset_calls_send_nothing(
    sim: KlingSimulator, kling: KlingClient, call: object, field: str
) -> None:
    with pytest.raises(RequestValidationError) as caught:
        await call(kling)  # type: ignore[operator]
    assert caught.value.field == field
    assert field in str(caught.value)
    assert sim.stats["downloads"] == 0


async def test_several_works_download_as_one_zip(
    sim: KlingSimulator, kling: KlingClient, tmp_path: Path
) -> None:
    done = await kling.run(KolorsElements(prompt="p", subject_images=[BIG, BIG], image_count=2))
    ids = [w.work_id for w in done.works if w.work_id is not None]
    assert len(ids) == 2
    archive = await kling.assets.download(ids, tmp_path)
    assert archive.suffix == ".zip"
    with zipfile.ZipFile(archive) as opened:
        assert len(opened.namelist()) == 2
    one = await kling.assets.download(ids[0], tmp_path, ["PNG"])
    assert one.suffix == ".png"
    assert one.read_bytes().startswith(b"\x89PNG")


async def test_images_come_from_resource_videos_from_the_clean_copy(
    sim: KlingSimulator, kling: KlingClient, tmp_path: Path
) -> None:
    image = await kling.run(KolorsElements(prompt="p", subject_images=[BIG, BIG]))
    await kling.download(image, tmp_path / "img")
    assert sim.stats["downloads"] == 0  # no GET /assets/download for an image by default
    await kling.download(image, tmp_path / "img-clean", clean=True)
    assert sim.stats["downloads"] == 1
    video = await kling.run(Text2Video(prompt="p"))
    paths = await kling.download(video, tmp_path / "vid")
    assert sim.stats["downloads"] == 2
    assert paths[0].suffix == ".mp4"
