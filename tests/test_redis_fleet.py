"""Real deployments on shared job slots: worker processes, each a `KlingClient(slots=URL)`
(tests/redis_worker.py), on one simulator account with maxJobs 3 and one Redis.

The tests wait on what the workers print and on the simulator's counters, never for a
fixed time; lease times are short through the slots URL's ``lease_seconds``.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from helpers import TOKEN, fast_env
from redis_helpers import (
    ACCOUNT,
    until,
)

from kling_async.testing import KlingSimulator
from kling_async.testing.redis_server import RedisServer

WORKER = Path(__file__).resolve().parent / "redis_worker.py"
LEASE = 2.0  # seconds: a killed worker's slots come back this long after its last renewal


class Worker:
    """A worker process and the lines it printed so far."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._stderr: list[bytes] = []  # drained as it comes: a full pipe would block the worker
        self._readers = [asyncio.create_task(self._read()), asyncio.create_task(self._drain())]

    @classmethod
    async def start(
        cls, sim: KlingSimulator, slots: str, jobs: int, *flags: str, email: str = ACCOUNT
    ) -> Worker:
        """A worker running ``jobs`` jobs on ``sim`` through the pool at ``slots``
        (``email`` "": none given, the client reads the token's only account)."""
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(WORKER), sim.base_url, slots, email, str(jobs), *flags,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        worker = cls(process)
        STARTED.append(worker)
        return worker

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            self.lines.append(line.decode().strip())

    async def _drain(self) -> None:
        assert self.process.stderr is not None
        async for line in self.process.stderr:
            self._stderr.append(line)

    def count(self, word: str) -> int:
        """How many lines starting with ``word`` were printed."""
        return sum(line.split()[0] == word for line in self.lines if line)

    async def printed(self, word: str, times: int, timeout: float = 60) -> None:
        """Wait until ``times`` lines start with ``word`` (failing if the worker ends first)."""
        deadline = time.monotonic() + timeout
        while self.count(word) < times:
            assert self.process.returncode is None, f"worker ended: {await self.errors()}"
            assert time.monotonic() < deadline, f"no {times} {word!r} lines: {self.lines}"
            await asyncio.sleep(0.01)

    async def errors(self) -> str:
        """What the worker wrote to stderr (all of it once it ended)."""
        if self.process.returncode is not None:
            await asyncio.gather(*self._readers)
        return b"".join(self._stderr).decode()

    async def finish(self, timeout: float = 120) -> None:
        """Wait for the worker to end well (exit 0, "finished" printed)."""
        try:
            code = await asyncio.wait_for(self.process.wait(), timeout)
        except asyncio.TimeoutError:  # on 3.10 not the builtin TimeoutError
            self.kill()
            await self.process.wait()
            raise AssertionError(f"worker hung: {self.lines}\n{await self.errors()}") from None
        await asyncio.gather(*self._readers)
        assert code == 0, await self.errors()
        assert self.lines[-1] == "finished", self.lines

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as a lost host."""
        self.process.send_signal(signal.SIGKILL)


STARTED: list[Worker] = []


@pytest.fixture(autouse=True)
async def _no_worker_outlives_its_test() -> AsyncIterator[None]:
    """A test that fails midway leaves no worker process behind."""
    yield
    while STARTED:
        worker = STARTED.pop()
        if worker.process.returncode is None:
            worker.kill()
            await worker.process.wait()


async def wait_for(condition: Callable[[], object], timeout: float = 60) -> None:
    """Poll a condition of this process (the simulator's counters) until true."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.fixture
async def sim() -> AsyncIterator[KlingSimulator]:
    """One account with maxJobs 3 and 0.2 s jobs."""
    async with KlingSimulator(token=TOKEN, accounts={ACCOUNT: 3}, job_seconds=0.2) as server:
        yield server


def slots_url(redis_url: str, prefix: str, **options: object) -> str:
    """The workers' ``slots=``: the Redis, the test's prefix, a short lease."""
    query = "&".join(f"{name}={value}" for name, value in options.items())
    return f"{redis_url}?prefix={prefix}&lease_seconds={LEASE}" + (f"&{query}" if query else "")


async def test_three_processes_share_max_jobs(
    sim: KlingSimulator, redis_url: str, prefix: str
) -> None:
    url = slots_url(redis_url, prefix)
    # one of them is given no email: its slots are the same account's all the same
    workers = [await Worker.start(sim, url, 10, email=email) for email in ("", ACCOUNT, ACCOUNT)]
    for worker in workers:
        await worker.finish()
        assert worker.count("done") == 10
    stats = sim.stats
    assert stats["tasks_created"] == 30
    assert stats["peak_running"][ACCOUNT] <= 3
    assert stats["rate_limited"] == 0


async def test_a_killed_process_slots_come_back_and_the_others_finish(
    sim: KlingSimulator, redis_url: str, prefix: str
) -> None:
    from kling_async.slots import RedisSlotPool

    url = slots_url(redis_url, prefix)
    victim = await Worker.start(sim, url, 3, "--hang")
    await victim.printed("submitted", 3)  # it holds every slot of the account, and hangs
    others = [await Worker.start(sim, url, 5) for _ in range(2)]
    pool = RedisSlotPool.from_url(url)
    try:
        await until(lambda: pool.waiting(ACCOUNT), 2)  # the others wait for a slot
        victim.kill()
        await victim.process.wait()
        assert await pool.in_use(ACCOUNT) == 3  # the dead process's leases, until they expire
        for worker in others:
            await worker.finish()
            assert worker.count("done") == 5
        assert await pool.in_use(ACCOUNT) == 0
    finally:
        await pool.close()
    stats = sim.stats
    assert stats["tasks_created"] == 13
    assert stats["peak_running"][ACCOUNT] <= 3
    assert stats["rate_limited"] == 0


async def test_a_redis_restart_loses_no_job_and_pays_none_twice(
    sim: KlingSimulator, redis_server: RedisServer | str, prefix: str
) -> None:
    if isinstance(redis_server, str):
        pytest.skip("$KLING_TEST_REDIS_URL is a server this test cannot restart")
    url = slots_url(redis_server.url, prefix, down_seconds=120)
    workers = [await Worker.start(sim, url, 10) for _ in range(3)]
    await wait_for(lambda: sim.stats["tasks_created"] >= 6)
    # Redis down: the jobs under way end, the others wait (none can take a slot)
    await asyncio.to_thread(redis_server.stop)
    await wait_for(lambda: sim.stats["running"].get(ACCOUNT, 0) == 0)
    assert sum(worker.count("done") for worker in workers) < 30
    await asyncio.to_thread(redis_server.start)  # empty: the jobs go on
    await wait_for(lambda: sim.stats["tasks_created"] >= 15)
    # Restarted while jobs run: their holders register their leases again
    await asyncio.to_thread(redis_server.restart)
    for worker in workers:
        await worker.finish()
        assert worker.count("done") == 10
    stats = sim.stats
    assert stats["tasks_created"] == 30  # none lost, none paid twice
    assert all(task["status_name"] == "succeed" for task in stats["tasks"])
    assert stats["peak_running"][ACCOUNT] <= 3
    assert stats["rate_limited"] == 0


def test_fleet_example_runs_one_batch_in_shards(redis_url: str, tmp_path: Path) -> None:
    import subprocess

    example = Path(__file__).resolve().parent.parent / "examples" / "fleet_batch.py"
    command = [sys.executable, str(example), "--out", str(tmp_path), "--redis", redis_url]
    done = subprocess.run(
        [*command, "--jobs", "9"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=fast_env(),  # its workers' polls at the test scale, not the 5 s floor
    )
    assert done.returncode == 0, done.stderr
    assert "9 jobs done in 3 shards; peak running on the server: " in done.stdout
    assert "429 answers: 0" in done.stdout
    peak_seen = int(done.stdout.split("peak running on the server: ")[1].split()[0])
    assert peak_seen <= 3
    for k in range(3):
        assert f"shard-{k}: 3/3 succeeded" in done.stdout
        assert (tmp_path / f"shard-{k}" / "journal.sqlite").exists()
