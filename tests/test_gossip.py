"""Anti-entropy: a shard that missed writes (or a retraction) catches up from its peers."""

from __future__ import annotations

import pytest
from test_distributed import corpus, hive

from hive_core.errors import TransportError
from hive_core.gossip import digests
from hive_core.ring import HashRing


def _snapshot(graph, agent: str) -> set[tuple[str, frozenset[str], bool]]:
    return {(r.fact_id, frozenset(r.terms), r.primary)
            for r in graph.shard_store(agent).records()}


def test_a_shard_that_missed_writes_is_repaired_by_one_round() -> None:
    facts = corpus(400)
    reference = hive(8)
    reference.promote_facts("a0", facts)

    graph = hive(8)
    server = graph._servers["a2"]
    graph.transport.bind("a2", lambda env: env.error("down for maintenance"))
    _ids, failed = graph.promote_facts_report("a0", facts)
    assert failed == ["a2"]
    assert graph.get_stats()["replica_facts"] < len(facts) * 3
    graph.transport.bind("a2", server.handle)

    repaired = graph.gossip_round("a2", salt=1)
    assert sum(repaired.values()) > 0 and graph.gossip_failures == []
    assert graph.get_stats()["replica_facts"] == len(facts) * 3
    assert _snapshot(graph, "a2") == _snapshot(reference, "a2")
    # A second round finds nothing more to send.
    assert sum(graph.gossip_round("a2", salt=2).values()) == 0
    graph.close()
    reference.close()


def test_a_missed_retraction_is_repaired() -> None:
    graph = hive(6)
    facts = corpus(120)
    graph.promote_facts("a0", facts)
    victim = facts[7]
    holders = {a for a in graph.ring.agents
               if graph.shard_store(a).get(victim.fact_id) is not None}
    down = sorted(holders)[0]
    server = graph._servers[down]
    graph.transport.bind(down, lambda env: env.error("down"))
    with pytest.raises(TransportError, match=down):
        graph.retract_fact(victim.fact_id)
    graph.transport.bind(down, server.handle)
    assert graph.shard_store(down).get(victim.fact_id) is not None
    graph.gossip_round(down, salt=3)
    assert graph.shard_store(down).get(victim.fact_id) is None
    for agent in graph.ring.agents:
        assert victim.fact_id not in [f.fact_id for f in
                                      graph.search(victim.content, asking_agent=agent).facts]
    graph.close()


def test_digests_cover_only_roles_shared_with_each_peer() -> None:
    graph = hive(5)
    graph.promote_facts("a0", corpus(60))
    records = list(graph.shard_store("a1").records())
    ring: HashRing = graph.ring
    per_peer = digests(records, "a1", ring, salt=9, error_rate=0.01)
    assert set(per_peer) == {"a0", "a2", "a3", "a4"}
    shared = sum(1 for r in records if r.primary and "a3" in ring.get_agents(r.fact_id))
    assert per_peer["a3"].count >= shared
    graph.close()


def test_a_round_can_ask_only_some_peers() -> None:
    graph = hive(6)
    graph.promote_facts("a0", corpus(60))
    asked = graph.gossip_round("a1", salt=4, peers=["a3", "a5"])
    assert set(asked) == {"a3", "a5"}
    graph.close()
