"""The aiohttp application: routes, auth, fault injection, task and account handlers.

Every route is wrapped once by :meth:`SimulatorServer.route`, which counts the request,
checks the token (except on the file "CDN") and the subscription (402 while it is off),
draws the fault for the route's group and turns an :class:`ErrorAnswer` into its JSON
answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import Any, Final

from aiohttp import web

from kling_async.testing import wire
from kling_async.testing.answers import (
    BUSY,
    SUBSCRIPTION_REQUIRED_BODY,
    UNAUTHORIZED_BODY,
    ErrorAnswer,
    bad_request,
    format_retry_after,
    json_response,
)
from kling_async.testing.assets import AssetHandlers
from kling_async.testing.callbacks import CallbackSender
from kling_async.testing.catalog import CatalogHandlers
from kling_async.testing.endpoints_image import IMAGE_ENDPOINTS
from kling_async.testing.endpoints_video import VIDEO_ENDPOINTS
from kling_async.testing.faults import FaultInjector
from kling_async.testing.state import SimState
from kling_async.testing.table import Endpoint, F, validate_table
from kling_async.testing.validation import KOLORS, VIDEO, int_param, read_body, validate

__all__ = ["SimulatorServer"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

LIST_PAGE_SIZE: Final = 30
TABLE: Final[dict[str, Endpoint]] = {e.path: e for e in (*VIDEO_ENDPOINTS, *IMAGE_ENDPOINTS)}
_GATEWAY_PAGE: Final = (
    "<html>\r\n<head><title>{0}</title></head>\r\n<body>\r\n<center><h1>{0}</h1></center>\r\n"
    "<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n"
)
_GATEWAY_TITLES: Final = {502: "502 Bad Gateway", 503: "503 Service Temporarily Unavailable"}


def _drop_connection(request: web.Request) -> web.Response:
    if request.transport is not None:
        request.transport.close()
    return web.Response()  # never written: the transport is gone


class SimulatorServer:
    """Builds the aiohttp application over a :class:`SimState`."""

    def __init__(
        self, state: SimState, callbacks: CallbackSender, *, token: str, eta: bool | str, seed: int
    ) -> None:
        self.state = state
        self.callbacks = callbacks
        self.eta = eta
        self.injector: FaultInjector | None = None
        #: Seconds the service's clock is ahead of this machine's (its ``Date`` headers).
        self.clock_offset = 0.0
        self.closing = asyncio.Event()
        self._auth = f"Bearer {token}"
        self.assets = AssetHandlers(state, seed=seed)
        self.catalog = CatalogHandlers(state, seed=seed)

    # plumbing ---------------------------------------------------------------------------
    def route(
        self,
        group: str | None,
        handler: Handler,
        *,
        auth: bool = True,
        paid: bool = True,
        count: Callable[[web.Request], None] | None = None,
    ) -> Handler:
        """Wrap ``handler`` with counting, auth, the subscription check (``paid``), faults
        of ``group`` and error rendering."""

        async def answer(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except ErrorAnswer as error:
                self._count_refusal(error.status)
                return json_response(error.body, error.status, error.headers)

        async def wrapped(request: web.Request) -> web.StreamResponse:
            if count is not None:
                count(request)
            if auth and request.headers.get("Authorization") != self._auth:
                return json_response(UNAUTHORIZED_BODY, 401)
            if paid and auth and not self.state.subscription_active:
                self._count_refusal(402)
                return json_response(SUBSCRIPTION_REQUIRED_BODY, 402)
            injector = self.injector
            kind = None if injector is None or group is None else injector.draw(group)
            if kind is None:
                return await answer(request)
            assert injector is not None
            assert group is not None
            faults = self.state.counters.faults
            faults[kind] = faults.get(kind, 0) + 1
            plan = injector.plan
            if kind == "server_error":
                status = injector.next_server_error_status(group)
                if status == 500:
                    return json_response({"error": "Internal Server Error"}, 500)
                page = _GATEWAY_PAGE.format(_GATEWAY_TITLES[status])
                return web.Response(status=status, text=page, content_type="text/html")
            if kind == "rate_limit":
                retry_after = format_retry_after(plan.retry_after)
                body = {"error": BUSY, "retryAfter": plan.retry_after}
                return json_response(body, 429, {"Retry-After": retry_after})
            if kind == "reset":
                return _drop_connection(request)
            if kind == "slow_create":
                await request.read()  # received in full: the client may go while it waits
                with contextlib.suppress(asyncio.TimeoutError):  # closing ends the wait
                    await asyncio.wait_for(self.closing.wait(), plan.create_seconds)
            response = await answer(request)
            if kind == "delay":
                with contextlib.suppress(asyncio.TimeoutError):  # closing ends the wait
                    await asyncio.wait_for(self.closing.wait(), plan.delay_seconds)
            elif kind == "reset_after":
                return _drop_connection(request)
            elif kind == "malformed" and isinstance(response, web.Response):
                data = response.body if isinstance(response.body, bytes) else b"{}"
                return web.Response(
                    body=data[: max(1, len(data) // 2)],
                    status=response.status,
                    content_type=response.content_type,
                )
            return response

        return wrapped

    def _count_refusal(self, status: int) -> None:
        counters = self.state.counters
        if status == 596:
            counters.account_errors += 1
        elif status in (402, 412):
            counters.payment_required += 1

    def _count_post(self, request: web.Request) -> None:
        self.state.counters.posts += 1

    def _count_poll(self, request: web.Request) -> None:
        counters = self.state.counters
        counters.polls += 1
        task_id = request.match_info["task_id"]
        if task_id.isdigit():
            key = int(task_id)
            counters.polls_by_task[key] = counters.polls_by_task.get(key, 0) + 1

    def _count_list(self, request: web.Request) -> None:
        self.state.counters.lists += 1

    def _count_file(self, request: web.Request) -> None:
        counters = self.state.counters
        counters.file_requests += 1
        if "Authorization" in request.headers:
            counters.file_requests_with_auth += 1

    def build_app(self) -> web.Application:
        """The application with every route."""
        app = web.Application(client_max_size=4 * 1024 * 1024)
        r = self.route
        api = "/v1/kling"

        def cdn(handler: Handler) -> Handler:
            return r("files", handler, auth=False, count=self._count_file)

        routes = [
            web.post(f"{api}/{KOLORS}", r("submit", self.generate, count=self._count_post)),
            web.post(f"{api}/{VIDEO}", r("submit", self.generate, count=self._count_post)),
            *(
                web.post(f"{api}/{path}", r("submit", self.generate, count=self._count_post))
                for path in TABLE
            ),
            web.post(f"{api}/images/recognize-faces", r("submit", self.recognize_faces)),
            web.get(f"{api}/tasks/{{task_id}}", r("tasks", self.get_task, count=self._count_poll)),
            web.get(f"{api}/tasks", r("tasks", self.list_tasks, count=self._count_list)),
            web.get(f"{api}/tasks/", r("tasks", self.list_tasks, count=self._count_list)),
            web.post(f"{api}/assets", r("assets", self.assets.upload)),
            web.post(f"{api}/assets/", r("assets", self.assets.upload)),
            web.get(f"{api}/assets/download", r("assets", self.assets.download)),
            web.get(f"{api}/accounts", r("accounts", self.get_accounts)),
            web.get(f"{api}/accounts/", r("accounts", self.get_accounts)),
            web.get(f"{api}/accounts/{{email}}", r("accounts", self.get_account)),
            web.get(f"{api}/scheduler", r("accounts", self.scheduler)),
            web.get(f"{api}/scheduler/", r("accounts", self.scheduler)),
            web.get(f"{api}/scheduler/available", r("accounts", self.available)),
            web.delete(f"{api}/scheduler/{{task_id}}", r("accounts", self.release)),
            *self.catalog.routes(api, r),
            web.get("/simulator/stats", r(None, self.stats, paid=False)),
            web.get("/files/zip/{key}.zip", cdn(self.assets.zip_file)),
            web.get("/files/{task_id}/{name}", cdn(self.assets.result_file)),
            web.get("/uploads/{name}", cdn(self.assets.uploaded_file)),
            web.route("*", f"{api}/{{tail:.*}}", r(None, self.unknown)),
        ]  # fmt: skip
        app.add_routes(routes)
        app.on_response_prepare.append(self._date_header)
        return app

    async def _date_header(self, request: web.Request, response: web.StreamResponse) -> None:
        """The ``Date`` of the service's clock (aiohttp writes this machine's otherwise)."""
        if self.clock_offset:
            response.headers["Date"] = formatdate(time.time() + self.clock_offset, usegmt=True)

    # generation -------------------------------------------------------------------------
    async def generate(self, request: web.Request) -> web.StreamResponse:
        """POST a generation endpoint: the two seed pages, or one of the wire table."""
        path = request.path.removeprefix("/v1/kling/")
        body = await read_body(request)
        spec = TABLE.get(path)
        if spec is None:
            gen = validate(path, body)
        else:
            gen = validate_table(spec, body)
            self._check_sources(gen.values, gen.email)
        task = self.state.submit(gen, body)
        if task.request.reply_url is not None and task.vanish is None:
            self.callbacks.watch(task)
        return json_response(wire.submission_model(task))

    def _check_sources(self, values: dict[str, Any], email: str | None) -> None:
        """videos/extend and images/upscale name a succeeded task of the right content."""
        if "task_id" not in values:
            return
        source = self.state.task_for(str(values["task_id"]), email)
        wanted = "image" if "workId" in values else "video"
        if source.status_name != "succeed" or source.request.kind != wanted:
            raise bad_request(f"task_id {source.id} must be a succeeded {wanted} task")
        if "workId" in values and values["workId"] not in (w["workId"] for w in source.works):
            raise bad_request(f"workId {values['workId']} is not a work of task {source.id}")

    async def recognize_faces(self, request: web.Request) -> web.StreamResponse:
        """POST images/recognize-faces: answered at once with the faces found (two)."""
        body = await read_body(request)
        spec = Endpoint(
            "images/recognize-faces", "image", "", (F("imageReference", "url", required=True),)
        )
        validate_table(spec, body)
        self.state.resolve(body.get("email"))
        faces = [
            {
                "faceNo": n,
                "box": {"top": 0.1, "left": 0.1 + 0.4 * (n - 1), "width": 0.3, "height": 0.4},
            }
            for n in (1, 2)
        ]
        return json_response({"faces": faces, "imageReference": body["imageReference"]})

    # tasks ------------------------------------------------------------------------------
    async def get_task(self, request: web.Request) -> web.StreamResponse:
        """GET tasks/{task_id}."""
        task = self.state.task_for(request.match_info["task_id"], request.query.get("email"))
        return json_response(wire.task_model(task, time.monotonic(), eta=self.eta))

    async def list_tasks(self, request: web.Request) -> web.StreamResponse:
        """GET tasks/: the account's tasks, newest first."""
        query = request.query
        account = self.state.resolve(query.get("email"))
        content_type = query.get("contentType") or None
        if content_type not in (None, "video", "image", "audio"):
            raise bad_request(f"contentType must be video, image or audio, got {content_type!r}")
        size = LIST_PAGE_SIZE
        if query.get("pageSize"):
            size = int_param(query["pageSize"], "pageSize", 1, 500)
        before = query.get("createdBefore") or None
        after = query.get("createdAfter") or None
        if before is not None and after is not None:
            raise bad_request("Use createdBefore or createdAfter, not both")
        before_ms = None if before is None else int_param(before, "createdBefore", 0, 2**53)
        after_ms = None if after is None else int_param(after, "createdAfter", 0, 2**53)
        now = time.monotonic()
        history = []
        tasks = self.state.tasks
        for task_id in reversed(account.task_ids):
            task = tasks[task_id]
            if task.deleted or (task.vanish is not None and now >= task.started_at):
                continue
            created = task.created_ms
            if after_ms is not None and created <= after_ms:
                break
            if before_ms is not None and created >= before_ms:
                continue
            if content_type and content_type != task.request.kind:
                continue
            history.append(wire.task_model(task, now, eta=self.eta))
            if len(history) >= size:
                break
        return json_response({"history": history})

    # accounts and scheduler -------------------------------------------------------------
    async def get_accounts(self, request: web.Request) -> web.StreamResponse:
        """GET accounts: every account keyed by email."""
        accounts = self.state.accounts
        if not accounts:
            raise ErrorAnswer(404, {"error": "No accounts configured"})
        now_ms = time.time() * 1000
        return json_response(
            {e: wire.account_model(a, now_ms, balance=False) for e, a in accounts.items()}
        )

    async def get_account(self, request: web.Request) -> web.StreamResponse:
        """GET accounts/{email}."""
        email = request.match_info["email"]
        account = self.state.accounts.get(email)
        if account is None:
            raise ErrorAnswer(404, {"error": f"Unable to find configuration for account {email}"})
        return json_response(wire.account_model(account, time.time() * 1000, balance=True))

    def _executing(self, now: float) -> list[dict[str, Any]]:
        return [
            wire.executing_item(task, now)
            for account in self.state.accounts.values()
            for task in self.state.running(account, now)
        ]

    async def scheduler(self, request: web.Request) -> web.StreamResponse:
        """GET scheduler: the jobs being tracked."""
        return json_response(self._executing(time.monotonic()))

    async def available(self, request: web.Request) -> web.StreamResponse:
        """GET scheduler/available: free capacity per account."""
        now = time.monotonic()
        available = []
        for account in self.state.accounts.values():
            running = account.prune(now)
            available.append(
                {
                    "email": account.email,
                    "maxJobs": account.max_jobs,
                    "executing": running,
                    "available": max(0, account.max_jobs - running),
                }
            )
        return json_response({"executing": self._executing(now), "available": available})

    async def release(self, request: web.Request) -> web.StreamResponse:
        """DELETE scheduler/{task_id}: free the job's slot; the job itself still runs."""
        task_id = request.match_info["task_id"]
        if not (task_id.isdigit() and self.state.release(int(task_id))):
            raise ErrorAnswer(404, {"error": f"Unable to locate running task_id {task_id}"})
        return web.Response(text="Task was successfully canceled.")

    # simulator --------------------------------------------------------------------------
    async def stats(self, request: web.Request) -> web.StreamResponse:
        """GET /simulator/stats: the counters as JSON."""
        return json_response(self.state.snapshot())

    async def unknown(self, request: web.Request) -> web.StreamResponse:
        """Anything else under /v1/kling."""
        raise ErrorAnswer(404, {"error": f"Unknown endpoint {request.method} {request.path}"})
