"""Choosing the client's shared slot pool, and reading the server's free capacity.

`pool_from` turns ``KlingClient(slots=...)`` (or ``$KLING_SLOTS`` when not given) into a
`SlotPool`: None / "" / "local" keep the in-process slots; a ``redis://`` URL makes a
`RedisSlotPool` (``?fallback=local`` in the URL: in-process slots, with a warning, while
Redis is unreachable). `scheduler_capacity` is the pool's view of the server
(``GET /scheduler/available``).
"""

from __future__ import annotations

import os
from typing import Any

from ..config import SLOTS_ENV
from ..errors import ConfigurationError
from ..transport import Transport
from .pool import SlotPool
from .redis import RedisSlotPool

__all__ = ["pool_from", "scheduler_capacity"]


def pool_from(slots: str | SlotPool | None) -> tuple[SlotPool | None, bool]:
    """The pool ``slots`` names (None: in-process slots) and whether the caller owns it
    (made here from a URL: closed with the client)."""
    if slots is None:
        slots = os.environ.get(SLOTS_ENV, "")
    if isinstance(slots, str):
        if slots in ("", "local"):
            return None, False
        return RedisSlotPool.from_url(slots), True
    if not isinstance(slots, SlotPool):
        raise ConfigurationError(
            f"slots: must be a redis:// URL or a SlotPool, got {type(slots).__name__}"
        )
    return slots, False


async def scheduler_capacity(transport: Transport, email: str) -> int | None:
    """``email``'s free capacity on the server (``GET /scheduler/available``), None when
    the answer does not list it."""
    answer: Any = await transport.call("GET", "scheduler/available")
    rows = answer.get("available") if isinstance(answer, dict) else None
    for row in rows if isinstance(rows, list) else []:
        if isinstance(row, dict) and row.get("email") == email:
            free = row.get("available")
            return free if isinstance(free, int) and not isinstance(free, bool) else None
    return None
