"""Recovery with the service's clock off this machine's (issue 16): the offset is measured
from the ``Date`` of answers and the ``createTime`` of the client's own tasks."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from helpers import EMAIL, TOKEN

from kling_async import ClientConfig, KlingClient, KolorsElements, RequestInfo, RetryPolicy
from kling_async.convert import request_body
from kling_async.testing import FaultPlan, FaultRates, KlingSimulator

IMGS = ["https://example.com/a.png", "https://example.com/b.png"]
#: The scheduler cannot answer: recovery must go by the task list and its times.
NO_SCHEDULER: Any = {"accounts": FaultRates(server_error=1.0)}
#: Two tries per request: one resend of a POST shown not created, no long 5xx retries.
CONFIG = ClientConfig(retry=RetryPolicy(max_tries=2), recovery_confirm_delay=0.01)


def job() -> KolorsElements:
    return KolorsElements(prompt="a clock", subject_images=IMGS)


def only_first_post(sim: KlingSimulator, fault: FaultRates) -> Any:
    """Inject ``fault`` into the first POST (the scheduler down throughout); an
    on_request hook ends the POST's fault once that POST is done."""
    sim.set_fault_plan(FaultPlan(rules={"submit": fault, **NO_SCHEDULER}))

    def hook(info: RequestInfo) -> None:
        if info.method == "POST":
            sim.set_fault_plan(FaultPlan(rules=NO_SCHEDULER))

    return hook


async def test_the_simulator_skews_date_and_create_time() -> None:
    async with (
        KlingSimulator(token=TOKEN, accounts={EMAIL: 2}, clock_offset=3600.0) as sim,
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http,
    ):
        url = f"{sim.base_url}/images/kolors-elements"
        async with http.post(url, json=request_body(job())) as resp:
            created = (await resp.json())["task"]["createTime"]
            date = resp.headers["Date"]
        sim.set_clock_offset(0)
        async with http.get(f"{sim.base_url}/scheduler") as resp:
            plain = resp.headers["Date"]
    shown = aiohttp.helpers.parse_http_date(date)
    now = aiohttp.helpers.parse_http_date(plain)
    assert shown is not None
    assert now is not None
    assert 3590 <= (shown - now).total_seconds() <= 3610
    assert 3590_000 <= created - now.timestamp() * 1000 <= 3610_000


@pytest.mark.parametrize("offset", [90.0, -90.0, -600.0])
async def test_a_lost_answer_is_recovered_with_the_server_clock_off(offset: float) -> None:
    """The answer is lost after the task was created; with no scheduler, the task list is
    read from the POST's time by the server's clock (10 minutes behind is past the
    unmeasured window: read by this machine's clock, the task would seem older than the
    POST and the job be paid twice)."""
    async with KlingSimulator(
        token=TOKEN, accounts={EMAIL: 2}, job_seconds=60, clock_offset=offset
    ) as sim:
        hook = only_first_post(sim, FaultRates(reset_after=1.0))
        async with KlingClient(
            token=TOKEN, base_url=sim.base_url, email=EMAIL, max_jobs=2, config=CONFIG,
            on_request=hook,
        ) as kling:  # fmt: skip
            found = await kling.submit(job())
        stats = sim.stats
    assert stats["posts"] == 1
    assert stats["tasks_created"] == 1
    assert found.task_id == stats["tasks"][0]["id"]


async def test_a_look_alike_older_than_the_post_by_the_server_clock_is_not_adopted() -> None:
    """The server is 90 s ahead; an identical request (another client's) was created 30 s
    before our POST by the server's clock, which reads 60 s after our POST by ours. Our POST
    is reset before anything was created: the look-alike is not ours, the POST is sent
    again."""
    async with (
        KlingSimulator(token=TOKEN, accounts={EMAIL: 2}, job_seconds=60) as sim,
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http,
    ):
        sim.set_clock_offset(60.0)  # the service's clock 30 s ago, by its own measure
        url = f"{sim.base_url}/images/kolors-elements"
        async with http.post(url, json=request_body(job())) as resp:
            assert resp.status == 200
            other = (await resp.json())["task"]["id"]
        sim.set_clock_offset(90.0)
        hook = only_first_post(sim, FaultRates(reset=1.0))
        async with KlingClient(
            token=TOKEN, base_url=sim.base_url, email=EMAIL, max_jobs=2, config=CONFIG,
            on_request=hook,
        ) as kling:  # fmt: skip
            mine = await kling.submit(job())
        stats = sim.stats
    assert mine.task_id != other
    assert stats["faults"] == {"reset": 1, "server_error": stats["faults"]["server_error"]}
    assert stats["posts"] == 3  # the other client's, ours reset, ours sent again
    assert stats["tasks_created"] == 2
    assert mine.task_id == stats["tasks"][1]["id"]
