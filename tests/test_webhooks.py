"""Push mode: callbacks complete waiters; forged or replayed calls change nothing."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import web
from helpers import TOKEN, serve, wait_until
from yarl import URL

from kling_async import (
    Image2VideoElements,
    KlingClient,
    KolorsElements,
    PollPolicy,
    TaskResponse,
    TaskStatus,
    TaskTimeoutError,
)
from kling_async.client import DEFAULT_CONFIG
from kling_async.retry import fast_mode
from kling_async.testing import KlingSimulator
from kling_async.webhooks import MAX_CALLBACK_BYTES, MAX_CALLBACK_DEPTH, KlingWebhookReceiver

IMAGES = ["https://example.com/a.jpg", "https://example.com/b.jpg"]
#: The simulator's callbacks as documented (the GET /tasks model, once, at the end), and
#: with the options: a callback per status, the replyRef echoed in the body.
MODES = {
    "documented": {},
    "progress+echo": {"progress_callbacks": True, "callback_echo_reply_ref": True},
}


def _config(fallback: float, floor: float | None = None) -> Any:
    """The default config with a push fallback of ``fallback`` s and, when given, a poll floor
    (`PollPolicy.min_interval`) of ``floor`` s: the default floor (5 s) outlasts a short
    fallback. No poll cap: the waits are real here, and the confirming GETs of many jobs
    would otherwise go out 50 ms apart."""
    poll = PollPolicy(push_fallback=fallback, max_polls_per_second=None)
    if floor is not None:
        poll = attrs.evolve(poll, min_interval=floor)
    return attrs.evolve(DEFAULT_CONFIG, poll=poll)


@pytest.fixture(params=list(MODES))
async def sim(request: pytest.FixtureRequest) -> AsyncIterator[KlingSimulator]:
    options: dict[str, Any] = MODES[request.param]
    async with KlingSimulator(
        token=TOKEN,
        accounts={"a@example.com": 20},
        job_seconds=0.05,
        duration_sigma=0.0,
        **options,
    ) as simulator:
        yield simulator


async def _run_jobs(
    sim: KlingSimulator,
    receiver: KlingWebhookReceiver,
    count: int,
    fallback: float = 3600,
    floor: float | None = None,
    **fields: Any,
) -> list[Any]:
    """Runs ``count`` jobs on a client of ``sim`` with ``receiver``, poll fallback ``fallback``
    and poll floor ``floor`` (None: the default)."""
    jobs = [
        KolorsElements(prompt=f"push job {i}", subject_images=IMAGES, **fields)
        for i in range(count)
    ]
    with fast_mode(1.0):
        async with KlingClient(
            token=TOKEN, base_url=sim.base_url, webhook=receiver, config=_config(fallback, floor)
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
    assert receiver.received == sim.stats["callbacks_sent"] >= 100
    assert not receiver.running  # the client started it, so the client stopped it
    # Each submission had a replyUrl of its own, its tag sent as replyRef.
    bodies = [t["body"] for t in sim.stats["tasks"]]
    assert len({b["replyUrl"] for b in bodies}) == 100
    assert all(b["replyUrl"].split("/")[-1].startswith(b["replyRef"] + ".") for b in bodies)


async def test_final_callback_is_confirmed_by_default(sim: KlingSimulator) -> None:
    receiver = KlingWebhookReceiver()
    results = await _run_jobs(sim, receiver, 10)
    assert all(r.succeeded for r in results)
    # One confirming GET per job, no more.
    assert sorted(sim.stats["polls_by_task"].values()) == [1] * 10


async def test_the_callers_reply_ref_is_sent_with_a_url_of_its_own(sim: KlingSimulator) -> None:
    receiver = KlingWebhookReceiver(trust_callbacks=True)
    results = await _run_jobs(sim, receiver, 1, reply_ref="my job #1/ü")
    assert results[0].succeeded
    assert sim.stats["polls"] == 0
    (body,) = [t["body"] for t in sim.stats["tasks"]]
    assert body["replyRef"] == "my job #1/ü"
    assert "#" not in body["replyUrl"]
    assert "ü" not in body["replyUrl"]


async def test_submissions_sharing_a_callers_reply_ref_each_get_their_callbacks(
    sim: KlingSimulator,
) -> None:
    """An order id used for several jobs: one URL each, every callback accepted, no poll
    (it was one URL for all: every job but the last bound lost its callbacks, 401)."""
    receiver = KlingWebhookReceiver(trust_callbacks=True)
    results = await _run_jobs(sim, receiver, 5, reply_ref="order-42")
    assert all(r.succeeded for r in results)
    assert len({r.task_id for r in results}) == 5
    assert sim.stats["polls"] == 0
    assert receiver.rejected == 0
    assert receiver.received == sim.stats["callbacks_sent"] >= 5
    bodies = [t["body"] for t in sim.stats["tasks"]]
    assert {b["replyRef"] for b in bodies} == {"order-42"}
    assert len({b["replyUrl"] for b in bodies}) == 5


async def test_lost_callbacks_fall_back_to_polling() -> None:
    async with KlingSimulator(
        token=TOKEN,
        accounts={"a@example.com": 20},
        job_seconds=0.05,
        callback_drop_rate=0.3,
        seed=7,
    ) as sim:
        receiver = KlingWebhookReceiver(trust_callbacks=True)
        results = await _run_jobs(sim, receiver, 40, fallback=0.2, floor=0.2)
        assert all(r.succeeded for r in results)
        assert sim.stats["callbacks_dropped"] > 0
        assert sim.stats["polls"] > 0


#: useapi.net's published GET /tasks/{task_id} answer (tasks.md), the elided parts left out.
PUBLISHED: dict[str, Any] = {
    "status": 99, "status_name": "succeed", "status_final": True,
    "etaTime": 0, "etaTimeOverSla": False, "queuingEtaTime": 0, "originEtaTime": 0,
    "originQueuingEtaTime": 0, "message": "success",
    "task": {
        "id": 123456789, "userId": 12345, "type": "m2v_img2video_hq",
        "scene": "NORMAL_CREATION", "status": 99, "status_name": "succeed", "status_final": True,
        "taskInfo": {
            "type": "m2v_img2video_hq",
            "inputs": [{"name": "input", "inputType": "URL", "token": None, "blobStorage": None,
                        "url": "https://s21-kling.klingai.com/a.jpg", "cover": None,
                        "fromWorkId": None}],
            "arguments": [{"name": "prompt", "value": "A person dancing"}],
            "extraArgs": {}, "callbackPayloads": [], "scene": "NORMAL_CREATION",
        },
        "favored": False, "deleted": False, "viewed": True,
        "createTime": 1744858514499, "updateTime": 1744858823172, "viewTime": 1744916388016,
    },
    "works": [{
        "workId": 123456789, "workItemId": 0, "taskId": 123456789, "userId": 12345,
        "type": "m2v_img2video_hq", "status": 99, "status_name": "succeed",
        "status_final": True, "contentType": "video",
        "resource": {"resource": "https://s21-kling.klingai.com/a.mp4", "height": 1268,
                     "width": 724, "duration": 5041, "resourceKey": ""},
        "cover": {"resource": "https://s21-kling.klingai.com/a.jpg", "height": 1268,
                  "width": 724, "duration": 0, "resourceKey": ""},
        "starNum": 0, "cloneCount": 0, "reportNum": 0, "createTime": 1744858514515,
    }],
    "editProject": None,
}  # fmt: skip


@pytest.mark.parametrize(("trust", "gets"), [(True, 0), (False, 1)])
async def test_the_published_model_sent_once_completes_the_wait(trust: bool, gets: int) -> None:
    """The documented body exactly (no replyRef), once, to the submission's replyUrl."""
    posted: list[dict[str, Any]] = []
    polls = 0
    submitted = {"id": 123456789, "status": 5, "status_name": "submitted", "status_final": False}

    async def create(request: web.Request) -> web.Response:
        posted.append(await request.json())
        return web.json_response({"status": 5, "status_name": "submitted", "task": submitted})

    async def get_task(request: web.Request) -> web.Response:
        nonlocal polls
        polls += 1
        return web.json_response(PUBLISHED)

    api = web.Application()
    api.router.add_post("/v1/kling/videos/image2video-elements", create)
    api.router.add_get("/v1/kling/tasks/123456789", get_task)
    receiver = KlingWebhookReceiver(trust_callbacks=trust)
    async with serve(api) as root, KlingClient(
        token=TOKEN, base_url=f"{root}/v1/kling", email="p@example.com", max_jobs=1,
        webhook=receiver, config=_config(3600),
    ) as kling:  # fmt: skip
        with fast_mode(1.0):
            sub = await kling.submit(Image2VideoElements(prompt="A person dancing", images=IMAGES))
            assert await _post(posted[0]["replyUrl"], PUBLISHED) == (200, {"ok": True})
            done = await kling.wait(sub, timeout=60)
    assert done.succeeded
    assert done.works[0].resource is not None
    assert polls == gets
    assert receiver.received == 1


# --------------------------------------------------------------------- the receiver alone


@pytest.fixture
async def receiver() -> AsyncIterator[KlingWebhookReceiver]:
    rx = KlingWebhookReceiver(secret="s3cret")
    await rx.start()
    yield rx
    await rx.stop()


def _model(task_id: int, name: str = "succeed", ref: str | None = None) -> dict[str, Any]:
    codes = {"submitted": 5, "processing": 10, "succeed": 99, "failed": 50}
    final = name in ("succeed", "failed")
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


async def _post(url: str, body: Any, **kwargs: Any) -> tuple[int, Any]:
    """POSTs ``body`` (a dict, list or str as JSON; anything else as it is)."""
    data = {"json": body} if isinstance(body, (dict, list, str)) else {"data": body}
    async with aiohttp.ClientSession() as session, session.post(url, **data, **kwargs) as resp:
        return resp.status, await resp.json(content_type=None)


UNKNOWN = (404, {"error": "unknown callback path"})
DEEP = f"JSON nested over {MAX_CALLBACK_DEPTH} levels"
OTHER_TASK = (401, {"error": "the callback URL belongs to another task"})


async def test_forged_urls_are_rejected(receiver: KlingWebhookReceiver) -> None:
    receiver.bind("a", 111)
    receiver.bind("b", 222)
    url_a, url_b = receiver.reply_url_for("a"), receiver.reply_url_for("b")
    mac_a, mac_b = url_a.rsplit(".", 1)[1], url_b.rsplit(".", 1)[1]
    prefix = receiver.url_prefix
    stranger = KlingWebhookReceiver(secret="other", public_url=prefix)
    forged = [
        f"{prefix}/b.{mac_a}",  # another submission's tag with this one's mac
        f"{prefix}/a.{mac_b}",
        f"{prefix}/a.{'0' * 32}",
        f"{prefix}/a.{mac_a[:-1]}",
        f"{prefix}/a",
        f"{prefix}/{mac_a}",
        f"{prefix}/.{mac_a}",
        stranger.reply_url_for("a"),  # right shape, another receiver's secret
    ]
    for url in forged:
        assert await _post(url, _model(111)) == UNKNOWN, url
        assert await _post(url, _model(222)) == UNKNOWN, url
    assert receiver.latest(111) is None
    assert receiver.latest(222) is None
    assert receiver.rejected == 2 * len(forged)
    assert receiver.received == 0


async def test_a_body_about_another_task_is_rejected(receiver: KlingWebhookReceiver) -> None:
    receiver.bind("a", 333)
    receiver.bind("b", 444)
    # A genuine URL of task 333 carrying a body about task 444 (or about a stranger).
    assert await _post(receiver.reply_url_for("a"), _model(444, "failed")) == OTHER_TASK
    assert await _post(receiver.reply_url_for("a"), _model(999, "failed")) == OTHER_TASK
    assert receiver.latest(444) is None
    assert receiver.latest(333) is None


async def test_reply_ref_is_checked_only_when_present(receiver: KlingWebhookReceiver) -> None:
    receiver.bind("a", 555)
    url = receiver.reply_url_for("a")
    wrong = (401, {"error": "replyRef does not match the callback URL"})
    assert await _post(url, _model(555, "processing", ref="b")) == wrong
    assert receiver.latest(555) is None
    assert await _post(url, _model(555, "processing", ref="a")) == (200, {"ok": True})
    assert await _post(url, _model(555)) == (200, {"ok": True})  # no replyRef at all
    latest = receiver.latest(555)
    assert latest is not None
    assert latest.is_final


async def test_a_top_level_id_identifies_the_task(receiver: KlingWebhookReceiver) -> None:
    receiver.bind("a", 556)
    body = {"id": 556, "status": 99, "status_name": "succeed", "status_final": True}
    assert await _post(receiver.reply_url_for("a"), body) == (200, {"ok": True})
    latest = receiver.latest(556)
    assert latest is not None
    assert latest.succeeded
    assert latest.task_id == 556
    assert await _post(receiver.reply_url_for("a"), {**body, "id": 557}) == OTHER_TASK


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"<html>", "body is not a task model"),
        (b"\xff\xfe", "body is not a task model"),
        (b"[1, 2]", "body is not a task model"),
        (b'{"status": 99, "status_final": true}', "body has no task id"),
        (b'{"task": {"id": "x"}}', "body has no task id"),
        (b"[" * (MAX_CALLBACK_DEPTH + 1) + b"]" * (MAX_CALLBACK_DEPTH + 1), DEEP),
        (b'{"task": {"id": 1}, "x": ' + b"[" * 100_000, DEEP),
    ],
)  # fmt: skip
async def test_bad_bodies_are_400(receiver: KlingWebhookReceiver, body: bytes, error: str) -> None:
    receiver.bind("a", 1)
    assert await _post(receiver.reply_url_for("a"), body) == (400, {"error": error})
    assert receiver.latest(1) is None


async def test_brackets_inside_strings_do_not_count_as_depth(
    receiver: KlingWebhookReceiver,
) -> None:
    receiver.bind("a", 2)
    body = {**_model(2), "message": '[{"\\' * 1000}
    assert await _post(receiver.reply_url_for("a"), body) == (200, {"ok": True})


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_huge_body_is_413(receiver: KlingWebhookReceiver, chunked: bool) -> None:
    receiver.bind("a", 3)
    filler = b" " * (MAX_CALLBACK_BYTES + 1)
    raw = b'{"task": {"id": 3}, "status_final": true, "status_name": "succeed"}' + filler

    async def stream() -> AsyncIterator[bytes]:
        for at in range(0, len(raw), 1 << 16):
            yield raw[at : at + (1 << 16)]

    body: Any = stream() if chunked else io.BytesIO(raw)
    assert await _post(receiver.reply_url_for("a"), body) == (
        413,
        {"error": f"body over {MAX_CALLBACK_BYTES} bytes"},
    )
    assert receiver.latest(3) is None


async def test_duplicate_and_out_of_order_callbacks(receiver: KlingWebhookReceiver) -> None:
    receiver.bind("a", 555)
    for name in ["processing", "succeed", "submitted", "processing", "succeed"]:
        assert await _post(receiver.reply_url_for("a"), _model(555, name)) == (200, {"ok": True})
    latest = receiver.latest(555)
    assert latest is not None
    assert latest.state is TaskStatus.SUCCEED


async def test_a_callers_reply_ref_is_checked_against_the_submissions(
    receiver: KlingWebhookReceiver,
) -> None:
    receiver.bind("t1", 771, reply_ref="order-42")
    url = receiver.reply_url_for("t1")
    wrong = (401, {"error": "replyRef does not match the callback URL"})
    assert await _post(url, _model(771, "processing", ref="t1")) == wrong  # not what was sent
    assert await _post(url, _model(771, "processing", ref="order-43")) == wrong
    assert receiver.latest(771) is None
    assert await _post(url, _model(771, ref="order-42")) == (200, {"ok": True})
    latest = receiver.latest(771)
    assert latest is not None
    assert latest.is_final


@pytest.mark.parametrize(("ref", "kept"), [("order-42", True), (None, True), ("order-9", False)])
async def test_an_early_callback_is_checked_against_the_reply_ref_once_bound(
    receiver: KlingWebhookReceiver, ref: str | None, kept: bool
) -> None:
    url = receiver.reply_url_for("t2")
    assert await _post(url, _model(772, "processing", ref=ref)) == (200, {"ok": True})
    receiver.bind("t2", 772, reply_ref="order-42")
    assert (receiver.latest(772) is not None) is kept


@pytest.mark.parametrize(("task_id", "kept"), [(666, True), (667, False)])
async def test_callback_before_the_post_answer(
    receiver: KlingWebhookReceiver, task_id: int, kept: bool
) -> None:
    """Kept until the POST answers, then used only if it is about the task that POST made."""
    url = receiver.reply_url_for("early")
    assert await _post(url, _model(task_id, "processing")) == (200, {"ok": True})
    assert receiver.latest(666) is None  # not bound yet
    receiver.bind("early", 666)
    latest = receiver.latest(666)
    assert (latest is not None) is kept


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
        sent = [t["body"]["replyUrl"] for t in sim.stats["tasks"]]
        assert all(s.startswith(f"http://127.0.0.1:{port}/hooks/") for s in sent)


class _OldProtocolReceiver(KlingWebhookReceiver):
    """A custom receiver written before ``bind`` took ``reply_ref``."""

    def bind(self, tag: str, task_id: int) -> None:  # type: ignore[override]
        super().bind(tag, task_id)


async def test_a_receiver_that_cannot_bind_costs_no_task_id(
    sim: KlingSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Its bind fails after the POST answered: the job is polled to the end, not lost."""
    receiver = _OldProtocolReceiver(trust_callbacks=True)
    with caplog.at_level(logging.WARNING, logger="kling_async"):
        (result,) = await _run_jobs(sim, receiver, 1, fallback=0.2, floor=0.2, reply_ref="o-1")
    assert result.succeeded
    assert sim.stats["polls"] >= 1
    assert f"the push receiver did not take task {result.task_id}" in caplog.text
    assert "it is polled" in caplog.text


class _WatchedReceiver(KlingWebhookReceiver):
    """A receiver that notes the tasks a waiter asked it for a callback about."""

    def __init__(self) -> None:
        super().__init__()
        self.awaited: set[int] = set()

    async def next_update(
        self, task_id: int, after: TaskResponse | None, timeout: float
    ) -> TaskResponse | None:
        # Noted in the waiter's own step, which runs on until it waits for the callback:
        # once another task sees the id here, the waiter is waiting.
        self.awaited.add(task_id)
        return await super().next_update(task_id, after, timeout)


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
    receiver = _WatchedReceiver()
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
                await wait_until(lambda: 7 in receiver.awaited)  # waiting for a callback
                processing = {"id": 7, "status": 10, "status_name": "processing"}
                async with aiohttp.ClientSession() as http:
                    await http.post(bodies[0]["replyUrl"], json={"task": processing, "status": 10})
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
                    await http.post(bodies[0]["replyUrl"], json={**final, "task": final})
                with pytest.raises(TaskTimeoutError):
                    await kling.wait(sub, timeout=0.5)
    # One confirming GET, and the one due at the deadline; not one per poll-cap turn.
    assert gets <= 2


def callback(task_id: int, ref: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": 99,
        "status_name": "succeed",
        "status_final": True,
        "task": {"id": task_id},
        "works": [],
    }
    if ref is not None:
        body["replyRef"] = ref
    return body


async def test_receiver_rejects_callbacks_without_its_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver = KlingWebhookReceiver(secret="the-receivers-secret")
    prefix = await receiver.start("127.0.0.1", 0)
    good, other = receiver.reply_url_for("good"), receiver.reply_url_for("other")
    mac = good.rsplit(".", 1)[1]
    receiver.bind("good", 111)
    receiver.bind("other", 222)
    try:
        async with aiohttp.ClientSession() as http:

            async def post(url: str, body: Any) -> int:
                async with http.post(url, json=body) as resp:
                    return resp.status

            attempts = [
                (prefix, callback(111)),  # no token segment at all
                (prefix + "/", callback(111)),
                (f"{prefix}/good", callback(111)),  # the tag without its mac
                (f"{prefix}/good.{'x' * len(mac)}", callback(111)),  # wrong mac
                (f"{prefix}/good.{mac[:-1]}", callback(111)),  # almost the mac
                (f"{prefix}/good.{mac}extra", callback(111)),
                (f"{prefix}/other.{mac}", callback(222)),  # a tag with another tag's mac
                (f"{prefix}/the-receivers-secret", callback(111)),  # the secret itself
                (other, callback(111)),  # a genuine URL of another task
                (good, callback(111, "other")),  # another task's replyRef
                (good, "not a task model"),
                (good, [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]),
            ]
            statuses = [await post(url, body) for url, body in attempts]
            assert all(400 <= s < 500 for s in statuses), statuses
            assert receiver.received == 0
            assert receiver.latest(111) is None
            assert receiver.latest(222) is None

            assert await post(good, callback(111)) == 200
            latest = receiver.latest(111)
            assert latest is not None
            assert latest.succeeded
    finally:
        await receiver.stop()
        await asyncio.sleep(0)
    assert "the-receivers-secret" not in repr(receiver)
    assert "the-receivers-secret" not in caplog.text
    assert mac not in caplog.text  # a rejected or accepted URL is never logged
