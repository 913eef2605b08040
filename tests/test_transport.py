"""Transport and the client's arguments: checked before anything is sent; URLs, env."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from helpers import EMAIL, TOKEN

from kling_async import (
    ConfigurationError,
    KlingClient,
    KolorsElements,
    RequestValidationError,
    TransportError,
)
from kling_async.config import BASE_URL_ENV, DEBUG_ENV
from kling_async.testing import KlingSimulator

URLS = ["https://example.com/a.png", "https://example.com/b.png"]


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


@pytest.fixture
async def kling(sim: KlingSimulator) -> AsyncIterator[KlingClient]:
    async with KlingClient(token=TOKEN, base_url=sim.base_url, email=EMAIL) as client:
        yield client


@pytest.mark.parametrize("timeout", ["600", -1, float("nan"), True])
async def test_bad_timeouts_are_refused_before_anything_is_sent(
    sim: KlingSimulator, kling: KlingClient, timeout: Any
) -> None:
    with pytest.raises(RequestValidationError, match="timeout: must be a number") as caught:
        await kling.run(KolorsElements(prompt="x", subject_images=URLS), timeout=timeout)
    assert caught.value.field == "timeout"
    with pytest.raises(RequestValidationError, match="timeout: must be a number"):
        await kling.wait(123, timeout=timeout)
    assert sim.stats["posts"] == 0
    assert sim.stats["polls"] == 0


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


async def test_a_malformed_status_line_never_chains_the_token() -> None:
    """aiohttp's exception for a bad status line keeps the request's headers: the
    TransportError is chained to a copy without them."""

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 ABC nonsense\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with KlingClient(token=TOKEN, base_url=f"http://127.0.0.1:{port}/v1") as kling:
            with pytest.raises(TransportError) as caught:
                await kling.get_task(1, email=EMAIL)
    finally:
        server.close()
        await server.wait_closed()
    seen: list[str] = []
    exc: BaseException | None = caught.value
    while exc is not None:
        seen.append(repr(exc) + str(getattr(exc, "request_info", "")))
        exc = exc.__cause__ or exc.__context__
    assert len(seen) >= 2  # the aiohttp failure is chained (scrubbed)
    assert not any(TOKEN in text for text in seen)
