"""Neighbouring turns: a turn's meaning leans on the turns around it.

"She told me she just adopted a beagle named Biscuit." answers "What is the name of the dog
Mei Tanaka adopted?", but only its neighbour ("I had lunch with Mei Tanaka today.") names
her. Facts keep their place in the conversation (``metadata["session"]`` and ``["turn"]``,
set by ``learn`` or by a library caller), and retrieval uses it in a second phase:

1. every fact with a place is also posted under its *position key* (:func:`key`), placed on
   the ring like a term, so "the facts of turn t of session s" is one posting list on RF
   owners -- one posting more per fact, and no other growth of the index;
2. after the routed search, the facts of the turns next to the best ``EXPAND_TOP`` candidates
   are fetched (one parallel round to the owners of those keys) and scored by their owners
   with the question's own weights, so a fetched fact has exactly the score a search would
   give it;
3. every fact gains ``CONTEXT_WEIGHT`` times the best score among the facts of the turns
   right before and after it (same session), and the pool is re-ranked.

Index-time expansion (indexing each turn with its neighbours' terms) was the alternative; it
needs the neighbours when a turn is learned (another agent may learn them), and it copies
every turn's terms into two more postings. The second phase costs one round and only for
the candidates' neighbours. The candidates are the exact top of the routed search and the
fetch is complete, so N=1 and N=100 still rank identically; the search itself still asks at
most ``query_fanout`` shards (fetching may ask a few more, reported in ``shards_queried``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hive_core.facts import HiveFact, place_of
from hive_core.store.base import KEY_PREFIX, ScoredFact, ShardStore
from hive_core.text import terms_of

CONTEXT_WEIGHT = 0.5
EXPAND_TOP = 10
FETCH_LIMIT = 64  # facts per fetch call (a turn has a handful of facts)

Position = tuple[str, int]
# keys -> (facts found per key, failed shards {shard: reason}, shards asked)
Fetch = Callable[[Sequence[str]],
                 tuple[dict[str, list[ScoredFact]], dict[str, str], list[str]]]


def position(fact: HiveFact) -> Position | None:
    return place_of(fact.metadata)


def key(session: str, turn: int) -> str:
    """The posting key of the facts of ``turn`` in ``session``."""
    return f"{KEY_PREFIX}{session}#{turn}"


def fact_keys(metadata: Mapping[str, Any]) -> list[str]:
    """The posting keys a fact has beyond its terms: its position keys -- its place, and the
    other places the same sentence was said in the same learn (``seen_at``)."""
    where = place_of(metadata)
    if where is None:
        return []
    keys = [key(*where)]
    for other in metadata.get("seen_at") or ():
        if isinstance(other, list | tuple) and len(other) == 2:
            keys.append(key(str(other[0]), int(other[1])))
    return keys


def neighbour_keys(facts: Sequence[HiveFact]) -> dict[str, Position]:
    """Keys (and positions) of the turns next to the best ``EXPAND_TOP`` facts' turns, in
    rank order."""
    keys: dict[str, Position] = {}
    for fact in facts[:EXPAND_TOP]:
        where = position(fact)
        if where is not None:
            session, turn = where
            for near in (turn - 1, turn + 1):
                if near >= 0:
                    keys[key(session, near)] = (session, near)
    return keys


def score_keys(store: ShardStore, keys: Sequence[str], weights: Mapping[str, float],
               avgdl: float) -> dict[str, list[ScoredFact]]:
    """The facts a shard holds under each position key, scored with the question's weights
    (what a shard answers for the context fetch, in a process or over the wire)."""
    return {k: store.score([k], weights, FETCH_LIMIT, avgdl) for k in keys}


def rerank(candidates: Sequence[ScoredFact], fetched: Mapping[Position, Sequence[ScoredFact]],
           weights: Mapping[str, float]) -> list[ScoredFact]:
    """Each fact plus ``CONTEXT_WEIGHT`` x what the best fact of a turn next to one of its
    turns adds to it, best first (ties by fact id, as everywhere).

    What a neighbour adds is the share of its score that comes from question terms the fact
    itself lacks (by their ``weights``): "She told me she adopted a beagle" gains from its
    neighbour's "Mei Tanaka", but "I had lunch with Mei Tanaka" gains nothing from a
    neighbour that says her name too -- otherwise two turns about one person lift each other
    above what either says about the question.

    A fact's turns are where the search found it: its own place for a candidate, and the
    position it was fetched under. One sentence said in two turns is one fact, and which
    turn a shard's copy names depends on which copy reached it first, so a fetched copy's
    own ``metadata`` is not read: only the key it was found under, which is the same on
    every hive size.
    """
    score: dict[str, ScoredFact] = {}
    places: dict[str, set[Position]] = {}
    for hit in candidates:
        score.setdefault(hit.fact.fact_id, hit)
        where = position(hit.fact)
        places.setdefault(hit.fact.fact_id, set()).update([where] if where else [])
    for where, hits in fetched.items():
        for hit in hits:
            score.setdefault(hit.fact.fact_id, hit)
            places.setdefault(hit.fact.fact_id, set()).add(where)
    matched = {fid: terms_of(hit.fact.content) & weights.keys()
               for fid, hit in score.items()}
    matched_weight = {fid: sum(weights[w] for w in terms) for fid, terms in matched.items()}
    at: dict[Position, list[str]] = {}
    for fid, wheres in places.items():
        for where in wheres:
            at.setdefault(where, []).append(fid)
    out = []
    for fid, hit in score.items():
        own = matched[fid]
        bonus = 0.0
        for s, t in places[fid]:
            for near in ((s, t - 1), (s, t + 1)):
                for other in at.get(near, ()):
                    theirs = matched_weight[other]
                    if theirs > 0:
                        lent = sum(weights[w] for w in matched[other] - own)
                        bonus = max(bonus, score[other].score * lent / theirs)
        out.append(ScoredFact(hit.fact, hit.score + CONTEXT_WEIGHT * bonus))
    out.sort(key=lambda sf: (-sf.score, sf.fact.fact_id))
    return out
