"""A throwaway redis-server for tests, benchmarks and demos of the shared job slots.

::

    from kling_async.testing.redis_server import RedisServer

    with RedisServer() as redis:           # a child redis-server on a free loopback port
        KlingClient(slots=redis.url)       # redis://127.0.0.1:PORT/0
        redis.restart()                    # stopped and started again: its data is lost

Nothing is saved to disk (no RDB, no AOF), so a restart is Redis losing its data.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

__all__ = ["RedisServer", "find_redis_server"]

_DEBIAN = Path("/usr/bin/redis-server")


def find_redis_server() -> str | None:
    """The redis-server binary on PATH (or Debian's), None when there is none."""
    return shutil.which("redis-server") or (str(_DEBIAN) if _DEBIAN.exists() else None)


class RedisServer:
    """A redis-server child process on 127.0.0.1 (a free port, chosen once: a restart
    keeps the URL). ``binary``: the redis-server to run (default: `find_redis_server`)."""

    def __init__(self, binary: str | None = None, *, start_seconds: float = 20.0) -> None:
        found = binary or find_redis_server()
        if found is None:
            raise FileNotFoundError("no redis-server binary on PATH (apt install redis-server)")
        self.binary = found
        self._start_seconds = start_seconds
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port: int = probe.getsockname()[1]
        #: ``redis://127.0.0.1:PORT/0``
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server and return once it answers PING (`TimeoutError` if it does
        not within ``start_seconds``)."""
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)  # noqa: S603
        deadline = time.monotonic() + self._start_seconds
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the server (its data is gone); nothing when it is not running."""
        process, self.process = self.process, None
        if process is not None:
            process.terminate()
            process.wait(timeout=20)

    def restart(self) -> None:
        """Stop and start again on the same port: Redis as after a crash, data lost."""
        self.stop()
        self.start()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
