"""The token appears nowhere, in one run that does everything that could show or store it:
DEBUG logging on the root logger, the CLI with ``-v`` and abbreviated token flags, a
batch with faults and failures, its Ctrl-C resume hint, servers that echo the token
(in an error body, in a malformed status line), failures with chained causes rendered with
their locals, and every file the batch writes (journal, manifest, gallery).

Also the rule that makes redaction sound: a token shorter than `MIN_TOKEN_LENGTH` is
refused when the client is made, and any accepted token is redacted from server text."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import threading
import traceback
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import ACCOUNT, SimThread, journal_rows, sigint_action
from helpers import Durations, every_path_plan, texts_of, wait_until_blocking

from kling_async import KlingClient, KlingError, cli
from kling_async.batch import GALLERY_NAME, JOURNAL_NAME, MANIFEST_NAME
from kling_async.failures import MIN_TOKEN_LENGTH

TOKEN = f"tok-{secrets.token_hex(16)}-unmistakable"
IMG = "https://cdn.example.com/a.png"
IMG2 = "https://cdn.example.com/b.png"


def echo_server(sim: SimThread, *, in_status_line: bool) -> str:
    """A server that echoes the request's Authorization header: in a 400's JSON error
    text, or in a malformed status line (aiohttp's error then carries it)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        auth = next(
            (line for line in head.split(b"\r\n") if line.lower().startswith(b"authorization")),
            b"",
        )
        if in_status_line:
            writer.write(b"HTTP/1.1 abc " + auth + b"\r\n\r\n")
        else:
            body = b'{"error": "bad token ' + auth + b'", "code": 400}'
            writer.write(
                b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
        await writer.drain()
        writer.close()

    return sim.raw_server(handle)


def write_jobs(folder: Path, prompts: list[str]) -> Path:
    path = folder / "jobs.jsonl"
    lines = [
        f'{{"kind": "image", "prompt": "{p}", "subject_images": ["{IMG}", "{IMG2}"]}}'
        for p in prompts
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


async def library_failures(urls: list[str]) -> list[BaseException]:
    """One failing call per server, through the library: each error with its chain."""
    errors: list[BaseException] = []
    for url in urls:
        async with KlingClient(token=TOKEN, base_url=url, email=ACCOUNT, max_jobs=1) as kling:
            for call in (kling.get_task(5), kling.assets.uploaded()):
                try:
                    await call
                except KlingError as exc:
                    errors.append(exc)
    return errors


def ctrl_c_batch(sim: SimThread, durations: Durations, jobs: Path, out: Path) -> int:
    """The batch, in process, stopped by Ctrl-C once two of its jobs are submitted."""
    durations.seconds = 3600.0

    def press_ctrl_c() -> None:
        wait_until_blocking(lambda: sum(r[2] is not None for r in journal_rows(out)) == 2)
        os.kill(os.getpid(), signal.SIGINT)

    presser = threading.Thread(target=press_ctrl_c)
    argv = ["-v", "--token", TOKEN, "--base-url", sim.base_url, "batch", str(jobs)]
    with sigint_action(signal.default_int_handler):
        presser.start()
        try:
            return cli.main([*argv, "--out", str(out), "--account", f"{ACCOUNT}:2"])
        finally:
            presser.join(timeout=60)
            durations.seconds = 0.02
            sim.call(sim.sim.finish_all)


def test_the_token_appears_nowhere(
    durations: Durations, tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: Any
) -> None:
    caplog.set_level(logging.DEBUG)  # on the root logger: every logger, aiohttp's included
    assert logging.getLogger().level == logging.DEBUG
    durations.seconds = 0.02
    sim = SimThread(durations, token=TOKEN, fault_plan=every_path_plan(7))
    outputs: list[str] = []
    try:
        echo = echo_server(sim, in_status_line=False)
        garbled = echo_server(sim, in_status_line=True)
        dead = "http://127.0.0.1:9/v1/kling"  # nothing listens on the discard port

        # Abbreviated token flags are refused (argparse would have taken them).
        for argv in (
            ["-v", "--tok", TOKEN, "--base-url", sim.base_url, "tasks"],
            [f"--toke={TOKEN}", "-v", "batch", "jobs.jsonl", "--out", str(tmp_path / "x")],
            ["-v", "tasks", "--tok", TOKEN],
        ):
            assert cli.main(argv) == 2

        # A batch with -v: faults, a failing line, a moderated one.
        jobs = write_jobs(tmp_path, ["a cat", "a dog", "this will fail", "nsfw thing", "a bird"])
        out = tmp_path / "out"
        argv = ["-v", "--token", TOKEN, "--base-url", sim.base_url, "batch", str(jobs)]
        assert cli.main([*argv, "--out", str(out), "--account", ACCOUNT]) == 1

        # Ctrl-C in another batch: the resume hint is rebuilt without the token.
        sim.call(lambda: sim.sim.set_fault_plan(None))
        stopped = tmp_path / "stopped"
        jobs4 = write_jobs(tmp_path, ["one", "two", "three", "four"])
        assert ctrl_c_batch(sim, durations, jobs4, stopped) == 130
        captured = capsys.readouterr()
        outputs += [captured.out, captured.err]
        assert "Resume with the same command" in captured.err

        # One-job commands against servers that echo the token, and a dead one.
        for url in (echo, garbled, dead):
            argv = ["-v", "--token", TOKEN, "--base-url", url, "task", "5", "--email", ACCOUNT]
            assert cli.main(argv) in (1, 2)
        captured = capsys.readouterr()
        outputs += [captured.out, captured.err]
        assert "bad token Authorization: Bearer ***" in captured.err  # the text is kept

        errors = asyncio.run(library_failures([echo, garbled, dead]))
    finally:
        sim.close()

    assert len(errors) == 6
    assert all(e.__cause__ is not None for e in errors[2:])  # chained causes, scrubbed
    rendered = [t for e in errors for t in texts_of(e)]
    rendered += [
        "".join(traceback.TracebackException.from_exception(e, capture_locals=True).format())
        for e in errors
    ]
    records = [
        text for r in caplog.records for text in (r.getMessage(), repr(r.args), repr(r.__dict__))
    ]
    assert any("GET tasks/" in text for text in records)  # DEBUG request logging was on
    everything = [*outputs, caplog.text, *records, *rendered]
    assert not [text for text in everything if TOKEN in text]

    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    names = {p.name for p in written}
    assert {JOURNAL_NAME, MANIFEST_NAME, GALLERY_NAME} <= names
    assert len(journal_rows(stopped)) == 4
    assert not [p for p in written if TOKEN.encode() in p.read_bytes()]


def test_the_cli_refuses_a_short_token_in_one_line(capsys: Any) -> None:
    assert cli.main(["--token", "short", "tasks"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("kling-async tasks: error: --token: must be at least 8 characters")
    assert "'short'" not in err


#: The shortest token accepted (a module constant: the test's frames, rendered with their
#: locals, must not hold it themselves).
SHORTEST = "k7Q2m9Zp"


async def echoed_error(url: str) -> KlingError:
    async with KlingClient(token=SHORTEST, base_url=url, email=ACCOUNT) as kling:
        with pytest.raises(KlingError) as caught:
            await kling.get_task(5)
        return caught.value


def test_a_shortest_token_is_redacted_from_server_text(durations: Durations) -> None:
    """The shortest accepted token, echoed by a server (an error body, a malformed status
    line), is shown as ***."""
    assert len(SHORTEST) == MIN_TOKEN_LENGTH
    sim = SimThread(durations, token=SHORTEST)
    try:
        urls = [echo_server(sim, in_status_line=flag) for flag in (False, True)]
        errors = [asyncio.run(echoed_error(url)) for url in urls]
    finally:
        sim.close()
    assert "bad token Authorization: Bearer ***" in str(errors[0])
    assert "Authorization: Bearer ***" in str(errors[1])
    assert not [text for e in errors for text in texts_of(e) if SHORTEST in text]
