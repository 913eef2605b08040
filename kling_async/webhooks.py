"""Push mode: a ``replyUrl`` receiver that completes waiters without polling.

useapi.net POSTs the task model to a request's ``replyUrl`` as the task progresses,
possibly more than once; delivery, retries and signing are undocumented. So:

- Every callback must come to the receiver's secret path, and carry a ``replyRef`` that the
  client minted for that very submission (``<nonce>.<HMAC(secret, nonce)>``) and that
  matches the task id in the body. Anything else is answered 401/404 and logged without
  the payload: a forged call, or a real call replayed for another task, changes nothing.
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
import hashlib
import hmac
import json
import logging
import secrets
from typing import Any

from aiohttp import web

from .convert import PayloadError, structure_task
from .errors import ConfigurationError
from .models import TaskResponse, TaskStatus

__all__ = ["KlingWebhookReceiver"]

log = logging.getLogger("kling_async")

_RANK = {TaskStatus.SUBMITTED: 1, TaskStatus.PROCESSING: 2}
_MAX_BODY = 4 << 20
#: Callbacks kept for submissions whose POST answer has not arrived yet (oldest dropped).
_MAX_EARLY = 10_000


def _rank(resp: TaskResponse) -> int:
    return 3 if resp.is_final else _RANK.get(resp.state, 0)


class KlingWebhookReceiver:
    """Receives useapi.net's task callbacks and hands them to the client's waiters.

    ``public_url`` is the URL useapi.net can reach (the ``replyUrl`` is it plus ``/<secret>``);
    when None it is derived from the address `start` binds. ``path`` is the route prefix.
    ``trust_callbacks`` skips the confirming GET of a final callback.
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
        self.__secret = secret or secrets.token_urlsafe(24)
        self._bound: dict[str, int] = {}  # nonce -> task id
        self._nonces: dict[int, str] = {}  # task id -> nonce
        self._early: dict[str, TaskResponse] = {}  # nonce -> callback that beat the POST answer
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
        return f"{self.path}/{{secret}}"

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
        """Serve standalone on ``host:port`` (port 0: any free port); returns the replyUrl."""
        if self._runner is not None:
            return self.reply_url
        app = web.Application(client_max_size=_MAX_BODY)
        app.router.add_post(self.route, self.handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host or self.host, self.port if port is None else port)
        await site.start()
        self._runner = runner
        bound = runner.addresses[0]
        self.host, self.port = str(bound[0]), int(bound[1])
        return self.reply_url

    async def stop(self) -> None:
        """Stop serving (idempotent)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @property
    def reply_url(self) -> str:
        """The ``replyUrl`` to send: the public URL plus the secret path segment."""
        base = self._public_url
        if base is None:
            if not self.port:
                raise ConfigurationError(
                    "the webhook receiver has no address yet: start() it, or set public_url"
                )
            host = f"[{self.host}]" if ":" in self.host else self.host
            base = f"http://{host}:{self.port}{self.path}"
        return f"{base}/{self.__secret}"

    # -- the client's side -----------------------------------------------------------------

    def new_ref(self) -> str:
        """A fresh ``replyRef`` for one submission: ``<nonce>.<mac>``."""
        nonce = secrets.token_hex(8)
        return f"{nonce}.{self._mac(nonce)}"

    def bind(self, reply_ref: str, task_id: int) -> None:
        """Tie a submission's ``replyRef`` to the task id its POST answered."""
        nonce = reply_ref.partition(".")[0]
        self._bound[nonce] = task_id
        self._nonces[task_id] = nonce
        early = self._early.pop(nonce, None)
        if early is not None and early.task_id == task_id:
            self._store(task_id, early)

    def tracks(self, task_id: int) -> bool:
        """Whether callbacks are expected for a task (it was submitted with our replyUrl)."""
        return task_id in self._nonces

    def forget(self, task_id: int) -> None:
        """Drop what is kept about a task (after its waiter finished)."""
        self._latest.pop(task_id, None)
        self._changed.pop(task_id, None)
        nonce = self._nonces.pop(task_id, None)
        if nonce is not None:
            self._bound.pop(nonce, None)

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

    def _mac(self, nonce: str) -> str:
        key = self.__secret.encode()
        return hmac.new(key, nonce.encode(), hashlib.sha256).hexdigest()[:32]

    def _ref_ok(self, ref: object) -> str | None:
        if not isinstance(ref, str) or "." not in ref:
            return None
        nonce, _, mac = ref.partition(".")
        return nonce if hmac.compare_digest(mac, self._mac(nonce)) else None

    def _reject(self, request: web.Request, status: int, why: str) -> web.Response:
        self.rejected += 1
        log.warning("rejected callback from %s: %s", request.remote, why)
        return web.json_response({"error": why}, status=status)

    async def handler(self, request: web.Request) -> web.Response:
        """The aiohttp handler: verify, structure, hand over."""
        given = request.match_info.get("secret", "")
        if not hmac.compare_digest(given.encode(), self.__secret.encode()):
            return self._reject(request, 404, "unknown callback path")
        try:
            payload: Any = json.loads(await request.read())
            resp = structure_task(payload)
        except (ValueError, PayloadError):
            return self._reject(request, 400, "body is not a task model")
        nonce = self._ref_ok(payload.get("replyRef") if isinstance(payload, dict) else None)
        if nonce is None:
            return self._reject(request, 401, "missing or forged replyRef")
        task_id = resp.task_id
        bound = self._bound.get(nonce)
        if task_id is None or (bound is not None and bound != task_id):
            return self._reject(request, 401, "replyRef belongs to another task")
        self.received += 1
        if bound is None:
            self._early[nonce] = resp  # the callback beat the POST's answer
            while len(self._early) > _MAX_EARLY:  # late callbacks of forgotten tasks
                del self._early[next(iter(self._early))]
        else:
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
