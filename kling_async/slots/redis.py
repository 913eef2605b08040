"""RedisSlotPool: job slots shared by every process and host on one Redis.

Per account, under ``{prefix}{account}:``, the pool keeps

- ``holders``: a sorted set, lease token -> expiry (ms, Redis clock). A holder renews its
  leases in the background; a holder that dies (SIGKILL, lost host) stops renewing and
  its slots come back when the lease expires.
- ``queue`` / ``alive``: the waiters' tickets in arrival order (sorted set by a counter)
  and their heartbeat expiry (hash); a slot goes to the oldest live waiter only (FIFO
  across processes). A release publishes on ``freed``: waiters in every process ask again
  at once; they also poll (expired leases free slots silently). A dead waiter's ticket is
  dropped when it expires.
- ``max`` (the account's maxJobs), ``elsewhere`` (jobs running outside the pool, from
  `reconcile`), ``aside`` (why the account is set aside: shared by every process).

Every change is one Lua script, so take and release are atomic. When Redis lost its data
(restart without persistence) while this process had used it, no slot is granted for one
lease time, so that live holders re-register with their next renewal first: a slot is
not granted twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
from typing import Any

from ..errors import AccountError, ConfigurationError, KlingError, TransportError
from .pool import Lease, LocalSlotPool
from .urls import pool_options, without_password
from .wakeups import Wakeups

__all__ = ["RedisSlotPool"]

log = logging.getLogger("kling_async.slots")

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: holders queue alive max elsewhere aside settle
# ARGV: ticket lease_ms alive_ms max_jobs seen_before
_TRY = (
    _NOW
    + """
local why = redis.call('GET', KEYS[6])
if why then
  redis.call('ZREM', KEYS[2], ARGV[1]); redis.call('HDEL', KEYS[3], ARGV[1])
  return {-1, why}
end
if redis.call('EXISTS', KEYS[4]) == 0 and ARGV[5] == '1' then
  -- the state vanished under a process that had seen it: Redis lost its data.
  redis.call('SET', KEYS[7], '1', 'PX', ARGV[2], 'NX')
end
redis.call('SET', KEYS[4], ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[2], ARGV[1]) == false then
  redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[2] .. ':seq'), ARGV[1])
end
redis.call('HSET', KEYS[3], ARGV[1], now + tonumber(ARGV[3]))
local rank = 0
for _, ticket in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local alive = tonumber(redis.call('HGET', KEYS[3], ticket) or '0')
  if alive < now then
    redis.call('ZREM', KEYS[2], ticket); redis.call('HDEL', KEYS[3], ticket)
  elseif ticket == ARGV[1] then
    break
  else
    rank = rank + 1
  end
end
if redis.call('EXISTS', KEYS[7]) == 1 then return {0, rank} end
local free = tonumber(ARGV[4]) - tonumber(redis.call('GET', KEYS[5]) or '0')
  - redis.call('ZCARD', KEYS[1])
if rank < free then
  redis.call('ZREM', KEYS[2], ARGV[1]); redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
  return {1, 0}
end
return {0, rank}
"""
)

# KEYS: holders queue alive [freed]; ARGV: ticket. Publishes on ``freed`` (when given) so
# that waiters in every process ask again at once instead of at their next poll.
_RELEASE = """
redis.call('ZREM', KEYS[2], ARGV[1]); redis.call('HDEL', KEYS[3], ARGV[1])
local held = redis.call('ZREM', KEYS[1], ARGV[1])
if held == 1 and KEYS[4] then redis.call('PUBLISH', KEYS[4], '1') end
return held
"""

# KEYS: holders; ARGV: token lease_ms. Re-registers a lease Redis lost (restart): the job
# behind it still runs. Returns 0 when it had to re-register.
_RENEW = (
    _NOW
    + """
local had = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
if had == false then return 0 end
return 1
"""
)

# KEYS: holders; the live holder count.
_IN_USE = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"""
)


def _redis_errors() -> tuple[type[BaseException], ...]:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return (RedisConnectionError, RedisTimeoutError, OSError)


class RedisSlotPool:
    """A `SlotPool` in Redis, shared by every process using the same URL and prefix.

    Args:
        client: a ``redis.asyncio.Redis`` (see `from_url`).
        lease_seconds: how long a slot outlives a holder that stopped renewing it; holders
            renew every third of it.
        poll_seconds: how often a waiter asks again.
        down_seconds: how long to keep trying while Redis is unreachable before raising
            `TransportError` (or falling back).
        fallback_local: when Redis stays unreachable, take in-process slots instead of
            raising (logged as a warning; processes then no longer share the bound).
        prefix: key prefix; pools with different prefixes are independent.
    """

    def __init__(
        self,
        client: Any,
        *,
        lease_seconds: float = 30.0,
        poll_seconds: float = 0.02,
        down_seconds: float = 30.0,
        fallback_local: bool = False,
        prefix: str = "kling:slots:",
    ) -> None:
        for name, value in (("lease_seconds", lease_seconds), ("poll_seconds", poll_seconds)):
            if not value > 0:
                raise ConfigurationError(f"RedisSlotPool {name}: must be > 0, got {value!r}")
        if not down_seconds >= 0:
            raise ConfigurationError(
                f"RedisSlotPool down_seconds: must be >= 0, got {down_seconds!r}"
            )
        self._redis = client
        self._lease_ms = max(1, round(lease_seconds * 1000))
        self._poll = poll_seconds
        self._down = down_seconds
        self._fallback = LocalSlotPool() if fallback_local else None
        self._prefix = prefix
        #: Where the pool's Redis is (for messages; no password), when made by `from_url`.
        self.url = "the configured Redis"
        self._gave_up = False  # the last call found Redis unreachable for down_seconds
        self._seen: set[str] = set()  # accounts whose state this pool has seen in Redis
        self._renewers: dict[str, asyncio.Task[None]] = {}
        self._wakeups = Wakeups(client, prefix, poll_seconds, _redis_errors)
        self._scripts = {
            name: client.register_script(src)
            for name, src in (("try", _TRY), ("release", _RELEASE), ("renew", _RENEW))
        }
        self._scripts["in_use"] = client.register_script(_IN_USE)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisSlotPool:
        """A pool on the Redis at ``url`` (``redis://host:6379/0``); options as for the
        constructor, also from the URL's query (`kling_async.slots.urls`; those given here
        win). Needs redis-py (``pip install "kling-async[redis]"``)."""
        try:
            import redis.asyncio as aioredis
        except ImportError as exc:
            raise ConfigurationError(
                'slots URL needs redis-py: pip install "kling-async[redis]"'
            ) from exc
        url, from_query = pool_options(url)
        client = aioredis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        pool = cls(client, **{**from_query, **options})
        pool.url = without_password(url)
        return pool

    def _keys(self, account: str, *names: str) -> list[str]:
        return [f"{self._prefix}{account}:{name}" for name in names]

    async def _call(self, what: str, op: Any) -> Any:
        """Run ``op()`` against Redis, retrying while it is unreachable for up to
        ``down_seconds``; then `TransportError`. Once it gave up, calls try once until
        Redis answers again (so a job neither waits twice nor each time to fall back)."""
        errors = _redis_errors()
        loop = asyncio.get_running_loop()
        give_up = loop.time() + (0 if self._gave_up else self._down)
        pause = self._poll
        while True:
            try:
                result = await op()
            except errors as exc:
                if loop.time() >= give_up:
                    self._gave_up = True
                    raise TransportError(
                        f"Redis for the shared job slots at {self.url} is unreachable "
                        f"({what}): {exc}; start it, or add ?fallback=local to the URL "
                        "(fallback_local=True) to use in-process slots meanwhile"
                    ) from exc
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)
            else:
                self._gave_up = False
                return result

    async def acquire(self, account: str, max_jobs: int) -> Lease:
        """Wait, first come first served across processes, for a slot of ``account``
        (its maxJobs ``max_jobs`` is stored with it). `AccountError` when the account is
        set aside; `TransportError` when Redis stays unreachable (unless
        ``fallback_local``)."""
        if max_jobs < 1:
            raise ConfigurationError(f"max_jobs for {account}: must be >= 1, got {max_jobs!r}")
        ticket = secrets.token_hex(12)
        names = ("holders", "queue", "alive", "max", "elsewhere", "aside", "settle")
        keys = self._keys(account, *names)
        try:
            why = await self._wait_turn(account, max_jobs, ticket, keys)
        except TransportError:
            if self._fallback is None:
                raise
            log.warning(
                "Redis at %s unreachable: taking an in-process slot of %s (other processes "
                "no longer share this bound)",
                self.url,
                account,
            )
            return await self._fallback.acquire(account, max_jobs)
        except BaseException:
            with contextlib.suppress(Exception):  # leave the queue now, not at expiry
                await asyncio.shield(self._scripts["release"](keys=keys[:3], args=[ticket]))
            raise
        if why is not None:
            raise AccountError(
                f"account {account} is set aside (after: {why}); no request was sent. "
                "Repair the account, then call restore(account) on the pool",
                status=596,
            )
        lease = Lease(account, ticket)
        self._renewers[ticket] = asyncio.create_task(self._keep(lease))
        return lease

    async def _wait_turn(
        self, account: str, max_jobs: int, ticket: str, keys: list[str]
    ) -> str | None:
        """Poll until ``ticket`` is granted (None) or the account is set aside (why)."""
        alive_ms = max(self._lease_ms, round(self._poll * 20_000))
        freed = self._wakeups.watch(account)
        try:
            while True:
                freed.clear()  # before asking: a release after our ask wakes us
                seen = "1" if account in self._seen else "0"
                args = [ticket, self._lease_ms, alive_ms, max_jobs, seen]
                granted, detail = await self._call(
                    "acquire", functools.partial(self._scripts["try"], keys=keys, args=args)
                )
                self._seen.add(account)
                if granted == 1:
                    return None
                if granted == -1:
                    return detail.decode() if isinstance(detail, bytes) else str(detail)
                # asyncio.TimeoutError: on 3.10 it is not the builtin TimeoutError
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(freed.wait(), self._poll)
        finally:
            self._wakeups.unwatch(account, freed)

    async def _keep(self, lease: Lease) -> None:
        """Renew ``lease`` every third of the lease time until it is released."""
        while True:
            await asyncio.sleep(self._lease_ms / 3000)
            try:
                await self.renew(lease)
            except Exception as exc:  # noqa: BLE001 -- Redis down: keep trying
                log.warning("could not renew a job slot of %s: %s", lease.account, exc)

    async def release(self, lease: Lease) -> None:
        """Free the lease's slot (twice does nothing). When Redis is unreachable the slot
        comes back when its lease expires."""
        task = self._renewers.pop(lease.token, None)
        if task is not None:  # stopped first, so that no renewal lands after the release
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if lease.token.startswith("local-"):
            if self._fallback is not None:
                await self._fallback.release(lease)
            return
        keys = self._keys(lease.account, "holders", "queue", "alive", "freed")
        try:
            await self._scripts["release"](keys=keys, args=[lease.token])
        except _redis_errors() as exc:
            log.warning("could not release a job slot of %s (it expires): %s", lease.account, exc)

    async def renew(self, lease: Lease) -> bool:
        """Extend the lease by the lease time; False when Redis had lost it (it is then
        registered again: the job behind it still runs)."""
        if lease.token.startswith("local-"):
            return True
        keys = self._keys(lease.account, "holders")
        kept = await self._scripts["renew"](keys=keys, args=[lease.token, self._lease_ms])
        lease.lost = lease.lost or kept == 0
        return bool(kept)

    async def set_aside(self, account: str, error: KlingError) -> None:
        """Give no more slots of ``account`` in any process until `restore`."""
        [key] = self._keys(account, "aside")
        await self._call(
            "set_aside", lambda: self._redis.set(key, str(error) or type(error).__name__)
        )

    async def restore(self, account: str) -> None:
        """Give slots of ``account`` again, in every process."""
        [key] = self._keys(account, "aside")
        await self._call("restore", lambda: self._redis.delete(key))

    async def is_set_aside(self, account: str) -> str | None:
        """Why ``account`` is set aside, or None."""
        [key] = self._keys(account, "aside")
        why = await self._call("is_set_aside", lambda: self._redis.get(key))
        return why.decode() if isinstance(why, bytes) else why

    async def reconcile(self, account: str, running_elsewhere: int) -> None:
        """Count ``running_elsewhere`` jobs (running on the server but not holding a slot
        of this pool, from ``GET /scheduler/available``) against the account."""
        if isinstance(running_elsewhere, bool) or running_elsewhere < 0:
            raise ConfigurationError(
                f"running_elsewhere: must be an int >= 0, got {running_elsewhere!r}"
            )
        [key] = self._keys(account, "elsewhere")
        # Expires: outside jobs end unseen; the next 429 or start-up counts them again.
        keep = max(60_000, self._lease_ms * 2)
        await self._call("reconcile", lambda: self._redis.set(key, int(running_elsewhere), px=keep))

    async def in_use(self, account: str) -> int:
        """How many leases of ``account`` are live in Redis now."""
        keys = self._keys(account, "holders")
        return int(await self._call("in_use", lambda: self._scripts["in_use"](keys=keys)))

    async def waiting(self, account: str) -> int:
        """How many acquirers (in any process) wait for a slot of ``account`` now."""
        [key] = self._keys(account, "queue")
        return int(await self._call("waiting", lambda: self._redis.zcard(key)))

    async def close(self) -> None:
        """Stop renewing (leases then expire) and close the connection pool."""
        tasks = list(self._renewers.values())
        self._renewers.clear()
        await self._wakeups.aclose()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._redis.aclose()
