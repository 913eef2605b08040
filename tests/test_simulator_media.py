"""The simulator's result files over real sockets: real pictures per task, a playable video."""

from __future__ import annotations

import asyncio
import json
import shutil
from typing import Any

import aiohttp
import pytest
from helpers import TOKEN

from kling_async.testing import KlingSimulator
from kling_async.testing.media import png

IMG = "https://example.com/a.png"


async def _final_files(
    sim: KlingSimulator, http: aiohttp.ClientSession, path: str, body: dict[str, Any]
) -> list[bytes]:
    async with http.post(f"{sim.base_url}/{path}", json=body) as response:
        task_id = (await response.json())["task"]["id"]
    sim.finish_all()
    async with http.get(f"{sim.base_url}/tasks/{task_id}") as response:
        model = await response.json()
    assert model["status_name"] == "succeed"
    files = []
    for work in model["works"]:
        async with http.get(work["resource"]["resource"]) as response:
            files.append(await response.read())
    return files


async def test_result_images_differ_per_task_and_the_video_is_real_h264(tmp_path: Any) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        KlingSimulator(token=TOKEN, job_seconds=600) as sim,
        aiohttp.ClientSession(headers=headers) as http,
    ):
        kolors = {"subjectImage1": IMG, "subjectImage2": IMG}
        (first,) = await _final_files(sim, http, "images/kolors-elements", kolors)
        (second,) = await _final_files(sim, http, "images/kolors-elements", kolors)
        (clip,) = await _final_files(
            sim, http, "videos/image2video-elements", {"prompt": "p", "image_0": IMG}
        )
    assert first[:8] == second[:8] == b"\x89PNG\r\n\x1a\n"
    assert first != second  # a gallery of results shows different pictures
    assert clip[4:8] == b"ftyp"
    assert clip.index(b"moov") < clip.index(b"mdat")  # faststart: browsers start at once
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        pytest.skip("ffprobe is not installed: the H.264 stream is not decoded")
    path = tmp_path / "clip.mp4"
    path.write_bytes(clip)
    process = await asyncio.create_subprocess_exec(
        ffprobe, "-v", "error", "-show_entries", "stream=codec_name,profile,pix_fmt,nb_frames",
        "-of", "json", str(path), stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await process.communicate()
    (stream,) = json.loads(out)["streams"]
    assert (stream["codec_name"], stream["pix_fmt"]) == ("h264", "yuv420p")
    assert "Baseline" in stream["profile"]
    assert int(stream["nb_frames"]) > 0


def test_the_public_png_writer_draws_a_pattern() -> None:
    plain = png(32, 18, (10, 20, 30))
    assert png(32, 18, (10, 20, 30), 1) != plain != png(32, 18, (10, 20, 30), 2)
    assert png(32, 18, (10, 20, 30), 1) == png(32, 18, (10, 20, 30), 1)
