"""Anti-entropy: a shard that missed writes (or a retraction) catches up from its peers."""

from __future__ import annotations

import pytest
from test_distributed import corpus, hive

from bench.membership import CountingBus
from hive_core.errors import TransportError
from hive_core.gossip import Segments, digests
from hive_core.ring import HashRing
from hive_core.store.memory import MemoryShardStore


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


def test_digests_cover_only_segments_shared_with_each_peer() -> None:
    """A shard offers each co-owner the digests of the segments both own, nothing else;
    replicas that hold the same roles have equal digests."""
    graph = hive(5)
    graph.promote_facts("a0", corpus(60))
    ring: HashRing = graph.ring
    per_peer = digests(graph.shard_store("a1").records(), "a1", ring)
    assert set(per_peer) == {"a0", "a2", "a3", "a4"}
    segs = Segments(ring)
    for peer, table in per_peer.items():
        assert table and all({"a1", peer} <= set(segs.owners(s)) for s in table)
        theirs = digests(graph.shard_store(peer).records(), peer, ring, ["a1"])["a1"]
        assert theirs == table  # in sync: every shared segment agrees
    graph.close()


def test_a_wiped_shard_is_refilled_in_one_round_and_bytes_follow_the_difference() -> None:
    """Every shard gossips with its co-owners once: a wiped shard is whole again, and a
    round between replicas in sync moves digests only (far fewer bytes than the repair)."""
    facts = corpus(300)
    bus = CountingBus(strict=True)
    graph = hive(8, transport=bus)
    graph.promote_facts("a0", facts)
    want = _snapshot(graph, "a3")
    graph._servers["a3"].store = MemoryShardStore("a3", bm25=graph.bm25)
    bus.bytes = 0
    for agent in sorted(graph.ring.agents):
        graph.gossip_round(agent, salt=1)
    repair_bytes = bus.bytes
    assert _snapshot(graph, "a3") == want
    bus.bytes = 0
    for agent in sorted(graph.ring.agents):
        assert sum(graph.gossip_round(agent, salt=2).values()) == 0
    assert bus.bytes * 5 < repair_bytes
    graph.close()


def test_a_round_can_ask_only_some_peers() -> None:
    graph = hive(6)
    graph.promote_facts("a0", corpus(60))
    asked = graph.gossip_round("a1", salt=4, peers=["a3", "a5"])
    assert set(asked) == {"a3", "a5"}
    graph.close()

