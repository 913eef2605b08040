"""replyUrl delivery: POST the task model to the callback URL, as useapi.net documents it.

Only tasks with a ``replyUrl`` get a watcher coroutine. By default the body is exactly the
GET /tasks/{task_id} model (nothing injected) and it is posted once, at the final state ("once
job completed or failed"). Options add a callback per earlier status (submitted, processing)
and echo the submission's ``replyRef`` at the body's top level. Delivery is best effort, like
the real service's (whose retries are undocumented): no retry, a down receiver is only counted.
A seeded share of callbacks can be dropped on purpose to exercise a client's polling fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import Any

import aiohttp

from kling_async.testing.state import SimState, SimTask
from kling_async.testing.wire import task_model

__all__ = ["CallbackSender"]


class CallbackSender:
    """Watches tasks with a replyUrl and posts their model at the final state (or each change)."""

    def __init__(
        self,
        *,
        seed: int,
        drop_rate: float,
        eta: bool | str,
        state: SimState,
        progress: bool = False,
        echo_reply_ref: bool = False,
    ) -> None:
        self.drop_rate = drop_rate
        self.progress = progress
        self.echo_reply_ref = echo_reply_ref
        self.eta = eta
        self.state = state
        self._rng = random.Random(f"{seed}:callbacks")  # noqa: S311 (seeded on purpose)
        self._session: aiohttp.ClientSession | None = None
        self._wakeups: dict[int, asyncio.Event] = {}
        self._watchers: set[asyncio.Task[None]] = set()

    def watch(self, task: SimTask) -> None:
        """Start delivering ``task``'s status changes (call right after it was created)."""
        self._wakeups[task.id] = asyncio.Event()
        watcher = asyncio.get_running_loop().create_task(self._run(task))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    def wake(self, tasks: list[SimTask]) -> None:
        """Re-read the schedules of ``tasks`` (after they were finished early)."""
        for task in tasks:
            event = self._wakeups.get(task.id)
            if event is not None:
                event.set()

    async def _run(self, task: SimTask) -> None:
        sent: set[str] = set()
        event = self._wakeups[task.id]
        try:
            while True:
                phases = [(task.final_at, "final")]
                if self.progress:
                    phases.insert(0, (task.created_at, "submitted"))
                if self.progress and task.started_at < task.final_at:
                    phases.insert(1, (task.started_at, "processing"))
                now = time.monotonic()
                pending = [(at, name) for at, name in phases if name not in sent]
                for at, name in pending:
                    if at > now:
                        break
                    sent.add(name)
                    await self._post(task, at)
                else:
                    return
                event.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(event.wait(), max(0.0, at - time.monotonic()))
        finally:
            self._wakeups.pop(task.id, None)

    async def _post(self, task: SimTask, at: float) -> None:
        if self.drop_rate and self._rng.random() < self.drop_rate:
            self.state.counters.callbacks_dropped += 1
            return
        url = task.request.reply_url
        assert url is not None
        body: dict[str, Any] = task_model(task, at, eta=self.eta)
        if self.echo_reply_ref and task.request.reply_ref is not None:
            body["replyRef"] = task.request.reply_ref
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=10, connect=5, sock_connect=5, sock_read=10)
            self._session = aiohttp.ClientSession(timeout=timeout)
        try:
            async with self._session.post(url, json=body) as response:
                await response.read()
                ok = response.status < 300
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
            ok = False
        if ok:
            self.state.counters.callbacks_sent += 1
        else:
            self.state.counters.callbacks_failed += 1

    async def aclose(self) -> None:
        """Stop every watcher and close the HTTP session."""
        for watcher in list(self._watchers):
            watcher.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
