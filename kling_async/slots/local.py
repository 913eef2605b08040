"""JobSlots: how many jobs may run at once on each account.

A slot is taken before the POST that creates a job and given back when the job is final
(succeeded or failed); when its caller stops waiting first (timed out, cancelled), the
client hands the slot to a follower that gives it back when the job ends (`SlotHold.detach`,
`KlingClient.run`). An account's size is its ``max_jobs``: given
per account, or read once from ``GET /accounts/{email}`` by the ``fetch_max_jobs`` callable.
A job without an email goes to the account with the most free slots; if none is free it
waits for the first slot freed on any account.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from ..config import MAX_JOBS_RANGE
from ..errors import AccountError, ConfigurationError, KlingError
from .link import Capacity, PoolLink

if TYPE_CHECKING:
    from .pool import Lease, SlotPool

log = logging.getLogger("kling_async.slots")

__all__ = ["JobSlots", "SlotHold"]


def _check_max_jobs(email: str, value: int | None) -> None:
    low, high = MAX_JOBS_RANGE
    if value is not None and (isinstance(value, bool) or not low <= value <= high):
        raise ConfigurationError(f"max_jobs for {email or 'the account'}: must be {low}..{high}")


class JobSlots:
    """Per-account job slots, sized by ``max_jobs``.

    ``accounts`` maps each email to its slot count, or to None to read it with
    ``fetch_max_jobs(email)`` on first use. The key ``""`` stands for "the only account"
    when no email is configured.

    ``pool`` (a `SlotPool`, e.g. `RedisSlotPool`) shares the slots with other processes:
    each slot taken here also takes a lease of the pool, and an account set aside here is
    set aside in the pool. ``capacity(email)`` reads the server's free capacity
    (``GET /scheduler/available``): before an account's first lease, and via `reconcile`,
    the pool then counts the jobs started outside it. The pool knows an account by its
    email: ``email_of("")`` names the implicit single account (the client reads it from
    ``GET /accounts``); without it, a pool refuses ``""`` (never one key for two tokens).
    """

    def __init__(
        self,
        accounts: Mapping[str, int | None],
        fetch_max_jobs: Callable[[str], Awaitable[int]] | None = None,
        *,
        pool: SlotPool | None = None,
        capacity: Capacity | None = None,
        email_of: Callable[[str], Awaitable[str]] | None = None,
    ) -> None:
        if not accounts:
            raise ConfigurationError("JobSlots needs at least one account")
        for email, value in accounts.items():
            _check_max_jobs(email, value)
        self._limits: dict[str, int | None] = dict(accounts)
        self._used: dict[str, int] = dict.fromkeys(accounts, 0)
        self._peak: dict[str, int] = dict.fromkeys(accounts, 0)
        self._fetch = fetch_max_jobs
        self._sizing: asyncio.Lock | None = None
        self._sized = False
        self._waiters: dict[int, tuple[asyncio.Future[str], str | None]] = {}
        self._next_key = 0
        self._out: dict[str, KlingError] = {}  # accounts set aside, with the reason
        self.pool = pool
        self._link = None if pool is None else PoolLink(pool, accounts, capacity, email_of)
        self._leases: dict[str, list[Lease]] = {}  # a pool's leases are interchangeable
        self._pool_calls: set[asyncio.Task[None]] = set()

    @property
    def accounts(self) -> list[str]:
        """The account emails ("" for the implicit single account)."""
        return list(self._limits)

    def limit(self, email: str) -> int | None:
        """The slot count of an account (None until read from the server)."""
        return self._limits[email]

    def in_use(self, email: str) -> int:
        """How many slots of an account are held now."""
        return self._used[email]

    def peak(self, email: str) -> int:
        """The most slots of an account ever held at once."""
        return self._peak[email]

    def disabled(self) -> dict[str, KlingError]:
        """The accounts set aside by `disable`, with the error that made them so."""
        return dict(self._out)

    def disable(self, email: str, reason: KlingError) -> None:
        """Give no more slots of ``email`` (an account in error state, say).

        Jobs that asked for that account by name, queued or to come, fail with an
        `AccountError` saying why; jobs that take any account go to the others, and fail
        the same way only when every account is set aside. Slots held now stay held.
        """
        self._check_known(email)
        self._out[email] = reason
        if self._link is not None:
            self._in_background(self._link.share_aside(email, reason))
        none_left = self._all_out()
        for granted, wanted in self._waiters.values():
            if not granted.done() and (wanted == email or (wanted is None and none_left)):
                granted.set_exception(self._refusal(wanted or email))

    def enable(self, email: str) -> None:
        """Use ``email`` again (after the account was repaired, e.g. re-added)."""
        self._check_known(email)
        if self._link is not None:
            self._in_background(self._link.share_aside(email, None))
        if self._out.pop(email, None) is not None:
            self._dispatch()

    def _refusal(self, email: str) -> AccountError:
        reason = self._out.get(email)
        if reason is None or self._all_out():
            reason = reason or next(iter(self._out.values()))
            what = "every account is set aside"
        else:
            what = f"account {email} is set aside"
        return AccountError(
            f"{what} (after: {reason}); no request was sent. Repair the account (re-add it "
            "with POST /accounts), then call enable(email) on the client's slots",
            status=getattr(reason, "status", 596),
        )

    def _check_known(self, email: str) -> None:
        if email not in self._limits:
            known = ", ".join(sorted(a for a in self._limits if a)) or "none"
            raise ConfigurationError(f"unknown account {email!r} (configured: {known})")

    async def _ensure_sized(self) -> None:
        if all(v is not None for v in self._limits.values()):
            self._sized = True
            return
        if self._sizing is None:
            self._sizing = asyncio.Lock()
        async with self._sizing:
            for email, value in self._limits.items():
                if value is not None:
                    continue
                if self._fetch is None:
                    raise ConfigurationError(f"max_jobs for {email or 'the account'} is unknown")
                fetched = await self._fetch(email)
                _check_max_jobs(email, fetched)
                self._limits[email] = fetched
            self._sized = True

    def _free(self, email: str) -> int:
        if email in self._out:
            return 0
        limit = self._limits[email]
        return (limit or 0) - self._used[email]

    def _pick(self, email: str | None) -> str | None:
        if email is None and len(self._limits) == 1:
            email = next(iter(self._limits))
            if email in self._out:
                return None
        if email is not None:
            return email if (self._limits[email] or 0) > self._used[email] else None
        best = max(self._limits, key=self._free)
        return best if self._free(best) > 0 else None

    def _any_free(self) -> bool:
        used, out = self._used, self._out
        for account, limit in self._limits.items():  # a loop: no generator per call
            if (limit or 0) > used[account] and account not in out:
                return True
        return False

    def acquire(self, email: str | None = None) -> SlotHold:
        """Hold one slot for the block (``async with slots.acquire(email) as account``).

        ``email`` picks the account; None takes the account with the most free slots.
        Yields the account's email. Freed slots are handed to waiters in arrival order.
        Cancellation while waiting takes nothing; leaving the block frees the slot, unless
        it was handed on with `SlotHold.detach`.
        """
        if email is not None:
            self._check_known(email)
        return SlotHold(self, email)

    # The two methods below are what SlotHold (in this module) uses of JobSlots; nothing
    # else outside the class touches its state.

    async def _claim(self, email: str | None) -> str:
        """Take one slot of ``email`` (any account when None), waiting in arrival order;
        the chosen account. Cancellation while waiting takes nothing."""
        if not self._sized:
            await self._ensure_sized()
        if self._out:
            self._check_out(email)
        chosen = self._pick(email)
        if chosen is not None:
            self._take(chosen)
        else:
            key, granted = self._queue(email)
            try:
                chosen = await granted
            except asyncio.CancelledError:
                if granted.done() and not granted.cancelled():
                    self._release(granted.result())  # handed a slot as we were cancelled
                raise
            finally:
                self._waiters.pop(key, None)
        if self.pool is not None:
            try:
                lease = await self._lease(chosen)
            except BaseException:
                self._release(chosen)
                raise
            self._leases.setdefault(chosen, []).append(lease)
        return chosen

    async def _lease(self, account: str) -> Lease:
        """The pool's lease for a slot taken here (the local slot bounds this process's
        waiters in the pool's queue to maxJobs per account)."""
        assert self._link is not None
        return await self._link.lease(account, self._limits[account] or 1, self._limits)

    async def reconcile(self, email: str) -> None:
        """Read the server's free capacity of ``email`` and tell the pool how many jobs run
        there outside it (started by another client, another tool); a no-op without a pool
        or a ``capacity`` callable. Called before an account's first lease, and when the
        server answered 429 although the pool had a free slot."""
        if self._link is not None:
            await self._link.reconcile(email, self._limits)

    def _give_back(self, account: str) -> None:
        """Free one slot of ``account`` taken by `_claim`, handing it to the next waiter."""
        leases = self._leases.get(account)
        if self.pool is not None and leases:
            self._in_background(self.pool.release(leases.pop()))
        self._release(account)

    def _in_background(self, call: Awaitable[None]) -> None:
        """Run a pool call from sync code (freeing happens in callbacks); kept referenced
        until done, its failure logged (a lease not released expires)."""

        async def run() -> None:
            try:
                await call
            except Exception as exc:  # noqa: BLE001 -- the pool's state expires on its own
                log.warning("shared job slots: %s", exc)

        task = asyncio.get_running_loop().create_task(run())
        self._pool_calls.add(task)
        task.add_done_callback(self._pool_calls.discard)

    async def aclose(self, *, close_pool: bool = True) -> None:
        """Finish the pool calls under way (releases), then close the pool (unless
        ``close_pool`` is False: a pool given by the caller stays open)."""
        if self._pool_calls:
            await asyncio.wait(set(self._pool_calls))
        if self.pool is not None and close_pool:
            await self.pool.close()

    def _check_out(self, email: str | None) -> None:
        if email in self._out or self._all_out():
            raise self._refusal(email or next(iter(self._out)))

    def _all_out(self) -> bool:
        """Whether every account is set aside."""
        return all(a in self._out for a in self._limits)

    def _queue(self, email: str | None) -> tuple[int, asyncio.Future[str]]:
        """A place in the queue: its key and the future that receives the account."""
        granted: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        key = self._next_key
        self._next_key += 1
        self._waiters[key] = (granted, email)
        return key, granted

    def _take(self, email: str) -> None:
        self._used[email] += 1
        self._peak[email] = max(self._peak[email], self._used[email])

    def _release(self, email: str) -> None:
        self._used[email] -= 1
        self._dispatch()

    def _dispatch(self) -> None:
        waiters = self._waiters
        if not waiters:
            return
        # Hand freed slots straight to the oldest waiters that can use them (the dict keeps
        # arrival order; with one account this stops at the first waiter).
        served: list[int] = []
        for key, (granted, wanted) in waiters.items():
            if granted.done():
                served.append(key)
                continue
            chosen = self._pick(wanted)
            if chosen is None:
                continue
            self._take(chosen)
            granted.set_result(chosen)
            served.append(key)
            if not self._any_free():
                break
        for key in served:
            del waiters[key]


class SlotHold:
    """One slot held for an ``async with`` block (what `JobSlots.acquire` returns).

    `detach` hands the slot on to whoever must keep it past the block (a job that still
    runs on the server after its caller stopped waiting): the block's end then frees
    nothing, and the returned hold's `release` frees the slot.
    """

    __slots__ = ("_account", "_email", "_slots")

    def __init__(self, slots: JobSlots, email: str | None) -> None:
        self._slots = slots
        self._email = email
        self._account: str | None = None

    async def __aenter__(self) -> str:
        return await self.take()

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()

    async def take(self) -> str:
        """Take the slot (waiting for one if none is free); the account's email. What
        ``async with`` does on entry; free it with `release`."""
        if self._account is not None:
            raise RuntimeError("a slot context cannot be entered twice")
        chosen = await self._slots._claim(self._email)
        self._account = chosen
        return chosen

    def release(self) -> None:
        """Free the slot now (once; later calls do nothing)."""
        account, self._account = self._account, None
        if account is not None:
            self._slots._give_back(account)

    def detach(self) -> SlotHold:
        """Move the held slot to a new hold, which frees it on `release`; this one then
        holds nothing."""
        if self._account is None:
            raise RuntimeError("no slot is held")
        moved = SlotHold(self._slots, self._email)
        moved._account, self._account = self._account, None
        return moved
