"""A private redis-server is killed and restarted in the middle of ``learn`` through real
agent processes: after reconnect every fact is there, none twice.

Redis here runs without persistence, so the restart loses every stream, group and member:
the agents must notice, reconnect with backoff, recreate their consumer groups and
re-register (heartbeats); the learner retries the LEARNs that failed. Stores merge by fact
id, so the LEARNs that half-happened before the crash and are sent again never double a fact.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_helpers import PrivateRedis
from redis_hive import RedisHive, expected_facts, placed_counts, redis_config

from hive_core.errors import TransportError
from hive_core.messages import MessageType

pytestmark = pytest.mark.slow

NAMES = ["a0", "a1", "a2", "a3"]
TURNS = [
    f"Service svc-{i:03d} runs on host node-{i:03d} in rack R{i % 7}. "
    f"Its owner is team T{i % 5}, and its SLO is {90 + i % 10}.{i % 10} percent."
    for i in range(48)
]
BATCH = 3
LEARN_DEADLINE = 120.0


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def learn_until_done(hive: RedisHive, batch: list[str], target: str) -> int:
    """Send one LEARN until it is answered with every shard written; returns the attempts."""
    deadline = time.monotonic() + LEARN_DEADLINE
    attempts = 0
    while True:
        attempts += 1
        try:
            out = hive.send(MessageType.LEARN, target, {"turns": batch}, timeout=10.0)
            if out["failed_shards"] == []:
                return attempts
        except TransportError:
            pass
        assert time.monotonic() < deadline, "LEARN never succeeded after the Redis restart"
        time.sleep(0.2)


def test_redis_restart_in_the_middle_of_learn_loses_nothing(
        tmp_path: Path, private_redis: PrivateRedis) -> None:
    config = redis_config("restart", NAMES, private_redis.url, "p", rf=3)
    hive = RedisHive(config, tmp_path / "home")
    try:
        for name in NAMES:
            hive.spawn(name)
        hive.wait_ready(NAMES, live_peers=len(NAMES) - 1)

        batches = [TURNS[i:i + BATCH] for i in range(0, len(TURNS), BATCH)]
        restarted = threading.Event()

        def restart_redis() -> None:
            private_redis.start()  # same port, empty: no streams, groups or members
            restarted.set()

        after_restart = 0
        for i, batch in enumerate(batches):
            if i == len(batches) // 3:
                private_redis.stop()  # SIGKILL by PID, between two LEARNs of one learn
                threading.Timer(1.5, restart_redis).start()
            learn_until_done(hive, batch, NAMES[i % len(NAMES)])
            after_restart += restarted.is_set()
        assert restarted.is_set()
        assert after_restart > 0  # batches were still being learned after the restart

        # Every fact is there, on exactly its owners, none twice.
        facts = expected_facts(TURNS)
        counts = {n: hive.status(n)["facts"] for n in NAMES}
        assert counts == placed_counts(config, TURNS)
        assert sum(counts.values()) == config.replication_factor * len(facts)
        answer = hive.send(MessageType.ASK, "a2",
                           {"question": "Which host runs svc-007?", "limit": 10})
        ids = [f["fact_id"] for f in answer["facts"]]
        assert len(ids) == len(set(ids))
        assert "node-007" in answer["facts"][0]["content"]
        logs = "".join(hive.log_of(n) for n in NAMES)
        assert "receiving from Redis at" in logs and "reconnected to Redis at" in logs
    finally:
        hive.stop_all()
