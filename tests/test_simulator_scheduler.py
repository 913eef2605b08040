"""The simulator's scheduler over real sockets: GET /scheduler and DELETE /scheduler/{id}."""

from __future__ import annotations

import aiohttp

from kling_async.testing import KlingSimulator

TOKEN = "test-token"
EMAIL = "a@example.com"
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
