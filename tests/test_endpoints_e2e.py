"""Every generation endpoint end to end: the client's request layer against the simulator's
own wire table (written separately), each case run to a final task with its files on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import EMAIL, TOKEN
from test_requests_endpoints import CASES

from kling_async import REQUEST_TYPES, KlingClient
from kling_async.testing import KlingSimulator

MAGIC = {"image": b"\x89PNG", "video": b"ftyp", "audio": b"RIFF"}


def _case_id(case: tuple[str, dict[str, Any], dict[str, Any]]) -> str:
    return f"{case[0]}-{len(case[1])}"


#: Where the simulator needs more than the request layer can know offline.
ASSUMED: dict[str, dict[str, Any]] = {
    # "Which garment combinations are valid is not stated": the simulator asks for one.
    "images/virtual-try-on": {"upper_input": "https://example.com/shirt.png"},
    # "an emotion offered by GET /tts/voices": the simulator offers its own list.
    "tts/create": {"emotion": "happy"},
}


async def _earlier_result(kling: KlingClient, endpoint: str) -> dict[str, Any]:
    """A succeeded task (and work) for the endpoints that work on an earlier result."""
    if endpoint == "videos/extend":
        video = await kling.text2video(prompt="a source clip")
        return {"task_id": video.task_id}
    if endpoint == "images/upscale":
        image = await kling.kolors(prompt="a source image")
        return {"task_id": image.task_id, "work_id": image.works[0].work_id}
    return {}


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
async def test_every_endpoint_runs_to_files_on_disk(
    case: tuple[str, dict[str, Any], dict[str, Any]], tmp_path: Path
) -> None:
    endpoint, fields, _ = case
    cls = REQUEST_TYPES[endpoint]
    fields = {k: v for k, v in fields.items() if k not in ("reply_url", "reply_ref", "email")}
    async with KlingSimulator(token=TOKEN, accounts={EMAIL: 5}, job_seconds=0.01) as sim:
        async with KlingClient(token=TOKEN, base_url=sim.base_url, email=EMAIL) as kling:
            fields |= ASSUMED.get(endpoint, {}) | await _earlier_result(kling, endpoint)
            done = await kling.run(cls(**fields))
            assert done.succeeded, done.failure_reason
            paths = await kling.download(done, tmp_path)
    assert paths
    for path in paths:
        head = path.read_bytes()[:16]
        assert MAGIC[cls.kind] in head, (path, head)
