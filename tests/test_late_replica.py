"""A replica whose SHARD_STORE reply comes late is asked once more before it is reported.

Late in a long learn a loaded replica answered some stores after ``store_timeout``; each such
reply was reported as a failed shard and the whole learn exited 1 ("some facts are missing
replicas") although the shard was only slow. A timed-out store is now sent again, with 2x
and then 4x the time (stores are idempotent); a replica that is still late, or gone, is
reported as before (hive_core.late_stores).
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace

from hive_core.config import DEFAULTS
from hive_core.distributed import DistributedHiveGraph
from hive_core.facts import HiveFact
from hive_core.messages import Envelope, MessageType
from hive_core.placement import place
from hive_core.transports.local import LocalEventBus

FACTS = [HiveFact(content=f"Service S-{i} runs on host h{i}.example in rack R{i % 4}.")
         for i in range(30)]
STORE_TIMEOUT = 0.3


def hive() -> DistributedHiveGraph:
    graph = DistributedHiveGraph("late", transport=LocalEventBus(),
                                 settings=replace(DEFAULTS, replication_factor=3,
                                                  store_timeout=STORE_TIMEOUT))
    for i in range(5):
        graph.register_agent(f"a{i}")
    return graph


def slow_stores(graph: DistributedHiveGraph, shard: str, late: int, delay: float
                ) -> list[float]:
    """Make ``shard`` answer its first ``late`` SHARD_STOREs ``delay`` seconds late (it
    still stores them, as a busy agent does); returns the times its stores arrived."""
    server = graph._servers[shard]
    arrived: list[float] = []
    lock = threading.Lock()

    def handle(env: Envelope) -> Envelope | None:
        if env.type == MessageType.SHARD_STORE:
            with lock:
                arrived.append(time.monotonic())
                slow = len(arrived) <= late
            reply = server.handle(env)
            if slow:
                time.sleep(delay)
            return reply
        return server.handle(env)

    graph.transport.bind(shard, handle)
    return arrived


def expected_primaries(graph: DistributedHiveGraph, shard: str) -> int:
    return len(place(FACTS, graph.ring)[shard].primary)


def test_a_store_answered_late_once_is_retried_and_not_reported() -> None:
    """(Fails without the re-send: a2 is reported, although it stored everything.)"""
    graph = hive()
    arrived = slow_stores(graph, "a2", late=1, delay=STORE_TIMEOUT * 1.5)
    try:
        ids, failed = graph.promote_facts_report("a0", FACTS)
        assert failed == [] and graph.write_failures == []
        assert len(arrived) == 2  # the first send, and one more
        assert graph.shard_store("a2").count() == expected_primaries(graph, "a2")
        assert len(ids) == len(FACTS)
    finally:
        graph.close()


def test_a_replica_late_every_time_is_still_reported_after_the_last_retry() -> None:
    graph = hive()
    arrived = slow_stores(graph, "a2", late=100, delay=STORE_TIMEOUT * 5)
    try:
        t0 = time.monotonic()
        _, failed = graph.promote_facts_report("a0", FACTS)
        elapsed = time.monotonic() - t0
        assert failed == ["a2"] and graph.write_failures == ["a2"]
        assert len(arrived) == 3  # bounded: two re-sends, not a loop
        assert elapsed < STORE_TIMEOUT * (1 + 2 + 4) + 1.0  # the three waits
    finally:
        graph.close()
