"""RedisSlotPool against a real redis-server: processes share one account's maxJobs.

A redis-server is started per test session on a free loopback port (or
``$KLING_TEST_REDIS_URL`` is used). Workers are real subprocesses running this file as a
script; each appends one ``start end`` line (monotonic ns, comparable across processes)
per job it ran while holding a slot, and the tests count overlapping lines.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

ACCOUNT = "shared@example.com"
TOKEN = "redis-test-token"  # the simulator's: loopback only
LEASE = 1.0  # seconds: short, so a killed holder's slots come back soon


class RedisServer:
    """A redis-server child process on 127.0.0.1 that can be restarted (data lost)."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=20)
            self.process = None


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer | str]:
    """The session's Redis: a RedisServer we own, or the URL from $KLING_TEST_REDIS_URL."""
    pytest.importorskip("redis", reason="redis-py is not installed (kling-async[redis])")
    external = os.environ.get("KLING_TEST_REDIS_URL")
    if external:
        yield external
        return
    binary = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if binary is None:
        pytest.skip("no redis-server binary on PATH and no $KLING_TEST_REDIS_URL")
    server = RedisServer(binary)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer | str) -> str:
    """The URL of the session's Redis."""
    return redis_server if isinstance(redis_server, str) else redis_server.url


@pytest.fixture
def prefix() -> str:
    """A key prefix of its own per test, so tests never see each other's slots."""
    return f"test:{os.urandom(6).hex()}:"


@pytest.fixture
async def pool(redis_url: str, prefix: str) -> AsyncIterator[object]:
    """A RedisSlotPool on the session's Redis."""
    from kling_async.slots import RedisSlotPool

    the_pool = RedisSlotPool.from_url(redis_url, lease_seconds=LEASE, prefix=prefix)
    yield the_pool
    await the_pool.close()


def spawn(
    url: str, prefix: str, log: Path, mode: str, jobs: int, seed: int
) -> subprocess.Popen[str]:
    """A worker subprocess (this file run as a script)."""
    command = [sys.executable, __file__, url, prefix, str(log), mode, str(jobs), str(seed)]
    return subprocess.Popen(command, stderr=subprocess.PIPE, text=True)


def finish(workers: list[subprocess.Popen[str]]) -> None:
    """Wait for every worker to end, and check each ended well."""
    for worker in workers:
        _, errors = worker.communicate(timeout=120)
        assert worker.returncode == 0, errors


def intervals(log: Path) -> list[tuple[int, int]]:
    """The (start, end) of every job the workers recorded."""
    lines = log.read_text().split() if log.exists() else []
    return [(int(a), int(b)) for a, b in (line.split(",") for line in lines)]


def peak(spans: list[tuple[int, int]]) -> int:
    """The most jobs recorded as running at the same time."""
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


def wait_blocking(condition: object, timeout: float = 60.0) -> None:
    """Poll ``condition()`` until true, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


async def test_three_clients_share_max_jobs_through_redis(
    redis_url: str, prefix: str, tmp_path: Path
) -> None:
    from kling_async.testing import KlingSimulator

    async with KlingSimulator(token=TOKEN, accounts={ACCOUNT: 3}, job_seconds=0.1) as sim:
        # the pool's key prefix rides in the URL's place of the log: see worker_main
        url = f"{redis_url}|{sim.base_url}"
        log = tmp_path / "jobs.log"
        workers = [spawn(url, prefix, log, "client", 10, seed) for seed in range(3)]
        await asyncio.to_thread(finish, workers)
        assert len(intervals(log)) == 30
        assert sim.stats["peak_running"][ACCOUNT] <= 3
        assert sim.stats["rate_limited"] == 0


async def test_client_reads_slots_url_from_the_environment(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kling_async import KlingClient
    from kling_async.slots import RedisSlotPool

    monkeypatch.setenv("KLING_SLOTS", redis_url)
    async with KlingClient(token=TOKEN, email=ACCOUNT, base_url="http://127.0.0.1:1/v1/kling") as k:
        assert isinstance(k.slots.pool, RedisSlotPool)
        assert k.slots.pool.url == redis_url


async def test_killed_holder_slots_come_back(
    redis_url: str, prefix: str, pool: object, tmp_path: Path
) -> None:
    from kling_async.slots import RedisSlotPool

    assert isinstance(pool, RedisSlotPool)
    held = tmp_path / "held"
    holder = spawn(redis_url, prefix, held, "hold", 2, 0)
    await asyncio.to_thread(wait_blocking, held.exists)
    log = tmp_path / "jobs.log"
    workers = [spawn(redis_url, prefix, log, "run", 5, seed) for seed in (1, 2)]
    holder.send_signal(signal.SIGKILL)
    holder.communicate(timeout=20)
    await asyncio.to_thread(finish, workers)
    # all three slots again: the killed holder's two came back when their leases expired
    leases = [await asyncio.wait_for(pool.acquire(ACCOUNT, 3), 30) for _ in range(3)]
    assert await pool.in_use(ACCOUNT) == 3
    for lease in leases:
        await pool.release(lease)
    spans = intervals(log)
    assert len(spans) == 10
    assert peak(spans) <= 3


def test_redis_restart_mid_run(
    redis_server: RedisServer | str, prefix: str, tmp_path: Path
) -> None:
    if isinstance(redis_server, str):
        pytest.skip("$KLING_TEST_REDIS_URL is a server this test cannot restart")
    log = tmp_path / "jobs.log"
    # jobs longer than a renewal period: some still hold slots Redis forgot while down
    workers = [spawn(redis_server.url, prefix, log, "slow", 10, seed) for seed in range(3)]
    wait_blocking(lambda: len(intervals(log)) >= 5)
    redis_server.stop()
    redis_server.start()
    finish(workers)
    spans = intervals(log)
    assert len(spans) == 30
    assert peak(spans) <= 3


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


async def until(count: Callable[[], Awaitable[int]], at_least: int) -> None:
    """Poll ``count()`` until it reaches ``at_least``, failing after 30 s."""
    deadline = time.monotonic() + 30
    while await count() < at_least:  # the state is in Redis: poll it
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def record(log: str, start: int, end: int) -> None:
    """Append one job's line (one short O_APPEND write: lines never interleave)."""
    with open(log, "a") as out:
        out.write(f"{start},{end}\n")


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


async def worker_main(url: str, prefix: str, log: str, mode: str, jobs: int, seed: int) -> None:
    """A worker: ``run`` takes a slot around each of ``jobs`` short jobs and records it
    (``slow``: longer jobs);
    ``hold`` takes ``jobs`` slots, says so by creating ``log``, and waits to be killed."""
    from kling_async.slots import RedisSlotPool

    if mode == "client":
        await client_worker(url, prefix, log, jobs)
        return
    pool = RedisSlotPool.from_url(url, lease_seconds=LEASE, prefix=prefix, down_seconds=60)
    rng = random.Random(seed)
    if mode == "hold":
        for _ in range(jobs):
            await pool.acquire(ACCOUNT, 3)
        Path(log).touch()  # noqa: ASYNC240 -- a tiny local file, once
        await asyncio.Event().wait()
    for _ in range(jobs):
        lease = await pool.acquire(ACCOUNT, 3)
        start = time.monotonic_ns()
        await asyncio.sleep(rng.uniform(0.2, 0.6) if mode == "slow" else rng.uniform(0.01, 0.08))
        end = time.monotonic_ns()
        record(log, start, end)
        await pool.release(lease)
    await pool.close()


async def client_worker(urls: str, prefix: str, log: str, jobs: int) -> None:
    """``jobs`` jobs through ``KlingClient(slots=pool)`` against the simulator, at once."""
    from kling_async import KlingClient, KolorsElements, fast_mode
    from kling_async.slots import RedisSlotPool

    redis_url, base_url = urls.split("|")
    pool = RedisSlotPool.from_url(redis_url, lease_seconds=LEASE, prefix=prefix)
    images = ["https://cdn.example.com/a.png", "https://cdn.example.com/b.png"]

    async def one(n: int) -> None:
        start = time.monotonic_ns()
        await kling.run(KolorsElements(prompt=f"job {n}", subject_images=images))
        record(log, start, time.monotonic_ns())

    with fast_mode(0.05):
        async with KlingClient(token=TOKEN, email=ACCOUNT, base_url=base_url, slots=pool) as kling:
            await asyncio.gather(*(one(n) for n in range(jobs)))
    await pool.close()


if __name__ == "__main__":
    _url, _prefix, _log, _mode, _jobs, _seed = sys.argv[1:]
    asyncio.run(worker_main(_url, _prefix, _log, _mode, int(_jobs), int(_seed)))


def test_fleet_example_runs_one_batch_in_shards(redis_url: str, tmp_path: Path) -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "fleet_batch.py"
    command = [sys.executable, str(example), "--out", str(tmp_path), "--redis", redis_url]
    done = subprocess.run(
        [*command, "--jobs", "9"], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "9 jobs done in 3 shards; peak running on the server: " in done.stdout
    assert "429 answers: 0" in done.stdout
    peak_seen = int(done.stdout.split("peak running on the server: ")[1].split()[0])
    assert peak_seen <= 3
    for k in range(3):
        assert f"shard-{k}: 3/3 succeeded" in done.stdout
        assert (tmp_path / f"shard-{k}" / "journal.sqlite").exists()
