"""Routed retrieval that ranks exactly like one big memory.

How a question is answered (the same code for a hive of 1 shard and of 100):

1. **Terms.** The parsed question (:mod:`hive_core.query`) gives at most ``query_fanout``
   terms, most specific first, from the question alone (never from hive state), so every
   hive size picks the same terms.
2. **Route.** Each term is served by one of its ring owners (all owners of a term hold all of
   its postings), preferring the asking agent, then a shard already chosen. At most one shard
   per term, so at most ``query_fanout`` shards, never all N.
3. **Stats** (one parallel round): each chosen shard returns, per term, its exact document
   frequency and the largest tf-part in its postings. The idf weights follow.
4. **Score**, rarest term first: the owner of a term scores every fact in that term's postings
   over *all* weighted terms (it holds the facts, not just ids) and returns its top ``limit``.
   Any fact in the global top ``limit`` contains some question term and ranks at least as high
   among that term's postings, so the union of these lists contains the global top ``limit``
   with their exact scores. After each term, facts that contain none of the terms done so far
   score at most ``sum(idf * max_tf_part)`` over the terms left; once the current ``limit``-th
   score beats that bound the remaining (common) terms are skipped.
5. **Merge**: by (-score, fact_id); replicas carry the same fact_id and score, so they vote
   once.

Scores are comparable across shards because BM25 uses only exact per-term df plus hive-wide
constants (:mod:`hive_core.scoring`). This is the term-partitioned index of Reynolds and
Vahdat (2003), with the documents kept beside their postings so no second hop is needed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hive_core import aggregate, context, versions
from hive_core.config import DEFAULTS, CoreSettings
from hive_core.errors import TransportError
from hive_core.facts import HiveFact
from hive_core.query import ParsedQuery, parse
from hive_core.scoring import Bm25
from hive_core.store.base import ScoredFact, ShardStore, TermStats

if TYPE_CHECKING:
    from hive_core.multihop import Hop, Hops


@dataclass(slots=True)
class SearchResult:
    """Facts best first, with where they came from and whether anything was missing."""

    facts: list[HiveFact] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    shards_queried: list[str] = field(default_factory=list)  # every shard asked anything
    shards_searched: list[str] = field(default_factory=list)  # asked to score: <= fanout
    shards_failed: list[str] = field(default_factory=list)
    terms: list[str] = field(default_factory=list)
    # A question about a changing value: the version it asks for, then the one compared
    # with it (hive_core.versions).
    versions: list[str] = field(default_factory=list)
    # A question that gathers ("how many", "list"): the distinct things the first facts
    # name (hive_core.aggregate).
    items: list[str] = field(default_factory=list)
    # The semantic re-rank's word on the relation (hive_core.semantic.rerank): fact id ->
    # its name-free cosine with the question, for the facts it judged to state what is
    # asked; a gathering question groups them too. Empty on the lexical path.
    related: dict[str, float] = field(default_factory=dict, repr=False)
    # The idf weights and average length every score used (for a second phase that must
    # score more facts the same way); not part of the reply.
    weights: dict[str, float] = field(default_factory=dict, repr=False)
    avgdl: float = field(default=0.0, repr=False)
    # A two-hop question (hive_core.multihop): the bridge, the second hop, or why not.
    chain: Hops | None = None

    @property
    def partial(self) -> bool:
        """The one rule: a result is partial exactly when a shard it needed (any shard the
        search asked: stats, scores or context) failed, timed out or could not be asked
        before the deadline; ``shards_failed`` lists them. Derived, so never out of step."""
        return bool(self.shards_failed)

    def scored(self) -> list[ScoredFact]:
        return [ScoredFact(f, s) for f, s in zip(self.facts, self.scores, strict=True)]

    def reorder(self, facts: Sequence[HiveFact]) -> None:
        """The same facts in another order, each keeping its own score (answer shaping moves
        facts; it never rescales them)."""
        score = dict(zip((f.fact_id for f in self.facts), self.scores, strict=True))
        self.facts = list(facts)
        self.scores = [score[f.fact_id] for f in self.facts]

    def to_dict(self) -> dict[str, object]:
        return {
            "facts": [f.to_dict() for f in self.facts],
            "scores": list(self.scores),
            "shards_queried": list(self.shards_queried),
            "shards_searched": list(self.shards_searched),
            "shards_failed": list(self.shards_failed),
            "partial": self.partial,
            "terms": list(self.terms),
            "versions": list(self.versions),
            "items": list(self.items),
            "hops": None if self.chain is None else self.chain.to_dict(),
        }


StatsCall = Callable[[Mapping[str, Sequence[str]]], tuple[dict[str, TermStats], dict[str, str]]]
# (shard, terms, weights, limit, avgdl) -> top facts of the shard for those terms
ScoreCall = Callable[[str, Sequence[str], Mapping[str, float], int, float], list[ScoredFact]]


def route_terms(
    terms: Sequence[str],
    owners_of: Callable[[str], Sequence[str]],
    prefer: str | None = None,
    avoid: frozenset[str] = frozenset(),
    asked: Sequence[str] = (),
) -> dict[str, str]:
    """term -> shard: one owner per term, the asker first, then shards already chosen.

    ``avoid`` (suspected-dead shards) is used only when a term has another owner. ``asked``
    (shards an earlier hop of the question asked) come before the asker: a second hop
    spends no new shard where an owner was already asked (hive_core.multihop).
    """
    chosen: dict[str, str] = {}
    used: list[str] = list(asked)
    for term in terms:
        owners = list(owners_of(term))
        if not owners:
            continue
        healthy = [o for o in owners if o not in avoid] or owners
        before = next((o for o in healthy if o in asked), None)
        if before is not None:
            pick = before
        elif prefer is not None and prefer in healthy:
            pick = prefer
        else:
            pick = next((o for o in healthy if o in used), healthy[0])
        chosen[term] = pick
        if pick not in used:
            used.append(pick)
    return chosen


def group_by_shard(route: Mapping[str, str]) -> dict[str, list[str]]:
    """key -> shard, turned into shard -> its keys (one request per shard)."""
    by_shard: dict[str, list[str]] = {}
    for key, shard in route.items():
        by_shard.setdefault(shard, []).append(key)
    return by_shard


def ranked_search(
    route: Mapping[str, str],
    stats_call: StatsCall,
    score_call: ScoreCall,
    bm25: Bm25,
    limit: int,
    emphasis: Mapping[str, float] | None = None,
    candidates: Collection[str] | None = None,
) -> SearchResult:
    """Steps 3-5 above over ``route`` (term -> shard). A shard that fails is listed in
    ``shards_failed``, which makes the result partial (:attr:`SearchResult.partial`).

    Every term of ``route`` weighs in every score (its df comes from its shard in the one
    stats round); facts are *found* through the postings of the ``candidates`` terms only
    (default: all), the at most ``query_fanout`` routed ones, so scoring asks no more shards
    than routing chose. The candidates depend on the question alone, so every hive size
    scores the same facts with the same weights.

    ``bm25`` carries the hive's collection statistics (:meth:`Bm25.for_collection`): its
    document count makes the idf weights here, its average length goes to every scoring shard.

    ``emphasis`` multiplies the idf weight of some terms (the question's names and
    identifiers, :meth:`ParsedQuery.emphasis`); weights are fixed before any shard scores,
    so every shard still computes the same number for a fact.
    """
    result = SearchResult(terms=list(route))
    if not route or limit <= 0:
        return result
    by_shard = group_by_shard(route)
    result.shards_queried = list(by_shard)
    result.shards_searched = list(dict.fromkeys(
        route[t] for t in route if candidates is None or t in candidates))
    stats, failures = stats_call(by_shard)
    failed: dict[str, str] = dict(failures)

    boost = emphasis or {}
    weights = {t: bm25.idf(s.df) * boost.get(t, 1.0) for t, s in stats.items() if s.df > 0}
    result.weights, result.avgdl = weights, bm25.avgdl
    bounds = {t: weights[t] * stats[t].bound(bm25) for t in weights}
    sources = set(route) if candidates is None else set(candidates)
    # A fact found late may still hold any of the other (non-candidate) terms.
    extra = sum(bounds[t] for t in weights if t not in sources)
    remaining = sorted((t for t in weights if t in sources), key=lambda t: (stats[t].df, t))
    best: dict[str, ScoredFact] = {}

    def kth_score() -> float:
        if len(best) < limit:
            return -1.0
        return sorted((sf.score for sf in best.values()), reverse=True)[limit - 1]

    while remaining:
        if kth_score() > sum(bounds[t] for t in remaining) + extra:
            break
        shard = route[remaining[0]]
        batch = [t for t in remaining if route[t] == shard]
        remaining = [t for t in remaining if route[t] != shard]
        try:
            hits = score_call(shard, batch, weights, limit, bm25.avgdl)
        except TransportError as exc:
            failed[shard] = str(exc) or type(exc).__name__
            continue
        for hit in hits:
            best.setdefault(hit.fact.fact_id, hit)

    ordered = sorted(best.values(), key=lambda sf: (-sf.score, sf.fact.fact_id))[:limit]
    result.facts = [sf.fact for sf in ordered]
    result.scores = [sf.score for sf in ordered]
    result.shards_failed = sorted(failed)
    return result


def pool_size(parsed: ParsedQuery, limit: int) -> int:
    """How many facts to search for: more than ``limit`` for questions about versions or
    that gather (the answer shaping below needs them); ``limit`` are returned."""
    return max(versions.pool(parsed, limit), aggregate.pool(parsed, limit))


def shape(result: SearchResult, parsed: ParsedQuery, limit: int) -> SearchResult:
    """Answer shaping on the merged pool (the same on every hive size): gathered items,
    then versions; cut to ``limit``."""
    return versions.arrange(aggregate.gather(result, parsed), parsed, limit)


def with_context(result: SearchResult, fetch: context.Fetch) -> SearchResult:
    """The second phase of :mod:`hive_core.context`: fetch the facts of the turns next to
    the best candidates, add each fact's neighbour evidence, re-rank. A shard that fails the
    fetch makes the result partial, named like any other."""
    return rerank_context(result, fetch_context(result, fetch))


def fetch_context(result: SearchResult, fetch: context.Fetch,
                  keys: Collection[str] | None = None) -> dict[str, list[ScoredFact]]:
    """The fetch of :func:`with_context` alone: the facts under the position keys next to
    the best candidates' turns, or under ``keys`` (a hive of a federation sends those of
    its whole pool, hive_core.federated_search.pool_context)."""
    keys = context.neighbour_keys(result.facts) if keys is None else keys
    if not keys or not result.weights:
        return {}
    found, failed, asked = fetch(list(keys))
    result.shards_queried += [s for s in asked if s not in result.shards_queried]
    if failed:
        result.shards_failed = sorted(set(result.shards_failed) | set(failed))
    return found


def rerank_context(result: SearchResult, found: Mapping[str, Sequence[ScoredFact]]
                   ) -> SearchResult:
    """Re-rank ``result`` with the neighbour facts ``found`` per position key (those of
    keys that are not next to its best candidates are ignored)."""
    keys = context.neighbour_keys(result.facts)
    if not keys or not result.weights:
        return result
    ranked = context.rerank(result.scored(),
                            {keys[k]: hits for k, hits in found.items() if k in keys},
                            result.weights)
    result.facts = [sf.fact for sf in ranked]
    result.scores = [sf.score for sf in ranked]
    return result


def search_single_store(
    store: ShardStore, query: str, limit: int, settings: CoreSettings = DEFAULTS,
    hop: Hop | None = None,
) -> SearchResult:
    """The engine with one shard holding every term: what "one big memory" answers (a
    two-hop question too, :mod:`hive_core.multihop`; ``hop``: its second hop)."""
    from hive_core import multihop  # it builds on this module's SearchResult

    bm25 = (getattr(store, "bm25", None) or Bm25.from_settings(settings)).for_collection(
        store.collection())
    parsed = parse(query)
    chain, routed = multihop.plan(parsed, settings.query_fanout, hop)
    name = getattr(store, "agent_id", "") or "local"
    route = dict.fromkeys(parsed.terms, name)

    def stats_call(by_shard: Mapping[str, Sequence[str]]) -> tuple[dict[str, TermStats], dict]:
        return store.term_stats(by_shard[name]), {}

    def score_call(_s: str, terms_: Sequence[str], w: Mapping[str, float], k: int,
                   avgdl: float) -> list[ScoredFact]:
        return store.score(terms_, w, k, avgdl)

    emphasis = parsed.emphasis(settings.anchor_boost)
    result = ranked_search(route, stats_call, score_call, bm25, pool_size(parsed, limit),
                           emphasis, routed)

    def fetch(keys: Sequence[str]
              ) -> tuple[dict[str, list[ScoredFact]], dict[str, str], list[str]]:
        return context.score_keys(store, keys, result.weights, result.avgdl), {}, [name]

    shaped = shape(with_context(result, fetch), parsed, limit)
    if chain is None:
        return shaped
    def second_hop(question: str, finding: list[str]) -> SearchResult | None:
        hop = multihop.planned(finding, shaped.shards_searched, settings.query_fanout,
                               lambda terms, _asked: dict.fromkeys(terms, name))
        return None if hop is None else search_single_store(store, question, limit,
                                                            settings, hop)

    return multihop.follow(chain, shaped, limit, settings.query_fanout, second_hop)


def rrf_merge(rankings: Sequence[Sequence[HiveFact]], k: int, limit: int) -> list[HiveFact]:
    """Reciprocal Rank Fusion (Cormack et al. 2009): sum of 1/(k + rank), dedup by fact_id."""
    scores: dict[str, float] = {}
    facts: dict[str, HiveFact] = {}
    for ranking in rankings:
        for rank, fact in enumerate(ranking, start=1):
            scores[fact.fact_id] = scores.get(fact.fact_id, 0.0) + 1.0 / (k + rank)
            facts.setdefault(fact.fact_id, fact)
    order = sorted(scores, key=lambda fid: (-scores[fid], fid))[:limit]
    return [facts[fid] for fid in order]
