"""BM25 with hive-wide constants, so scores from different shards are the same numbers.

Central BM25 needs two collection statistics no single shard knows: the number of documents
and their average length. Both are replaced by configured constants (``bm25_reference_docs``,
``bm25_avgdl``). The only live statistic left is a term's document frequency, and that one is
*exact* on every shard that answers for the term, because all postings of a term live on the
ring owners of that term (see :mod:`hive_core.search`). Consequently a fact gets the same score
whichever shard computes it, and a hive of 100 shards ranks exactly like a hive of one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from hive_core.config import DEFAULTS, CoreSettings


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
