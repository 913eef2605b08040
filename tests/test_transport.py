"""Transport: the base URL (from the environment; plain http refused off loopback), the
debug switch, the hooks around each attempt, API redirects never followed, and answers
capped at ``max_answer_bytes``."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiohttp import web
from helpers import EMAIL, TOKEN, URL1, URL2, kolors, serve
from yarl import URL

from kling_async import (
    APIError,
    ClientConfig,
    ConfigurationError,
    KlingClient,
    PayloadError,
    RequestInfo,
    RetryPolicy,
    ServerError,
    TaskResponse,
)
from kling_async.config import BASE_URL_ENV, DEBUG_ENV
from kling_async.testing import FaultPlan, FaultRates, KlingSimulator


async def test_the_base_url_comes_from_the_environment(
    sim: KlingSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(BASE_URL_ENV, sim.base_url)
    async with KlingClient(token=TOKEN, email=EMAIL) as kling:
        assert kling.base_url == sim.base_url.rstrip("/") + "/"
        assert (await kling.get_account(EMAIL)).max_jobs == 3


def test_the_debug_switch_turns_on_the_package_log(monkeypatch: pytest.MonkeyPatch) -> None:
    log = logging.getLogger("kling_async")
    monkeypatch.setattr(log, "level", logging.NOTSET)
    monkeypatch.setattr(log, "handlers", [])
    monkeypatch.setenv(DEBUG_ENV, "1")
    KlingClient(token=TOKEN)
    assert log.level == logging.DEBUG
    assert log.handlers


@pytest.mark.parametrize(
    "url",
    ["http://api.example.com/v1/kling", "http://10.0.0.1:8080/v1/kling", "ftp://x/v1", "nope"],
)
def test_insecure_or_bad_base_url_refused(url: str) -> None:
    with pytest.raises(ConfigurationError):
        KlingClient(token=TOKEN, base_url=url)


def test_insecure_base_url_allowed_when_asked() -> None:
    config = ClientConfig(allow_insecure=True)
    kling = KlingClient(token=TOKEN, base_url="http://api.example.com/v1/kling", config=config)
    assert kling.base_url == "http://api.example.com/v1/kling/"
    for url in ("http://127.0.0.1:1/v1/kling", "http://localhost/v1", "https://a.example/v1"):
        assert KlingClient(token=TOKEN, base_url=url).base_url.endswith("/")


async def test_hooks_sync_and_async(sim: KlingSimulator) -> None:
    requests: list[RequestInfo] = []
    retries: list[tuple[Any, ...]] = []
    submitted: list[int] = []
    per_call: list[int] = []

    async def on_retry(exc: BaseException, tries: int, wait: float) -> None:
        await asyncio.sleep(0)
        retries.append((type(exc), tries, wait))

    async def on_submitted_async(resp: TaskResponse) -> None:
        await asyncio.sleep(0)
        per_call.append(resp.task_id or 0)

    sim.set_fault_plan(FaultPlan(rules={"tasks": FaultRates(server_error=1.0)}))
    async with KlingClient(
        token=TOKEN,
        base_url=sim.base_url,
        config=ClientConfig(retry=RetryPolicy(max_tries=2)),
        on_request=requests.append,
        on_retry=on_retry,
        on_submitted=lambda resp: submitted.append(resp.task_id),
    ) as kling:
        resp = await kling.submit(kolors(), on_submitted=on_submitted_async)
        with pytest.raises(ServerError):
            await kling.get_task(resp.task_id or 0)
    assert submitted == per_call == [resp.task_id]
    assert [(r.method, r.path, r.status) for r in requests] == [
        ("GET", "accounts", 200),  # no email given: the token's only account, read once
        ("POST", "images/kolors-elements", 200),
        ("GET", f"tasks/{resp.task_id}", 500),
        ("GET", f"tasks/{resp.task_id}", 502),
    ]
    assert all(r.elapsed >= 0 and r.error is None for r in requests)
    assert [(t, n) for t, n, _ in retries] == [(ServerError, 1)]


async def test_a_failing_hook_does_not_break_the_job(
    sim: KlingSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_: Any) -> None:
        raise RuntimeError("hook bug")

    async with KlingClient(
        token=TOKEN, base_url=sim.base_url, on_request=broken, on_submitted=broken
    ) as kling:
        done = await kling.kolors_elements(prompt="fine", subject_images=[URL1, URL2])
    assert done.succeeded
    assert "hook bug" in caplog.text


async def test_api_redirects_are_not_followed(caplog: pytest.LogCaptureFixture) -> None:
    """A redirect from the API (to itself or elsewhere) never carries the token on."""
    caplog.set_level(logging.DEBUG)
    secret = "r3direct-s3cret"
    seen: list[str | None] = []

    async def redirect_loop(request: web.Request) -> web.Response:
        raise web.HTTPFound(str(request.url))

    async def redirect_away(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://localhost:{port}/elsewhere")

    async def elsewhere(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.json_response({"task": {"id": 1}})

    app = web.Application()
    app.router.add_get("/v1/kling/tasks/1", redirect_loop)
    app.router.add_get("/v1/kling/tasks/2", redirect_away)
    app.router.add_get("/elsewhere", elsewhere)
    errors: list[BaseException] = []
    async with serve(app) as root:
        port = URL(root).port
        async with KlingClient(token=secret, base_url=f"http://127.0.0.1:{port}/v1/kling") as kling:
            for task_id in (1, 2):
                with pytest.raises(APIError) as caught:
                    await kling.get_task(task_id)
                assert caught.value.status == 302
                errors.append(caught.value)
    assert seen == []
    assert secret not in caplog.text
    for error in errors:
        assert secret not in repr(error) + str(error)


@pytest.mark.parametrize(
    "url",
    [
        "http://api.useapi.net/v1/kling",
        "http://10.0.0.5:8080/v1/kling",
        "http://127.0.0.1.evil.example/v1/kling",
        "http://localhost.evil.example/v1/kling",
        "http://127.0.0.1@evil.example/v1/kling",
        "http://[2001:db8::1]/v1/kling",
    ],
)
def test_plain_http_off_loopback_is_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="allow_insecure") as caught:
        KlingClient(token=TOKEN, base_url=url)
    assert TOKEN not in str(caught.value)
    allowed = KlingClient(token=TOKEN, base_url=url, config=ClientConfig(allow_insecure=True))
    assert allowed.base_url.startswith("http://")


@pytest.mark.parametrize(
    "url",
    [
        "https://api.useapi.net/v1/kling",
        "http://127.0.0.1:8787/v1/kling",
        "http://localhost:8787/v1/kling",
        "http://[::1]:8787/v1/kling",
    ],
)
def test_https_and_loopback_are_allowed(url: str) -> None:
    assert KlingClient(token=TOKEN, base_url=url).base_url == url + "/"


@pytest.mark.parametrize("url", ["ftp://api.example/v1", "file:///etc/passwd", "api.useapi.net"])
def test_other_schemes_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="base_url"):
        KlingClient(token=TOKEN, base_url=url, config=ClientConfig(allow_insecure=True))


async def test_a_huge_api_answer_is_stopped(hostile_client: KlingClient) -> None:
    with pytest.raises(PayloadError, match="max_answer_bytes"):
        await hostile_client.list_tasks()


async def test_a_large_declared_answer_is_refused_unread(hostile_client: KlingClient) -> None:
    with pytest.raises(PayloadError, match="max_answer_bytes"):
        await hostile_client.get_task(5)
