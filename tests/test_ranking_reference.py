"""Routed search against an independent brute-force BM25 (tests/bm25_reference.py).

The hive must rank exactly like one central BM25 over all its facts, with the REAL number of
facts and their average length (once fixed constants of 1,000,000 facts and 12 terms, which
flattened idf), at N=1 and at N=20 shards, in-process and with facts of very different
lengths so that a wrong average length shows. Names get no extra weight here
(anchor_boost=1) so the comparison is plain BM25.
"""

from __future__ import annotations

import random

import pytest
from bm25_reference import ReferenceBm25

from hive_core import DistributedHiveGraph, HiveFact, InMemoryHiveGraph
from hive_core.config import CoreSettings
from hive_core.query import parse

SETTINGS = CoreSettings(anchor_boost=1.0)
WORDS = ("falcon heron osprey kestrel deadline budget owner incident latency gateway ledger "
         "rollback kafka postgres audit release vendor contract migration quota region "
         "storage backup cluster tenant invoice").split()


def corpus(seed: int, size: int) -> list[str]:
    rng = random.Random(seed)
    weights = [1 / (i + 1) for i in range(len(WORDS))]  # Zipf-like: some terms are common
    texts: set[str] = set()
    while len(texts) < size:
        length = rng.choice([2, 3, 4, 8, 16, 30])  # lengths far from any constant
        texts.add(" ".join(rng.choices(WORDS, weights, k=length)))
    return sorted(texts)


def questions(seed: int, count: int) -> list[str]:
    """1 to 9 distinct words: long questions have more terms than shards to search."""
    rng = random.Random(seed)
    return [" ".join(rng.sample(WORDS, rng.randint(1, 9))) for _ in range(count)]


@pytest.mark.parametrize("agents", [1, 20])
def test_routed_search_equals_brute_force_bm25(agents: int) -> None:
    texts = corpus(7, 400)
    facts = [HiveFact(t) for t in texts]
    reference = ReferenceBm25({f.fact_id: f.content for f in facts})
    hive = (InMemoryHiveGraph("ref", settings=SETTINGS) if agents == 1 else
            DistributedHiveGraph("ref", replication_factor=3, settings=SETTINGS))
    try:
        for i in range(agents):
            hive.register_agent(f"a{i}")
        hive.promote_facts("a0", facts)
        for q in questions(11, 60):
            got = hive.search(q, limit=10)
            parsed = parse(q)
            # Every question term weighs in; facts are found through the routed ones.
            want = reference.top(parsed.terms, 10,
                                 among=set(parsed.routed(SETTINGS.query_fanout)))
            assert [f.fact_id for f in got.facts] == [d for d, _ in want], q
            assert got.scores == pytest.approx([s for _, s in want], rel=1e-9), q
            assert len(got.shards_searched) <= SETTINGS.query_fanout
            if len(parsed.terms) <= SETTINGS.query_fanout:  # plain BM25 over all facts
                assert want == reference.top(parsed.terms, 10)
    finally:
        hive.close()


def test_the_collection_is_the_facts_not_their_replicas() -> None:
    hive = DistributedHiveGraph("c", replication_factor=3)
    try:
        for i in range(7):
            hive.register_agent(f"a{i}")
        texts = corpus(3, 50)
        hive.promote_facts("a0", [HiveFact(t) for t in texts])
        stats = hive.collection()
        reference = ReferenceBm25(dict(enumerate(texts)))
        assert stats.docs == 50 and stats.avgdl == pytest.approx(reference.avgdl)
    finally:
        hive.close()
