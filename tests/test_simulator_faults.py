"""The simulator over real sockets: fault injection, replyUrl callbacks, counters."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from helpers import TOKEN, callback_receiver, wait_until

from kling_async.testing import FaultPlan, FaultRates, KlingSimulator
from kling_async.testing.state import SimState

KOLORS = "images/kolors-elements"
IMG = "https://example.com/a.jpg"
KOLORS_OK = {"subjectImage1": IMG, "subjectImage2": IMG}
BUSY = "All configured accounts are currently busy executing jobs, please retry later"
DISCONNECTED = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)


def plan(group: str, seed: int = 0, **rates: float) -> FaultPlan:
    return FaultPlan(seed=seed, rules={group: FaultRates(**rates)}, retry_after=0.25)


async def outcome(http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> str:
    try:
        async with http.request(method, url, **kwargs) as response:
            text = await response.text()
    except DISCONNECTED:
        return "reset"
    return f"{response.status}:{len(text)}:{text[:20]}"


# --- plans -------------------------------------------------------------------------------
def test_fault_rates_are_checked() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        FaultRates(server_error=-0.1)
    with pytest.raises(ValueError, match="sum to at most 1"):
        FaultRates(server_error=0.6, reset=0.6)
    with pytest.raises(ValueError, match="unknown fault groups"):
        FaultPlan(rules={"polls": FaultRates()})


async def test_same_plan_same_faults(http: aiohttp.ClientSession) -> None:
    rates = {"server_error": 0.2, "rate_limit": 0.2, "reset": 0.1, "malformed": 0.2}

    async def run(seed: int) -> tuple[list[str], dict[str, Any]]:
        async with KlingSimulator(token=TOKEN, fault_plan=plan("tasks", seed, **rates)) as sim:
            seen = [await outcome(http, "GET", f"{sim.base_url}/tasks/1") for _ in range(40)]
            return seen, sim.stats

    first, stats = await run(1)
    again, stats_again = await run(1)
    assert (again, stats_again["faults"]) == (first, stats["faults"])
    assert (await run(2))[0] != first
    faults = stats["faults"]
    assert set(faults) == {"server_error", "rate_limit", "reset", "malformed"}
    normal = first[[o.startswith("404") for o in first].index(True)]
    assert normal.startswith("404:50:")
    # aiohttp itself retries a GET once when a reused connection is reset: count requests
    assert sum(faults.values()) == stats["polls"] - first.count(normal)


async def test_server_errors_create_nothing(http: aiohttp.ClientSession) -> None:
    async with KlingSimulator(token=TOKEN, fault_plan=plan("submit", server_error=1.0)) as sim:
        answers = []
        for _ in range(4):
            async with http.post(f"{sim.base_url}/{KOLORS}", json=KOLORS_OK) as response:
                answers.append((response.status, response.content_type, await response.text()))
        stats = sim.stats
    assert [a[:2] for a in answers] == [
        (500, "application/json"),
        (502, "text/html"),
        (503, "text/html"),
        (500, "application/json"),
    ]
    assert answers[0][2] == '{"error":"Internal Server Error"}'
    assert "502 Bad Gateway" in answers[1][2]
    assert (stats["posts"], stats["tasks_created"], stats["faults"]) == (4, 0, {"server_error": 4})


async def test_rate_limit_fault(http: aiohttp.ClientSession) -> None:
    async with KlingSimulator(token=TOKEN, fault_plan=plan("submit", rate_limit=1.0)) as sim:
        async with http.post(f"{sim.base_url}/{KOLORS}", json=KOLORS_OK) as response:
            assert response.status == 429
            assert response.headers["Retry-After"] == "0.25"
            assert await response.json() == {"error": BUSY, "retryAfter": 0.25}
        assert sim.stats["tasks_created"] == 0
        assert sim.stats["rate_limited"] == 0  # only "busy" refusals count there


async def test_reset_before_creating(http: aiohttp.ClientSession) -> None:
    async with KlingSimulator(token=TOKEN, fault_plan=plan("submit", reset=1.0)) as sim:
        with pytest.raises(DISCONNECTED):
            async with http.post(f"{sim.base_url}/{KOLORS}", json=KOLORS_OK):
                pass
        assert sim.stats["tasks_created"] == 0
        assert sim.stats["faults"] == {"reset": 1}


async def test_reset_after_creating_can_be_recovered(http: aiohttp.ClientSession) -> None:
    async with KlingSimulator(token=TOKEN, fault_plan=plan("submit", reset_after=1.0)) as sim:
        before = int(time.time() * 1000) - 1
        body = {**KOLORS_OK, "prompt": "find me"}
        with pytest.raises(DISCONNECTED):
            async with http.post(f"{sim.base_url}/{KOLORS}", json=body):
                pass
        assert sim.stats["tasks_created"] == 1
        url = f"{sim.base_url}/tasks/?createdAfter={before}"
        async with http.get(url) as response:
            history = (await response.json())["history"]
        [item] = history
        arguments = {a["name"]: a["value"] for a in item["task"]["taskInfo"]["arguments"]}
        assert arguments["prompt"] == "find me"
        assert item["task"]["id"] in sim.tasks


async def test_delay_after_creating(http: aiohttp.ClientSession) -> None:
    fault_plan = FaultPlan(rules={"submit": FaultRates(delay=1.0)}, delay_seconds=30)
    async with KlingSimulator(token=TOKEN, fault_plan=fault_plan) as sim:
        timeout = aiohttp.ClientTimeout(total=0.2)
        with pytest.raises(asyncio.TimeoutError):
            async with http.post(f"{sim.base_url}/{KOLORS}", json=KOLORS_OK, timeout=timeout):
                pass
        assert sim.stats["tasks_created"] == 1
        assert sim.stats["faults"] == {"delay": 1}


async def test_slow_create_makes_the_task_after_the_client_left(
    http: aiohttp.ClientSession,
) -> None:
    """The service is still processing the POST when its client gives up: the task
    appears only later, and the answer is never seen."""
    fault_plan = FaultPlan(rules={"submit": FaultRates(slow_create=1.0)}, create_seconds=1.0)
    async with KlingSimulator(token=TOKEN, fault_plan=fault_plan) as sim:
        timeout = aiohttp.ClientTimeout(total=0.1)
        body = {**KOLORS_OK, "prompt": "still processing"}
        with pytest.raises(asyncio.TimeoutError):
            async with http.post(f"{sim.base_url}/{KOLORS}", json=body, timeout=timeout):
                pass
        assert sim.stats["tasks_created"] == 0
        await wait_until(lambda: sim.stats["tasks_created"] == 1)
        assert sim.stats["tasks"][0]["body"]["prompt"] == "still processing"
        assert sim.stats["faults"] == {"slow_create": 1}


async def test_malformed_after_creating(http: aiohttp.ClientSession) -> None:
    async with KlingSimulator(token=TOKEN, fault_plan=plan("submit", malformed=1.0)) as sim:
        async with http.post(f"{sim.base_url}/{KOLORS}", json=KOLORS_OK) as response:
            assert response.status == 200
            with pytest.raises(ValueError, match=r"Expecting|Unterminated"):
                await response.json()
        assert sim.stats["tasks_created"] == 1


async def test_fault_groups_are_separate(http: aiohttp.ClientSession) -> None:
    async with KlingSimulator(token=TOKEN, fault_plan=plan("files", server_error=1.0)) as sim:
        async with http.post(f"{sim.base_url}/{KOLORS}", json=KOLORS_OK) as response:
            task_id = (await response.json())["task"]["id"]
        sim.finish_all()
        async with http.get(f"{sim.base_url}/tasks/{task_id}") as response:
            assert response.status == 200
        async with http.get(f"{sim.root_url}/files/{task_id}/0.png") as response:
            assert response.status == 500
        sim.set_fault_plan(None)
        async with http.get(f"{sim.root_url}/files/{task_id}/0.png") as response:
            assert response.status == 200


# --- callbacks ---------------------------------------------------------------------------
@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    async with callback_receiver("/hook") as url_and_received:
        yield url_and_received


async def test_reply_url_gets_the_task_model_once_at_the_final_state(
    http: aiohttp.ClientSession, receiver: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = receiver
    async with KlingSimulator(token=TOKEN, job_seconds=0.05, eta=False) as sim:
        body = {**KOLORS_OK, "replyUrl": url, "replyRef": "ref-1"}
        async with http.post(f"{sim.base_url}/{KOLORS}", json=body) as response:
            task_id = (await response.json())["task"]["id"]
        await wait_until(lambda: len(received) == 1, timeout=5.0)
        async with http.get(f"{sim.base_url}/tasks/{task_id}") as response:
            polled = await response.json()
        sim.finish_all()  # nothing is left to send: a second callback would show in the count
        assert sim.stats["callbacks_sent"] == 1
    assert len(received) == 1
    # viewTime is the instant of the rendering (the final state vs. the poll), all else equal
    assert received[0]["task"].pop("viewTime") <= polled["task"].pop("viewTime")
    assert received[0] == polled
    assert received[0]["status_name"] == "succeed"


async def test_reply_url_progress_callbacks_echo_reply_ref_when_asked(
    http: aiohttp.ClientSession, receiver: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = receiver
    options: dict[str, Any] = {"progress_callbacks": True, "callback_echo_reply_ref": True}
    async with KlingSimulator(token=TOKEN, job_seconds=0.05, **options) as sim:
        body = {**KOLORS_OK, "replyUrl": url, "replyRef": "ref-1"}
        async with http.post(f"{sim.base_url}/{KOLORS}", json=body) as response:
            task_id = (await response.json())["task"]["id"]
        await wait_until(lambda: len(received) == 3, timeout=5.0)
        assert sim.stats["callbacks_sent"] == 3
    assert [r["status_name"] for r in received] == ["submitted", "processing", "succeed"]
    assert [r["status"] for r in received] == [5, 10, 99]
    assert all(r["replyRef"] == "ref-1" and r["task"]["id"] == task_id for r in received)
    assert received[-1]["works"][0]["resource"]["resource"].endswith(".png")


async def test_finish_all_sends_the_final_callback(
    http: aiohttp.ClientSession, receiver: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = receiver
    async with KlingSimulator(token=TOKEN, job_seconds=600, progress_callbacks=True) as sim:
        body = {**KOLORS_OK, "replyUrl": url, "prompt": "fail"}
        async with http.post(f"{sim.base_url}/{KOLORS}", json=body) as response:
            assert response.status == 200
        await wait_until(lambda: len(received) == 1, timeout=5.0)
        sim.finish_all()
        await wait_until(lambda: len(received) == 2, timeout=5.0)
    assert [r["status_name"] for r in received] == ["submitted", "failed"]
    assert "replyRef" not in received[0]


async def test_dropped_and_failed_callbacks(
    http: aiohttp.ClientSession, receiver: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = receiver
    async with KlingSimulator(token=TOKEN, job_seconds=0.02, callback_drop_rate=1.0) as sim:
        async with http.post(f"{sim.base_url}/{KOLORS}", json={**KOLORS_OK, "replyUrl": url}):
            pass
        await wait_until(lambda: sim.stats["callbacks_dropped"] == 1, timeout=5.0)
    assert received == []
    down = url.rsplit(":", 1)[0] + ":9/hook"  # nothing listens on the discard port
    async with KlingSimulator(token=TOKEN, job_seconds=0.02) as sim:
        async with http.post(f"{sim.base_url}/{KOLORS}", json={**KOLORS_OK, "replyUrl": down}):
            pass
        await wait_until(lambda: sim.stats["callbacks_failed"] == 1, timeout=5.0)


# --- counters ----------------------------------------------------------------------------
async def test_stats_keys_and_reset(http: aiohttp.ClientSession) -> None:
    async with KlingSimulator(token=TOKEN, job_seconds=30) as sim:
        async with http.post(f"{sim.base_url}/{KOLORS}", json=KOLORS_OK) as response:
            task_id = (await response.json())["task"]["id"]
        async with http.get(f"{sim.root_url}/simulator/stats") as response:
            remote = await response.json()
        local = sim.stats
        assert set(local) >= {
            "tasks_created", "tasks", "posts", "polls", "polls_by_task", "peak_running",
            "running", "rate_limited", "faults", "uploads", "downloads",
            "file_requests_with_auth", "callbacks_sent", "callbacks_dropped",
        }  # fmt: skip
        assert set(remote) == set(local)
        assert local["tasks"] == [
            {
                "id": task_id,
                "account": "user@example.com",
                "endpoint": KOLORS,
                "body": KOLORS_OK,
                "status_name": "submitted",
            }
        ]
        assert remote["tasks"] == local["tasks"]
        sim.reset_stats()
        after = sim.stats
        assert (after["tasks_created"], after["tasks"], after["posts"]) == (0, [], 0)
        assert after["peak_running"] == {"user@example.com": 1}  # still running
        assert task_id in sim.tasks


def test_ten_thousand_tasks_in_flight() -> None:
    from kling_async.testing.validation import KOLORS as ENDPOINT
    from kling_async.testing.validation import validate

    accounts = {f"u{i}@example.com": 50 for i in range(200)}
    state = SimState(
        accounts=accounts,
        job_seconds=600,
        duration_sigma=0.25,
        job_duration=None,
        seed=0,
        moderation_words=(),
        failure_words=(),
        strict_assets=False,
        busy_retry_after=None,
    )
    for email in accounts:
        for _ in range(50):
            body = {**KOLORS_OK, "email": email}
            state.submit(validate(ENDPOINT, body), body)
    snapshot = state.snapshot()
    assert snapshot["tasks_created"] == 10_000
    assert set(snapshot["running"].values()) == {50}
    assert len(state.finish()) == 10_000
    assert set(state.snapshot()["running"].values()) == {0}
