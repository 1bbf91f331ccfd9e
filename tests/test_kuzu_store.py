"""Kuzu shards on disk: reopen from another process, the in-use error, 100 shards per process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_store_conformance import generated_corpus, put, rec

from hive_core.config import CoreSettings
from hive_core.distributed import DistributedHiveGraph
from hive_core.errors import ShardInUse
from hive_core.facts import HiveEdge, HiveFact
from hive_core.scoring import DEFAULT_BM25
from hive_core.store.base import StoreBatch
from hive_core.store.kuzu import LOG, PRIMARY, KuzuShardStore, buffer_pool_for
from hive_core.store.shard_lock import LOCK_FILE

MIB = 1024 * 1024
REPO = Path(__file__).resolve().parent.parent
QUESTIONS = ["apollo billing", "Alice deadline budget", "CVE-2024-3094 outage", "INC-7 v1.29"]

CHILD = textwrap.dedent("""
    import json, sys
    from hive_core.errors import ShardInUse
    from hive_core.scoring import DEFAULT_BM25
    from hive_core.store.kuzu import KuzuShardStore
    path, ids, questions = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
    try:
        store = KuzuShardStore(path, agent_id="s", bm25=DEFAULT_BM25,
                               buffer_pool_size=16 << 20, max_db_size=256 << 20)
    except ShardInUse as exc:
        print(exc, file=sys.stderr)
        sys.exit(3)
    out = {"facts": [store.get(i).to_dict() for i in ids],
           "search": [[[h.fact.fact_id, h.score] for h in store.search(q, 10)] for q in questions],
           "count": store.count(), "tombstones": sorted(store.tombstones()),
           "edges": [e.to_dict() for e in store.get_edges(ids[0])]}
    store.close()
    print(json.dumps(out))
""")


def open_store(path: Path) -> KuzuShardStore:
    return KuzuShardStore(path, agent_id="s", bm25=DEFAULT_BM25, buffer_pool_size=16 * MIB,
                          max_db_size=256 * MIB)


def run_child(path: Path, ids: list[str]) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-c", CHILD, str(path), json.dumps(ids), json.dumps(QUESTIONS)],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )


def test_reopen_in_another_process_gives_same_facts_and_results(tmp_path):
    facts = generated_corpus(200)
    path = tmp_path / "shard"
    store = open_store(path)
    put(store, [rec(f) for f in facts])
    store.retract(facts[5].fact_id)
    edge = HiveEdge(facts[0].fact_id, facts[1].fact_id, "CONFIRMED_BY", {"by": "x"}, 9.25)
    store.add_edge(edge)
    ids = [f.fact_id for f in facts[:20] if f is not facts[5]]
    expected = {
        "facts": [store.get(i).to_dict() for i in ids],
        "search": [[[h.fact.fact_id, h.score] for h in store.search(q, 10)] for q in QUESTIONS],
        "count": store.count(), "tombstones": [facts[5].fact_id], "edges": [edge.to_dict()],
    }
    assert all(expected["search"])
    store.close()

    child = run_child(path, ids)
    assert child.returncode == 0, child.stderr
    assert json.loads(child.stdout) == json.loads(json.dumps(expected))

    again = open_store(path)  # and back in this process, after the child let go
    try:
        assert [[h.fact.fact_id, h.score] for h in again.search(QUESTIONS[0], 10)] == \
            expected["search"][0]
        assert put(again, [rec(facts[5])]) == 0  # the tombstone survived two reopens
    finally:
        again.close()


def test_second_process_gets_a_clear_in_use_error(tmp_path):
    path = tmp_path / "busy"
    store = open_store(path)
    try:
        put(store, [rec(HiveFact("Apollo deadline is Friday"))])
        child = run_child(path, ["f_x"])
        assert child.returncode == 3, child.stdout + child.stderr
        assert str(path) in child.stderr and str(os.getpid()) in child.stderr
        assert "Traceback" not in child.stderr
        assert (path / LOCK_FILE).read_text().strip() == str(os.getpid())
    finally:
        store.close()
    assert run_child(path, [HiveFact("Apollo deadline is Friday").fact_id]).returncode == 0


def test_one_database_per_path_per_process(tmp_path):
    store = open_store(tmp_path / "one")
    try:
        with pytest.raises(ShardInUse, match=str(os.getpid())):
            open_store(tmp_path / "one")
        with pytest.raises(ShardInUse):
            open_store(tmp_path / "one" / ".." / "one")
    finally:
        store.close()
    open_store(tmp_path / "one").close()  # close released the claim


def test_buffer_pool_shrinks_with_shard_count():
    settings = CoreSettings()
    assert buffer_pool_for(1, settings) == settings.kuzu_buffer_pool_size
    assert buffer_pool_for(100, settings) == 16 * MIB
    assert buffer_pool_for(8, settings) == settings.kuzu_process_buffer_budget // 8
    assert buffer_pool_for(100, CoreSettings(kuzu_process_buffer_budget=100 * 64 * MIB)) == \
        64 * MIB


def hive_facts(n: int) -> list[HiveFact]:
    projects = ["Apollo", "Borealis", "Cobalt", "Delta", "Ember"]
    return [HiveFact(f"{projects[i % 5]} incident INC-{100 + i} on host db-{i % 17} "
                     f"patched CVE-2024-{3000 + i % 40}", concept=projects[i % 5].lower(),
                     created_at=1_700_000_000.0 + i)
            for i in range(n)]


def test_hundred_kuzu_shards_in_one_process(tmp_path):
    hive = DistributedHiveGraph("big", shard_backend="kuzu", storage_path=tmp_path)
    try:
        for a in range(100):
            hive.register_agent(f"agent-{a:03d}")
        facts = hive_facts(300)
        hive.promote_facts("agent-000", facts)
        assert sum(hive.shard_store(f"agent-{a:03d}").count() for a in range(100)) == 300 * 3
        result = hive.search("What happened in incident INC-117?", limit=5)
        assert not result.partial and result.facts[0].content == facts[17].content
        assert len(result.shards_queried) <= hive.settings.query_fanout
        assert len(list(tmp_path.iterdir())) == 100
    finally:
        hive.close()


def test_distributed_memory_and_kuzu_hives_agree(tmp_path):
    facts = hive_facts(400)
    hives = [DistributedHiveGraph("m"),
             DistributedHiveGraph("k", shard_backend="kuzu", storage_path=tmp_path / "k")]
    try:
        for hive in hives:
            for a in range(12):
                hive.register_agent(f"a{a}")
            hive.promote_facts("a0", facts[:250])
            hive.register_agent("late")  # hand-off moves records between Kuzu shards
            hive.promote_facts("a3", facts[200:])
            hive.retract_fact(facts[7].fact_id)
        for q in ["Apollo incident", "CVE-2024-3007 patched", "host db-3 Delta", "INC-207"]:
            mem, kz = (h.search(q, limit=10) for h in hives)
            assert mem.facts, q
            assert [(f.fact_id, s) for f, s in zip(mem.facts, mem.scores, strict=True)] == \
                [(f.fact_id, s) for f, s in zip(kz.facts, kz.scores, strict=True)], q
        counts = [sorted(h._shard_counts().items()) for h in hives]
        assert counts[0] == counts[1]
        assert hives[1].get_fact(facts[7].fact_id) is None
    finally:
        for hive in hives:
            hive.close()


def state(store) -> dict:
    """Everything a reader can see of a shard, as plain data."""
    return {
        "records": sorted((r.fact_id, dict(r.fact), sorted(r.terms), r.primary,
                           sorted(r.tf.items())) for r in store.records()),
        "tombstones": sorted(store.tombstones()), "count": store.count(),
        "index_size": store.index_size(),
        "search": [[(h.fact.fact_id, h.score) for h in store.search(q, 10)] for q in QUESTIONS],
    }


def test_reopen_replays_puts_drops_retractions_and_returns(tmp_path):
    """Roles given up, facts forgotten and brought back with another body, retractions:
    a reopened shard is the memory store that saw the same writes."""
    from hive_core.store.memory import MemoryShardStore

    facts = generated_corpus(120)
    path = tmp_path / "shard"
    kz, mem = open_store(path), MemoryShardStore("s")

    def both(op, *args):
        for s in (kz, mem):
            getattr(s, op)(*args)

    batch = [rec(f, primary=i % 3 == 0) for i, f in enumerate(facts[:80])]
    for s in (kz, mem):
        put(s, batch)
        put(s, [rec(f, terms=set(), primary=True) for f in facts[40:60]])  # known -> primary
        put(s, [rec(f, primary=False) for f in facts[70:120]])
    first = rec(facts[1])
    both("drop", facts[1].fact_id, list(first.terms), True)  # forgotten entirely
    moved = facts[1].with_source("agent-9")  # same id, another body
    for s in (kz, mem):
        put(s, [rec(moved, terms={first.terms[0]}, primary=False)])
    both("drop", facts[3].fact_id, [], True)  # primary given up, postings kept
    both("drop", facts[6].fact_id, list(rec(facts[6]).terms)[:1], False)  # one posting off
    both("retract", facts[9].fact_id)
    both("retract", facts[75].fact_id)
    assert state(kz) == state(mem)
    expected = state(mem)
    assert kz.get(facts[1].fact_id).source_agent == "agent-9"
    kz.close()

    again = open_store(path)
    try:
        assert state(again) == expected
        assert again.get(facts[1].fact_id) == moved
        assert put(again, [rec(facts[9])]) == 0 and again.get(facts[9].fact_id) is None
        assert put(again, [rec(facts[3], terms=set(), primary=True)]) == 1  # primary again
        put(mem, [rec(facts[3], terms=set(), primary=True)])
        expected = state(mem)
    finally:
        again.close()
    third = open_store(path)
    try:
        assert state(third) == expected
    finally:
        third.close()


def test_batch_with_duplicates_and_redelivery_write_once(tmp_path):
    facts = generated_corpus(10)
    fid = facts[0].fact_id
    tf = rec(facts[0]).tf
    dup = StoreBatch({fid: facts[0].to_dict()}, {fid: tf},
                     {t: [fid, fid] for t in tf}, [fid, fid])
    store = open_store(tmp_path / "dup")
    try:
        assert store.put(dup) == 1
        assert store.count() == 1 and store.index_size() == len(tf)
        writes = store._seq
        assert store.put(dup) == 0 and store._seq == writes  # nothing new: nothing written
    finally:
        store.close()
    again = open_store(tmp_path / "dup")
    try:
        assert again.count() == 1 and again.index_size() == len(tf)
        (only,) = list(again.records())
        assert sorted(only.terms) == sorted(tf) and only.primary
    finally:
        again.close()


def test_one_log_row_per_put_and_primary_rows_only_for_primaries(tmp_path):
    facts = generated_corpus(50)
    store = open_store(tmp_path / "rows")
    try:
        put(store, [rec(f, primary=i < 5) for i, f in enumerate(facts)])
        rows = store._conn.execute(
            f"MATCH (f:Fact) RETURN f.id, f.state = {LOG}, f.state = {PRIMARY}").get_all()
        assert sorted(r[0] for r in rows if not r[1]) == sorted(f.fact_id for f in facts[:5])
        assert [r[0] for r in rows if r[1]] == ["#log/000000000001"]
        assert all(r[2] for r in rows if not r[1])
    finally:
        store.close()


def test_unreadable_log_entry_is_a_clear_corruption(tmp_path):
    from hive_core.errors import ShardCorrupt

    path = tmp_path / "bad"
    store = open_store(path)
    put(store, [rec(f, primary=False) for f in generated_corpus(5)])
    store._conn.execute(f"MATCH (f:Fact) WHERE f.state = {LOG} SET f.body = 'not base64!'")
    store.close()
    with pytest.raises(ShardCorrupt, match="log entry"):
        open_store(path)
    open_store(tmp_path / "fresh").close()  # the failed open released its claim
    with pytest.raises(ShardCorrupt):
        open_store(path)


def test_term_counts_other_than_the_contents_survive_a_reopen(tmp_path):
    """Rows and log records omit term counts equal to ``term_counts(content)`` and recompute
    them on replay; any other counts a batch carries are written and read back as given."""
    facts = generated_corpus(4)
    own = {f.fact_id: {"alpha": 2, "beta": 1} for f in facts[:2]}
    tfs = {f.fact_id: own.get(f.fact_id) or rec(f).tf for f in facts}
    batch = StoreBatch({f.fact_id: f.to_dict() for f in facts}, tfs,
                       {"alpha": [f.fact_id for f in facts], "beta": [facts[0].fact_id]},
                       [facts[0].fact_id, facts[2].fact_id])  # one custom primary, one logged
    store = open_store(tmp_path / "tf")
    try:
        store.put(batch)
        expected = state(store)
    finally:
        store.close()
    again = open_store(tmp_path / "tf")
    try:
        assert state(again) == expected
        got = {r.fact_id: dict(r.tf) for r in again.records()}
        assert got == {fid: dict(tf) for fid, tf in tfs.items()}
    finally:
        again.close()


def test_every_body_field_survives_a_reopen_exactly(tmp_path):
    """A row's body and a log record hold every field as given, even an id or a content hash
    that is not the content's (plain data may carry any) and floats that need every digit."""
    facts = generated_corpus(6)
    bodies, tfs = {}, {}
    for i, f in enumerate(facts):
        body = f.to_dict()
        body.update(confidence=0.1 + 0.2, created_at=1_700_000_000.123456789 + i,
                    tags=["a", "ü", ""], metadata={"k": [1, 2.5, None], "é": {"x": True}})
        if i % 2:
            body["content_hash"] = "not-the-hash"
        if i in (2, 3):
            body["fact_id"] = f"custom-{i}"
        bodies[body["fact_id"]] = body
        tfs[body["fact_id"]] = rec(f).tf
    postings: dict[str, list[str]] = {}
    for fid, tf in tfs.items():
        for term in tf:
            postings.setdefault(term, []).append(fid)
    primary = list(bodies)[:3]  # three rows (one with a custom id), three logged records
    store = open_store(tmp_path / "exact")
    try:
        store.put(StoreBatch(bodies, tfs, postings, primary))
    finally:
        store.close()
    again = open_store(tmp_path / "exact")
    try:
        got = {r.fact["fact_id"]: dict(r.fact) for r in again.records()}
        assert got == bodies
        assert {r.fact["fact_id"] for r in again.records() if r.primary} == set(primary)
        assert {r.fact["fact_id"]: dict(r.tf) for r in again.records()} == tfs
    finally:
        again.close()
