"""The in-process federation library (hive_core.federation): the two bugs of issue 11.

1. Links were edited from both ends, so ``c.set_parent(a); c.set_parent(b)`` left ``a``
   listing ``c`` as a child and still asking it in federated queries.
2. Reciprocal Rank Fusion summed the broadcast copies of one fact: from the root, "Who leads
   Project Heron?" ranked an escalated Osprey fact (held by the root and every group)
   above the Heron fact (held by one group).

Both run against every HiveGraph implementation, like tests/test_graph_conformance.py.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import test_graph_conformance

from hive_core import HiveFact
from hive_core.federation import merge_once
from hive_core.graph import BaseHiveGraph
from hive_core.search import rrf_merge

Make = Callable[[str], BaseHiveGraph]


# The graph factories (both implementations, each graph closed afterwards) are the
# conformance suite's: `make(hive_id)` is its fixture.
make = test_graph_conformance.make


def children(graph: BaseHiveGraph) -> list[str]:
    return graph.get_stats()["children"]


# -- one owner for the links -------------------------------------------------------------------
def test_reparenting_leaves_no_stale_child(make) -> None:
    a, b, c = make("a"), make("b"), make("c")
    c.set_parent(a)
    assert children(a) == ["c"]
    c.set_parent(b)
    assert c.get_stats()["parent"] == "b"
    assert children(a) == [], "the old parent still lists the re-parented hive"
    assert children(b) == ["c"]
    # ... and no longer asks it: a fact only c holds is not found from a.
    c.promote_fact("c_a0", HiveFact("Kestrel ships on Fridays", confidence=0.5))
    assert [f.content for f in b.query_federated("Kestrel", limit=5)] == \
        ["Kestrel ships on Fridays"]
    assert a.query_federated("Kestrel", limit=5) == []


def test_add_child_detaches_from_the_old_parent(make) -> None:
    a, b, c = make("a"), make("b"), make("c")
    a.add_child(c)
    b.add_child(c)
    assert (children(a), children(b), c.get_stats()["parent"]) == ([], ["c"], "b")
    # A high-confidence fact of c escalates to b only, and b does not send it to a.
    fact = HiveFact("Quay rotates keys hourly", confidence=0.95)
    c.promote_fact("c_a0", fact)
    assert b.get_fact(fact.fact_id) is not None
    assert a.get_fact(fact.fact_id) is None


def test_detach_and_both_ends_idempotent(make) -> None:
    root, g1 = make("root"), make("g1")
    root.add_child(g1)
    g1.set_parent(root)  # the conformance suite links both ends: still one child
    root.add_child(g1)
    assert children(root) == ["g1"]
    g1.set_parent(None)
    assert children(root) == [] and g1.get_stats()["parent"] is None
    fact = HiveFact("Detached hives keep their facts", confidence=0.99)
    assert g1.escalate_fact(fact) is False
    assert root.get_fact(fact.fact_id) is None


def test_self_links_are_refused(make) -> None:
    a = make("a")
    with pytest.raises(ValueError):
        a.set_parent(a)
    with pytest.raises(ValueError):
        a.add_child(a)


# -- a fact counts once in the merge -----------------------------------------------------------
def heron_osprey(make) -> tuple[BaseHiveGraph, list[BaseHiveGraph], HiveFact, HiveFact]:
    """Root with three groups. g1 learned who leads Heron (confidence 0.6: stays in g1);
    g2 learned who leads Osprey with confidence 0.95: escalated to the root and broadcast
    to g1 and g3, so four hives hold a copy of it."""
    root = make("root")
    groups = [make(f"g{i}") for i in (1, 2, 3)]
    for g in groups:
        g.set_parent(root)
    heron = HiveFact("Dana Whitfield leads Project Heron", concept="project lead",
                     confidence=0.6)
    osprey = HiveFact("Marco Ruiz leads Project Osprey", concept="project lead",
                      confidence=0.95)
    groups[0].promote_fact("g1_a0", heron)
    groups[0].promote_fact("g1_a1", HiveFact("Heron standup is at 09:30", confidence=0.6))
    groups[1].promote_fact("g2_a0", osprey)
    groups[2].promote_fact("g3_a0", HiveFact("Falcon migrated to Postgres 16",
                                             confidence=0.6))
    holders = [h.hive_id for h in (root, *groups) if h.get_fact(osprey.fact_id) is not None]
    assert holders == ["root", "g1", "g2", "g3"]  # the broadcast copies the bug summed
    return root, groups, heron, osprey


def test_broadcast_copies_do_not_outrank_the_answer(make) -> None:
    root, groups, heron, osprey = heron_osprey(make)
    for asker in (root, *groups):
        found = asker.query_federated("Who leads Project Heron?", limit=5)
        assert found[0].fact_id == heron.fact_id, \
            f"from {asker.hive_id}: {[f.content for f in found]}"
        ids = [f.fact_id for f in found]
        assert ids.count(osprey.fact_id) == 1  # still there once, below the answer
    # The Osprey question still finds Osprey first: the fix is not a bias against copies.
    assert root.query_federated("Who leads Project Osprey?", limit=5)[0].fact_id == osprey.fact_id


def test_merge_once_takes_best_rank_then_best_score() -> None:
    a, b, c = HiveFact("alpha"), HiveFact("beta"), HiveFact("gamma")
    # b is rank 1 in two hives with weak scores, a is rank 1 in one with a strong score.
    merged = merge_once([([b, c], [0.4, 0.1]), ([a, b], [2.0, 0.3]), ([b], [0.5])], limit=3)
    assert merged == [a, b, c]
    # rrf_merge (other callers) keeps its summing semantics: b wins there.
    assert rrf_merge([[b, c], [a, b], [b]], k=60, limit=3)[0] == b
