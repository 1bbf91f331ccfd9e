"""A question answered from several hives as if they were one memory.

Within a hive, scores are comparable across shards because every shard scores with the same
numbers: the hive's collection size and average length, and each term's exact df. Across
hives that is not so -- each hive has its own collection -- so a merge of their rankings
either loses the scores (Reciprocal Rank Fusion: rank 1 of a hive with 3 weak matches
counts as much as rank 1 of a hive with the answer) or compares numbers made with different
constants. The system this product follows used RRF and scored 40-63% where a flat hive
scored 94-99%.

Here a federated question takes two rounds, each one request per hive (every hive runs its
own <= ``query_fanout``-shard routed search, no hive is asked shard by shard):

1. **statistics**: each hive returns its collection (live facts, total length) and the df of
   every question term (:class:`WorldStats`); the asker sums them;
2. **search**: each hive ranks with the *summed* statistics (:func:`with_world_df` replaces
   the df its shards report) and returns its candidate pool as ranked, with the neighbour
   facts of its best candidates' turns (the context phase's fetch, hive_core.context); the
   asker merges the pools by (-score, fact_id), a fact once whatever the number of hives
   holding it (broadcast copies carry the same content-addressed id and, with the same
   statistics, the same score), cuts to one pool, re-ranks it with the neighbour facts
   and shapes the answer (versions, gathering) once -- the order one hive works in.

Why the context phase is done by the asker: it re-ranks the best ``EXPAND_TOP`` of the
pool. Done in each hive, every hive's own best ten would be expanded, and the federation
would rank differently from one hive (it did: 10 of 40 eval questions).

The semantic re-rank (hive_core.semantic.rerank, a hive's ``semantic: true``) is the
asker's too, for the same reason: a hive re-ranking its own pool pulls up facts that are
not in the merged pool's top at all. The asker decides the pool size every hive returns
(the larger one the re-rank needs, when the asker's hive has it on; hives may differ in
config), the hives return their pools as BM25 ranked them, and the asker re-ranks the
merged pool, then its neighbour facts, then the context phase -- the order of one hive's
search. Because the re-rank can lift any fact of the pool into the best ``EXPAND_TOP``, a
hive sends the neighbour facts of its *whole* pool (:func:`pool_context`): a fact of the
merged pool is in its own hive's pool, so they cover whatever the asker expands. A second
hop is lexical, as in one hive.

With every conversation and sentence held by one hive, the merged ranking is exactly the
ranking of one hive holding all of them (tests/test_federation_processes.py checks it
against a fresh flat hive). What a flat hive does differently: it keeps a sentence said in
two hives once, so its df and collection count it once where the sum counts it twice, and
one conversation split over two hives has its neighbours in both (only the hive holding
the candidate sends them). Measured on the eval in bench.federation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hive_core import context
from hive_core.facts import HiveFact
from hive_core.scoring import CorpusStats
from hive_core.search import SearchResult, StatsCall, fetch_context, with_context
from hive_core.store.base import ScoredFact, TermStats

# The asker's re-rank of the merged pool before the context phase (the semantic one,
# SemanticIndex.relation_rerank): re-scores the pool in place and returns the context
# phase's fetch wrapped so that the neighbour facts are re-scored alike.
Rerank = Callable[[SearchResult, context.Fetch], context.Fetch]


@dataclass(frozen=True, slots=True)
class WorldStats:
    """Collection statistics and per-term df, summed over the hives a question asks."""

    collection: CorpusStats = field(default_factory=CorpusStats)
    df: dict[str, int] = field(default_factory=dict)

    def __add__(self, other: WorldStats) -> WorldStats:
        df = dict(self.df)
        for term, n in other.df.items():
            df[term] = df.get(term, 0) + n
        return WorldStats(self.collection + other.collection, df)

    def to_dict(self) -> dict[str, Any]:
        return {"docs": self.collection.docs, "length": self.collection.length,
                "df": dict(self.df)}

    @classmethod
    def from_dict(cls, data: Any) -> WorldStats:
        """From a peer's payload; ValueError for anything that is not counts."""
        if not isinstance(data, Mapping) or not isinstance(data.get("df"), Mapping):
            raise ValueError("world statistics must be {'docs', 'length', 'df': {term: n}}")
        docs, length = data.get("docs"), data.get("length")
        counts = [docs, length, *data["df"].values()]
        if any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in counts):
            raise ValueError("world statistics must be counts (whole numbers >= 0)")
        return cls(CorpusStats(int(docs), int(length)),  # type: ignore[arg-type]
                   {str(t): int(n) for t, n in data["df"].items()})


def with_world_df(stats_call: StatsCall, world: WorldStats) -> StatsCall:
    """``stats_call`` whose df is the world's (never below the local one: the world holds
    this hive). The local bounds (largest tf, shortest fact) stay: they bound only the facts
    this hive will score."""
    def call(by_shard: Mapping[str, Sequence[str]]) -> tuple[dict[str, TermStats], dict]:
        stats, failures = stats_call(by_shard)
        return ({t: TermStats(max(s.df, world.df.get(t, 0)), s.max_tf, s.min_dl)
                 for t, s in stats.items()}, failures)
    return call


@dataclass(slots=True)
class HivePool:
    """What one hive answers in the search round: its candidate pool as ranked (scored
    with the world's statistics) and the neighbour facts of its candidates' turns per
    position key (hive_core.context, :func:`pool_context`), before any re-ranking."""

    result: SearchResult
    fetched: dict[str, list[ScoredFact]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        r = self.result
        return {"facts": [f.to_dict() for f in r.facts], "scores": list(r.scores),
                "fetched": {k: [[h.fact.to_dict(), h.score] for h in hits]
                            for k, hits in self.fetched.items()},
                "shards_queried": r.shards_queried, "shards_searched": r.shards_searched,
                "shards_failed": r.shards_failed, "terms": r.terms,
                "weights": dict(r.weights), "avgdl": r.avgdl}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HivePool:
        """From a peer's payload; ValueError (or KeyError, TypeError) when malformed."""
        facts = [HiveFact.from_dict(d) for d in data["facts"]]
        scores = [float(s) for s in data["scores"]]
        if len(facts) != len(scores):
            raise ValueError("facts and scores differ in length")
        fetched = {str(k): [ScoredFact(HiveFact.from_dict(f), float(score))
                            for f, score in hits]
                   for k, hits in dict(data.get("fetched") or {}).items()}
        result = SearchResult(facts=facts, scores=scores,
                              shards_queried=[str(s) for s in data.get("shards_queried") or []],
                              shards_searched=[str(s) for s in data.get("shards_searched") or []],
                              shards_failed=[str(s) for s in data.get("shards_failed") or []],
                              terms=[str(t) for t in data.get("terms") or []],
                              weights={str(t): float(w) for t, w in
                                       dict(data.get("weights") or {}).items()},
                              avgdl=float(data.get("avgdl") or 0.0))
        return cls(result, fetched)


def pool_context(result: SearchResult, fetch: context.Fetch) -> dict[str, list[ScoredFact]]:
    """What a hive sends with its pool: the neighbour facts of every fact of the pool, not
    only of its best ``EXPAND_TOP`` (the asker may re-rank the merged pool first)."""
    keys: dict[str, context.Position] = {}
    for start in range(0, len(result.facts), context.EXPAND_TOP):
        keys.update(context.neighbour_keys(result.facts[start:start + context.EXPAND_TOP]))
    return fetch_context(result, fetch, keys)


def merge(pools: Iterable[tuple[str, HivePool]], pool: int, home: str,
          rerank: Rerank | None = None) -> SearchResult:
    """The hives' pools as one hive's: candidates best first by (-score, fact_id), each
    fact once (copies score alike), cut to ``pool``; then ``rerank`` (the asker's semantic
    re-rank, if on) and the context re-ranking over the neighbour facts every hive fetched,
    as :func:`~hive_core.search.with_context` does in one hive. Each fact records the hive
    it was found in as ``metadata["hive"]`` (``home``, the asker's, first). Shards of other
    hives keep their hive's name as a prefix (``g2/agent_1``) so a failure says where it
    was. The caller shapes the result.

    The weights are every hive's together: each hive weighs the terms it holds (a shard
    reports no df for a term it has no fact of), all with the same world statistics, so a
    term has one weight wherever it is weighed, and the union is the flat hive's (what the
    semantic re-rank scales its bonus by). The terms and average length are the asker's, or
    else of the first hive that has them (the same numbers)."""
    best: dict[str, tuple[float, HiveFact]] = {}
    fetched: dict[str, dict[str, ScoredFact]] = {}
    out = SearchResult()
    for hive, got in pools:
        result = got.result
        prefix = "" if hive == home else f"{hive}/"
        for fact, score in zip(result.facts, result.scores, strict=True):
            held = best.get(fact.fact_id)
            if held is None or score > held[0]:
                # The label stays the hive it was first found in (the asker's first).
                fact.metadata["hive"] = hive if held is None else held[1].metadata["hive"]
                best[fact.fact_id] = (score, fact)
        for key, hits in got.fetched.items():
            for hit in hits:
                hit.fact.metadata.setdefault("hive", hive)
                fetched.setdefault(key, {}).setdefault(hit.fact.fact_id, hit)
        out.shards_queried += [prefix + s for s in result.shards_queried]
        out.shards_searched += [prefix + s for s in result.shards_searched]
        out.shards_failed += [prefix + s for s in result.shards_failed]
        if result.weights and (hive == home or not out.weights):
            out.terms, out.avgdl = result.terms, result.avgdl
        out.weights = {**result.weights, **out.weights}
    ordered = sorted(best.values(), key=lambda sf: (-sf[0], sf[1].fact_id))[:pool]
    out.facts = [fact for _, fact in ordered]
    out.scores = [score for score, _ in ordered]
    out.shards_failed = sorted(set(out.shards_failed))
    fetch = _served({k: list(hits.values()) for k, hits in fetched.items()})
    return with_context(out, fetch if rerank is None else rerank(out, fetch))


def _served(fetched: Mapping[str, list[ScoredFact]]) -> context.Fetch:
    """The context phase's fetch, answered from the neighbour facts the hives sent (their
    failures are already in the pools' ``shards_failed``)."""
    def fetch(keys: Sequence[str]
              ) -> tuple[dict[str, list[ScoredFact]], dict[str, str], list[str]]:
        return {k: fetched[k] for k in keys if k in fetched}, {}, []
    return fetch
