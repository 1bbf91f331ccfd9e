"""Re-ranking the lexical pool by the relation a question asks about, names left out.

What the semantic path does by default (:class:`~.retrieval.SemanticIndex`). Measured on the
long-horizon eval, the misses left after BM25 are facts *about the question's subject* that
say the relation in other words ("How many pets does Victor have?" against "Victor adopted a
hamster named Toffee."): the pool holds them, below other facts about Victor that match only
his name. A whole-sentence vector does not separate them either -- the name dominates it, and
it pulls up sentences of the same shape about other people. So:

* the lexical search keeps the whole ``query_fanout`` (no extra shard is asked) and gathers a
  pool of at least ``pool`` facts (more than ``limit``: something to pull up), and of
  ``gather_pool`` for a count or a list (hive_core.aggregate's 30 left a pet or a language
  of the subject below the pool in 22 of the 29 count/list misses of seeds 7, 11, 23);
* every pool fact that holds all the question's names (``subject_only``; its subject) gains
  ``weight * (sum of the question's term weights) * cosine(q, f)``, where ``q`` and ``f`` are
  the vectors of the question and the fact with their names taken out (:mod:`.relation`;
  ``names``: "all" capitalised words of the fact, or only those it "shared" with the
  question). The cosine is worth ``weight`` of a perfect lexical match;
* neighbour facts of the context phase (:mod:`hive_core.context`) are scored the same way;
* a fact whose cosine reaches ``group_cosine`` is recorded in ``result.related``: a question
  that gathers counts its items even when it does not repeat the question's relation word
  ("adopted a hamster named Toffee" for "pets", :mod:`hive_core.aggregate`).

The vectors are computed at the asker from the pool's texts (a static embedding: a few
microseconds a sentence, and cached), which are the same on every hive size: N=1 and N=100
rank identically, and no shard needs a vector.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hive_core import context
from hive_core.errors import ConfigError
from hive_core.facts import HiveFact
from hive_core.query import ParsedQuery
from hive_core.semantic.embedder import Embedder, Vector, cosine, quantize
from hive_core.semantic.relation import fact_text, question_text
from hive_core.store.base import ScoredFact
from hive_core.text import terms_of

if TYPE_CHECKING:
    from hive_core.search import SearchResult

NAMES = ("all", "shared")
CACHE = 20000  # relation vectors kept by text (an asker sees the same pool facts often)
# The cosine from which a fact holding the question's names joins a gathering question's
# group (hive_core.aggregate). Chosen on the long-horizon eval, seed 7, for the best count
# accuracy (a count is right only with every member and no stray fact): 0.08 gave 33% against
# 5% without (list 57% against 10%); checked on seeds 11, 23 and 31. It does not separate
# cleanly: with this embedder the true members of a group score -0.07 to 0.52 (median 0.15),
# the other facts about the same subject -0.16 to 0.20 (median 0.03).
GROUP_COSINE = 0.08


@dataclass(frozen=True, slots=True)
class RelationRerank:
    """How the pool is re-ranked (every agent of a hive must use the same)."""

    pool: int = 30
    weight: float = 1.0
    names: str = "all"
    subject_only: bool = True
    gather_pool: int = 40
    group_cosine: float | None = GROUP_COSINE  # None: the group stays lexical

    def __post_init__(self) -> None:
        if (self.pool < 1 or not self.weight >= 0 or self.names not in NAMES
                or not (self.group_cosine is None or -1.0 <= self.group_cosine <= 1.0)):
            raise ConfigError(f"relation re-rank needs pool >= 1, weight >= 0, names in "
                              f"{NAMES} and -1 <= group_cosine <= 1 (got {self})")


class VectorCache:
    """Relation vectors by text, embedded in batches, least recently added dropped first."""

    def __init__(self, embedder: Embedder, size: int = CACHE) -> None:
        self.embedder, self.size = embedder, size
        self._vectors: OrderedDict[str, Vector] = OrderedDict()

    def __call__(self, texts: Sequence[str]) -> list[Vector | None]:
        todo = sorted({t for t in texts if t and t not in self._vectors})
        if todo:
            for text, raw in zip(todo, self.embedder.embed(todo), strict=True):
                self._vectors[text] = quantize(raw)
            while len(self._vectors) > self.size:
                self._vectors.popitem(last=False)
        return [self._vectors.get(t) if t else None for t in texts]


def rerank(settings: RelationRerank, result: SearchResult, parsed: ParsedQuery,
           vectors: VectorCache, fetch: context.Fetch) -> context.Fetch:
    """Re-score ``result`` in place; returns ``fetch`` wrapped so that the neighbour facts
    it brings are scored the same way. A question without a subject (no names; for a
    gathering question, no definite phrase either), or with nothing left once it is out, is
    left as BM25 ranked it."""
    subject = parsed.subject  # its names, or a gathering question's definite phrase
    asked = question_text(parsed.text, subject)
    (qvec,) = vectors([asked]) if asked and subject else (None,)
    if qvec is None or not any(qvec):
        return fetch
    scale = settings.weight * (sum(result.weights.values()) or 1.0)
    names = subject if settings.names == "shared" else None
    unnamed = subject - parsed.anchors  # a subject of common words ("chess club")

    def rescore(hits: Sequence[ScoredFact]) -> list[ScoredFact]:
        keep = [h for h in hits if not settings.subject_only or holds(h.fact, subject)]
        vecs = vectors([fact_text(h.fact.content, names, unnamed) for h in keep])
        cosines = {h.fact.fact_id: cosine(qvec, v)
                   for h, v in zip(keep, vecs, strict=True) if v is not None}
        if settings.group_cosine is not None:
            result.related.update((i, c) for i, c in cosines.items()
                                  if c >= settings.group_cosine)
        bonus = {i: scale * c for i, c in cosines.items()}
        return [ScoredFact(h.fact, h.score + bonus.get(h.fact.fact_id, 0.0)) for h in hits]

    ordered = sorted(rescore(result.scored()), key=lambda sf: (-sf.score, sf.fact.fact_id))
    result.facts = [sf.fact for sf in ordered]
    result.scores = [sf.score for sf in ordered]

    def fused_fetch(keys: Sequence[str]
                    ) -> tuple[dict[str, list[ScoredFact]], dict[str, str], list[str]]:
        found, failed, asked_shards = fetch(keys)
        return {k: rescore(hits) for k, hits in found.items()}, failed, asked_shards
    return fused_fetch


def holds(fact: HiveFact, subject: frozenset[str]) -> bool:
    """Whether ``fact`` names every term of ``subject`` (the question's names)."""
    return subject <= terms_of(fact.content)
