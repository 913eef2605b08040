"""The slot-pool backend interface, and its in-process implementation.

A pool hands out *leases*: one lease is one job slot of one account, held from `acquire`
until `release`. Pools shared between processes (`RedisSlotPool`) expire a lease that is
not renewed, so a holder that dies frees its slots; the in-process pool never needs to.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ..errors import KlingError
from .local import JobSlots, SlotHold

__all__ = ["Lease", "LocalSlotPool", "SlotPool"]

_tokens = itertools.count(1)


@dataclass(eq=False)
class Lease:
    """One slot of ``account`` held in a pool; pass it back to the pool's `release`.

    ``token`` identifies the lease in the pool. ``lost`` is True once the pool found the
    lease gone (expired while its holder could not renew it); the slot is then no longer
    counted for this holder.
    """

    account: str
    token: str
    lost: bool = False
    _handle: object = field(default=None, repr=False)


@runtime_checkable
class SlotPool(Protocol):
    """Per-account counting semaphores sized by the account's maxJobs.

    ``acquire`` waits (first come, first served) for a free slot and returns its lease;
    ``release`` frees it (twice is harmless); ``renew`` extends a lease (False when it was
    lost). ``set_aside`` stops giving slots of an account (a 596 account error) until
    ``restore``; waiters and later callers get an `AccountError`. ``reconcile`` tells the
    pool how many jobs run on the account outside it (from ``GET /scheduler/available``).
    """

    async def acquire(self, account: str, max_jobs: int) -> Lease:
        """Wait for one slot of ``account`` (sized ``max_jobs``) and return its lease."""
        ...

    async def release(self, lease: Lease) -> None:
        """Free the lease's slot; releasing twice does nothing."""
        ...

    async def renew(self, lease: Lease) -> bool:
        """Extend the lease; False when the pool no longer had it."""
        ...

    async def set_aside(self, account: str, error: KlingError) -> None:
        """Give no more slots of ``account`` until `restore`."""
        ...

    async def restore(self, account: str) -> None:
        """Give slots of ``account`` again."""
        ...

    async def is_set_aside(self, account: str) -> str | None:
        """Why ``account`` is set aside (the error's text), or None."""
        ...

    async def reconcile(self, account: str, running_elsewhere: int) -> None:
        """Count ``running_elsewhere`` jobs started outside the pool against the account."""
        ...

    async def in_use(self, account: str) -> int:
        """How many slots of ``account`` the pool counts as held now."""
        ...

    async def close(self) -> None:
        """Release everything the pool holds open (connections, renewal tasks)."""
        ...


class LocalSlotPool:
    """The in-process `SlotPool`: one `JobSlots` per account, created on first use.

    Fair in arrival order within the process; nothing is shared with other processes.
    """

    def __init__(self) -> None:
        self._slots: dict[str, JobSlots] = {}
        self._elsewhere: dict[str, list[SlotHold]] = {}
        # Accounts set aside before their first acquire (no JobSlots for them yet).
        self._pending_aside: dict[str, KlingError] = {}

    def _for(self, account: str, max_jobs: int) -> JobSlots:
        slots = self._slots.get(account)
        if slots is None:
            slots = self._slots[account] = JobSlots({account: max_jobs})
            if account in self._pending_aside:
                slots.disable(account, self._pending_aside.pop(account))
        return slots

    async def acquire(self, account: str, max_jobs: int) -> Lease:
        """Wait for one slot of ``account`` (sized ``max_jobs`` on first use)."""
        hold = self._for(account, max_jobs).acquire(account)
        await hold.take()
        return Lease(account, f"local-{next(_tokens)}", _handle=hold)

    async def release(self, lease: Lease) -> None:
        """Free the lease's slot; releasing twice does nothing."""
        if isinstance(lease._handle, SlotHold):
            lease._handle.release()

    async def renew(self, lease: Lease) -> bool:
        """In-process leases never expire: True while held."""
        return not lease.lost

    async def set_aside(self, account: str, error: KlingError) -> None:
        """Give no more slots of ``account``; its waiters fail with `AccountError`."""
        if account in self._slots:
            self._slots[account].disable(account, error)
        else:
            self._pending_aside[account] = error

    async def restore(self, account: str) -> None:
        """Give slots of ``account`` again."""
        self._pending_aside.pop(account, None)
        if account in self._slots:
            self._slots[account].enable(account)

    async def is_set_aside(self, account: str) -> str | None:
        """Why ``account`` is set aside, or None."""
        slots = self._slots.get(account)
        error = slots.disabled().get(account) if slots else self._pending_aside.get(account)
        return None if error is None else str(error)

    async def reconcile(self, account: str, running_elsewhere: int) -> None:
        """Hold ``running_elsewhere`` slots of ``account`` for jobs started elsewhere
        (giving back earlier ones when the count fell). Needs the account known (after a
        first `acquire`)."""
        slots = self._slots.get(account)
        if slots is None:
            return
        held = self._elsewhere.setdefault(account, [])
        while len(held) > max(0, running_elsewhere):
            held.pop().release()
        limit = slots.limit(account) or 0
        while len(held) < min(running_elsewhere, limit) and slots.in_use(account) < limit:
            hold = slots.acquire(account)
            await hold.take()  # a slot is free: taking it does not wait
            held.append(hold)

    async def in_use(self, account: str) -> int:
        """How many slots of ``account`` are held now."""
        slots = self._slots.get(account)
        return slots.in_use(account) if slots else 0

    async def close(self) -> None:
        """Nothing to close in process."""
