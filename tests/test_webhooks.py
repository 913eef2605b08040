"""Push mode: callbacks complete waiters; forged or replayed calls change nothing."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import web
from helpers import serve, wait_until
from yarl import URL

from kling_async import KlingClient, KolorsElements, PollPolicy, TaskStatus, TaskTimeoutError, cli
from kling_async.client import DEFAULT_CONFIG
from kling_async.retry import fast_mode
from kling_async.testing import KlingSimulator
from kling_async.webhooks import KlingWebhookReceiver

TOKEN = "push-token"
IMAGES = ["https://example.com/a.jpg", "https://example.com/b.jpg"]


def _config(fallback: float) -> Any:
    return attrs.evolve(DEFAULT_CONFIG, poll=PollPolicy(push_fallback=fallback))


@pytest.fixture
async def sim() -> AsyncIterator[KlingSimulator]:
    async with KlingSimulator(
        token=TOKEN,
        accounts={"a@example.com": 20},
        job_seconds=0.05,
        duration_sigma=0.0,
        callback_echo_reply_ref=True,
        progress_callbacks=True,
    ) as simulator:
        yield simulator


async def _run_jobs(
    sim: KlingSimulator, receiver: KlingWebhookReceiver, count: int, fallback: float = 3600
) -> list[Any]:
    """Runs ``count`` jobs on a client of ``sim`` with ``receiver``, poll fallback ``fallback``."""
    jobs = [KolorsElements(prompt=f"push job {i}", subject_images=IMAGES) for i in range(count)]
    with fast_mode(1.0):
        async with KlingClient(
            token=TOKEN, base_url=sim.base_url, webhook=receiver, config=_config(fallback)
        ) as kling:
            return await asyncio.gather(*(kling.run(job) for job in jobs))


async def test_callbacks_complete_jobs_without_polling(sim: KlingSimulator) -> None:
    receiver = KlingWebhookReceiver(trust_callbacks=True)
    # A fallback far longer than any job: every job must finish through its callbacks.
    results = await _run_jobs(sim, receiver, 100, fallback=3600)
    assert all(r.succeeded for r in results)
    assert len({r.task_id for r in results}) == 100
    assert sim.stats["polls"] == 0
    assert receiver.rejected == 0
    assert not receiver.running  # the client started it, so the client stopped it


async def test_final_callback_is_confirmed_by_default(sim: KlingSimulator) -> None:
    receiver = KlingWebhookReceiver()
    results = await _run_jobs(sim, receiver, 10)
    assert all(r.succeeded for r in results)
    # One confirming GET per job, no more.
    assert sorted(sim.stats["polls_by_task"].values()) == [1] * 10


async def test_lost_callbacks_fall_back_to_polling() -> None:
    async with KlingSimulator(
        token=TOKEN,
        accounts={"a@example.com": 20},
        job_seconds=0.05,
        callback_drop_rate=0.3,
        seed=7,
        callback_echo_reply_ref=True,
        progress_callbacks=True,
    ) as sim:
        receiver = KlingWebhookReceiver(trust_callbacks=True)
        results = await _run_jobs(sim, receiver, 40, fallback=0.2)
        assert all(r.succeeded for r in results)
        assert sim.stats["callbacks_dropped"] > 0
        assert sim.stats["polls"] > 0


@pytest.fixture
async def receiver() -> AsyncIterator[KlingWebhookReceiver]:
    rx = KlingWebhookReceiver(secret="s3cret")
    await rx.start()
    yield rx
    await rx.stop()


def _model(task_id: int, name: str, final: bool, ref: str | None) -> dict[str, Any]:
    codes = {"submitted": 5, "processing": 10, "succeed": 99, "failed": 50}
    body: dict[str, Any] = {
        "status": codes[name],
        "status_name": name,
        "status_final": final,
        "task": {"id": task_id, "status": codes[name], "status_name": name},
        "works": [],
    }
    if ref is not None:
        body["replyRef"] = ref
    return body


async def _post(url: str, body: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_secretless_and_wrong_path_callbacks_are_rejected(
    receiver: KlingWebhookReceiver,
) -> None:
    ref = receiver.new_ref()
    receiver.bind(ref, 111)
    base = receiver.reply_url.rsplit("/", 1)[0]
    status, body = await _post(f"{base}/wrong", _model(111, "succeed", True, ref))
    assert (status, body) == (404, {"error": "unknown callback path"})
    assert receiver.latest(111) is None


async def test_forged_reply_ref_is_rejected(receiver: KlingWebhookReceiver) -> None:
    ref = receiver.new_ref()
    receiver.bind(ref, 222)
    nonce = ref.partition(".")[0]
    for forged in (None, "nodot", f"{nonce}.{'0' * 32}"):
        status, body = await _post(receiver.reply_url, _model(222, "succeed", True, forged))
        assert (status, body) == (401, {"error": "missing or forged replyRef"})
    assert receiver.latest(222) is None
    assert receiver.rejected == 3


async def test_callback_replayed_for_another_task_is_rejected(
    receiver: KlingWebhookReceiver,
) -> None:
    ref_a, ref_b = receiver.new_ref(), receiver.new_ref()
    receiver.bind(ref_a, 333)
    receiver.bind(ref_b, 444)
    # A genuine replyRef of task 333 carried by a body about task 444.
    status, body = await _post(receiver.reply_url, _model(444, "failed", True, ref_a))
    assert (status, body) == (401, {"error": "replyRef belongs to another task"})
    assert receiver.latest(444) is None


async def test_not_json_is_rejected(receiver: KlingWebhookReceiver) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(receiver.reply_url, data=b"<html>") as resp,
    ):
        assert resp.status == 400
        assert await resp.json() == {"error": "body is not a task model"}


async def test_duplicate_and_out_of_order_callbacks(receiver: KlingWebhookReceiver) -> None:
    ref = receiver.new_ref()
    receiver.bind(ref, 555)
    for name, final in [
        ("processing", False),
        ("succeed", True),
        ("submitted", False),  # late
        ("processing", False),  # late
        ("succeed", True),  # duplicate
    ]:
        status, _ = await _post(receiver.reply_url, _model(555, name, final, ref))
        assert status == 200
    latest = receiver.latest(555)
    assert latest is not None
    assert latest.state is TaskStatus.SUCCEED
    assert latest.is_final


async def test_callback_before_the_post_answer_is_kept(receiver: KlingWebhookReceiver) -> None:
    ref = receiver.new_ref()
    status, _ = await _post(receiver.reply_url, _model(666, "processing", False, ref))
    assert status == 200
    assert receiver.latest(666) is None  # not bound yet
    receiver.bind(ref, 666)
    latest = receiver.latest(666)
    assert latest is not None
    assert latest.state is TaskStatus.PROCESSING


async def test_mounted_in_a_users_app(sim: KlingSimulator) -> None:
    app = web.Application()
    receiver = KlingWebhookReceiver(trust_callbacks=True, path="/hooks")
    receiver.add_routes(app)
    async with serve(app) as root:
        port = URL(root).port
        receiver.public_url = f"http://127.0.0.1:{port}/hooks"
        results = await _run_jobs(sim, receiver, 5)
        assert all(r.succeeded for r in results)
        assert sim.stats["polls"] == 0
        sent = [json.dumps(t["body"]) for t in sim.stats["tasks"]]
        assert all(f"127.0.0.1:{port}/hooks/" in s for s in sent)


def test_batch_command_in_push_mode(tmp_path: Path) -> None:
    """`kling-async batch --webhook` finishes every job from callbacks, without polling."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    sim = KlingSimulator(
        token=TOKEN,
        accounts={"a@example.com": 4},
        job_seconds=0.05,
        callback_echo_reply_ref=True,
        progress_callbacks=True,
    )
    asyncio.run_coroutine_threadsafe(sim.start(), loop).result(timeout=30)
    try:
        jobs = tmp_path / "jobs.jsonl"
        lines = [
            {"kind": "image", "prompt": f"push line {i}", "subject_images": IMAGES}
            for i in range(6)
        ]
        jobs.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
        with fast_mode(1.0):
            code = cli.main(
                [
                    "--token", TOKEN, "--base-url", sim.base_url,
                    "batch", str(jobs), "--out", str(tmp_path / "out"),
                    "--webhook", "127.0.0.1:0/hooks",
                ]
            )  # fmt: skip
        assert code == 0

        async def stats() -> dict[str, Any]:
            return sim.stats

        seen = asyncio.run_coroutine_threadsafe(stats(), loop).result(timeout=30)
        assert seen["tasks_created"] == 6
        # One confirming GET per job (callbacks are not trusted by default), no more.
        assert sum(seen["polls_by_task"].values()) == 6
        assert all("/hooks/" in t["body"]["replyUrl"] for t in seen["tasks"])
    finally:
        asyncio.run_coroutine_threadsafe(sim.close(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


@pytest.mark.parametrize("bad", ["nohost", "host:", "host:port", "h:70000"])
def test_batch_webhook_address_is_checked(
    tmp_path: Path, bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"kind": "image", "subject_images": IMAGES}) + "\n")
    args = ["--token", TOKEN, "batch", str(jobs), "--out", str(tmp_path), "--webhook", bad]
    assert cli.main(args) == 2
    assert f"expected HOST:PORT[/path], got {bad!r}" in capsys.readouterr().err


async def test_cancelling_a_waiter_as_a_callback_wakes_it_cancels_it() -> None:
    """A cancellation landing in the same loop turn as the callback that wakes the waiter is
    not swallowed (asyncio.wait_for on Python 3.10/3.11 drops it): run() ends at once."""
    bodies: list[dict[str, Any]] = []
    waiting: asyncio.Future[Any] | None = None

    async def kolors(request: web.Request) -> web.Response:
        bodies.append(await request.json())
        task = {"id": 7, "status": 5, "status_name": "submitted", "status_final": False}
        return web.json_response({"status": 5, "status_name": "submitted", "task": task})

    @web.middleware
    async def cancel_after(request: web.Request, handler: Any) -> web.StreamResponse:
        response = await handler(request)
        assert waiting is not None
        waiting.cancel()  # the very turn the callback wakes the waiter
        return response

    api = web.Application()
    api.router.add_post("/v1/kling/images/kolors-elements", kolors)
    hooks = web.Application(middlewares=[cancel_after])
    receiver = KlingWebhookReceiver()
    receiver.add_routes(hooks)
    async with serve(api) as api_root, serve(hooks) as hooks_root:
        receiver.public_url = hooks_root + receiver.path
        async with KlingClient(
            token=TOKEN,
            base_url=f"{api_root}/v1/kling",
            email="p@example.com",
            max_jobs=1,
            webhook=receiver,
        ) as kling:
            with fast_mode(1.0):  # the waiter waits for a callback (30 s) before polling
                waiting = asyncio.ensure_future(
                    kling.run(KolorsElements(prompt="p", subject_images=IMAGES))
                )
                await wait_until(lambda: 7 in receiver._changed)  # waiting for a callback
                processing = {"id": 7, "status": 10, "status_name": "processing"}
                async with aiohttp.ClientSession() as http:
                    await http.post(
                        receiver.reply_url,
                        json={"task": processing, "status": 10, "replyRef": bodies[0]["replyRef"]},
                    )
                # A hang guard, not a timing assertion: a swallowed cancel waits 30 s more.
                done, _ = await asyncio.wait({waiting}, timeout=20)
                assert done == {waiting}
                assert waiting.cancelled()
            assert kling.slots.in_use("p@example.com") == 1  # the job goes on, followed
        assert kling.slots.in_use("p@example.com") == 0  # closing the client let it go


async def test_an_unconfirmed_final_callback_is_not_polled_in_a_loop() -> None:
    """A final callback the server's GET does not confirm yet is checked again at the
    fallback pace, not in a GET loop paced only by the client-wide poll cap."""
    bodies: list[dict[str, Any]] = []
    gets = 0

    async def kolors(request: web.Request) -> web.Response:
        bodies.append(await request.json())
        task = {"id": 8, "status": 5, "status_name": "submitted", "status_final": False}
        return web.json_response({"status": 5, "status_name": "submitted", "task": task})

    async def get_task(request: web.Request) -> web.Response:
        nonlocal gets
        gets += 1
        task = {"id": 8, "status": 10, "status_name": "processing", "status_final": False}
        return web.json_response({"status": 10, "status_name": "processing", "task": task})

    api = web.Application()
    api.router.add_post("/v1/kling/images/kolors-elements", kolors)
    api.router.add_get("/v1/kling/tasks/8", get_task)
    receiver = KlingWebhookReceiver()
    async with serve(api) as api_root:
        async with KlingClient(
            token=TOKEN,
            base_url=f"{api_root}/v1/kling",
            email="p@example.com",
            max_jobs=1,
            webhook=receiver,
        ) as kling:
            with fast_mode(1.0):  # real waits: 30 s for a callback before polling anyway
                sub = await kling.submit(KolorsElements(prompt="p", subject_images=IMAGES))
                final = {"id": 8, "status": 99, "status_name": "succeed", "status_final": True}
                async with aiohttp.ClientSession() as http:
                    await http.post(
                        receiver.reply_url,
                        json={**final, "task": final, "replyRef": bodies[0]["replyRef"]},
                    )
                with pytest.raises(TaskTimeoutError):
                    await kling.wait(sub, timeout=0.5)
    # One confirming GET, and the one due at the deadline; not one per poll-cap turn.
    assert gets <= 2
