"""The token kept out of what is shown: refused when too short to redact, never in logs,
reprs, exception chains or file requests."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from helpers import EMAIL, IMAGE, TOKEN, URL1, URL2, kolors

from kling_async import ConfigurationError, KlingClient, KlingError, ServerError, TransportError
from kling_async.failures import MIN_TOKEN_LENGTH
from kling_async.testing import FaultPlan, FaultRates, KlingSimulator


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
