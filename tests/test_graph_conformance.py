"""One HiveGraph conformance suite, run against every implementation."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hive_core import DistributedHiveGraph, HiveEdge, HiveFact, HiveGraph, InMemoryHiveGraph
from hive_core.transports.local import LocalEventBus


def _in_memory(hive_id: str) -> InMemoryHiveGraph:
    return InMemoryHiveGraph(hive_id)


def _distributed(hive_id: str) -> DistributedHiveGraph:
    return DistributedHiveGraph(hive_id, transport=LocalEventBus(strict=True))


FACTORIES = {"in_memory": _in_memory, "distributed": _distributed}


@pytest.fixture(params=sorted(FACTORIES))
def make(request) -> Iterator:
    made = []

    def factory(hive_id: str = "hive", agents: int = 4):
        graph = FACTORIES[request.param](hive_id)
        for i in range(agents):
            graph.register_agent(f"{hive_id}_a{i}", domain="ops")
        made.append(graph)
        return graph

    yield factory
    for graph in made:
        graph.close()


def test_implements_the_protocol(make) -> None:
    assert isinstance(make(), HiveGraph)


def test_duplicate_register_is_value_error(make) -> None:
    graph = make("h", agents=1)
    with pytest.raises(ValueError):
        graph.register_agent("h_a0")


def test_unknown_agent_is_key_error(make) -> None:
    graph = make()
    with pytest.raises(KeyError):
        graph.promote_fact("ghost", HiveFact("x is y"))
    with pytest.raises(KeyError):
        graph.unregister_agent("ghost")
    with pytest.raises(KeyError):
        graph.update_trust("ghost", 1.0)


def test_agents_listed_and_trust_clamped(make) -> None:
    graph = make("h", agents=2)
    graph.update_trust("h_a1", 5.0)
    assert [a.agent_id for a in graph.list_agents()] == ["h_a0", "h_a1"]
    assert graph.get_agent("h_a1").trust == 2.0
    assert graph.get_agent("nobody") is None


def test_promote_get_and_query(make) -> None:
    graph = make("h")
    fid = graph.promote_fact("h_a0", HiveFact("Project Falcon deadline is 2026-03-01",
                                              concept="Falcon", confidence=0.7))
    graph.promote_fact("h_a1", HiveFact("Project Heron is owned by Dana", concept="Heron"))
    fact = graph.get_fact(fid)
    assert fact is not None and fact.source_agent == "h_a0" and fact.concept == "Falcon"
    found = graph.query_facts("When is the Falcon deadline?")
    assert [f.fact_id for f in found] == [fid]


def test_same_content_twice_is_one_fact(make) -> None:
    graph = make("h")
    a = graph.promote_fact("h_a0", HiveFact("The p95 of checkout is 240ms"))
    b = graph.promote_fact("h_a2", HiveFact("the  p95 of checkout is 240ms"))
    assert a == b
    assert len(graph.query_facts("checkout p95")) == 1


def test_confidence_clamped_on_the_way_in(make) -> None:
    graph = make("h")
    fid = graph.promote_fact("h_a0", HiveFact("Redis runs on port 6379", confidence=4.0))
    assert graph.get_fact(fid).confidence == 1.0


def test_retracted_facts_never_returned(make) -> None:
    graph = make("h")
    fid = graph.promote_fact("h_a0", HiveFact("INC-7 was caused by CVE-2024-3094"))
    assert graph.retract_fact(fid) is True
    assert graph.query_facts("INC-7 CVE-2024-3094") == []
    assert graph.get_fact(fid) is None
    graph.promote_fact("h_a1", HiveFact("INC-7 was caused by CVE-2024-3094"))
    assert graph.query_facts("INC-7") == [], "a late store must not resurrect a retraction"
    assert graph.retract_fact("f_unknown") is False


def test_edges_in_both_directions(make) -> None:
    graph = make("h")
    a = graph.promote_fact("h_a0", HiveFact("Falcon deadline is March 1"))
    b = graph.promote_fact("h_a0", HiveFact("Falcon deadline is April 15"))
    graph.add_edge(HiveEdge(b, a, "SUPERSEDES"))
    assert [(e.source_id, e.target_id) for e in graph.get_edges(a)] == [(b, a)]
    assert [(e.source_id, e.target_id) for e in graph.get_edges(b)] == [(b, a)]
    assert graph.get_edges("f_none") == []


def test_contradictions_same_concept_different_content(make) -> None:
    graph = make("h")
    graph.promote_fact("h_a0", HiveFact("Falcon deadline is 2026-03-01", concept="Falcon"))
    graph.promote_fact("h_a0", HiveFact("Heron deadline is 2026-05-01", concept="Heron"))
    found = graph.check_contradictions("Falcon deadline is 2026-04-15", "Falcon")
    assert [f.content for f in found] == ["Falcon deadline is 2026-03-01"]
    assert graph.check_contradictions("Falcon deadline is 2026-03-01", "Falcon") == []


def test_no_padding_with_unrelated_facts(make) -> None:
    graph = make("h")
    graph.promote_fact("h_a0", HiveFact("Dana owns project Heron"))
    assert graph.query_facts("kubernetes upgrade window") == []


def test_search_result_shape(make) -> None:
    graph = make("h")
    graph.promote_fact("h_a0", HiveFact("Dana owns project Heron"))
    result = graph.search("Who owns Heron?", limit=5)
    assert result.partial is False and result.shards_failed == []
    assert result.shards_queried and len(result.scores) == len(result.facts) == 1
    assert graph.route_query("Who owns Heron?")


def test_escalation_and_broadcast_rules(make) -> None:
    root, g1, g2, g3 = make("root"), make("g1"), make("g2"), make("g3")
    for child in (g1, g2, g3):
        root.add_child(child)
        child.set_parent(root)
    low = HiveFact("Heron budget is $1.2M", confidence=0.5)
    high = HiveFact("CVE-2024-3094 is exploited in the wild", confidence=0.95)
    g1.promote_fact("g1_a0", low)
    g1.promote_fact("g1_a0", high)
    assert root.get_fact(high.fact_id) is not None
    assert root.get_fact(low.fact_id) is None
    for sibling in (g2, g3):
        assert sibling.get_fact(high.fact_id) is not None
        assert sibling.get_fact(low.fact_id) is None
    assert root.get_stats()["children"] == ["g1", "g2", "g3"]


def test_broadcast_not_back_to_origin(make) -> None:
    root, g1, g2 = make("root"), make("g1"), make("g2")
    root.add_child(g1)
    root.add_child(g2)
    seen: list[str] = []
    original = g1.store_federated
    g1.store_federated = lambda fact: (seen.append(fact.fact_id), original(fact))
    g1.promote_fact("g1_a0", HiveFact("Quay rotates keys daily", confidence=0.99))
    assert seen == [], "the origin hive got its own fact back"
    assert g2.get_fact(HiveFact("Quay rotates keys daily").fact_id) is not None


def test_query_federated_without_cycles_uses_rrf(make) -> None:
    root, g1, g2 = make("root"), make("g1"), make("g2")
    root.add_child(g1)
    root.add_child(g2)
    g2.add_child(root)  # a cycle: must still terminate and visit each hive once
    g1.promote_fact("g1_a0", HiveFact("Falcon runs on kubernetes v1.29", confidence=0.5))
    g2.promote_fact("g2_a0", HiveFact("Falcon deadline is 2026-04-15", confidence=0.5))
    root.promote_fact("root_a0", HiveFact("Falcon deadline slipped twice", confidence=0.5))
    found = g1.query_federated("Falcon", limit=10)
    assert {f.content for f in found} == {
        "Falcon runs on kubernetes v1.29", "Falcon deadline is 2026-04-15",
        "Falcon deadline slipped twice",
    }


def test_current_value_questions_prefer_the_newest_version(make) -> None:
    graph = make("h")
    old = HiveFact("Project Falcon has an initial deadline of 2026-03-01.",
                   concept="project deadline", created_at=1_000.0)
    mid = HiveFact("Update 2026-02-01: project Falcon slipped; its new deadline is 2026-04-15.",
                   concept="project deadline", created_at=2_000.0)
    new = HiveFact("As of 2026-03-20 the deadline of project Falcon moved to 2026-06-30.",
                   concept="project deadline", created_at=3_000.0)
    other = HiveFact("Project Heron has an initial deadline of 2026-09-01.",
                     concept="project deadline", created_at=9_000.0)
    graph.promote_facts("h_a0", [old, mid, new, other])
    current = graph.query_facts("What is the current deadline of project Falcon?", limit=5)
    assert current[0].fact_id == new.fact_id
    assert other.fact_id not in [f.fact_id for f in current[:3]]
    # Without a currency cue the plain ranking stands (the shortest fact matches best).
    plain = graph.query_facts("What was the initial deadline of project Falcon?", limit=5)
    assert plain[0].fact_id == old.fact_id
