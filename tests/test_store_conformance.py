"""One ShardStore conformance suite, run on every backend (memory and Kuzu on disk)."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from hive_core.facts import HiveEdge, HiveFact
from hive_core.placement import place
from hive_core.ring import HashRing, stable_hash
from hive_core.scoring import DEFAULT_BM25
from hive_core.store.base import ShardStore, StoreBatch, StoreRecord
from hive_core.store.kuzu import KuzuShardStore
from hive_core.store.memory import MemoryShardStore
from hive_core.text import term_counts

MIB = 1024 * 1024
DEADLINE = term_counts("deadline").popitem()[0]  # the stemmed term, whatever the stemmer does


def make_store(backend: str, tmp_path, name: str = "shard") -> ShardStore:
    if backend == "memory":
        return MemoryShardStore(name)
    return KuzuShardStore(tmp_path / name, agent_id=name, bm25=DEFAULT_BM25,
                          buffer_pool_size=16 * MIB, max_db_size=256 * MIB)


@pytest.fixture(params=["memory", "kuzu"])
def store(request, tmp_path) -> Iterator[ShardStore]:
    s = make_store(request.param, tmp_path)
    yield s
    s.close()


def rec(fact: HiveFact, terms: set[str] | None = None, primary: bool = True) -> StoreRecord:
    tf = term_counts(fact.content)
    return StoreRecord(fact.to_dict(), tf, tuple(sorted(tf if terms is None else terms)), primary)


def put(store: ShardStore, records: list[StoreRecord]) -> int:
    """Store rows through the columnar batch a SHARD_STORE message carries."""
    return store.put(StoreBatch.from_records(records))


APOLLO = HiveFact("Project Apollo deadline moved to 2025-03-14", concept="apollo",
                  confidence=0.8, source_agent="a1", tags=("pm", DEADLINE),
                  created_at=1_700_000_123.456789, metadata={"turn": 7, "who": ["ann", "bo"]})
INCIDENT = HiveFact("Incident INC-2041 hit the billing gateway at 10.0.1.0/24",
                    concept="incident", tags=(), metadata={})
BUDGET = HiveFact("Apollo budget is $4.7M for the billing rewrite", concept="apollo")


def test_put_is_idempotent_and_counts_primaries(store):
    assert put(store, [rec(APOLLO), rec(INCIDENT, primary=False)]) == 1
    assert put(store, [rec(APOLLO), rec(INCIDENT, primary=False)]) == 0
    assert store.count() == 1
    assert put(store, [rec(INCIDENT, primary=True)]) == 1
    assert store.count() == 2
    assert store.index_size() == len(term_counts(APOLLO.content)) + len(
        term_counts(INCIDENT.content))


def test_roles_merge_and_drop(store):
    put(store, [rec(APOLLO, terms={"apollo"}, primary=False)])
    put(store, [rec(APOLLO, terms={DEADLINE}, primary=True)])
    (only,) = list(store.records())
    assert set(only.terms) == {"apollo", DEADLINE} and only.primary
    store.drop(APOLLO.fact_id, ["apollo"], primary=True)
    (only,) = list(store.records())
    assert set(only.terms) == {DEADLINE} and not only.primary
    assert store.count() == 0
    store.drop(APOLLO.fact_id, [DEADLINE], primary=False)
    assert list(store.records()) == [] and store.get(APOLLO.fact_id) is None
    assert store.index_size() == 0
    put(store, [rec(APOLLO)])  # a dropped fact can come back with new roles
    assert store.get(APOLLO.fact_id) == APOLLO and store.count() == 1


def test_retract_is_sticky(store):
    put(store, [rec(APOLLO), rec(BUDGET)])
    assert store.retract(APOLLO.fact_id) is True
    assert store.get(APOLLO.fact_id) is None
    assert put(store, [rec(APOLLO)]) == 0  # a late redelivery does not resurrect it
    assert store.get(APOLLO.fact_id) is None
    assert store.count() == 1
    assert APOLLO.fact_id not in {s.fact.fact_id for s in store.search("Apollo deadline")}
    assert set(store.tombstones()) == {APOLLO.fact_id}
    assert store.retract("f_unknown") is False
    assert set(store.tombstones()) == {APOLLO.fact_id, "f_unknown"}
    assert put(store, [rec(APOLLO.retracted())]) == 0


def test_term_stats(store):
    put(store, [rec(APOLLO), rec(BUDGET), rec(INCIDENT)])
    stats = store.term_stats(["apollo", "billing", "2025-03-14", "absent"])
    assert set(stats) == {"apollo", "billing", "2025-03-14"}
    assert stats["apollo"].df == 2 and stats["billing"].df == 2 and stats["2025-03-14"].df == 1
    dl = sum(term_counts(APOLLO.content).values())
    assert (stats["2025-03-14"].max_tf, stats["2025-03-14"].min_dl) == (1, dl)
    assert stats["2025-03-14"].bound(DEFAULT_BM25) == pytest.approx(DEFAULT_BM25.tf_part(1, dl))


def test_score_orders_and_never_pads(store):
    put(store, [rec(APOLLO), rec(BUDGET), rec(INCIDENT)])
    weights = {"apollo": 2.0, DEADLINE: 3.0}
    hits = store.score(["apollo"], weights, limit=10)
    assert hits[0].fact.fact_id == APOLLO.fact_id
    assert {h.fact.fact_id for h in hits} == {APOLLO.fact_id, BUDGET.fact_id}
    assert all(h.score > 0 for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert len(store.score(["apollo"], weights, limit=1)) == 1
    assert store.score(["absent"], {"absent": 1.0}, limit=10) == []
    # the candidate holds "apollo" but no weighted term: score 0, never returned
    assert store.score(["apollo"], {"gateway": 1.0}, limit=10) == []


def test_search_and_get_round_trip_every_field(store):
    put(store, [rec(APOLLO), rec(BUDGET), rec(INCIDENT)])
    hits = store.search("When is the Apollo deadline?", limit=5)
    assert hits[0].fact == APOLLO
    got = store.get(APOLLO.fact_id)
    assert got is not None
    assert got.to_dict() == APOLLO.to_dict()  # tags, metadata, timestamps, confidence ...
    assert got.tags == ("pm", DEADLINE) and got.metadata == {"turn": 7, "who": ["ann", "bo"]}
    assert got.created_at == APOLLO.created_at
    assert store.search("nothing matches zebra", limit=5) == []


def test_records_and_tombstones_round_trip(store, tmp_path):
    put(store, [rec(APOLLO, terms={"apollo"}), rec(BUDGET, primary=False), rec(INCIDENT)])
    store.retract(INCIDENT.fact_id)
    copy = make_store("memory", tmp_path, "copy")
    put(copy, list(store.records()))
    for fid in store.tombstones():
        copy.retract(fid)
    as_set = {(r.fact_id, frozenset(r.terms), r.primary, tuple(sorted(r.tf.items())))
              for r in store.records()}
    assert as_set == {(r.fact_id, frozenset(r.terms), r.primary, tuple(sorted(r.tf.items())))
                      for r in copy.records()}
    assert {r.fact_id: dict(r.fact) for r in store.records()} == {
        APOLLO.fact_id: APOLLO.to_dict(), BUDGET.fact_id: BUDGET.to_dict()}
    assert set(copy.tombstones()) == {INCIDENT.fact_id}


def test_edges_both_directions(store):
    put(store, [rec(APOLLO), rec(BUDGET)])
    e1 = HiveEdge(BUDGET.fact_id, APOLLO.fact_id, "SUPERSEDES", {"why": "newer"}, 1.5)
    e2 = HiveEdge(APOLLO.fact_id, "f_elsewhere", "CONTRADICTS", {}, 2.5)
    e3 = HiveEdge("hive-child", "hive-root", "PARENT_HIVE", {"level": 1}, 3.5)
    for e in (e1, e2, e3, e1):
        store.add_edge(e)
    assert store.get_edges(APOLLO.fact_id) == sorted([e1, e2], key=lambda e: e.key)
    assert store.get_edges(BUDGET.fact_id) == [e1]
    assert store.get_edges("f_elsewhere") == [e2]
    assert store.get_edges("hive-root")[0].properties == {"level": 1}
    assert store.get_edges("hive-root")[0].created_at == 3.5
    assert store.get("f_elsewhere") is None and store.count() == 2  # endpoints are not facts


def generated_corpus(n: int, seed: int = 3) -> list[HiveFact]:
    rng = random.Random(seed)
    words = ["apollo", "billing", "gateway", "Alice", DEADLINE, "budget", "cache", "ledger",
             "migration", "INC-7", "CVE-2024-3094", "v1.29", "p95", "outage", "release"]
    return [HiveFact(" ".join(rng.choice(words) for _ in range(rng.randint(3, 9))) + f" #{i}",
                     tags=(rng.choice(words),), metadata={"i": i}) for i in range(n)]


def test_backends_rank_identically(tmp_path):
    facts = generated_corpus(300)
    records = [rec(f, primary=i % 4 != 0) for i, f in enumerate(facts)]
    stores = [make_store("memory", tmp_path, "m"), make_store("kuzu", tmp_path, "k")]
    try:
        for s in stores:
            put(s, records[:150])
            put(s, records[100:])
        questions = ["apollo billing", "Alice deadline budget", "CVE-2024-3094 outage",
                     "v1.29 release p95", "gateway cache ledger migration", "INC-7"]
        for q in questions:
            mem, kz = (s.search(q, limit=10) for s in stores)
            assert mem, q
            assert [(h.fact, h.score) for h in mem] == [(h.fact, h.score) for h in kz], q
        assert stores[0].count() == stores[1].count()
        assert stores[0].index_size() == stores[1].index_size()
    finally:
        for s in stores:
            s.close()


def test_select_roles_keeps_exactly_the_roles_whose_key_passes(store):
    """What a hand-off source sends: per fact, only the roles whose ring key (a term, or
    the fact id for the primary role) is selected; facts with none are left out. Checked
    against the store's full records, filtered by hand."""
    facts = [HiveFact(f"{w} leads project {w}-{i} on the billing service")
             for i, w in enumerate(["alice", "bob", "carol", "dave", "erin"])]
    ring = HashRing(["x", "y"], replication_factor=1)
    for batch in place(facts, ring).values():
        store.put(batch)

    def keep(key: str) -> bool:
        return stable_hash(key) % 3 != 0

    got = {r.fact_id: (set(r.terms), r.primary, r.fact["content"]) for r in
           store.select_roles(keep)}
    want = {}
    for rec in store.records():
        terms = {t for t in rec.terms if keep(t)}
        primary = rec.primary and keep(rec.fact_id)
        if terms or primary:
            want[rec.fact_id] = (terms, primary, rec.fact["content"])
    assert got == want and got
