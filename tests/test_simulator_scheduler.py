"""The simulator's scheduler over real sockets: GET /scheduler and DELETE /scheduler/{id}."""

from __future__ import annotations

import aiohttp
from helpers import EMAIL, TOKEN

from kling_async.testing import KlingSimulator

IMG = "https://example.com/a.png"
KOLORS = "images/kolors-elements"


async def test_scheduler_lists_then_releases_a_running_job() -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        KlingSimulator(token=TOKEN, accounts={EMAIL: 1}, job_seconds=600) as sim,
        aiohttp.ClientSession(headers=headers) as http,
    ):
        body = {"subjectImage1": IMG, "subjectImage2": IMG, "replyRef": "tag-1", "email": EMAIL}
        async with http.post(f"{sim.base_url}/{KOLORS}", json=body) as response:
            task_id = (await response.json())["task"]["id"]
        async with http.get(f"{sim.base_url}/scheduler") as response:
            (item,) = await response.json()
        assert (item["id"], item["email"], item["replyRef"], item["replyUrl"]) == (
            task_id,
            EMAIL,
            "tag-1",
            None,
        )
        minutes, seconds = item["elapsed"].split(":")  # "MM:SS" as accounts.md says
        assert len(minutes) == len(seconds) == 2
        async with http.delete(f"{sim.base_url}/scheduler/{task_id}") as response:
            assert response.status == 200
            assert await response.text() == "Task was successfully canceled."
        async with http.get(f"{sim.base_url}/scheduler") as response:
            assert await response.json() == []
        async with http.get(f"{sim.base_url}/scheduler/available") as response:
            (account,) = (await response.json())["available"]
        assert (account["executing"], account["available"]) == (0, 1)  # the slot is free
        async with http.get(f"{sim.base_url}/tasks/{task_id}") as response:
            assert (await response.json())["status_final"] is False  # the job still runs
        async with http.delete(f"{sim.base_url}/scheduler/{task_id}") as response:
            assert response.status == 404
            assert await response.json() == {"error": f"Unable to locate running task_id {task_id}"}


async def test_per_request_max_jobs_may_raise_the_account_limit() -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        KlingSimulator(token=TOKEN, accounts={EMAIL: 1}, job_seconds=600) as sim,
        aiohttp.ClientSession(headers=headers) as http,
    ):
        body = {"subjectImage1": IMG, "subjectImage2": IMG, "email": EMAIL}
        async with http.post(f"{sim.base_url}/{KOLORS}", json=body) as response:
            assert response.status == 200
        async with http.post(f"{sim.base_url}/{KOLORS}", json=body) as response:
            assert response.status == 429  # the account's own limit: 1
        async with http.post(f"{sim.base_url}/{KOLORS}", json={**body, "maxJobs": 3}) as response:
            assert response.status == 200


async def test_v3_rules_of_image2video_elements() -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    video = {"prompt": "p", "image_0": IMG, "email": EMAIL}
    v3 = {**video, "model_name": "kling-v3-0"}
    cases = [
        ({**video, "element_1": "u_1"}, "element_1 requires model_name kling-v3-0"),
        ({**v3, "aspect_ratio": "16:9"}, "aspect_ratio is not accepted with kling-v3-0"),
        ({**v3, "duration": 16}, "duration must be an integer from 3 to 15, got 16"),
    ]
    async with (
        KlingSimulator(token=TOKEN, accounts={EMAIL: 5}, job_seconds=600) as sim,
        aiohttp.ClientSession(headers=headers) as http,
    ):
        url = f"{sim.base_url}/videos/image2video-elements"
        ok = {**v3, "element_1": "u_1", "duration": 12, "enable_audio": True}
        async with http.post(url, json=ok) as response:
            assert response.status == 200
        for body, message in cases:
            async with http.post(url, json=body) as response:
                assert response.status == 400
                assert (await response.json())["error"] == message
