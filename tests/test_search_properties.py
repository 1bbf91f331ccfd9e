"""Property: routed search over any number of shards ranks exactly like one big memory."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hive_core import DistributedHiveGraph, HiveFact, InMemoryHiveGraph
from hive_core.search import rrf_merge

VOCAB = ("falcon heron osprey deadline budget owner incident cve-2024-3094 p95 latency "
         "gateway ledger 10.0.1.0/24 $4.7m v1.29 rollback kafka postgres team audit").split()

sentences = st.lists(st.sampled_from(VOCAB), min_size=2, max_size=9).map(" ".join)


@given(facts=st.lists(sentences, min_size=1, max_size=40, unique=True),
       questions=st.lists(st.lists(st.sampled_from(VOCAB), min_size=1, max_size=7)
                          .map(" ".join), min_size=1, max_size=8),
       agents=st.integers(min_value=1, max_value=12),
       rf=st.integers(min_value=1, max_value=3),
       limit=st.integers(min_value=1, max_value=10))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_hive_size_ranks_like_one_memory(facts, questions, agents, rf, limit) -> None:
    hive = DistributedHiveGraph("p", replication_factor=rf)
    central = InMemoryHiveGraph("c")
    try:
        for i in range(agents):
            hive.register_agent(f"a{i}")
        central.register_agent("x")
        values = [HiveFact(text) for text in facts]
        hive.promote_facts("a0", values)
        central.promote_facts("x", values)
        for q in questions:
            routed = hive.search(q, limit=limit, asking_agent=f"a{agents - 1}")
            alone = central.search(q, limit=limit)
            assert [f.fact_id for f in routed.facts] == [f.fact_id for f in alone.facts]
            assert routed.scores == alone.scores
            assert len(routed.shards_searched) <= hive.settings.query_fanout
            assert not routed.partial
    finally:
        hive.close()


@given(st.lists(st.lists(st.sampled_from(VOCAB), max_size=8, unique=True), max_size=5),
       st.integers(min_value=1, max_value=20))
@settings(max_examples=60, deadline=None)
def test_rrf_dedups_and_orders_by_fused_score(rankings, limit) -> None:
    facts = {w: HiveFact(w) for w in VOCAB}
    merged = rrf_merge([[facts[w] for w in r] for r in rankings], k=60, limit=limit)
    ids = [f.fact_id for f in merged]
    assert len(ids) == len(set(ids)) <= limit
    seen = {w for r in rankings for w in r}
    assert {f.content for f in merged} <= seen
    assert len(merged) == min(limit, len(seen))

    def fused(word: str) -> float:
        return sum(1 / (60 + r.index(word) + 1) for r in rankings if word in r)

    scores = [fused(f.content) for f in merged]
    assert scores == sorted(scores, reverse=True)
