"""Writes with a dead replica: stored on the live owners and reported, never dropped."""

from __future__ import annotations

import pytest

from hive_core.distributed import DistributedHiveGraph
from hive_core.errors import TransportError
from hive_core.facts import HiveFact
from hive_core.placement import place
from hive_core.transports.local import LocalEventBus

FACTS = [HiveFact(content=f"Service S-{i} runs on host h{i}.example in rack R{i % 4}.")
         for i in range(30)]


def hive(rf: int) -> DistributedHiveGraph:
    graph = DistributedHiveGraph("w", replication_factor=rf, transport=LocalEventBus())
    for i in range(5):
        graph.register_agent(f"a{i}")
    return graph


def test_a_dead_replica_is_reported_and_the_facts_stay_findable() -> None:
    graph = hive(rf=3)
    graph.transport.unbind("a2")  # a2 stops answering (its process died)
    ids, failed = graph.promote_facts_report("a0", FACTS)
    assert failed == ["a2"]
    assert graph.write_failures == ["a2"]
    live = sum(graph.shard_store(f"a{i}").count() for i in range(5) if i != 2)
    expected = sum(len(batch.primary)
                   for agent, batch in place(FACTS, graph.ring).items() if agent != "a2")
    assert live == expected
    hit = graph.search("Which host runs S-7?", limit=1, asking_agent="a0")
    assert hit.facts[0].fact_id == ids[7]
    graph.close()


def test_a_fact_with_no_live_owner_for_a_role_fails_the_write() -> None:
    graph = hive(rf=1)
    graph.transport.unbind("a2")
    with pytest.raises(TransportError, match="no live owner"):
        graph.promote_facts("a0", FACTS)
    graph.close()
