"""KlingSimulator: start and stop the simulated useapi.net Kling service."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from aiohttp import web

from kling_async.testing.answers import ACCOUNT_ERROR_REASON
from kling_async.testing.callbacks import CallbackSender
from kling_async.testing.faults import FaultInjector, FaultPlan
from kling_async.testing.server import SimulatorServer
from kling_async.testing.state import Account, JobDuration, SimState, SimTask

__all__ = ["DEFAULT_ACCOUNTS", "KlingSimulator"]

DEFAULT_ACCOUNTS: Mapping[str, int] = {"user@example.com": 5}


class KlingSimulator:
    """A local useapi.net Kling API v1 server on real sockets, for tests and benchmarks.

    Example::

        async with KlingSimulator(accounts={"a@example.com": 2}, job_seconds=0.05) as sim:
            # point a client at sim.base_url with sim.token
            ...
            sim.finish_all()
            assert sim.stats["peak_running"]["a@example.com"] <= 2

    Args:
        token: the API token it accepts; default ``$USEAPI_TOKEN``, else a generated one.
        accounts: email -> maxJobs (1..50).
        job_seconds: mean duration of an image job; a 5 s std video takes about twice as
            long, ``pro`` 1.5 times more, 10 s twice more.
        duration_sigma: lognormal sigma of durations around their mean (0: exact).
        job_duration: ``(endpoint, body, rng) -> seconds`` overriding the above
            (``endpoint`` is "images/kolors-elements" or "videos/image2video-elements").
        seed: seeds durations, task ids, upload names, dropped callbacks.
        eta: fill ``etaTime`` / ``queuingEtaTime`` (milliseconds left) and their ``origin``
            twins; False sends 0; ``"seconds"`` sends them in whole seconds (the unit
            the pages leave open).
        moderation_words: a prompt containing one gets the 500 moderation answer.
        failure_words: a prompt containing one makes a task that ends "failed".
        strict_assets: image URLs in generation requests must come from POST /assets (or be
            result files of this simulator), else 404 VALID.ResourceNotFound; uploaded images
            must be real PNG/JPEG of at least 300 px.
        fault_plan: faults to inject (see :class:`FaultPlan`); also :meth:`set_fault_plan`.
        callback_drop_rate: share of replyUrl callbacks silently not sent (seeded).
        progress_callbacks: also POST the model when a task is submitted and when it starts
            processing; default False: one callback, at the final state, as documented.
        callback_echo_reply_ref: add the submission's ``replyRef`` at the top level of each
            callback body; default False: the body is exactly the GET /tasks/{id} model.
        busy_retry_after: seconds in the 429 "busy" answer's Retry-After; default: until
            the account's first job ends, rounded up, at least 1.
        vanish_on_moderation: a prompt with a moderation word is accepted (200) and the
            task then vanishes: polls answer 404 once it would be processing, as useapi.net's
            scripts describe; default False: the POST answers 500 (moderation).
        vanish_on_no_credits: an account out of credits (:meth:`set_out_of_credits`) accepts
            jobs that then vanish the same way; default False: the POST answers 412.
        clock_offset: seconds the simulated service's clock is ahead of this machine's
            (negative: behind); it shows in every ``createTime`` and ``Date`` header. Also
            :meth:`set_clock_offset`.
        host: the address to listen on (default 127.0.0.1).
        port: the port to listen on; 0 picks a free one.
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        accounts: Mapping[str, int] | None = None,
        job_seconds: float = 2.0,
        duration_sigma: float = 0.25,
        job_duration: JobDuration | None = None,
        seed: int = 0,
        eta: bool | str = True,
        moderation_words: tuple[str, ...] = ("nsfw",),
        failure_words: tuple[str, ...] = ("fail",),
        strict_assets: bool = False,
        fault_plan: FaultPlan | None = None,
        callback_drop_rate: float = 0.0,
        progress_callbacks: bool = False,
        callback_echo_reply_ref: bool = False,
        busy_retry_after: float | None = None,
        vanish_on_moderation: bool = False,
        vanish_on_no_credits: bool = False,
        clock_offset: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.token: str = token or os.environ.get("USEAPI_TOKEN") or f"sim-{secrets.token_hex(16)}"
        self.host = host
        self.port = port
        self._state = SimState(
            accounts=DEFAULT_ACCOUNTS if accounts is None else accounts,
            job_seconds=job_seconds,
            duration_sigma=duration_sigma,
            job_duration=job_duration,
            seed=seed,
            moderation_words=moderation_words,
            failure_words=failure_words,
            strict_assets=strict_assets,
            busy_retry_after=busy_retry_after,
            vanish_on_moderation=vanish_on_moderation,
            vanish_on_no_credits=vanish_on_no_credits,
        )
        self._callbacks = CallbackSender(
            seed=seed,
            drop_rate=callback_drop_rate,
            eta=eta,
            state=self._state,
            progress=progress_callbacks,
            echo_reply_ref=callback_echo_reply_ref,
        )
        self._server = SimulatorServer(
            self._state, self._callbacks, token=self.token, eta=eta, seed=seed
        )
        self.set_fault_plan(fault_plan)
        self._runner: web.AppRunner | None = None
        self._true_wall_offset_ms = self._state.wall_offset_ms
        self.set_clock_offset(clock_offset)

    # lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        """Bind and start serving; ``base_url`` is valid afterwards."""
        if self._runner is not None:
            return
        self._server.closing.clear()
        runner = web.AppRunner(self._server.build_app(), access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host  # noqa: S104
        self._state.root_url = f"http://{host}:{self.port}"

    async def close(self) -> None:
        """Stop serving and stop callbacks; idempotent."""
        await self._callbacks.aclose()
        self._server.closing.set()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> KlingSimulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # addresses --------------------------------------------------------------------------
    @property
    def root_url(self) -> str:
        """``http://HOST:PORT`` (no trailing slash)."""
        if not self._state.root_url:
            raise RuntimeError("the simulator is not started")
        return self._state.root_url

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/v1/kling`` (no trailing slash)."""
        return f"{self.root_url}/v1/kling"

    # inspection and control -------------------------------------------------------------
    @property
    def stats(self) -> dict[str, Any]:
        """A snapshot of the counters (same as ``GET /simulator/stats``).

        Keys: tasks_created, tasks [{id, account, endpoint, body, status_name}], posts,
        polls, polls_by_task {id: n}, lists, running {email: n}, peak_running {email: n},
        rate_limited (429 busy answers), faults {kind: n}, uploads, downloads,
        file_requests, file_requests_with_auth, callbacks_sent, callbacks_dropped,
        callbacks_failed, account_errors (596 answers), payment_required (402 and 412
        answers), tasks_vanished (accepted tasks that vanish), polls_gone (404 answers to
        polls of vanished or deleted tasks), polls_expired (410 answers).
        """
        return self._state.snapshot()

    @property
    def open_connections(self) -> int:
        """Client connections the server holds open now (0 when not serving).

        A connection whose request is still being answered (a ``delay`` fault) counts until
        that answer is done, even if the client has gone.
        """
        server = self._runner.server if self._runner is not None else None
        return 0 if server is None else len(server.connections)

    @property
    def accounts(self) -> dict[str, int]:
        """Configured accounts: email -> maxJobs."""
        return {email: a.max_jobs for email, a in self._state.accounts.items()}

    @property
    def tasks(self) -> dict[int, SimTask]:
        """Every task created, by id (live objects: their status is computed on read)."""
        return self._state.tasks

    def set_fault_plan(self, plan: FaultPlan | None) -> None:
        """Inject faults from now on (None: none); the plan's RNGs start afresh."""
        self._server.injector = None if plan is None else FaultInjector(plan)

    def set_clock_offset(self, seconds: float) -> None:
        """Set the service's clock ``seconds`` ahead of this machine's (negative: behind)
        from now on: tasks created afterwards and every ``Date`` header show it (tasks
        created before keep their ``createTime``, as on a real clock that was stepped)."""
        self._state.wall_offset_ms = self._true_wall_offset_ms + seconds * 1000
        self._server.clock_offset = seconds

    def add_account(self, email: str, max_jobs: int) -> None:
        """Configure another account (or change an account's maxJobs)."""
        self._state.add_account(email, max_jobs)

    def _account(self, email: str) -> Account:
        account = self._state.accounts.get(email)
        if account is None:
            raise ValueError(f"unknown account {email!r} (configured: {sorted(self.accounts)})")
        return account

    def set_account_error(self, email: str, reason: str | None = ACCOUNT_ERROR_REASON) -> None:
        """Put an account in error state (its Kling session broke), or repair it (None).

        In error state, every call that uses the account's Kling session (generation
        POSTs, ``GET /tasks/{id}``, ``GET /tasks/``, ``POST /assets``,
        ``GET /assets/download``) answers 596
        ``{"error": "Account <email> in error state: <reason>", "code": 596}``;
        ``GET /accounts`` and ``/scheduler`` still answer (they are useapi.net's own data).
        Jobs already running go on, and can be polled again once the account is repaired.
        """
        self._account(email).error = reason

    def set_out_of_credits(self, email: str, out: bool = True) -> None:
        """Make an account's generation POSTs answer 412 (or stop it with ``out=False``).

        The body is ``{"error": answers.OUT_OF_CREDITS}``: errors.md documents 412 for
        other useapi.net services only, without its text. The account's balance reads 0;
        nothing is created; other calls and running jobs are unaffected.
        """
        self._account(email).out_of_credits = out

    def set_subscription(self, active: bool) -> None:
        """Expire (False) or renew (True) the token's useapi.net subscription.

        While it is expired, every API call with a valid token answers 402
        ``{"error": "Subscription required", "code": 402}`` before doing anything (the file
        "CDN" and ``/simulator/stats`` are not API calls). Running jobs go on.
        """
        self._state.subscription_active = active

    def reset_stats(self) -> None:
        """Zero the counters (tasks stay; ``stats["tasks"]`` restarts empty)."""
        self._state.reset_stats()

    def finish_all(self) -> None:
        """Make every running task final now (succeed, or failed for failure words)."""
        self._callbacks.wake(self._state.finish())

    def expire(self, task_id: int) -> None:
        """Make a task expired: its polls answer 410 from now on (results kept 7 days)."""
        self._state.tasks[task_id].expired = True

    def delete_task(self, task_id: int) -> None:
        """Delete a task as DELETE /tasks/{id} does: its polls answer 404."""
        self._state.tasks[task_id].deleted = True

    def finish(self, task_id: int) -> None:
        """Make one running task final now."""
        self._callbacks.wake(self._state.finish([task_id]))
