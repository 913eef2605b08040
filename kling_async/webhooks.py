"""Push mode: a ``replyUrl`` receiver that completes waiters without polling.

useapi.net POSTs "the GET /tasks/{task_id} model" to a request's ``replyUrl`` "once job
completed or failed"; the body carries no signature and no guaranteed ``replyRef``, and
delivery and retries are undocumented. So the secret is in the URL itself:

- Every submission gets its own ``replyUrl``: ``<public url>/<tag>.<HMAC(secret, tag)>``,
  where ``tag`` is a tag the client mints for the submission (also sent as ``replyRef``,
  unless the caller gave one: several submissions may share a caller's ``replyRef``, never
  a URL). A call to a path whose HMAC does not check (constant-time compare) is answered
  404; one whose body is about another task than the one this tag's POST created, or whose
  ``replyRef`` (used only when present) is not the one the submission sent, is answered
  401. Either is logged without the payload: a forged call, or a real call replayed for
  another task, changes nothing.
- The task is identified by the body's ``task.id`` (or a top-level ``id``). A callback that
  beats the POST's answer is kept until the task id is known, then checked against it.
- A body over `MAX_CALLBACK_BYTES` is answered 413, JSON nested deeper than
  `MAX_CALLBACK_DEPTH` 400, both before it is parsed.
- A final state is never replaced by an earlier one; duplicates are harmless.
- Waiters still poll, slowly, when no callback came for a while, so a lost callback never
  strands a job. A final callback is confirmed with one ``GET /tasks/{id}`` unless
  ``trust_callbacks=True`` (0 polls, but trusting an unsigned body's content).

Three ways to run it::

    receiver = KlingWebhookReceiver(public_url="https://my.host/kling-hooks")
    receiver.add_routes(app)                       # 1. in your own aiohttp app
    await receiver.start("0.0.0.0", 8080)          # 2. standalone
    KlingClient(webhook=receiver)                  # 3. the client starts it if needed
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import secrets
from typing import Any

from aiohttp import web

from .convert import PayloadError, structure_task
from .errors import ConfigurationError
from .models import TaskResponse, TaskStatus

__all__ = ["MAX_CALLBACK_BYTES", "MAX_CALLBACK_DEPTH", "KlingWebhookReceiver"]

log = logging.getLogger("kling_async")

#: A callback body larger than this is answered 413 (a task model is a few kB).
MAX_CALLBACK_BYTES = 1 << 20
#: A callback body nested deeper than this is answered 400 (a task model is 5 levels deep).
MAX_CALLBACK_DEPTH = 32

_RANK = {TaskStatus.SUBMITTED: 1, TaskStatus.PROCESSING: 2}
#: Callbacks kept for submissions whose POST answer has not arrived yet (oldest dropped).
_MAX_EARLY = 10_000
_PLAIN_TAG = re.compile(r"[A-Za-z0-9_-]+")
_JSON_MARKS = re.compile(rb'["\\\[\]{}]')


def _rank(resp: TaskResponse) -> int:
    return 3 if resp.is_final else _RANK.get(resp.state, 0)


def _encode_tag(tag: str) -> str:
    """The tag as a path segment: itself when plain, else ``~`` + base64url (no padding)."""
    if _PLAIN_TAG.fullmatch(tag):
        return tag
    return "~" + base64.urlsafe_b64encode(tag.encode()).decode().rstrip("=")


def _decode_tag(segment: str) -> str | None:
    if not segment.startswith("~"):
        return segment if _PLAIN_TAG.fullmatch(segment) else None
    packed = segment[1:]
    try:
        return base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4)).decode()
    except (binascii.Error, ValueError):
        return None


def _too_deep(raw: bytes, limit: int) -> bool:
    """Whether the JSON text ``raw`` nests arrays/objects deeper than ``limit``, found by a
    scan of its brackets and strings only: the parser itself would recurse that deep."""
    depth, in_string, skip = 0, False, -1
    for mark in _JSON_MARKS.finditer(raw):
        pos = mark.start()
        if pos == skip:  # the character after a backslash in a string
            continue
        char = raw[pos : pos + 1]
        if in_string:
            if char == b"\\":
                skip = pos + 1
            elif char == b'"':
                in_string = False
        elif char == b'"':
            in_string = True
        elif char in b"[{":
            depth += 1
            if depth > limit:
                return True
        elif char in b"]}":
            depth -= 1
    return False


def _as_task_model(payload: Any) -> Any:
    """A body with only a top-level ``id`` (no ``task`` object) as the task model."""
    if isinstance(payload, dict) and payload.get("task") is None:
        task_id = payload.get("id")
        if isinstance(task_id, int) and not isinstance(task_id, bool):
            keys = ("status", "status_name", "status_final")
            task = {"id": task_id, **{k: payload[k] for k in keys if k in payload}}
            return {**payload, "task": task}
    return payload


class KlingWebhookReceiver:
    """Receives useapi.net's task callbacks and hands them to the client's waiters.

    ``public_url`` is the URL prefix useapi.net can reach (each submission's ``replyUrl`` is
    it plus ``/<tag>.<mac>``: `reply_url_for`); when None it is derived from the address
    `start` binds. ``path`` is the route prefix. ``secret`` keys the HMAC (default: random
    per receiver; give one to accept callbacks across restarts). ``trust_callbacks`` skips
    the confirming GET of a final callback.
    """

    def __init__(
        self,
        *,
        public_url: str | None = None,
        path: str = "/kling/callback",
        secret: str | None = None,
        trust_callbacks: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.path = "/" + path.strip("/")
        self.trusted = trust_callbacks
        self.host, self.port = host, port
        self._public_url = public_url.rstrip("/") if public_url else None
        self.__secret = (secret or secrets.token_urlsafe(24)).encode()
        self._bound: dict[str, int] = {}  # tag -> task id
        self._tags: dict[int, str] = {}  # task id -> tag
        self._refs: dict[str, str] = {}  # tag -> the replyRef sent with it, when not the tag
        # tag -> a callback that beat the POST's answer, and the replyRef it carried
        self._early: dict[str, tuple[TaskResponse, Any]] = {}
        self._latest: dict[int, TaskResponse] = {}
        self._changed: dict[int, asyncio.Event] = {}
        self._runner: web.AppRunner | None = None
        self._mounted = False
        self.received = 0
        self.rejected = 0

    def __repr__(self) -> str:
        return f"<KlingWebhookReceiver {self.path} running={self.running}>"

    # -- serving ---------------------------------------------------------------------------

    @property
    def route(self) -> str:
        """The aiohttp route pattern this receiver answers."""
        return f"{self.path}/{{token}}"

    def add_routes(self, app: web.Application) -> None:
        """Mount the receiver in an existing aiohttp application (set `public_url` too)."""
        app.router.add_post(self.route, self.handler)
        self._mounted = True

    @property
    def running(self) -> bool:
        """Whether it is served: by `start`, or mounted in an application."""
        return self._runner is not None or self._mounted

    @property
    def public_url(self) -> str | None:
        """The URL prefix useapi.net reaches this receiver at (None: from `start`'s address)."""
        return self._public_url

    @public_url.setter
    def public_url(self, value: str | None) -> None:
        self._public_url = value.rstrip("/") if value else None

    async def start(self, host: str | None = None, port: int | None = None) -> str:
        """Serve standalone on ``host:port`` (port 0: any free port); returns `url_prefix`."""
        if self._runner is not None:
            return self.url_prefix
        app = web.Application(client_max_size=MAX_CALLBACK_BYTES)
        app.router.add_post(self.route, self.handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host or self.host, self.port if port is None else port)
        await site.start()
        self._runner = runner
        bound = runner.addresses[0]
        self.host, self.port = str(bound[0]), int(bound[1])
        return self.url_prefix

    async def stop(self) -> None:
        """Stop serving (idempotent)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @property
    def url_prefix(self) -> str:
        """What every submission's ``replyUrl`` starts with: `public_url`, or the address
        `start` bound plus `path`."""
        if self._public_url is not None:
            return self._public_url
        if not self.port:
            raise ConfigurationError(
                "the webhook receiver has no address yet: start() it, or set public_url"
            )
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self.path}"

    # -- the client's side -----------------------------------------------------------------

    def reply_url_for(self, tag: str) -> str:
        """The ``replyUrl`` of one submission: `url_prefix` plus ``/<tag>.<mac>``, the mac an
        HMAC of ``tag`` under the receiver's secret (only the secret's holder can make a URL
        that is accepted). ``tag``: one the client mints for the submission."""
        return f"{self.url_prefix}/{_encode_tag(tag)}.{self._mac(tag)}"

    def bind(self, tag: str, task_id: int, reply_ref: str | None = None) -> None:
        """Tie a submission's tag (its replyUrl) to the task id its POST answered.
        ``reply_ref``: the ``replyRef`` the submission sent, when it is not the tag (the
        caller's own); a callback carrying another one is refused."""
        self._bound[tag] = task_id
        self._tags[task_id] = tag
        if reply_ref is not None and reply_ref != tag:
            self._refs[tag] = reply_ref
        early = self._early.pop(tag, None)
        if early is not None:
            resp, ref = early
            if resp.task_id == task_id and self._ref_matches(tag, ref):
                self._store(task_id, resp)

    def tracks(self, task_id: int) -> bool:
        """Whether callbacks are expected for a task (it was submitted with our replyUrl)."""
        return task_id in self._tags

    def forget(self, task_id: int) -> None:
        """Drop what is kept about a task (after its waiter finished)."""
        self._latest.pop(task_id, None)
        self._changed.pop(task_id, None)
        tag = self._tags.pop(task_id, None)
        if tag is not None:
            self._bound.pop(tag, None)
            self._refs.pop(tag, None)

    def latest(self, task_id: int) -> TaskResponse | None:
        """The most advanced state received for a task."""
        return self._latest.get(task_id)

    async def next_update(
        self, task_id: int, after: TaskResponse | None, timeout: float
    ) -> TaskResponse | None:
        """A pushed state more advanced than ``after``, waiting up to ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        until = loop.time() + timeout
        event = self._changed.setdefault(task_id, asyncio.Event())
        while True:
            newest = self._latest.get(task_id)
            if newest is not None and (after is None or _rank(newest) > _rank(after)):
                return newest
            left = until - loop.time()
            if left <= 0:
                return None
            event.clear()
            # Not asyncio.wait_for: on Python 3.10 and 3.11 it swallows a cancellation that
            # lands as the event is set, and the waiter would outlive its cancelled caller.
            woken = asyncio.ensure_future(event.wait())
            try:
                done, _ = await asyncio.wait({woken}, timeout=left)
            finally:
                woken.cancel()
            if not done:
                return None

    # -- verification ----------------------------------------------------------------------

    def _ref_matches(self, tag: str, ref: Any) -> bool:
        """Whether a callback's ``replyRef`` (None: it carried none) is the submission's."""
        return ref is None or ref == self._refs.get(tag, tag)

    def _mac(self, tag: str) -> str:
        return hmac.new(self.__secret, tag.encode(), hashlib.sha256).hexdigest()[:32]

    def _tag_of(self, token: str) -> str | None:
        """The tag of a path segment ``<tag>.<mac>`` whose mac checks, else None."""
        segment, _, mac = token.rpartition(".")
        tag = _decode_tag(segment)
        if not tag:
            return None
        return tag if hmac.compare_digest(mac.encode(), self._mac(tag).encode()) else None

    def _reject(self, request: web.Request, status: int, why: str) -> web.Response:
        self.rejected += 1
        log.warning("rejected callback from %s: %s", request.remote, why)
        return web.json_response({"error": why}, status=status)

    async def _read(self, request: web.Request) -> bytes | None:
        """The body, or None when it is over `MAX_CALLBACK_BYTES` (read no further)."""
        if (request.content_length or 0) > MAX_CALLBACK_BYTES:
            return None
        body = bytearray()
        async for chunk in request.content.iter_chunked(64 << 10):
            body += chunk
            if len(body) > MAX_CALLBACK_BYTES:
                return None
        return bytes(body)

    async def handler(self, request: web.Request) -> web.Response:
        """The aiohttp handler: verify, structure, hand over."""
        tag = self._tag_of(request.match_info.get("token", ""))
        if tag is None:
            return self._reject(request, 404, "unknown callback path")
        raw = await self._read(request)
        if raw is None:
            return self._reject(request, 413, f"body over {MAX_CALLBACK_BYTES} bytes")
        if _too_deep(raw, MAX_CALLBACK_DEPTH):
            return self._reject(request, 400, f"JSON nested over {MAX_CALLBACK_DEPTH} levels")
        try:
            payload: Any = _as_task_model(json.loads(raw))
            resp = structure_task(payload)
        except (ValueError, PayloadError):
            return self._reject(request, 400, "body is not a task model")
        task_id = resp.task_id
        if task_id is None:
            return self._reject(request, 400, "body has no task id")
        ref = payload.get("replyRef") if isinstance(payload, dict) else None
        bound = self._bound.get(tag)
        if bound is None:
            # The callback beat the POST's answer: checked once the tag is bound.
            self.received += 1
            self._early[tag] = (resp, ref)
            while len(self._early) > _MAX_EARLY:  # late callbacks of forgotten tasks
                del self._early[next(iter(self._early))]
            return web.json_response({"ok": True})
        if not self._ref_matches(tag, ref):
            return self._reject(request, 401, "replyRef does not match the callback URL")
        if bound != task_id:
            return self._reject(request, 401, "the callback URL belongs to another task")
        self.received += 1
        self._store(task_id, resp)
        return web.json_response({"ok": True})

    def _store(self, task_id: int, resp: TaskResponse) -> None:
        current = self._latest.get(task_id)
        if current is not None and _rank(resp) < _rank(current):
            return  # late or out of order: never go back, never undo a final state
        self._latest[task_id] = resp
        event = self._changed.get(task_id)
        if event is not None:
            event.set()
        log.debug("callback: task %s %s", task_id, resp.status_name)
