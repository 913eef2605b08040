"""The token kept out of what is shown (`kling_async.failures`): refused when too short to
redact, redacted when a server echoes it, never in logs, reprs, exception chains (a
malformed status line's included) or file requests. The whole CLI and batch in one run:
tests/test_token_exposure.py."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from helpers import EMAIL, IMAGE, TOKEN, URL1, URL2, every_path_plan, kolors, texts_of
from hostile import HOSTILE_TOKEN

from kling_async import (
    ClientConfig,
    ConfigurationError,
    KlingClient,
    KlingError,
    KolorsElements,
    PollPolicy,
    RetryPolicy,
    ServerError,
    TransportError,
)
from kling_async.failures import MIN_TOKEN_LENGTH
from kling_async.testing import FaultPlan, FaultRates, KlingSimulator
from kling_async.testing.media import png


async def test_token_never_in_logs_reprs_errors_or_file_requests(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    secret = "s3cr3t-t0ken-value"
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    plan = FaultPlan(rules={"tasks": FaultRates(server_error=0.3, reset=0.2)}, seed=3)
    async with (
        KlingSimulator(token=secret, accounts={EMAIL: 3}, job_seconds=0.05, fault_plan=plan) as sim,
        KlingClient(token=secret, base_url=sim.base_url) as kling,
    ):
        assert secret not in repr(kling)
        done = await kling.kolors_elements(prompt="logged", subject_images=[URL1, IMAGE])
        await kling.download(done, tmp_path, covers=True)
        for attempt in (
            kling.get_task(1),
            kling.submit(kolors("nsfw")),
            kling.kolors_elements(prompt="fail", subject_images=[URL1, URL2]),
            kling.list_tasks(content_type="poems"),
        ):
            with pytest.raises(KlingError) as caught:
                await attempt
            errors.append(caught.value)
        sim.set_fault_plan(FaultPlan(rules={"tasks": FaultRates(server_error=1.0)}))
        with pytest.raises(ServerError) as caught_server:
            await kling.get_task(done.task_id or 0)
        errors.append(caught_server.value)
        assert sim.stats["file_requests"] >= 1
        assert sim.stats["file_requests_with_auth"] == 0
    async with KlingClient(token=secret, base_url="http://127.0.0.1:9/v1/kling") as dead:
        with pytest.raises(KlingError) as caught_dead:
            await dead.get_task(1)
        errors.append(caught_dead.value)
    assert caplog.records, "DEBUG logging was not captured"
    assert any("GET tasks/" in r.getMessage() for r in caplog.records)
    assert secret not in caplog.text
    for error in errors:
        chain: BaseException | None = error
        while chain is not None:
            assert secret not in str(chain)
            assert secret not in repr(chain)
            chain = chain.__cause__ or chain.__context__


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


@pytest.mark.parametrize("token", ["t", "abc", "1234567"])
def test_a_token_too_short_to_redact_is_refused_at_construction(
    token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token that short could not be told from answer text: refused by name, never shown."""
    with pytest.raises(ConfigurationError, match=f"^token: must be at least {MIN_TOKEN_LENGTH}"):
        KlingClient(token=token)
    monkeypatch.setenv("USEAPI_TOKEN", token)
    with pytest.raises(ConfigurationError, match=r"^\$USEAPI_TOKEN: must be at least") as caught:
        KlingClient()
    assert f"got {len(token)}" in str(caught.value)
    assert repr(token) not in str(caught.value)


#: Unmistakable tokens, so that the leak checks below cannot match by chance.
SECRET = f"sk-live-{secrets.token_hex(20)}"
WRONG_SECRET = f"sk-wrong-{secrets.token_hex(20)}"


#: A tiny PNG the client refuses to upload (one more error whose text is checked).
TINY_PNG = png(2, 2, (0, 0, 0))
#: Quick retries, polls and recoveries.
FAST = ClientConfig(
    retry=RetryPolicy(max_tries=3, base=0.001, max_delay=0.01, max_retry_after=0.01),
    poll=PollPolicy(interval=0.01, max_interval=0.05, max_polls_per_second=None),
    recovery_confirm_delay=0.001,
    request_timeout=2.0,
)


@pytest.fixture
async def sim() -> AsyncIterator[KlingSimulator]:
    """A simulator of `SECRET` whose answers take every code path that logs, raises or notes."""
    async with KlingSimulator(
        token=SECRET, accounts={EMAIL: 5}, job_seconds=0.02, fault_plan=every_path_plan(4)
    ) as simulator:
        yield simulator


async def test_token_is_absent_from_logs_reprs_and_exceptions(
    sim: KlingSimulator, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, aiohttp's included
    seen: list[str] = []
    errors: list[BaseException] = []

    def hook(*args: Any) -> None:
        seen.extend(repr(a) for a in args)

    async with KlingClient(
        token=SECRET,
        base_url=sim.base_url,
        max_jobs=5,
        config=FAST,
        on_request=hook,
        on_retry=hook,
        on_submitted=hook,
    ) as kling:
        seen += [repr(kling), str(kling), repr(kling.config), repr(kling.slots)]
        prompts = ["a cat", "a dog", "this will fail", "nsfw content", "a bird", "a fish"]
        outcomes = await asyncio.gather(
            *(kling.kolors_elements(prompt=p, subject_images=[URL1, URL2]) for p in prompts),
            kling.get_task(1),  # 404
            kling.upload_asset(TINY_PNG),
            return_exceptions=True,
        )
        errors += [o for o in outcomes if isinstance(o, BaseException)]
        assert len(errors) >= 3  # the failure, the moderation and the 404 at least
        done = next(o for o in outcomes if not isinstance(o, BaseException) and hasattr(o, "works"))
        seen.append(repr(done))
        await kling.download(done, tmp_path / "out")
    async with KlingClient(token=WRONG_SECRET, base_url=sim.base_url, max_jobs=1) as wrong:
        with pytest.raises(KlingError) as unauthorized:
            await wrong.get_task(123)
        errors.append(unauthorized.value)
    dead = "http://127.0.0.1:9/v1/kling"  # nothing listens on the discard port
    async with KlingClient(token=SECRET, base_url=dead, max_jobs=1, config=FAST) as nowhere:
        with pytest.raises(KlingError) as unreachable:
            await nowhere.submit(KolorsElements(prompt="p", subject_images=[URL1, URL2]))
        errors.append(unreachable.value)

    assert all(isinstance(e, KlingError) for e in errors), errors
    everything = [caplog.text, *seen, *(t for e in errors for t in texts_of(e))]
    for token in (SECRET, WRONG_SECRET):
        assert not [text for text in everything if token in text]
    assert "Authorization" not in caplog.text
    assert "GET tasks/" in caplog.text  # the DEBUG request log was on


async def test_token_is_not_sent_to_file_hosts(sim: KlingSimulator, tmp_path: Path) -> None:
    sim.set_fault_plan(None)
    async with KlingClient(token=SECRET, base_url=sim.base_url, max_jobs=5, config=FAST) as kling:
        final = await kling.kolors_elements(prompt="p", subject_images=[URL1, URL2], image_count=2)
        await kling.download(final, tmp_path, clean=False)
        await kling.download(final, tmp_path / "clean")
    stats = sim.stats
    assert stats["file_requests"] >= 4
    assert stats["file_requests_with_auth"] == 0


async def test_a_server_echoing_the_token_never_shows_it(hostile_client: KlingClient) -> None:
    with pytest.raises(Exception) as caught:  # noqa: PT011 - the type is not the point
        await hostile_client.assets.uploaded()
    shown = f"{caught.value} {caught.value!r} {getattr(caught.value, 'body', '')}"
    assert HOSTILE_TOKEN not in shown
    assert "***" in shown
