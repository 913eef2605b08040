"""Tasks that vanish (404 on poll) or expire (410), and downloads without fileTypes."""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from helpers import EMAIL, TOKEN, call

from kling_async.testing import KlingSimulator


def _sim(**options: Any) -> KlingSimulator:
    return KlingSimulator(
        token=TOKEN, accounts={EMAIL: 3}, job_seconds=30, duration_sigma=0, **options
    )


@pytest.fixture
async def sim() -> AsyncIterator[KlingSimulator]:
    async with _sim() as server:
        yield server


async def _post(http: aiohttp.ClientSession, sim: KlingSimulator, prompt: str) -> int:
    status, answer = await call(http, sim, "POST", "images/kolors", json={"prompt": prompt})
    assert status == 200, answer
    return int(answer["task"]["id"])


@pytest.mark.parametrize("cause", ["moderation", "credits"])
async def test_task_vanishes_on_moderation_or_credits(
    http: aiohttp.ClientSession, cause: str
) -> None:
    option = "vanish_on_moderation" if cause == "moderation" else "vanish_on_no_credits"
    async with _sim(**{option: True}) as sim:
        if cause == "credits":
            sim.set_out_of_credits(EMAIL)
        task_id = await _post(http, sim, "nsfw fox" if cause == "moderation" else "fox")
        sim.finish(task_id)
        status, answer = await call(http, sim, "GET", f"tasks/{task_id}")
        assert (status, answer["error"]) == (404, f"Task {task_id} not found")
        stats = sim.stats
        assert (stats["tasks_vanished"], stats["polls_gone"]) == (1, 1)
        assert stats["payment_required"] == 0


async def test_without_the_options_moderation_and_credits_refuse_the_post(
    sim: KlingSimulator, http: aiohttp.ClientSession
) -> None:
    status, _ = await call(http, sim, "POST", "images/kolors", json={"prompt": "nsfw"})
    assert status == 500
    sim.set_out_of_credits(EMAIL)
    status, _ = await call(http, sim, "POST", "images/kolors", json={"prompt": "fox"})
    assert status == 412
    assert sim.stats["tasks_vanished"] == 0


async def test_expired_and_deleted_tasks(sim: KlingSimulator, http: aiohttp.ClientSession) -> None:
    expired, deleted = await _post(http, sim, "a"), await _post(http, sim, "b")
    sim.finish_all()
    sim.expire(expired)
    sim.delete_task(deleted)
    status, answer = await call(http, sim, "GET", f"tasks/{expired}")
    assert (status, answer["error"]) == (410, f"Task {expired} has expired")
    status, _ = await call(http, sim, "GET", f"tasks/{deleted}")
    assert status == 404
    assert (sim.stats["polls_expired"], sim.stats["polls_gone"]) == (1, 1)


async def test_download_without_file_types_is_a_zip(
    sim: KlingSimulator, http: aiohttp.ClientSession
) -> None:
    status, answer = await call(http, sim, "POST", "videos/text2video", json={"prompt": "fox"})
    task_id = answer["task"]["id"]
    sim.finish(task_id)
    _, task = await call(http, sim, "GET", f"tasks/{task_id}")
    work_id = task["works"][0]["workId"]
    status, answer = await call(http, sim, "GET", "assets/download", params={"workIds": work_id})
    assert status == 200
    assert answer["cdnUrl"].endswith(".zip")
    async with http.get(answer["cdnUrl"]) as response:
        archive = zipfile.ZipFile(io.BytesIO(await response.read()))
    assert archive.namelist() == [f"{work_id}.mp4"]
    assert b"ftyp" in archive.read(f"{work_id}.mp4")[:12]


async def test_video_upload_answers_resource_and_cover(
    sim: KlingSimulator, http: aiohttp.ClientSession
) -> None:
    headers = {"Content-Type": "video/mp4"}
    status, answer = await call(
        http, sim, "POST", "assets/", data=b"\0\0\0\x18ftypisom", headers=headers
    )
    assert status == 200
    assert answer["resourceUrl"].endswith(".mp4")
    assert answer["coverUrl"].endswith("-cover.png")
