"""Shared helpers for tests against a real Redis (127.0.0.1:6379 unless
``AMPLIHACK_TEST_REDIS_URL`` says otherwise).

These tests never skip: a missing Redis is a failure, because the Redis transport is only
proven by running against one. Every test uses its own key prefix and deletes its keys.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

import redis

REDIS_URL = os.environ.get("AMPLIHACK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def unique_prefix() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def shared_redis() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    client.ping()  # fails the test (not skips it) when Redis is not there
    return client


def delete_prefix(client: redis.Redis, prefix: str) -> int:
    """Delete every key under ``prefix:`` (only this test's keys)."""
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    return len(keys)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRedis:
    """A redis-server this test starts on its own port, without persistence; stopped by PID.

    The shared Redis server is never touched by it.
    """

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, deadline: float = 15.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / "redis.log", "a")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=log, stderr=log)
        log.close()
        client = redis.Redis(port=self.port, socket_timeout=1)
        end = time.monotonic() + deadline
        while True:
            try:
                client.ping()
                client.close()
                return
            except redis.ConnectionError:
                assert self.proc.poll() is None, "private redis-server exited at start"
                assert time.monotonic() < end, "private redis-server did not start in time"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # SIGKILL by PID: nothing it held survives (no persistence)
            self.proc.wait(timeout=10)
        self.proc = None
