"""The simulator's account states over real sockets: subscription (402), error state (596),
out of credits (412), with the bodies of the useapi.net pages (api/errors.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from helpers import TOKEN, call

from kling_async.testing import KlingSimulator
from kling_async.testing.answers import ACCOUNT_ERROR_REASON, OUT_OF_CREDITS
from kling_async.testing.media import png

KOLORS = "images/kolors-elements"
VIDEO = "videos/image2video-elements"
IMG = "https://example.com/a.jpg"
KOLORS_OK = {"subjectImage1": IMG, "subjectImage2": IMG}
VIDEO_OK = {"prompt": "p", "image_0": IMG}
A, B = "a@example.com", "b@example.com"
SUBSCRIPTION_REQUIRED = {"error": "Subscription required", "code": 402}
PNG = png(320, 320, (1, 2, 3))
PNG_TYPE = {"Content-Type": "image/png"}


def in_error(email: str, reason: str = ACCOUNT_ERROR_REASON) -> dict[str, Any]:
    return {"error": f"Account {email} in error state: {reason}", "code": 596}


@pytest.fixture
async def sim() -> AsyncIterator[KlingSimulator]:
    async with KlingSimulator(
        token=TOKEN, accounts={A: 2, B: 2}, job_seconds=30, duration_sigma=0
    ) as simulator:
        yield simulator


async def submit(http: aiohttp.ClientSession, sim: KlingSimulator, email: str) -> int:
    status, answer = await call(http, sim, "POST", KOLORS, json={**KOLORS_OK, "email": email})
    assert status == 200, answer
    return int(answer["task"]["id"])


def session_calls(email: str, task_id: int) -> list[tuple[str, str, dict[str, Any]]]:
    """Every call that uses the account's Kling session: (method, path, request kwargs)."""
    query = {"email": email}
    return [
        ("POST", KOLORS, {"json": {**KOLORS_OK, "email": email}}),
        ("POST", VIDEO, {"json": {**VIDEO_OK, "email": email}}),
        ("GET", f"tasks/{task_id}", {"params": query}),
        ("GET", "tasks/", {"params": query}),
        ("POST", "assets/", {"params": query, "data": PNG, "headers": PNG_TYPE}),
        ("GET", "assets/download", {"params": {**query, "workIds": "1", "fileTypes": "PNG"}}),
    ]  # fmt: skip


# --- 402: the useapi.net subscription ----------------------------------------------------
async def test_expired_subscription_answers_402_everywhere(
    sim: KlingSimulator, http: aiohttp.ClientSession
) -> None:
    task_id = await submit(http, sim, A)
    sim.finish(task_id)
    status, done = await call(http, sim, "GET", f"tasks/{task_id}", params={"email": A})
    assert (status, done["status_name"]) == (200, "succeed")
    sim.reset_stats()
    sim.set_subscription(False)
    calls = [
        *session_calls(A, task_id),
        ("GET", "accounts", {}),
        ("GET", f"accounts/{A}", {}),
        ("GET", "scheduler", {}),
        ("GET", "scheduler/available", {}),
        ("GET", "no/such/endpoint", {}),
    ]
    for method, path, kwargs in calls:
        assert await call(http, sim, method, path, **kwargs) == (402, SUBSCRIPTION_REQUIRED), path
    # The token is checked first; the result files (Kling's CDN) and the stats still answer.
    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.get(f"{sim.base_url}/{KOLORS}") as response:
            assert response.status == 401
        async with anonymous.get(done["works"][0]["resource"]["resource"]) as response:
            assert response.status == 200
    stats = sim.stats
    assert stats["payment_required"] == len(calls)
    assert (stats["tasks_created"], stats["uploads"], stats["downloads"]) == (0, 0, 0)
    sim.set_subscription(True)
    await submit(http, sim, A)
    assert sim.stats["tasks_created"] == 1


async def test_running_jobs_go_on_while_the_subscription_is_off(
    sim: KlingSimulator, http: aiohttp.ClientSession
) -> None:
    task_id = await submit(http, sim, A)
    sim.set_subscription(False)
    poll = ("GET", f"tasks/{task_id}")
    assert await call(http, sim, *poll, params={"email": A}) == (402, SUBSCRIPTION_REQUIRED)
    sim.finish(task_id)
    sim.set_subscription(True)
    status, answer = await call(http, sim, *poll, params={"email": A})
    assert (status, answer["status_name"]) == (200, "succeed")


# --- 596: an account in error state ------------------------------------------------------
async def test_account_in_error_state_answers_596_on_every_session_call(
    sim: KlingSimulator, http: aiohttp.ClientSession
) -> None:
    task_id = await submit(http, sim, A)
    sim.reset_stats()
    sim.set_account_error(A)
    calls = session_calls(A, task_id)
    for method, path, kwargs in calls:
        assert await call(http, sim, method, path, **kwargs) == (596, in_error(A)), path
    stats = sim.stats
    assert stats["account_errors"] == len(calls)
    assert (stats["tasks_created"], stats["uploads"], stats["downloads"]) == (0, 0, 0)
    # useapi.net's own data still answers: the configuration and the scheduler.
    status, account = await call(http, sim, "GET", f"accounts/{A}")
    assert (status, account["email"]) == (200, A)
    status, available = await call(http, sim, "GET", "scheduler/available")
    assert status == 200
    assert {"email": A, "maxJobs": 2, "executing": 1, "available": 1} in available["available"]
    # The other account is not affected.
    other = await submit(http, sim, B)
    assert sim.tasks[other].account == B


async def test_error_state_with_a_custom_reason_and_one_account(
    http: aiohttp.ClientSession,
) -> None:
    async with KlingSimulator(token=TOKEN, accounts={A: 1}) as sim:
        sim.set_account_error(A, "CAPTCHA")
        # No email with one account configured: the call still goes to that account.
        assert await call(http, sim, "POST", KOLORS, json=KOLORS_OK) == (
            596,
            in_error(A, "CAPTCHA"),
        )
        assert await call(http, sim, "GET", "tasks/") == (596, in_error(A, "CAPTCHA"))


async def test_repaired_account_finds_its_running_jobs(
    sim: KlingSimulator, http: aiohttp.ClientSession
) -> None:
    task_id = await submit(http, sim, A)
    sim.set_account_error(A)
    poll = ("GET", f"tasks/{task_id}")
    assert await call(http, sim, *poll, params={"email": A}) == (596, in_error(A))
    assert not sim.tasks[task_id].is_final  # the job goes on at Kling
    sim.set_account_error(A, None)
    status, answer = await call(http, sim, *poll, params={"email": A})
    assert (status, answer["status_final"]) == (200, False)
    assert sim.stats["running"][A] == 1


def test_unknown_account_is_refused() -> None:
    simulator = KlingSimulator(token=TOKEN, accounts={A: 1})
    expected = "unknown account 'c@example.com' (configured: ['a@example.com'])"
    with pytest.raises(ValueError, match="unknown account") as error:
        simulator.set_account_error("c@example.com")
    assert str(error.value) == expected
    with pytest.raises(ValueError, match="unknown account") as error:
        simulator.set_out_of_credits("c@example.com")
    assert str(error.value) == expected


# --- 412: out of credits (unconfirmed for Kling) -----------------------------------------
async def test_out_of_credits_refuses_generation_only(
    sim: KlingSimulator, http: aiohttp.ClientSession
) -> None:
    task_id = await submit(http, sim, A)
    sim.reset_stats()
    sim.set_out_of_credits(A)
    refused = (412, {"error": OUT_OF_CREDITS})
    assert await call(http, sim, "POST", KOLORS, json={**KOLORS_OK, "email": A}) == refused
    assert await call(http, sim, "POST", VIDEO, json={**VIDEO_OK, "email": A}) == refused
    assert sim.stats["payment_required"] == 2
    assert sim.stats["tasks_created"] == 0
    # Everything else works; the balance reads 0.
    status, _ = await call(http, sim, "GET", f"tasks/{task_id}", params={"email": A})
    assert status == 200
    headers = {"Content-Type": "image/png"}
    status, _ = await call(
        http, sim, "POST", "assets/", params={"email": A}, data=PNG, headers=headers
    )
    assert status == 200
    _, account = await call(http, sim, "GET", f"accounts/{A}")
    assert account["balance"]["total"] == 0
    _, other = await call(http, sim, "GET", f"accounts/{B}")
    assert other["balance"]["total"] > 0
    await submit(http, sim, B)
    sim.set_out_of_credits(A, False)
    await submit(http, sim, A)
    assert sim.stats["tasks_created"] == 2


async def test_busy_account_answers_429_before_412(
    sim: KlingSimulator, http: aiohttp.ClientSession
) -> None:
    # The pages do not give the order; the simulator checks the job slots (useapi.net's
    # scheduler) before the credits (Kling's), so a full account says busy first.
    await submit(http, sim, A)
    await submit(http, sim, A)
    sim.set_out_of_credits(A)
    status, _ = await call(http, sim, "POST", KOLORS, json={**KOLORS_OK, "email": A})
    assert status == 429
