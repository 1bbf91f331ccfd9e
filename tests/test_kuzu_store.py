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
from hive_core.store.kuzu import KuzuShardStore, buffer_pool_for
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
