"""BM25 with hive-wide statistics, so scores from different shards are the same numbers.

Central BM25 needs two collection statistics no single shard knows: the number of documents
and their average length. The hive keeps both as a :class:`CorpusStats` -- the sum over its
agents of the facts they hold as primary and those facts' lengths (each fact has exactly one
primary) -- and the asker sends them with every query, so every shard scores with the same
numbers. (They once were configured constants, ``bm25_reference_docs`` = 1,000,000 and
``bm25_avgdl`` = 12, which flattened idf: still the fallback of a hive that knows nothing
yet.) A term's document frequency is *exact* on every shard that answers for it, because all
postings of a term live on its ring owners (see :mod:`hive_core.search`). Consequently a fact
gets the same score whichever shard computes it, and a hive of 100 shards ranks exactly like a
hive of one holding the same facts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from hive_core.config import DEFAULTS, CoreSettings


@dataclass(frozen=True, slots=True)
class CorpusStats:
    """How many live facts the hive holds and their total length (in terms)."""

    docs: int = 0
    length: int = 0

    @property
    def avgdl(self) -> float:
        return self.length / self.docs if self.docs else 0.0

    def __add__(self, other: CorpusStats) -> CorpusStats:
        return CorpusStats(self.docs + other.docs, self.length + other.length)


@dataclass(frozen=True, slots=True)
class Bm25:
    k1: float
    b: float
    avgdl: float
    reference_docs: int

    @classmethod
    def from_settings(cls, settings: CoreSettings = DEFAULTS) -> Bm25:
        return cls(settings.bm25_k1, settings.bm25_b, settings.bm25_avgdl,
                   settings.bm25_reference_docs)

    def for_collection(self, collection: CorpusStats) -> Bm25:
        """These constants with the collection's real size and average length (unchanged
        for an empty collection: nothing to score then anyway)."""
        if collection.docs <= 0 or collection.length <= 0:
            return self
        return Bm25(self.k1, self.b, collection.avgdl, collection.docs)

    def idf(self, df: int) -> float:
        """Inverse document frequency of a term found in ``df`` facts (0 when absent)."""
        if df <= 0:
            return 0.0
        n = max(self.reference_docs, df)
        return math.log(1.0 + (n - df + 0.5) / (df + 0.5))

    def tf_part(self, tf: int, dl: int) -> float:
        if tf <= 0:
            return 0.0
        norm = self.k1 * (1.0 - self.b + self.b * dl / self.avgdl)
        return tf * (self.k1 + 1.0) / (tf + norm)

    def score(self, weights: Mapping[str, float], tf: Mapping[str, int], dl: int) -> float:
        """Score of one document. ``weights`` maps query term -> idf; summed in sorted term
        order so the float result is bit-identical on every shard."""
        total = 0.0
        for term in sorted(weights):
            count = tf.get(term, 0)
            if count:
                total += weights[term] * self.tf_part(count, dl)
        return total


DEFAULT_BM25 = Bm25.from_settings()
