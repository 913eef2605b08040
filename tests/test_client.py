"""The `KlingClient` facade itself, over real sockets: its lifecycle (``async with``,
``aclose``, use without ``async with``, the unclosed warning, a session of the user's),
the token's source, its arguments and its delegates (one session for every layer, hooks,
repr, a closed client). What each layer does: the test file named after its module."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from helpers import EMAIL, IMAGE, OTHER_IMAGE, TOKEN, kolors, serve, wait_until

from kling_async import (
    ClientConfig,
    ConfigurationError,
    KlingClient,
    KolorsElements,
    PollPolicy,
    RequestInfo,
    RequestValidationError,
    RetryPolicy,
    TaskResponse,
)
from kling_async.testing import KlingSimulator

# -- lifecycle and the token's source ---------------------------------------------------------


async def test_aclose_is_idempotent_and_closes_the_session(sim: KlingSimulator) -> None:
    kling = KlingClient(token=TOKEN, base_url=sim.base_url)
    async with kling:
        await kling.get_account(EMAIL)
        session = kling.session
        assert session is not None
    assert session.closed
    await kling.aclose()
    await kling.aclose()
    with pytest.raises(ConfigurationError, match="closed"):
        await kling.get_task(1)


async def test_client_used_without_async_with(sim: KlingSimulator) -> None:
    kling = KlingClient(token=TOKEN, base_url=sim.base_url)
    try:
        assert (await kling.get_account(EMAIL)).max_jobs == 3
    finally:
        await kling.aclose()


def drop(holder: list[Any]) -> None:
    """Drop the last reference to what ``holder`` holds and collect it."""
    holder.clear()
    gc.collect()


async def test_dropped_unclosed_client_warns(sim: KlingSimulator) -> None:
    kling = KlingClient(token=TOKEN, base_url=sim.base_url)
    await kling.get_account(EMAIL)
    session = kling.session
    assert session is not None
    holder = [kling]
    del kling
    with pytest.warns(ResourceWarning, match="unclosed"):
        drop(holder)
    await session.close()
    await asyncio.sleep(0)


async def test_closed_client_does_not_warn(sim: KlingSimulator) -> None:
    async with KlingClient(token=TOKEN, base_url=sim.base_url) as kling:
        await kling.get_account(EMAIL)
    del kling
    gc.collect()  # filterwarnings=error turns any ResourceWarning into a failure


async def test_a_users_session_is_used_and_not_closed(sim: KlingSimulator) -> None:
    seen: list[str] = []

    async def on_start(_: Any, __: Any, params: aiohttp.TraceRequestStartParams) -> None:
        seen.append(params.url.path)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        async with KlingClient(token=TOKEN, base_url=sim.base_url, session=session) as kling:
            await kling.get_account(EMAIL)
        await kling.aclose()
        assert not session.closed
        assert seen == [f"/v1/kling/accounts/{EMAIL}"]
    await asyncio.sleep(0)


async def test_missing_token_is_a_clear_error_at_first_request(
    sim: KlingSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("USEAPI_TOKEN", raising=False)
    async with KlingClient(base_url=sim.base_url) as kling:  # constructing is fine
        with pytest.raises(ConfigurationError, match="USEAPI_TOKEN"):
            await kling.get_task(123)
    assert sim.stats["polls"] == 0


async def test_token_from_the_environment(
    sim: KlingSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USEAPI_TOKEN", TOKEN)
    async with KlingClient(base_url=sim.base_url) as kling:
        assert (await kling.get_account(EMAIL)).email == EMAIL


@pytest.mark.parametrize("caller_left", [True, False])
async def test_aclose_cancelled_while_a_post_is_out_still_closes(
    caplog: pytest.LogCaptureFixture, caller_left: bool
) -> None:
    """aclose() waits for POSTs still out; cancelling that wait (a second Ctrl-C) gives them
    up with a warning each and still closes the session. A submit() still waiting for its
    answer then ends cancelled: it does not hang."""
    posted = asyncio.Event()
    never = asyncio.Event()

    async def post(request: web.Request) -> web.Response:
        posted.set()
        await never.wait()
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/v1/kling/images/kolors-elements", post)
    async with serve(app) as root:
        try:
            kling = KlingClient(token=TOKEN, base_url=f"{root}/v1/kling", email=EMAIL, max_jobs=1)
            submitting = asyncio.ensure_future(kling.submit(kolors()))
            await asyncio.wait_for(posted.wait(), 10)
            if caller_left:
                submitting.cancel()  # the caller leaves; the POST goes on
                with pytest.raises(asyncio.CancelledError):
                    await submitting
            closing = asyncio.ensure_future(kling.aclose())
            await wait_until(lambda: kling.closed)
            closing.cancel()
            with pytest.raises(asyncio.CancelledError):
                await closing
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(submitting, 10)
            assert kling.session is not None
            assert kling.session.closed
        finally:
            never.set()
    assert (
        f"a submission to {KolorsElements.endpoint} on {EMAIL} was cancelled while its POST "
        "was out (the client closed): the job may exist; look for it with find_tasks()"
    ) in caplog.text


# -- arguments, checked before anything is sent -----------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_jobs": 2.5}, "max_jobs: must be an integer from 1 to 50, got 2.5"),
        ({"max_jobs": "5"}, "max_jobs: must be an integer from 1 to 50, got '5'"),
        ({"max_jobs": 0}, "max_jobs: must be an integer from 1 to 50, got 0"),
        ({"accounts": {"a@x.com": 51}}, "max_jobs for a@x.com: must be an integer"),
        ({"base_url": "https://example.com:99999/v1"}, "port out of range"),
        ({"base_url": "ftp://example.com"}, "base_url must be an http(s) URL"),
        ({"token": "abc\r\nX-Evil: 1"}, "token: must be a string without line breaks"),
        ({"config": "x"}, "config: must be a ClientConfig, got str"),
        ({"email": 5}, "email: must be a string, got int"),
        ({"session": "s"}, "session: must be an aiohttp.ClientSession"),
    ],
)
def test_bad_constructor_options_are_refused_by_name(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        KlingClient(**({"token": TOKEN} | kwargs))
    assert message in str(caught.value)
    assert "abc" not in str(caught.value)  # never the token


@pytest.mark.parametrize("timeout", ["600", -1, float("nan"), True])
async def test_bad_timeouts_are_refused_before_anything_is_sent(
    sim: KlingSimulator, client: KlingClient, timeout: Any
) -> None:
    with pytest.raises(RequestValidationError, match="timeout: must be a number") as caught:
        await client.run(kolors("x"), timeout=timeout)
    assert caught.value.field == "timeout"
    with pytest.raises(RequestValidationError, match="timeout: must be a number"):
        await client.wait(123, timeout=timeout)
    assert sim.stats["posts"] == 0
    assert sim.stats["polls"] == 0


async def test_submit_rejects_a_non_request(client: KlingClient) -> None:
    with pytest.raises(TypeError):
        await client.submit({"prompt": "x"})  # type: ignore[arg-type]


# -- the facade's delegates --------------------------------------------------------------------


async def test_every_delegate_goes_through_the_clients_one_session(sim: KlingSimulator) -> None:
    """The catalog, the assets, the scheduler, uploads, submissions and waits all use the
    session the client was given (one connection pool, one auth header)."""
    seen: list[tuple[str, str]] = []

    async def on_start(_: Any, __: Any, params: aiohttp.TraceRequestStartParams) -> None:
        seen.append((params.method, params.url.path.removeprefix("/v1/kling/")))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        async with KlingClient(
            token=TOKEN, base_url=sim.base_url, email=EMAIL, max_jobs=3, session=session
        ) as kling:
            assert kling.session is session
            await kling.catalog.effects()
            await kling.assets.uploaded()
            await kling.available()
            await kling.running()
            await kling.list_tasks()
            await kling.upload_asset(IMAGE)
            done = await kling.run(kolors())
    assert seen == [
        ("GET", "videos/effects"),
        ("GET", "assets/uploaded/"),
        ("GET", "scheduler/available"),
        ("GET", "scheduler"),
        ("GET", "tasks/"),
        ("POST", "assets/"),
        ("POST", "images/kolors-elements"),
        *[("GET", f"tasks/{done.task_id}")] * (len(seen) - 7),
    ]
    assert len(seen) > 7  # the wait polled
    await asyncio.sleep(0)


async def test_hooks_set_on_the_client_are_the_ones_its_layers_call(sim: KlingSimulator) -> None:
    requests: list[RequestInfo] = []
    submitted: list[TaskResponse] = []
    async with KlingClient(token=TOKEN, base_url=sim.base_url, email=EMAIL, max_jobs=3) as kling:
        assert (kling.on_request, kling.on_retry, kling.on_submitted, kling.on_unknown) == (
            None,
            None,
            None,
            None,
        )
        kling.on_request = requests.append
        kling.on_submitted = submitted.append
        assert kling.on_request == requests.append
        answer = await kling.submit(kolors())
    assert [(r.method, r.path, r.status) for r in requests] == [
        ("POST", "images/kolors-elements", 200)
    ]
    assert submitted == [answer]


async def test_repr_names_the_url_the_account_and_the_state(sim: KlingSimulator) -> None:
    kling = KlingClient(token=TOKEN, base_url=sim.base_url, email=EMAIL)
    async with kling:
        assert repr(kling) == f"<KlingClient {sim.base_url}/ email='{EMAIL}' open>"
        assert not kling.closed
    assert repr(kling) == f"<KlingClient {sim.base_url}/ email='{EMAIL}' closed>"
    assert kling.closed


async def test_a_closed_client_takes_no_new_work(sim: KlingSimulator) -> None:
    async with KlingClient(token=TOKEN, base_url=sim.base_url, email=EMAIL, max_jobs=3) as kling:
        pass
    for call in (
        lambda: kling.submit(kolors()),
        lambda: kling.run(kolors()),
        lambda: kling.upload_asset(OTHER_IMAGE),
        kling.catalog.effects,
        kling.assets.uploaded,
        kling.available,
        lambda: kling.get_account(EMAIL),
    ):
        with pytest.raises(ConfigurationError, match=r"^the client is closed$"):
            await call()
    assert sim.stats["posts"] == sim.stats["uploads"] == 0


def test_poll_time_bound_and_policy_come_from_the_config() -> None:
    retry = RetryPolicy(max_time=100, max_retry_after=10)
    config = ClientConfig(request_timeout=30, retry=retry, poll=PollPolicy(interval=2))
    kling = KlingClient(token=TOKEN, config=config)
    assert kling.poll_time_bound == 140  # the retrying, one more request, one Retry-After
    assert kling.poll_policy == PollPolicy(interval=2)
    unbounded = ClientConfig(retry=RetryPolicy(max_time=None))
    assert KlingClient(token=TOKEN, config=unbounded).poll_time_bound is None
