"""Semantic retrieval (hive_core.semantic): bucketing, fusion, parity, budget, the real model;
the relation re-rank (the default) is tested in tests/test_semantic_relation.py.

References are independent of the engine: Charikar's collision probability for the
buckets, a float cosine for the int8 one, and a brute-force BM25 (tests/bm25_reference.py)
plus a brute-force cosine for the fused ranking.
"""

from __future__ import annotations

import math
import random
import socket
import sys
from array import array

import pytest
from bm25_reference import ReferenceBm25

from hive_core.distributed import DistributedHiveGraph
from hive_core.errors import ConfigError
from hive_core.facts import HiveFact
from hive_core.hive_config import HiveConfig
from hive_core.query import parse
from hive_core.semantic.embedder import (
    HashingEmbedder,
    WordLlamaEmbedder,
    cosine,
    decode,
    encode,
    open_embedder,
    quantize,
)
from hive_core.semantic.lsh import KEYS_FIELD, VECTOR_FIELD, Lsh, is_bucket
from hive_core.semantic.retrieval import SemanticIndex
from hive_core.text import tokenize


def _unit(rng: random.Random, dim: int) -> list[float]:
    v = [rng.gauss(0.0, 1.0) for _ in range(dim)]
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def _at_angle(rng: random.Random, a: list[float], theta: float) -> list[float]:
    """A unit vector at angle ``theta`` from unit vector ``a``."""
    r = _unit(rng, len(a))
    dot = sum(x * y for x, y in zip(a, r, strict=True))
    ortho = [y - dot * x for x, y in zip(a, r, strict=True)]
    n = math.sqrt(sum(x * x for x in ortho))
    return [math.cos(theta) * x + math.sin(theta) * y / n for x, y in zip(a, ortho, strict=True)]


def _float_cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(
        sum(x * x for x in a) * sum(y * y for y in b))


# -- vectors and buckets ---------------------------------------------------------------------
def test_int8_cosine_is_close_to_the_float_cosine_and_round_trips() -> None:
    rng = random.Random(1)
    for _ in range(50):
        a = _unit(rng, 256)
        b = _at_angle(rng, a, rng.uniform(0.0, math.pi))
        assert abs(cosine(quantize(a), quantize(b)) - _float_cos(a, b)) < 0.02
        assert decode(encode(quantize(a))) == quantize(a)
    assert cosine(quantize([0.0] * 8), quantize([1.0] * 8)) == 0.0
    assert decode("not base64!") is None and decode(None) is None


@pytest.mark.parametrize("theta", [math.pi / 6, math.pi / 3, math.pi / 2])
def test_buckets_collide_as_often_as_simhash_says(theta: float) -> None:
    """P(same bucket) = (1 - theta/pi) ** bits for a pair at angle theta (Charikar 2002)."""
    lsh, rng, pairs = Lsh(tables=1, bits=3, spread=0), random.Random(7), 1500
    same = 0
    for _ in range(pairs):
        a = _unit(rng, 64)
        b = _at_angle(rng, a, theta)
        same += lsh.query_keys(quantize(a)) == lsh.query_keys(quantize(b))
    expected = (1 - theta / math.pi) ** 3
    assert abs(same / pairs - expected) < 0.05, (same / pairs, expected)


def test_opposite_vectors_fall_in_complementary_buckets() -> None:
    lsh, rng = Lsh(tables=3, bits=5, spread=0), random.Random(3)
    for _ in range(100):
        a = quantize(_unit(rng, 32))
        neg = array("b", (-x for x in array("b", a))).tobytes()
        for t in range(3):
            assert lsh.bucket(a, t) ^ lsh.bucket(neg, t) == 0b11111


def test_spread_posts_a_fact_where_its_paraphrases_land() -> None:
    """Behavioural reference: vectors a small angle away from a fact's vector that leave its
    bucket land, most often, in one of the extra buckets the fact was posted under."""
    lsh, rng = Lsh(tables=1, bits=6, spread=2), random.Random(5)
    hits = trials = 0
    for _ in range(40):
        a = _unit(rng, 48)
        keys = lsh.fact_keys(quantize(a))
        own, extra = keys[0], set(keys[1:])
        assert len(keys) == 3 and all(is_bucket(k) for k in keys)
        assert lsh.query_keys(quantize(a)) == [own] and own not in extra
        moved: dict[str, int] = {}
        for _ in range(60):
            (key,) = lsh.query_keys(quantize(_at_angle(rng, a, 0.15)))
            if key != own:
                moved[key] = moved.get(key, 0) + 1
        if moved:
            trials += 1
            hits += max(moved, key=lambda k: (moved[k], k)) in extra
    assert trials >= 20 and hits / trials > 0.9, (hits, trials)


def test_fact_and_question_keys_do_not_look_like_position_keys() -> None:
    keys = Lsh().fact_keys(quantize(_unit(random.Random(2), 16)))
    assert all("#" not in k for k in keys)


# -- fusion against brute force --------------------------------------------------------------
FACTS = [
    "the reactor cooling loop uses heavy water",
    "heavy rain closed the mountain pass",
    "the cooling fans in rack nine failed twice",
    "water pressure in the north tower dropped",
    "the mountain observatory records rain every hour",
    "rack nine hosts the billing database",
    "the billing database migrates next spring",
    "spring maintenance covers the cooling loop",
    "the observatory telescope needs new mirrors",
    "north tower elevators are out of service",
    "mirrors for the telescope arrive in spring",
    "the database replicas live in the north tower",
]
QUESTIONS = ["which cooling loop uses water", "when does the database migrate",
             "what does the observatory record", "rain on the mountain pass",
             "telescope mirrors arrival", "what failed in rack nine"]


def _graph(n: int, semantic: SemanticIndex, **kw) -> DistributedHiveGraph:
    graph = DistributedHiveGraph("sem", replication_factor=2, **kw)
    graph.semantic = semantic
    for i in range(n):
        graph.register_agent(f"a{i}")
    graph.promote_facts("a0", [HiveFact(content=c) for c in FACTS])
    return graph


def _int8(text: str, embedder: HashingEmbedder) -> list[float]:
    return [float(x) for x in array("b", quantize(embedder.embed([text])[0]))]


def _reference(question: str, embedder: HashingEmbedder, weight: float, k: int
               ) -> list[tuple[str, float]]:
    """Brute force over every fact: reference BM25 + weight * (sum of idf) * cosine."""
    bm25 = ReferenceBm25(dict(enumerate(FACTS)))
    terms = list(dict.fromkeys(tokenize(question)))
    scale = weight * (sum(bm25.idf(t) for t in terms if bm25.df[t]) or 1.0)
    q = _int8(question, embedder)
    out = []
    for i, text in enumerate(FACTS):
        v = _int8(text, embedder)
        cos = _float_cos(q, v) if any(v) and any(q) else 0.0
        score = bm25.score(i, terms) + scale * cos
        if score > 0:
            out.append((text, score))
    out.sort(key=lambda ts: (-ts[1], HiveFact(content=ts[0]).fact_id))  # ties: by fact id
    return out[:k]


@pytest.mark.parametrize("agents", [1, 7])
def test_fused_ranking_is_brute_force_bm25_plus_cosine(agents: int) -> None:
    """With one table of one bit and spread 1 every fact is in both buckets, so the fused
    search must equal brute force over the whole collection."""
    embedder = HashingEmbedder(32)
    graph = _graph(agents, SemanticIndex(embedder, Lsh(1, 1, 1), weight=0.5, relation=None))
    try:
        for question in QUESTIONS:
            assert not parse(question).anchors  # no emphasis: the reference has none
            got = graph.search(question, 5, asking_agent="a0")
            want = _reference(question, embedder, 0.5, 5)
            assert [f.content for f in got.facts] == [t for t, _ in want], question
            assert got.scores == pytest.approx([s for _, s in want], rel=1e-9)
    finally:
        graph.close()


def test_n1_and_n9_rank_identically_with_semantic_on_and_ask_at_most_fanout_shards() -> None:
    embedder = HashingEmbedder(48)
    index = SemanticIndex(embedder, Lsh(2, 3, 1), weight=0.4, relation=None)
    one, nine = _graph(1, index), _graph(9, index)
    try:
        questions = [*QUESTIONS, "north tower water", "billing in spring rack",
                     "heavy rain mirrors database cooling observatory elevators"]
        for question in questions:
            a = one.search(question, 5, asking_agent="a0")
            b = nine.search(question, 5, asking_agent="a3")
            assert [f.fact_id for f in a.facts] == [f.fact_id for f in b.facts], question
            assert a.scores == b.scores
            assert len(b.shards_searched) <= nine.settings.query_fanout
            assert not b.partial
    finally:
        one.close()
        nine.close()


class _Concepts:
    """Words to concept axes: a paraphrase shares a concept, not a word."""

    name = "concepts"
    AXES = ({"job", "works", "engineer", "occupation"}, {"pets", "cat", "dog", "adopted"},
            {"languages", "polish", "learning", "spanish"})

    def embed(self, texts):
        out = []
        for text in texts:
            words = set(text.lower().split())
            out.append([float(len(words & axis)) for axis in self.AXES] + [0.1])
        return out


def test_a_paraphrase_is_found_only_with_semantic_retrieval() -> None:
    facts = [HiveFact(content=c) for c in (
        "Mira adopted a cat named Miso", "Lars works as a site reliability engineer",
        "Quinn started learning Polish", "the canteen serves soup on fridays")]
    found = {}
    for semantic in (None, SemanticIndex(_Concepts(), Lsh(1, 2, 1), weight=0.5,
                                               relation=None)):
        graph = DistributedHiveGraph("para", replication_factor=2)
        graph.semantic = semantic
        for i in range(4):
            graph.register_agent(f"a{i}")
        graph.promote_facts("a0", facts)
        try:
            found[semantic is not None] = graph.search("which pets are there", 3).facts
        finally:
            graph.close()
    assert not found[False]
    assert found[True][0].content == "Mira adopted a cat named Miso"


def test_bucket_keys_are_postings_and_retract_removes_them() -> None:
    index = SemanticIndex(HashingEmbedder(16), Lsh(2, 2, 1), relation=None)
    graph = _graph(5, index)
    try:
        fact = graph.search("heavy rain closed the mountain pass", 1).facts[0]
        keys = fact.metadata[KEYS_FIELD]
        assert decode(fact.metadata[VECTOR_FIELD]) and all(is_bucket(k) for k in keys)
        for key in keys:  # every owner of a bucket holds the fact under it
            for owner in graph.ring.get_agents(key):
                roles = {r.fact_id: r.terms for r in graph.shard_store(owner).records()}
                assert key in roles[fact.fact_id]
        assert graph.retract_fact(fact.fact_id)
        for key in keys:
            for owner in graph.ring.get_agents(key):
                assert all(r.fact_id != fact.fact_id for r in graph.shard_store(owner).records())
        assert all(f.fact_id != fact.fact_id
                   for f in graph.search("heavy rain mountain pass", 5).facts)
    finally:
        graph.close()


def test_kuzu_shards_rank_like_memory_shards_with_semantic_on(tmp_path) -> None:
    index = SemanticIndex(HashingEmbedder(32), Lsh(2, 2, 1), weight=0.4, relation=None)
    memory = _graph(1, index)
    kuzu = _graph(3, index, shard_backend="kuzu", storage_path=tmp_path)
    try:
        for question in QUESTIONS:
            a, b = memory.search(question, 5), kuzu.search(question, 5)
            assert [f.fact_id for f in a.facts] == [f.fact_id for f in b.facts]
            assert a.scores == b.scores
    finally:
        memory.close()
        kuzu.close()


# -- configuration and the real model ---------------------------------------------------------
def test_without_wordllama_the_error_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "wordllama", None)  # import wordllama -> ImportError
    with pytest.raises(ConfigError, match=r"pip install 'amplihack-hive\[semantic\]'"):
        open_embedder("wordllama")
    with pytest.raises(ConfigError, match="unknown embedder"):
        open_embedder("nope")


def test_the_hive_config_key_is_a_strict_boolean_off_by_default() -> None:
    assert HiveConfig.from_dict({"name": "h"}).semantic is False
    assert HiveConfig.from_dict({"name": "h", "semantic": True}).semantic is True
    with pytest.raises(ConfigError, match="semantic"):
        HiveConfig.from_dict({"name": "h", "semantic": "yes"})


def test_bad_buckets_and_weights_are_refused() -> None:
    with pytest.raises(ConfigError):
        SemanticIndex(HashingEmbedder(), Lsh(0, 4, 0))
    with pytest.raises(ConfigError):
        SemanticIndex(HashingEmbedder(), Lsh(1, 2, 3))
    with pytest.raises(ConfigError):
        SemanticIndex(HashingEmbedder(), weight=float("nan"))


def test_wordllama_loads_offline_and_ranks_paraphrases(monkeypatch) -> None:
    pytest.importorskip("wordllama")

    def no_network(*_a, **_k):
        raise AssertionError("the model tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    embedder = WordLlamaEmbedder()
    pairs = [("What is Lars Eriksen's job?", "Lars Eriksen works as a site reliability engineer"),
             ("Which languages is Ana learning?", "Ana started learning Polish"),
             ("Does Tom have any pets?", "Tom adopted a cat last week")]
    vecs = [quantize(v) for v in embedder.embed([x for pair in pairs for x in pair])]
    for i in range(len(pairs)):
        own = cosine(vecs[2 * i], vecs[2 * i + 1])
        others = [cosine(vecs[2 * i], vecs[2 * j + 1]) for j in range(len(pairs)) if j != i]
        assert own > max(others) + 0.2, (pairs[i], own, others)
    graph = DistributedHiveGraph("wl", replication_factor=2)
    graph.semantic = SemanticIndex(embedder, Lsh(1, 2, 1), relation=None)  # 4 buckets
    for i in range(3):
        graph.register_agent(f"a{i}")
    try:
        graph.promote_facts("a0", [HiveFact(content=b) for _, b in pairs] + [
            HiveFact(content="The weekly report is due on Friday")])
        # no term in common with the answer: found by meaning alone
        top = graph.search("Does anyone here keep pets?", 2).facts
        assert top and top[0].content == "Tom adopted a cat last week"
    finally:
        graph.close()
