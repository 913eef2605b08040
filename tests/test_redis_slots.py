"""RedisSlotPool against a real redis-server: leases, FIFO, set-aside, lost data.

The deployments (worker processes, SIGKILL, Redis restarts) are in test_redis_fleet.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from helpers import TOKEN
from redis_helpers import (
    ACCOUNT,
    until,
)

LEASE = 1.0  # seconds: short, so a stopped holder's slots come back soon


@pytest.fixture
async def pool(redis_url: str, prefix: str) -> AsyncIterator[object]:
    """A RedisSlotPool on the session's Redis."""
    from kling_async.slots import RedisSlotPool

    the_pool = RedisSlotPool.from_url(redis_url, lease_seconds=LEASE, prefix=prefix)
    yield the_pool
    await the_pool.close()


async def test_client_reads_slots_url_from_the_environment(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kling_async import KlingClient
    from kling_async.slots import RedisSlotPool

    monkeypatch.setenv("KLING_SLOTS", redis_url)
    async with KlingClient(token=TOKEN, email=ACCOUNT, base_url="http://127.0.0.1:1/v1/kling") as k:
        assert isinstance(k.slots.pool, RedisSlotPool)
        assert k.slots.pool.url == redis_url


async def test_lease_of_a_stopped_holder_expires(redis_url: str, prefix: str) -> None:
    from kling_async.slots import RedisSlotPool

    first = RedisSlotPool.from_url(redis_url, lease_seconds=LEASE, prefix=prefix)
    second = RedisSlotPool.from_url(redis_url, lease_seconds=LEASE, prefix=prefix)
    try:
        await first.acquire(ACCOUNT, 1)
        await first.close()  # stops renewing without releasing, as a dead process would
        lease = await second.acquire(ACCOUNT, 1)  # waits for the expiry
        assert lease.account == ACCOUNT
        assert await second.in_use(ACCOUNT) == 1
        await second.release(lease)
        assert await second.in_use(ACCOUNT) == 0
    finally:
        await second.close()


async def test_waiters_are_served_in_arrival_order(pool: object) -> None:
    from kling_async.slots import RedisSlotPool

    assert isinstance(pool, RedisSlotPool)
    first = await pool.acquire(ACCOUNT, 1)
    order: list[int] = []

    async def wait(n: int) -> None:
        lease = await pool.acquire(ACCOUNT, 1)
        order.append(n)
        await pool.release(lease)

    tasks = []
    for n in range(4):
        tasks.append(asyncio.create_task(wait(n)))
        await asyncio.sleep(0)
        await until(lambda: pool.waiting(ACCOUNT), n + 1)  # queued before the next asks
    await pool.release(first)
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3]


async def forget_everything(url: str, prefix: str) -> None:
    """Delete the test's keys, as a Redis restart without persistence would."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def test_no_slot_granted_twice_after_redis_lost_its_data(
    redis_url: str, prefix: str, pool: object
) -> None:
    from kling_async.slots import RedisSlotPool

    assert isinstance(pool, RedisSlotPool)
    held = await pool.acquire(ACCOUNT, 1)
    await forget_everything(redis_url, prefix)
    second = asyncio.create_task(pool.acquire(ACCOUNT, 1))
    await until(lambda: pool.in_use(ACCOUNT), 1)  # the holder registers again on renewal
    assert await pool.in_use(ACCOUNT) == 1
    assert not second.done()
    await pool.release(held)
    lease = await asyncio.wait_for(second, 30)
    assert await pool.in_use(ACCOUNT) == 1
    await pool.release(lease)


async def test_set_aside_is_shared_between_processes(redis_url: str, prefix: str) -> None:
    from kling_async import AccountError
    from kling_async.slots import RedisSlotPool

    one = RedisSlotPool.from_url(redis_url, prefix=prefix)
    other = RedisSlotPool.from_url(redis_url, prefix=prefix)
    try:
        await one.set_aside(ACCOUNT, AccountError("account error 596", status=596))
        assert await other.is_set_aside(ACCOUNT) == "596: account error 596"
        with pytest.raises(AccountError, match=r"account shared@example.com is set aside"):
            await other.acquire(ACCOUNT, 2)
        assert await other.waiting(ACCOUNT) == 0
        await other.restore(ACCOUNT)
        assert await one.is_set_aside(ACCOUNT) is None
        await one.release(await one.acquire(ACCOUNT, 2))
    finally:
        await one.close()
        await other.close()


async def test_reconcile_counts_jobs_running_elsewhere(pool: object) -> None:
    from kling_async.slots import RedisSlotPool

    assert isinstance(pool, RedisSlotPool)
    await pool.reconcile(ACCOUNT, 2)
    first = await pool.acquire(ACCOUNT, 3)
    blocked = asyncio.create_task(pool.acquire(ACCOUNT, 3))
    await until(lambda: pool.waiting(ACCOUNT), 1)
    await pool.reconcile(ACCOUNT, 1)  # one of the outside jobs ended
    second = await asyncio.wait_for(blocked, 30)
    assert await pool.in_use(ACCOUNT) == 2
    for lease in (first, second):
        await pool.release(lease)


async def test_cancelled_waiter_leaves_the_queue(pool: object) -> None:
    from kling_async.slots import RedisSlotPool

    assert isinstance(pool, RedisSlotPool)
    held = await pool.acquire(ACCOUNT, 1)
    waiter = asyncio.create_task(pool.acquire(ACCOUNT, 1))
    await until(lambda: pool.waiting(ACCOUNT), 1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert await pool.waiting(ACCOUNT) == 0
    await pool.release(held)
    await pool.release(held)  # twice: harmless
    assert await pool.in_use(ACCOUNT) == 0


async def test_pool_options_ride_in_the_slots_url(redis_url: str, prefix: str) -> None:
    from kling_async.slots import RedisSlotPool

    url = f"{redis_url}?prefix={prefix}&lease_seconds={LEASE}&down_seconds=5"
    mine = RedisSlotPool.from_url(url)
    other_prefix = RedisSlotPool.from_url(f"{redis_url}?prefix={prefix}other:")
    try:
        held = await mine.acquire(ACCOUNT, 1)
        assert mine.url == redis_url  # the pool's own options are not redis-py's
        assert await other_prefix.in_use(ACCOUNT) == 0  # another prefix: another pool
        await mine.close()  # stops renewing: the lease expires after lease_seconds
        await until(lambda: other_prefix.in_use(ACCOUNT), 0)
        again = RedisSlotPool.from_url(url)
        await again.release(await asyncio.wait_for(again.acquire(ACCOUNT, 1), 30))
        await again.close()
        assert held.account == ACCOUNT
    finally:
        await other_prefix.close()


async def test_clients_without_an_email_share_slots_under_their_account(
    redis_url: str, prefix: str
) -> None:
    """Two tokens, no email given: each client's slots are its own account's (read from
    GET /accounts), so both hold their account's only slot at the same time."""
    from kling_async import KlingClient, KolorsElements, TaskResponse
    from kling_async.slots import RedisSlotPool
    from kling_async.testing import KlingSimulator

    url = f"{redis_url}?prefix={prefix}"
    pool = RedisSlotPool.from_url(url)
    emails = ("a@example.com", "b@example.com")
    inside = {email: asyncio.Event() for email in emails}
    seen: dict[str, tuple[int, bool]] = {}

    def holding(me: str, other: str) -> object:
        async def hook(resp: TaskResponse) -> None:
            inside[me].set()
            try:  # hooks' failures are only logged: note what happened instead
                await asyncio.wait_for(inside[other].wait(), 30)
                seen[me] = (await pool.in_use(me), True)
            except asyncio.TimeoutError:  # on 3.10 not the builtin TimeoutError
                seen[me] = (await pool.in_use(me), False)

        return hook

    request = KolorsElements(prompt="p", subject_images=["https://x/a.png", "https://x/b.png"])
    async with (
        KlingSimulator(token="token-aaaa", accounts={emails[0]: 1}) as sim_a,
        KlingSimulator(token="token-bbbb", accounts={emails[1]: 1}) as sim_b,
        KlingClient(token="token-aaaa", base_url=sim_a.base_url, max_jobs=1, slots=url) as a,
        KlingClient(token="token-bbbb", base_url=sim_b.base_url, slots=url) as b,
    ):
        await asyncio.gather(
            a.run(request, on_submitted=holding(*emails)),
            b.run(request, on_submitted=holding(*reversed(emails))),
        )
        assert (a.email, b.email) == emails
    assert seen == {emails[0]: (1, True), emails[1]: (1, True)}
    assert [await pool.in_use(email) for email in emails] == [0, 0]
    await pool.close()


async def test_no_shared_slot_without_knowing_the_account(redis_url: str, prefix: str) -> None:
    from kling_async import ConfigurationError, KlingClient, KolorsElements
    from kling_async.testing import KlingSimulator

    request = KolorsElements(prompt="p", subject_images=["https://x/a.png", "https://x/b.png"])
    accounts = {"a@example.com": 1, "b@example.com": 1}
    async with (
        KlingSimulator(token=TOKEN, accounts=accounts) as sim,
        KlingClient(
            token=TOKEN, base_url=sim.base_url, max_jobs=1, slots=f"{redis_url}?prefix={prefix}"
        ) as kling,
    ):
        with pytest.raises(
            ConfigurationError,
            match=r"^2 accounts are configured on useapi.net: shared job slots need the "
            r"account's email; pass email= or accounts= to KlingClient$",
        ):
            await kling.run(request)
        assert sim.stats["posts"] == 0
