"""An independent BM25 for tests: brute force over every fact, written from the formula.

It shares only the tokenizer with the engine (what a term is), nothing of its scoring,
routing, postings or collection bookkeeping, so a bug there shows as a difference:

    score(d, q) = sum over t in q of idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * |d| / avgdl))
    idf(t)      = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))      (tf = count of t in d)

with N the number of facts and avgdl their average length in terms.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from hive_core.text import tokenize


class ReferenceBm25:
    def __init__(self, docs: dict[str, str], k1: float = 1.2, b: float = 0.5) -> None:
        self.k1, self.b = k1, b
        self.tf = {doc_id: Counter(tokenize(text)) for doc_id, text in docs.items()}
        self.dl = {doc_id: sum(tf.values()) for doc_id, tf in self.tf.items()}
        self.n = len(docs)
        self.avgdl = sum(self.dl.values()) / self.n if self.n else 0.0
        self.df: Counter[str] = Counter()
        for tf in self.tf.values():
            self.df.update(tf.keys())

    def idf(self, term: str) -> float:
        df = self.df[term]
        return math.log(1 + (self.n - df + 0.5) / (df + 0.5)) if df else 0.0

    def score(self, doc_id: str, terms: Sequence[str]) -> float:
        tf, dl, total = self.tf[doc_id], self.dl[doc_id], 0.0
        for term in sorted(set(terms)):
            f = tf.get(term, 0)
            if f:
                norm = self.k1 * (1 - self.b + self.b * dl / self.avgdl)
                total += self.idf(term) * f * (self.k1 + 1) / (f + norm)
        return total

    def top(self, terms: Sequence[str], k: int,
            among: set[str] | None = None) -> list[tuple[str, float]]:
        """The best ``k`` facts over ``terms`` (only facts holding one of ``among``)."""
        docs = [d for d, tf in self.tf.items() if among is None or among & tf.keys()]
        scored = [(doc_id, self.score(doc_id, terms)) for doc_id in docs]
        scored = [(d, s) for d, s in scored if s > 0]
        scored.sort(key=lambda ds: (-ds[1], ds[0]))
        return scored[:k]
