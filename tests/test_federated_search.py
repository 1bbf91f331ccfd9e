"""The federated merge (hive_core.federated_search) against a flat hive, in one process.

The reference is a flat in-process hive that learned every turn; the federation is three
in-process hives of different sizes, each holding a disjoint third of the conversations. The
steps are the ones an agent takes for ``ask --federated`` (summed statistics, a search per
hive with them, one merge), run here without processes so many questions are cheap.
With the semantic re-rank on (hive_core.semantic.rerank) the reference is the same flat hive
with it on: the federation must re-rank the merged pool exactly as that hive re-ranks its own.
"""

from __future__ import annotations

import pytest
from semantic_helpers import require_model
from test_federation_processes import _split

from agent_runtime.federation import HiveFederation, _shards_by_hive
from agent_runtime.inprocess import InProcessHive
from hive_core import multihop
from hive_core.evaluation.longhorizon import build_long_horizon
from hive_core.facts import HiveFact
from hive_core.federated_search import HivePool, WorldStats, merge
from hive_core.federation_tree import Tree, TreeView
from hive_core.messages import MessageType
from hive_core.multihop import Hop
from hive_core.query import parse
from hive_core.scoring import CorpusStats
from hive_core.search import SearchResult, shape
from hive_core.semantic import semantic_index
from hive_core.semantic.embedder import HashingEmbedder
from hive_core.semantic.retrieval import SemanticIndex, pool_for
from hive_core.store.base import ScoredFact


def _round(hives: dict[str, InProcessHive], home: str, question: str, limit: int,
           hops: dict[str, Hop | None]) -> SearchResult:
    """The steps of HiveFederation._round: the asker's config decides the semantic re-rank
    (not on a second hop) and so the pool every hive returns; it re-ranks the merged pool."""
    parsed = parse(question)
    semantic = hives[home].graph.semantic if not hops else None
    rerank = None if semantic is None else semantic.relation_rerank(question)
    pool = pool_for(semantic, parsed, limit)
    world = WorldStats()
    for hive in hives.values():
        world = world + hive.graph.world_stats(question)[0]
    pools = []
    for name in [home, *(h for h in hives if h != home)]:
        fetched: dict[str, list[ScoredFact]] = {}
        result = hives[name].graph.search(question, pool, world=world, fetched=fetched,
                                          hop=hops.get(name))
        pools.append((name, HivePool.from_dict(HivePool(result, fetched).to_dict())))
    return shape(merge(pools, pool, home, rerank), parsed, limit)


def _federated(hives: dict[str, InProcessHive], home: str, question: str, limit: int
               ) -> SearchResult:
    """The steps of agent_runtime.federation's search: a round, and for a two-hop question a
    second round with each hive's hop planned on the shards it searched first."""
    first = _round(hives, home, question, limit, {})
    chain = multihop.detect(question)
    if chain is None:
        return first

    def second_hop(second: str, finding: list[str]) -> SearchResult | None:
        asked = _shards_by_hive(first.shards_searched, home)
        hops = {h: hives[h].graph.plan_hop(finding, asked.get(h, []), None) for h in hives}
        assert all(hop is not None for hop in hops.values())  # the spare shard: always room
        return _round(hives, home, second, limit, hops)

    return multihop.follow(chain, first, limit, hives[home].graph.settings.query_fanout,
                           second_hop)


@pytest.fixture(scope="module")
def forest():
    evalset = build_long_horizon(n_turns=900, n_questions=80, seed=11)
    groups = ("g1", "g2", "g3")
    thirds = _split(evalset, groups)
    hives = {g: InProcessHive(n, name=g) for g, n in zip(groups, (1, 3, 5), strict=True)}
    for g in groups:
        hives[g].learn(thirds[g])
    flat = InProcessHive(4, name="flat")
    flat.learn([t for g in groups for t in thirds[g]])
    yield evalset, hives, flat
    for hive in (*hives.values(), flat):
        hive.close()


def _assert_each_home_ranks_as(want: SearchResult, hives: dict[str, InProcessHive],
                               question: str) -> dict[str, SearchResult]:
    """The federated result asked from every hive has ``want``'s facts and scores."""
    results = {}
    for home in hives:
        got = results[home] = _federated(hives, home, question, 10)
        assert [f.fact_id for f in got.facts] == [f.fact_id for f in want.facts], (
            home, question)
        assert got.scores == pytest.approx(want.scores, rel=1e-9)
    return results


def test_merge_ranks_like_one_flat_hive(forest) -> None:
    evalset, hives, flat = forest
    alone_differs = 0
    for question in evalset.questions:
        want = flat.graph.search(question.text, 10)
        _assert_each_home_ranks_as(want, hives, question.text)
        alone = hives["g2"].graph.search(question.text, 10)
        alone_differs += [f.fact_id for f in alone.facts] != [f.fact_id for f in want.facts]
    assert alone_differs > len(evalset.questions) // 2  # the federation is what finds them


@pytest.fixture
def semantic_forest(forest):
    """The same hives and flat hive with the semantic re-rank on (the real model): the
    relation re-rank places facts as they are, so only the search changes."""
    require_model()
    evalset, hives, flat = forest
    index = semantic_index()
    every = (*hives.values(), flat)
    for hive in every:
        hive.graph.semantic = index
    try:
        yield evalset, hives, flat, index
    finally:
        for hive in every:
            hive.graph.semantic = None


def test_with_semantic_on_the_merge_ranks_like_one_flat_semantic_hive(semantic_forest) -> None:
    evalset, hives, flat, index = semantic_forest
    re_ranked = 0
    for question in evalset.questions:
        want = flat.graph.search(question.text, 10)
        for got in _assert_each_home_ranks_as(want, hives, question.text).values():
            assert (got.items, got.versions, got.related) == (
                want.items, want.versions, want.related), question.text
        flat.graph.semantic = None
        lexical = flat.graph.search(question.text, 10)
        flat.graph.semantic = index
        re_ranked += [f.fact_id for f in lexical.facts] != [f.fact_id for f in want.facts]
    assert re_ranked >= len(evalset.questions) // 10  # the re-rank is on and changes answers


class _Tree(TreeView):
    """g2 under root, without reading any config."""

    def tree(self) -> Tree:
        return Tree({"g2": "root"})


def test_a_hive_returns_the_lexical_pool_the_asker_asks_for(forest, tmp_path) -> None:
    """The pool phase of HIVE_QUERY: ``pool`` facts as BM25 ranked them, whatever the
    answering hive's own semantic setting (the asker's decides); a bad ``pool`` refused."""
    evalset, hives, _ = forest
    graph = hives["g2"].graph
    fed = HiveFederation("g2", "agent_0", lambda: graph, tmp_path / "outbox", 0.9)
    fed.view = _Tree()
    question = next(q.text for q in evalset.questions
                    if len(graph.search(q.text, 30, world=WorldStats(), fetched={}).facts) == 30)
    world = graph.world_stats(question)[0]
    lexical = graph.search(question, 30, world=world, fetched={})
    payload = {"from_hive": "root", "question": question, "limit": 10, "phase": "search",
               "world": world.to_dict()}
    graph.semantic = SemanticIndex(HashingEmbedder(16))
    try:
        reply = HivePool.from_dict(fed.handle(MessageType.HIVE_QUERY, "root/agent_1",
                                              {**payload, "pool": 30})).result
        assert [f.fact_id for f in reply.facts] == [f.fact_id for f in lexical.facts]
        assert reply.scores == lexical.scores == sorted(lexical.scores, reverse=True)
        for bad in (0, 1001, True, 2.5, "40", None):
            with pytest.raises(ValueError, match="'pool'"):
                fed.handle(MessageType.HIVE_QUERY, "root/agent_1", {**payload, "pool": bad})
    finally:
        graph.semantic = None
        fed.stop()


def test_a_fact_held_by_several_hives_counts_once() -> None:
    a = HiveFact("Marcus Rivera leads Project Heron.")
    b = HiveFact("Hannah Schmidt leads Project Osprey.")
    c = HiveFact("Project Heron ships in May.")
    heron = SearchResult(facts=[a, c], scores=[5.0, 2.0], shards_searched=["agent_0"])
    copy = SearchResult(facts=[HiveFact(a.content), b], scores=[5.0, 3.0],
                        shards_searched=["agent_1"], shards_failed=["agent_2"])
    merged = merge([("g1", HivePool(heron)), ("root", HivePool(copy))], 10, "g1")
    assert [f.fact_id for f in merged.facts] == [a.fact_id, b.fact_id, c.fact_id]
    assert merged.scores == [5.0, 3.0, 2.0]
    assert [f.metadata["hive"] for f in merged.facts] == ["g1", "root", "g1"]
    assert merged.shards_searched == ["agent_0", "root/agent_1"]
    assert merged.shards_failed == ["root/agent_2"] and merged.partial


def test_world_statistics_add_up_and_refuse_what_is_not_counts() -> None:
    one = WorldStats(CorpusStats(10, 80), {"heron": 2, "leads": 5})
    two = WorldStats(CorpusStats(5, 30), {"heron": 1})
    both = one + two
    assert both.collection == CorpusStats(15, 110) and both.df == {"heron": 3, "leads": 5}
    assert WorldStats.from_dict(both.to_dict()) == both
    for bad in ({"docs": -1, "length": 0, "df": {}}, {"docs": 1, "length": 2, "df": []},
                {"docs": True, "length": 2, "df": {}}, {"docs": 1, "length": 2,
                                                        "df": {"x": 1.5}}, None):
        with pytest.raises(ValueError):
            WorldStats.from_dict(bad)
