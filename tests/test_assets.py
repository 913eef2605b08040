"""The account's assets (`KlingClient.assets`) against the simulator: the uploaded-assets
list and delete, arguments checked before anything is sent, several works as one zip."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from helpers import IMAGE

from kling_async import KlingClient, KolorsElements, RequestValidationError
from kling_async.testing import KlingSimulator, media


async def test_uploaded_assets_are_listed_and_deleted(client: KlingClient) -> None:
    await client.upload_asset(IMAGE)
    await client.upload_asset(media.png(300, 300, (5, 5, 5)))
    listed = await client.assets.uploaded()
    assert len(listed) == 2
    assert {item["contentType"] for item in listed} == {"image"}
    only_video = await client.assets.uploaded(content_type="video")
    assert only_video == []
    await client.assets.delete([listed[0]["id"]])
    assert len(await client.assets.uploaded()) == 1


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
    sim: KlingSimulator, client: KlingClient, call: object, field: str
) -> None:
    with pytest.raises(RequestValidationError) as caught:
        await call(client)  # type: ignore[operator]
    assert caught.value.field == field
    assert field in str(caught.value)
    assert sim.stats["downloads"] == 0


async def test_several_works_download_as_one_zip(
    sim: KlingSimulator, client: KlingClient, tmp_path: Path
) -> None:
    done = await client.run(
        KolorsElements(prompt="p", subject_images=[IMAGE, IMAGE], image_count=2)
    )
    ids = [w.work_id for w in done.works if w.work_id is not None]
    assert len(ids) == 2
    archive = await client.assets.download(ids, tmp_path)
    assert archive.suffix == ".zip"
    with zipfile.ZipFile(archive) as opened:
        assert len(opened.namelist()) == 2
    one = await client.assets.download(ids[0], tmp_path, ["PNG"])
    assert one.suffix == ".png"
    assert one.read_bytes().startswith(b"\x89PNG")
