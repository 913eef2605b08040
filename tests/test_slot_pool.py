"""The SlotPool interface: the in-process pool, and the Redis pool's errors without Redis."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from helpers import EMAIL, TOKEN, closed_port, wait_until

from kling_async import (
    AccountError,
    ConfigurationError,
    KlingClient,
    KolorsElements,
    RateLimitError,
    TransportError,
)
from kling_async.slots import (
    JobSlots,
    LocalSlotPool,
    RedisSlotPool,
    SlotPool,
)
from kling_async.testing import KlingSimulator

ACCOUNT = "a@example.com"


def closed_port_url() -> str:
    """A redis:// URL where nothing listens."""
    return f"redis://127.0.0.1:{closed_port()}/0"


def test_both_pools_implement_the_protocol() -> None:
    pytest.importorskip("redis")
    assert isinstance(LocalSlotPool(), SlotPool)
    assert isinstance(RedisSlotPool.from_url("redis://127.0.0.1:1/0"), SlotPool)


async def test_local_pool_bounds_and_serves_in_arrival_order() -> None:
    pool = LocalSlotPool()
    held = [await pool.acquire(ACCOUNT, 2) for _ in range(2)]
    assert await pool.in_use(ACCOUNT) == 2
    order: list[int] = []

    async def wait(n: int) -> None:
        lease = await pool.acquire(ACCOUNT, 2)
        order.append(n)
        await pool.release(lease)

    tasks = [asyncio.create_task(wait(n)) for n in range(3)]
    await asyncio.sleep(0)
    assert order == []
    await pool.release(held[0])
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2]
    await pool.release(held[1])
    await pool.release(held[1])  # twice: harmless
    assert await pool.in_use(ACCOUNT) == 0
    assert await pool.renew(held[0])
    await pool.close()


async def test_local_pool_set_aside_and_restore() -> None:
    pool = LocalSlotPool()
    await pool.set_aside(ACCOUNT, AccountError("broken", status=596))  # before first use
    assert await pool.is_set_aside(ACCOUNT) == "596: broken"
    with pytest.raises(
        AccountError, match=r"set aside \(after: 596: broken\); no request was sent"
    ):
        await pool.acquire(ACCOUNT, 1)
    await pool.restore(ACCOUNT)
    assert await pool.is_set_aside(ACCOUNT) is None
    lease = await pool.acquire(ACCOUNT, 1)
    waiter = asyncio.create_task(pool.acquire(ACCOUNT, 1))
    await asyncio.sleep(0)
    await pool.set_aside(ACCOUNT, AccountError("broken again", status=596))
    with pytest.raises(AccountError, match="broken again"):
        await waiter
    await pool.release(lease)


async def test_local_pool_reconcile_holds_slots_for_outside_jobs() -> None:
    pool = LocalSlotPool()
    await pool.release(await pool.acquire(ACCOUNT, 3))
    await pool.reconcile(ACCOUNT, 2)
    assert await pool.in_use(ACCOUNT) == 2
    lease = await pool.acquire(ACCOUNT, 3)
    blocked = asyncio.create_task(pool.acquire(ACCOUNT, 3))
    await asyncio.sleep(0)
    assert not blocked.done()
    await pool.reconcile(ACCOUNT, 0)
    second = await blocked
    assert await pool.in_use(ACCOUNT) == 2
    for each in (lease, second):
        await pool.release(each)


async def test_redis_down_is_a_transport_error_saying_so() -> None:
    pytest.importorskip("redis")
    pool = RedisSlotPool.from_url(closed_port_url(), down_seconds=0)
    try:
        with pytest.raises(
            TransportError,
            match=r"Redis for the shared job slots at redis://127.0.0.1:\d+/0 is unre",
        ):
            await pool.acquire(ACCOUNT, 3)
        with pytest.raises(TransportError, match="fallback_local=True"):
            await pool.is_set_aside(ACCOUNT)
    finally:
        await pool.close()


async def test_redis_down_falls_back_to_in_process_slots_when_asked() -> None:
    pytest.importorskip("redis")
    pool = RedisSlotPool.from_url(closed_port_url(), down_seconds=0, fallback_local=True)
    try:
        leases = [await pool.acquire(ACCOUNT, 2) for _ in range(2)]
        waiter = asyncio.create_task(pool.acquire(ACCOUNT, 2))
        await pool.release(leases[0])
        await wait_until(waiter.done)
        await pool.release(waiter.result())
        await pool.release(leases[1])
    finally:
        await pool.close()


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("http://localhost:6379", {}, r"slots URL must start with redis://, rediss:// or unix://"),
        ("redis://localhost", {"lease_seconds": 0}, r"lease_seconds: must be > 0, got 0"),
        ("redis://localhost", {"poll_seconds": -1}, r"poll_seconds: must be > 0, got -1"),
        ("redis://localhost", {"down_seconds": float("nan")}, r"down_seconds: must be >= 0"),
    ],
)
def test_bad_redis_pool_options_name_the_option(
    url: str, options: dict[str, float], message: str
) -> None:
    pytest.importorskip("redis")
    with pytest.raises(ConfigurationError, match=message):
        RedisSlotPool.from_url(url, **options)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "lease_seconds=soon",
            r"^slots URL: lease_seconds must be a number of seconds, got 'soon'$",
        ),
        ("down_seconds=inf", r"^slots URL: down_seconds must be a number of seconds, got 'inf'$"),
        ("lease_seconds=0", r"^RedisSlotPool lease_seconds: must be > 0, got 0.0$"),
        ("poll_seconds=1&poll_seconds=2", r"^slots URL: poll_seconds is given twice$"),
        ("prefix=", r"^slots URL: prefix must not be empty$"),
        ("fallback=remote", r"^slots URL: fallback must be 'local', got 'remote'$"),
    ],
)
def test_bad_pool_options_in_the_slots_url_name_the_option(query: str, message: str) -> None:
    pytest.importorskip("redis")
    with pytest.raises(ConfigurationError, match=message):
        KlingClient(token=TOKEN, slots=f"redis://127.0.0.1:1/0?{query}")


def test_a_bad_slots_url_is_quoted_without_its_password() -> None:
    pytest.importorskip("redis")
    with pytest.raises(ConfigurationError, match=r"'http://u:\*\*\*@host:1'$") as caught:
        RedisSlotPool.from_url("http://u:s3cret@host:1")
    assert "s3cret" not in str(caught.value)


async def test_shared_slots_of_an_unnamed_account_need_its_email() -> None:
    slots = JobSlots({"": 2}, pool=LocalSlotPool())
    with pytest.raises(
        ConfigurationError,
        match=r"^shared job slots need the account's email: configure it \(email=\)$",
    ):
        await slots.acquire().take()
    assert slots.in_use("") == 0  # the local slot was given back


async def test_bad_max_jobs_and_reconcile_counts_are_refused_before_redis() -> None:
    pytest.importorskip("redis")
    pool = RedisSlotPool.from_url(closed_port_url(), down_seconds=0)
    try:
        with pytest.raises(ConfigurationError, match=r"max_jobs for a@example.com: must be >= 1"):
            await pool.acquire(ACCOUNT, 0)
        with pytest.raises(
            ConfigurationError, match=r"running_elsewhere: must be an int >= 0, got -1"
        ):
            await pool.reconcile(ACCOUNT, -1)
    finally:
        await pool.close()


IMAGES = ["https://cdn.example.com/a.png", "https://cdn.example.com/b.png"]


async def test_client_says_redis_is_down_naming_the_url(sim: KlingSimulator) -> None:
    pytest.importorskip("redis")
    url = closed_port_url()
    pool = RedisSlotPool.from_url(url, down_seconds=0)
    async with KlingClient(token=TOKEN, email=EMAIL, base_url=sim.base_url, slots=pool) as kling:
        with pytest.raises(TransportError, match=rf"shared job slots at {url} is unreachable"):
            await kling.run(KolorsElements(prompt="p", subject_images=IMAGES))
    await pool.close()
    assert sim.stats["posts"] == 0


async def test_client_falls_back_to_in_process_slots_when_configured(
    sim: KlingSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("redis")
    url = closed_port_url()
    pool = RedisSlotPool.from_url(f"{url}?fallback=local", down_seconds=0)
    async with KlingClient(token=TOKEN, email=EMAIL, base_url=sim.base_url, slots=pool) as kling:
        final = await kling.run(KolorsElements(prompt="p", subject_images=IMAGES))
    await pool.close()
    assert final.status_final
    assert f"Redis at {url} unreachable: taking an in-process slot" in caplog.text


def test_bad_slots_arguments_are_refused() -> None:
    pytest.importorskip("redis")
    with pytest.raises(ConfigurationError, match=r"slots URL must start with redis://"):
        KlingClient(token=TOKEN, slots="http://127.0.0.1:6379")
    with pytest.raises(ConfigurationError, match=r"slots URL: fallback must be 'local'"):
        KlingClient(token=TOKEN, slots="redis://127.0.0.1:1/0?fallback=nope")
    with pytest.raises(ConfigurationError, match=r"slots: must be a redis:// URL or a SlotPool"):
        KlingClient(token=TOKEN, slots=3)  # type: ignore[arg-type]


def test_password_never_appears_in_the_pool_url() -> None:
    pytest.importorskip("redis")
    pool = RedisSlotPool.from_url("redis://user:s3cret@127.0.0.1:1/0")
    assert "s3cret" not in pool.url
    assert pool.url == "redis://user:***@127.0.0.1:1/0"


class CountingPool(LocalSlotPool):
    """An in-process pool that notes every recount of outside jobs it is told."""

    def __init__(self) -> None:
        super().__init__()
        self.recounts: list[int] = []

    async def reconcile(self, account: str, running_elsewhere: int) -> None:
        self.recounts.append(running_elsewhere)
        await super().reconcile(account, running_elsewhere)


def outside_jobs_run_long(endpoint: str, body: dict[str, object], rng: object) -> float:
    return 3600.0 if str(body.get("prompt", "")).startswith("outside") else 0.05


@pytest.mark.parametrize("email", [ACCOUNT, None], ids=["email given", "email read"])
async def test_a_429_despite_a_held_slot_recounts_the_jobs_started_elsewhere(
    email: str | None,
) -> None:
    """Another tool fills the account after this client counted it: the server's 429 on a
    POST the pool allowed makes the pool read GET /scheduler/available again (also when
    the client learnt its only account from the server)."""
    pool = CountingPool()
    images = ["https://x/a.png", "https://x/b.png"]
    async with (
        KlingSimulator(
            token=TOKEN, accounts={ACCOUNT: 2}, job_duration=outside_jobs_run_long
        ) as sim,
        KlingClient(token=TOKEN, email=email, base_url=sim.base_url, slots=pool) as kling,
    ):
        await kling.run(KolorsElements(prompt="first", subject_images=images))
        assert pool.recounts == [0]  # before the first lease: nothing runs elsewhere
        async with aiohttp.ClientSession() as http:  # another tool, on the same account
            for n in range(2):
                body = {"prompt": f"outside {n}", "email": ACCOUNT,
                        "subjectImage1": images[0], "subjectImage2": images[1]}  # fmt: skip
                url = f"{sim.base_url}/images/kolors-elements"
                headers = {"Authorization": f"Bearer {TOKEN}"}
                async with http.post(url, json=body, headers=headers) as resp:
                    assert resp.status == 200
        with pytest.raises(RateLimitError):
            await kling.run(KolorsElements(prompt="second", subject_images=images))
        assert sim.stats["rate_limited"] >= 1
        assert len(pool.recounts) >= 2
        assert pool.recounts[1] >= 1
