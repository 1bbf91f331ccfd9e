"""An agent's memory while it learns (issue 12, bounded work): what a Kuzu shard keeps per
fact it holds, and what anti-entropy allocates per round, are measured, not timed.

The batches are the very ones an agent's shard receives while ``learn --file`` runs: five
agents place learned turns (with their session and turn, as the CLI sends them) and one
shard's SHARD_STORE batches are captured as JSON, then decoded and stored, as over the
wire, into a fresh Kuzu shard under ``tracemalloc``. The bounds sit between what this
code measures and what the code before it measured (in brackets):

* Python heap per 1,000 facts held, past the bounded encoding memo: 1.7 MB [3.15 MB]: the
  shard kept each body as a dict and a copy of the fact id per posting.
* peak heap of answering a gossip digest, per 1,000 facts held: 0.08 MB [0.18 MB] when
  the replicas agree (digests over bodiless roles, not ``records()``); 0.49 MB [0.50 MB]
  when every segment differs -- bodies are read only for what is sent (read from their
  compact text, all of them cost 1.8 MB).
"""

from __future__ import annotations

import gc
import json
import random
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_runtime.learn_requests import learn_turns
from agent_runtime.learning import RuleBasedExtractor
from hive_core import gossip
from hive_core.config import DEFAULTS
from hive_core.distributed import DistributedHiveGraph
from hive_core.store.base import ShardStore, StoreBatch
from hive_core.store.registry import open_store

AGENTS = [f"agent_{i}" for i in range(5)]
WORDS = ("the payment gateway team moved deadline Project Osprey release Alice Chen patched "
         "CVE-2024-3094 on host db-7 region eu-west latency p95 rose to 340 ms after v1.29 "
         "shipped incident INC-2041 owner budget quarter review Lars Eriksen Oslo office "
         "migration postgres cluster").split()
HEAP_PER_1000_FACTS = 2.2e6  # bytes; measured 1.7 MB, the former shard 3.15 MB
DIGEST_PEAK_PER_1000_FACTS = 0.13e6  # bytes; measured 0.08 MB, over records() 0.18 MB
MISMATCH_PEAK_PER_1000_FACTS = 0.8e6  # bytes; measured 0.49 MB, with every body 1.8 MB


def _line(rng: random.Random) -> str:
    out = []
    for _ in range(rng.randint(5, 12)):
        words = [rng.choice(WORDS) for _ in range(rng.randint(6, 16))]
        out.append(words[0].capitalize() + " " + " ".join(words[1:]) + ". ")
    return "".join(out).strip()


def _captured_batches(lines: int, shard: str = "agent_1") -> list[str]:
    """The SHARD_STORE batches ``shard`` receives (JSON) while 5 agents learn ``lines``
    turns of one file, 50 per LEARN as the CLI sends them."""
    captured: list[str] = []

    def factory(agent_id: str) -> ShardStore:
        store = open_store("memory", agent_id, bm25=graph.bm25, settings=DEFAULTS, path=None,
                           shards_in_process=1)
        if agent_id == shard:
            put = store.put

            def capture(batch: StoreBatch) -> int:
                captured.append(json.dumps(batch.to_wire()))
                return put(batch)

            store.put = capture  # type: ignore[method-assign]
        return store

    graph = DistributedHiveGraph("mem", store_factory=factory)
    for agent in AGENTS:
        graph.register_agent(agent)
    rng, extractor = random.Random(7), RuleBasedExtractor()
    for start in range(0, lines, 50):
        turns = [{"content": _line(rng), "session": "input.txt", "turn": n + 1,
                  "time": 1_796_000_000.0} for n in range(start, start + 50)]
        learn_turns(extractor, graph, AGENTS[start // 50 % len(AGENTS)], turns, False)
    graph.close()
    return captured


@pytest.fixture(scope="module")
def batches() -> list[str]:
    return _captured_batches(2600)  # ~21,000 facts, nearly all held by every shard


@pytest.fixture()
def shard(tmp_path: Path) -> Iterator[ShardStore]:
    store = open_store("kuzu", "agent_1", bm25=DistributedHiveGraph("k").bm25,
                       settings=DEFAULTS, path=tmp_path / "agent_1", shards_in_process=1)
    yield store
    store.close()


def _held(store: ShardStore) -> int:
    return sum(1 for _ in store.held_roles())


def _heap() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def test_a_kuzu_shard_keeps_a_bounded_heap_per_fact_it_holds(batches: list[str],
                                                            shard: ShardStore) -> None:
    """The slope between the half-way point (the encoding memo, 8,192 facts, already full)
    and the end: what every further 1,000 facts learned cost the agent's heap."""
    half = len(batches) // 2
    tracemalloc.start()
    try:
        for text in batches[:half]:
            shard.put(StoreBatch.from_wire(json.loads(text)))
        held_at_half, heap_at_half = _held(shard), _heap()
        for text in batches[half:]:
            shard.put(StoreBatch.from_wire(json.loads(text)))
        held, heap = _held(shard), _heap()
    finally:
        tracemalloc.stop()
    assert held_at_half > 9000 and held - held_at_half > 9000
    per_1000 = (heap - heap_at_half) * 1000 / (held - held_at_half)
    assert per_1000 < HEAP_PER_1000_FACTS, f"{per_1000 / 1e6:.2f} MB per 1,000 facts held"


def test_answering_a_gossip_digest_allocates_little_per_fact_held(batches: list[str],
                                                                 shard: ShardStore) -> None:
    for text in batches:
        shard.put(StoreBatch.from_wire(json.loads(text)))
    held = _held(shard)
    graph = DistributedHiveGraph("ring")
    for agent in AGENTS:
        graph.register_agent(agent)
    ring = graph.ring
    peer = next(iter(gossip.segments_of(ring).shared("agent_1")))
    # a co-owner holding the same roles: the digests match (the steady state of a round)
    same = gossip.digests(shard.records(), "agent_1", ring, [peer])[peer]
    payload = {**gossip.offer(same, ring), "salt": 1}
    differ = {**gossip.offer({seg: [1, 1] for seg in same}, ring), "salt": 1}
    peaks = []
    tracemalloc.start()
    try:
        for ask in (payload, differ):
            base = _heap()
            tracemalloc.reset_peak()
            answer = gossip.answer(shard, "agent_1", peer, ask, ring, 1, 0.01)
            peaks.append((tracemalloc.get_traced_memory()[1] - base) * 1000 / held)
            assert bool(answer["mismatch"]) is (ask is differ)
            del answer
    finally:
        tracemalloc.stop()
    graph.close()
    assert peaks[0] < DIGEST_PEAK_PER_1000_FACTS, f"{peaks[0] / 1e6:.3f} MB per 1,000 facts"
    assert peaks[1] < MISMATCH_PEAK_PER_1000_FACTS, f"{peaks[1] / 1e6:.3f} MB per 1,000 facts"


def test_held_roles_are_the_roles_of_records(batches: list[str], shard: ShardStore) -> None:
    """The body-free stream anti-entropy and cleanup read says what ``records()`` says."""
    for text in batches[:20]:
        shard.put(StoreBatch.from_wire(json.loads(text)))
    shard.retract(next(iter(shard.held_roles())).fact_id)
    from_records = {(r.fact_id, r.terms, r.primary) for r in shard.records()}
    assert {tuple(r) for r in shard.held_roles()} == from_records
    memory = open_store("memory", "agent_1", bm25=DistributedHiveGraph("m").bm25,
                        settings=DEFAULTS, path=None, shards_in_process=1)
    for text in batches[:20]:
        memory.put(StoreBatch.from_wire(json.loads(text)))
    assert ({tuple(r) for r in memory.held_roles()}
            == {(r.fact_id, r.terms, r.primary) for r in memory.records()})


def test_anti_entropy_waits_for_a_shards_writes_to_pause() -> None:
    """A round over a shard written since its last round is deferred (while learning,
    replicas differ by the writes in flight); the next round after a pause runs."""
    from hive_core.facts import HiveFact

    graph = DistributedHiveGraph("quiet")
    for agent in AGENTS:
        graph.register_agent(agent)
    assert set(graph.gossip_round("agent_1", salt=1))  # the first round always runs
    rng = random.Random(3)
    graph.promote_facts_report("agent_0", [HiveFact(_line(rng)) for _ in range(40)])
    assert graph.gossip_round("agent_1", salt=2) == {}
    assert graph.gossip_gate.deferred == 1
    assert set(graph.gossip_round("agent_1", salt=3))  # no write since: it runs
    graph.close()


def test_a_shard_written_without_pause_still_gets_a_round_every_few() -> None:
    """Deferral has a limit: a hive that never stops learning still repairs replicas, with
    twice as many rounds deferred after each one forced (a forced round costs O(facts held)
    on both sides while the writes go on), and the cadence starts over once writes pause."""
    from hive_core.facts import HiveFact
    from hive_core.gossip import MAX_DEFERRED

    graph = DistributedHiveGraph("busy")
    for agent in AGENTS:
        graph.register_agent(agent)
    assert set(graph.gossip_round("agent_1", salt=1))
    rng = random.Random(5)
    expected = [False] * MAX_DEFERRED + [True] + [False] * (2 * MAX_DEFERRED) + [True]
    ran = []
    for salt in range(2, 2 + len(expected)):
        graph.promote_facts_report("agent_0", [HiveFact(_line(rng)) for _ in range(10)])
        ran.append(bool(graph.gossip_round("agent_1", salt=salt)))
    assert ran == expected
    assert set(graph.gossip_round("agent_1", salt=100))  # no write since: it runs
    again = []
    for salt in range(101, 101 + MAX_DEFERRED + 1):  # a new write streak: 4 again
        graph.promote_facts_report("agent_0", [HiveFact(_line(rng)) for _ in range(10)])
        again.append(bool(graph.gossip_round("agent_1", salt=salt)))
    assert again == [False] * MAX_DEFERRED + [True]
    graph.close()
