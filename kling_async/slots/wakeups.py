"""Wake-ups for the Redis pool's waiters: a slot was freed in some process.

A release publishes on ``{prefix}{account}:freed``; one pattern subscription per pool turns
each message into its account's `asyncio.Event`, so waiters ask again at once instead of
at their next poll. Polling stays: a lease that expires frees its slot without a message,
and while Redis is away the subscription is re-made every ``pause`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

__all__ = ["Wakeups"]


class Wakeups:
    """Per-account "a slot was freed" events, fed by one Redis pattern subscription."""

    def __init__(
        self,
        client: Any,
        prefix: str,
        pause: float,
        redis_errors: Callable[[], tuple[type[BaseException], ...]],
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._pause = pause
        self._errors = redis_errors
        # One event per waiter: a waiter clearing its own never hides a release from another.
        self._events: dict[str, set[asyncio.Event]] = {}
        self._listener: asyncio.Task[None] | None = None
        # redis-py's get_message can swallow a cancellation: the loop also checks this flag.
        self._stopping = False

    def watch(self, account: str) -> asyncio.Event:
        """A new wake-up event of one waiter, set on each release of ``account`` until
        `unwatch`; listening starts here."""
        if self._listener is None or self._listener.done():
            self._listener = asyncio.get_running_loop().create_task(self._listen())
        event = asyncio.Event()
        self._events.setdefault(account, set()).add(event)
        return event

    def unwatch(self, account: str, event: asyncio.Event) -> None:
        """Stop setting ``event`` (its waiter is served or gone)."""
        self._events.get(account, set()).discard(event)

    async def _listen(self) -> None:
        glob = "".join(f"\\{c}" if c in "*?[]\\" else c for c in self._prefix)
        start, end = len(self._prefix), -len(":freed")
        errors = self._errors()
        while not self._stopping:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.psubscribe(f"{glob}*:freed")
                while not self._stopping:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                    if message is None:
                        continue
                    channel = message["channel"]
                    channel = channel.decode() if isinstance(channel, bytes) else channel
                    for event in self._events.get(channel[start:end], ()):
                        event.set()
            except errors:
                await asyncio.sleep(self._pause)
            finally:
                with contextlib.suppress(*errors):
                    await asyncio.shield(pubsub.aclose())

    async def aclose(self) -> None:
        """Stop listening."""
        listener, self._listener = self._listener, None
        self._stopping = True
        if listener is not None:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
