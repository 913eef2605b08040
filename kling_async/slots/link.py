"""How `JobSlots` uses a shared `SlotPool`: the pool's name for each account, the first
recount of jobs running elsewhere, leases, and accounts set aside.

The pool knows an account by its email only. The implicit single account (``""``: the
client was given no email) is named by ``email_of("")`` (the client reads it from
``GET /accounts``) before its first shared slot: a fixed stand-in name would let two
tokens, or two processes with other defaults, share one key, and the token itself is
never stored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from ..errors import ConfigurationError, KlingError

if TYPE_CHECKING:
    from .pool import Lease, SlotPool

__all__ = ["Capacity", "PoolLink"]

#: Free capacity of an account on the server (``GET /scheduler/available``), None: unknown.
Capacity = Callable[[str], Awaitable["int | None"]]

log = logging.getLogger("kling_async.slots")


class PoolLink:
    """`JobSlots`' side of a shared ``pool`` for its ``accounts`` (``""``: the implicit
    one, named by ``email_of``); ``capacity`` reads the server's free capacity."""

    def __init__(
        self,
        pool: SlotPool,
        accounts: Iterable[str],
        capacity: Capacity | None = None,
        email_of: Callable[[str], Awaitable[str]] | None = None,
    ) -> None:
        self.pool = pool
        self._capacity = capacity
        self._email_of = email_of
        self._keys = {account: account for account in accounts if account}
        self._naming = asyncio.Lock()
        self._reconciled: set[str] = set()

    async def key(self, account: str) -> str:
        """The pool's name for ``account``: its email (for ``""``, the one ``email_of``
        reads, once). `ConfigurationError` for ``""`` without ``email_of``."""
        async with self._naming:  # one lookup however many jobs start at once
            if account not in self._keys:
                if self._email_of is None:
                    raise ConfigurationError(
                        "shared job slots need the account's email: configure it (email=)"
                    )
                self._keys[account] = await self._email_of(account)
        return self._keys[account]

    async def lease(self, account: str, max_jobs: int, limits: Mapping[str, int | None]) -> Lease:
        """A lease of ``account`` (sized ``max_jobs``); the first one recounts the jobs
        running elsewhere (`reconcile`)."""
        key = await self.key(account)
        if account not in self._reconciled:
            self._reconciled.add(account)
            try:
                await self.reconcile(account, limits)
            except KlingError as exc:  # the pool still bounds its own holders
                log.warning("could not reconcile the shared slots of %s: %s", key, exc)
        return await self.pool.acquire(key, max_jobs)

    async def reconcile(self, email: str, limits: Mapping[str, int | None]) -> None:
        """Tell the pool how many jobs run on ``email`` (a key of ``limits``, or the email
        of ``""``) outside it: the server's running count less the pool's holders."""
        if self._capacity is None:
            return
        # the submitter names the implicit single account ("") by its email
        local = {key: account for account, key in self._keys.items()}.get(email, email)
        limit = limits.get(local)
        if limit is None:
            return
        email = await self.key(local)
        # Holders counted before and after the server's answer, the larger: a job ending
        # (its lease released) in between must not count as running elsewhere, which
        # would hold its slot from everyone until the count expires.
        before = await self.pool.in_use(email)
        free = await self._capacity(email)
        if free is None:
            return
        outside = max(0, limit - free - max(before, await self.pool.in_use(email)))
        if outside:
            log.info("%d jobs run on %s outside the shared slots: counted", outside, email)
        await self.pool.reconcile(email, outside)

    async def share_aside(self, account: str, reason: KlingError | None) -> None:
        """Set ``account`` aside in the pool (``reason`` None: restore it there)."""
        key = await self.key(account)
        await (self.pool.restore(key) if reason is None else self.pool.set_aside(key, reason))
