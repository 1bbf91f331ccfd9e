"""promote_fact's in-process write path stores exactly what the message path stores.

One fact promoted at a time is placed as one record per shard and handed to the shards of
this process as it is (hive_core.placement_writes, ShardStore.put_record); on a strict bus
the same records travel as one-fact SHARD_STORE messages (JSON, signed) and are stored by
``put``; ``promote_facts`` places batches. Every shard must end up holding the same facts,
bodies, postings, primaries and tombstones on all three paths, and each must match a
reference computed here from the ring alone. Then they answer every question alike.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable

import pytest

from hive_core.distributed import DistributedHiveGraph
from hive_core.errors import TransportError
from hive_core.facts import HiveFact
from hive_core.placement import place
from hive_core.placement_writes import place_one
from hive_core.ring import HashRing, MovingRing
from hive_core.shard_server import as_batch
from hive_core.store.base import ShardStore, StoreRecord
from hive_core.store.memory import MemoryShardStore
from hive_core.store.registry import open_store
from hive_core.text import term_counts
from hive_core.transports.local import LocalEventBus

AGENTS = [f"a{i}" for i in range(12)]
WORDS = ("falcon heron osprey deadline budget owner incident latency p95 checkout gateway "
         "ledger billing release outage rollback subnet migration postgres kafka").split()

Shards = dict[str, dict[str, tuple[frozenset[str], bool, str, float]]]


def facts(n: int, seed: int = 5) -> list[HiveFact]:
    """Facts with places in conversations; some said twice (later, elsewhere), some with
    a second place in the same learn (``seen_at``), some with no place at all."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        content = f"{' '.join(rng.sample(WORDS, 4))} item-{i} v{i % 7}"
        meta: dict = {} if i % 9 == 0 else {"session": f"s{i // 6}", "turn": i % 6}
        if i % 11 == 3:
            meta["seen_at"] = [[f"s{i // 6}", (i % 6) + 2]]
        out.append(HiveFact(content, concept=content.split()[0], created_at=1000.0 + i,
                            metadata=meta))
    # The same sentences said again later, in another place: one fact each, whose held
    # body is the latest saying and whose position keys include both places.
    for fact in out[5:40:7]:
        out.append(HiveFact(fact.content, concept=fact.concept, created_at=5000.0,
                            metadata={"session": "later", "turn": 3}))
    return out


def reference(promoted: Iterable[HiveFact], ring: HashRing) -> Shards:
    """What each shard must hold, from the ring and the facts alone: a fact's ring owners
    hold it as primary; the owners of each of its terms, and of each place it was said
    at (written out here, not taken from hive_core.context), hold it in that key's
    postings. The body held is the latest saying's."""
    out: Shards = {a: {} for a in ring.agents}
    for fact in promoted:
        fid = fact.fact_id
        keys = set(term_counts(fact.content))
        meta = fact.metadata
        # A fact with no place of its own is posted under none (seen_at included).
        places = [(meta["session"], meta["turn"]), *meta.get("seen_at", ())] \
            if "session" in meta else []
        keys.update(f"\u00a7{s}#{t}" for s, t in places)
        for owner in ring.get_agents(fid):
            held = out[owner].get(fid, (frozenset(), False, "", 0.0))
            out[owner][fid] = (held[0], True, *_latest(held, fact))
        for key in keys:
            for owner in ring.get_agents(key):
                held = out[owner].get(fid, (frozenset(), False, "", 0.0))
                out[owner][fid] = (held[0] | {key}, held[1], *_latest(held, fact))
    return out


def _latest(held: tuple[frozenset[str], bool, str, float], fact: HiveFact) -> tuple[str, float]:
    session = str(fact.metadata.get("session", ""))
    return (session, fact.created_at) if fact.created_at >= held[3] else (held[2], held[3])


def held(store: ShardStore) -> dict[str, tuple[frozenset[str], bool, str, float]]:
    """fact id -> (posting keys, primary?, session of the body held, its created_at)."""
    return {r.fact_id: (frozenset(r.terms), r.primary,
                        str(r.fact["metadata"].get("session", "")), r.fact["created_at"])
            for r in store.records()}


def holdings(graph: DistributedHiveGraph) -> Shards:
    return {agent: held(graph.shard_store(agent)) for agent in AGENTS}


def tombstones(graph: DistributedHiveGraph) -> dict[str, set[str]]:
    return {a: set(graph.shard_store(a).tombstones()) for a in AGENTS}


def one_at_a_time(graph: DistributedHiveGraph, batch: list[HiveFact], start: int) -> None:
    for i, fact in enumerate(batch, start):
        graph.promote_fact(AGENTS[i % len(AGENTS)], fact)


def in_batches(graph: DistributedHiveGraph, batch: list[HiveFact], start: int) -> None:
    for i in range(0, len(batch), 25):
        graph.promote_facts(AGENTS[(start + i) % len(AGENTS)], batch[i : i + 25])


Write = Callable[[DistributedHiveGraph, list[HiveFact], int], None]
PATHS: dict[str, tuple[Write, bool]] = {
    "records, in process": (one_at_a_time, False),
    "one-fact messages, strict bus": (one_at_a_time, True),
    "batches": (in_batches, False),
}


def run(path: str, promoted: list[HiveFact], retracted: list[str]
        ) -> tuple[DistributedHiveGraph, LocalEventBus]:
    """Promote, tombstone some facts on one shard each (as a retraction that reached only
    that replica would), then promote them again: a tombstoned shard must refuse them."""
    write, strict = PATHS[path]
    bus = LocalEventBus(strict=strict)
    graph = DistributedHiveGraph("p", transport=bus)
    for agent in AGENTS:
        graph.register_agent(agent)
    first = [f for f in promoted if f.fact_id not in retracted]
    write(graph, first, 0)
    for fid in retracted:
        graph.shard_store(graph.ring.get_agents(fid)[0]).retract(fid)
    write(graph, promoted, 7)
    assert bus.delivered > 0 if strict else bus.delivered == 0
    return graph, bus


@pytest.fixture(scope="module")
def graphs() -> Iterable[dict[str, DistributedHiveGraph]]:
    promoted = facts(150)
    retracted = [f.fact_id for f in promoted[::17]]
    made = {path: run(path, promoted, retracted) for path in PATHS}
    yield {path: graph for path, (graph, _bus) in made.items()}
    for graph, bus in made.values():
        graph.close()
        bus.close()


def test_every_path_holds_what_the_ring_says(graphs) -> None:
    promoted = facts(150)
    retracted = {f.fact_id for f in promoted[::17]}
    ring = next(iter(graphs.values())).ring
    expected = reference(promoted, ring)
    for fid in retracted:  # its first owner tombstoned it before it arrived again
        expected[ring.get_agents(fid)[0]].pop(fid, None)
    for path, graph in graphs.items():
        held = holdings(graph)
        for agent in AGENTS:
            assert held[agent] == expected[agent], (path, agent)
        assert sum(len(h) for h in held.values()) > 3 * len(promoted)


def test_every_path_keeps_the_same_tombstones_and_postings(graphs) -> None:
    views = {path: (tombstones(g), {a: g.shard_store(a).index_size() for a in AGENTS},
                    {a: g.shard_store(a).count() for a in AGENTS})
             for path, g in graphs.items()}
    first = views.pop("records, in process")
    assert sum(len(t) for t in first[0].values()) == len(facts(150)[::17])
    for path, view in views.items():
        assert view == first, path


def test_every_path_answers_alike(graphs) -> None:
    rng = random.Random(9)
    questions = [" ".join(rng.sample(WORDS, 3)) + f" item-{rng.randint(0, 149)}"
                 for _ in range(40)]
    answers = {path: [[(f.fact_id, f.metadata.get("session")) for f in
                       g.search(q, limit=10, asking_agent="a3").facts] for q in questions]
               for path, g in graphs.items()}
    first = answers.pop("records, in process")
    assert any(first)
    for path, got in answers.items():
        assert got == first, path


@pytest.mark.parametrize("moving", [False, True])
def test_one_fact_is_placed_as_place_would_place_it(moving: bool) -> None:
    """On a ring, and on a moving ring (writes reach the current and the target owners)."""
    ring: HashRing | MovingRing = HashRing(AGENTS)
    if moving:
        ring = MovingRing(HashRing(AGENTS), HashRing([*AGENTS[2:], "b0", "b1"]))
    for fact in facts(60):
        records = {a: as_batch(r) for a, r in place_one(fact, ring).items()}
        batches = place([fact], ring)
        assert set(records) == set(batches)
        for agent, batch in batches.items():
            got = records[agent]
            assert (dict(got.facts), dict(got.tf), list(got.primary)) == \
                (dict(batch.facts), dict(batch.tf), list(batch.primary))
            assert {k: sorted(v) for k, v in got.postings.items()} == \
                {k: sorted(v) for k, v in batch.postings.items()}


def test_a_dead_replica_of_one_fact_is_reported_and_the_fact_stays_findable() -> None:
    graph = DistributedHiveGraph("d")
    for agent in AGENTS[:5]:
        graph.register_agent(agent)
    fact = HiveFact("Service S-7 runs on host h7.example in rack R3.")
    victim = graph.ring.get_agents(fact.fact_id)[1]
    graph.transport.unbind(victim)  # its process died: the bus no longer reaches it
    ids, failed = graph.promote_facts_report("a0", [fact])
    assert failed == [victim] and victim in graph.write_failures
    assert graph.search("Which host runs S-7?", limit=1).facts[0].fact_id == ids[0]
    graph.close()


def test_one_fact_with_no_live_owner_for_a_role_fails_the_write() -> None:
    graph = DistributedHiveGraph("d", replication_factor=1)
    for agent in AGENTS[:5]:
        graph.register_agent(agent)
    fact = HiveFact("Service S-8 runs on host h8.example in rack R1.")
    graph.transport.unbind(graph.ring.get_agents(fact.fact_id)[0])
    with pytest.raises(TransportError, match="no live owner"):
        graph.promote_fact("a0", fact)
    graph.close()


class _FullDisk(MemoryShardStore):
    def put_record(self, record: StoreRecord) -> int:
        raise OSError("No space left on device")


def test_a_shard_that_raises_fails_like_a_remote_error() -> None:
    fact = HiveFact("Gateway p95 latency rose to 900 ms after release 4.2.")
    broken = HashRing(AGENTS[:5]).get_agents(fact.fact_id)[0]
    graph = DistributedHiveGraph("e", store_factory=lambda a: _FullDisk(a) if a == broken
                                 else MemoryShardStore(a))
    for agent in AGENTS[:5]:
        graph.register_agent(agent)
    assert graph.ring.get_agents(fact.fact_id)[0] == broken
    _ids, failed = graph.promote_facts_report("a1", [fact])
    assert failed == [broken] and graph.shard_store(broken).count() == 0
    assert graph.get_fact(fact.fact_id) is not None
    graph.close()


def test_a_kuzu_hive_stores_one_fact_at_a_time_as_the_ring_says(tmp_path) -> None:
    """The Kuzu store takes a record as the one-fact batch it is (ShardStore.put_record's
    default), on disk: reopened, it holds what the reference says."""
    promoted = facts(30)
    graph = DistributedHiveGraph("k", shard_backend="kuzu", storage_path=tmp_path)
    for agent in AGENTS[:5]:
        graph.register_agent(agent)
    for i, fact in enumerate(promoted):
        graph.promote_fact(AGENTS[i % 5], fact)
    ring = graph.ring
    graph.close()
    expected = reference(promoted, ring)
    for agent in AGENTS[:5]:
        store = open_store("kuzu", agent, bm25=graph.bm25, settings=graph.settings,
                           path=tmp_path / agent)
        try:
            assert held(store) == expected[agent], agent
        finally:
            store.close()
