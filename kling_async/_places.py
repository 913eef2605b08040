"""Places: a first-come, first-served semaphore whose free path runs no coroutine.

``asyncio.Semaphore`` and ``asyncio.Lock`` cost two or three coroutines per ``async with``
even when nobody waits; the client takes a place on every poll and every submission, so
it uses this instead::

    if not places.try_enter():
        await places.enter()
    try:
        ...
    finally:
        places.leave()
"""

from __future__ import annotations

import asyncio
import collections
import contextlib

__all__ = ["Places"]


class Places:
    """At most ``size`` holders at once (None: no bound); the queue is served in order.

    `try_enter` takes a free place; `enter` waits for one (after `try_enter` said no);
    `leave` gives a place back.
    """

    __slots__ = ("_busy", "_queued", "_size")

    def __init__(self, size: int | None) -> None:
        self._size = size
        self._busy = 0
        self._queued: collections.deque[asyncio.Future[None]] | None = None

    def try_enter(self) -> bool:
        """Take a place if one is free and nobody queues for one."""
        if self._size is None:
            return True
        if self._busy < self._size and not self._queued:
            self._busy += 1
            return True
        return False

    async def enter(self) -> None:
        """Wait for a place (after `try_enter` said no)."""
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._queued is None:
            self._queued = collections.deque()
        self._queued.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.leave()  # handed a place as we were cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):  # leave() may have dropped it
                    self._queued.remove(turn)
            raise

    def leave(self) -> None:
        """Give back a place taken by `try_enter` or `enter`: it goes straight to the
        longest waiting caller, if any."""
        if self._size is None:
            return
        queued = self._queued
        while queued:
            turn = queued.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self._busy -= 1

    @property
    def waiting(self) -> int:
        """How many callers queue for a place."""
        return sum(not turn.done() for turn in self._queued or ())

    @property
    def idle(self) -> bool:
        """Nobody holds or waits for a place."""
        return self._busy == 0 and not self._queued
