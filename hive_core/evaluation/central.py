"""The baseline every answer is compared with: one plain BM25 index over all turns.

This is what a user would build without a hive: every distinct turn in one index (a turn
said twice is one document, as it is one fact in the hive, so repeats do not crowd the top
ten), Okapi BM25 with the collection's real document count and average length, every
question term scored, the best turn as the answer. It shares the tokenizer with the hive
(what a term is) and nothing else: no routing, no anchor emphasis, no cues, no episodes.
When the hive does better than this it is because of what it does differently; when it
does worse, the eval shows it.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from collections.abc import Sequence

from hive_core.evaluation.dataset import Turn
from hive_core.evaluation.runner import Reply
from hive_core.text import tokenize


class CentralBm25:
    """Postings over whole turns; ``k1``/``b`` are the textbook defaults."""

    def __init__(self, turns: Sequence[Turn], k1: float = 1.2, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.texts = list(dict.fromkeys(t.content for t in turns))
        self.lengths: list[int] = []
        self.postings: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for doc, text in enumerate(self.texts):
            counts = Counter(tokenize(text))
            self.lengths.append(sum(counts.values()))
            for term, tf in counts.items():
                self.postings[term].append((doc, tf))
        self.avgdl = (sum(self.lengths) / len(self.lengths)) if self.lengths else 1.0

    def _idf(self, df: int) -> float:
        n = len(self.texts)
        return math.log(1.0 + (n - df + 0.5) / (df + 0.5))

    def top(self, question: str, k: int) -> list[tuple[str, float]]:
        """The ``k`` best turns for ``question`` with their scores, best first."""
        scores: dict[int, float] = defaultdict(float)
        for term in set(tokenize(question)):
            postings = self.postings.get(term, ())
            if not postings:
                continue
            idf = self._idf(len(postings))
            for doc, tf in postings:
                norm = self.k1 * (1.0 - self.b + self.b * self.lengths[doc] / self.avgdl)
                scores[doc] += idf * tf * (self.k1 + 1.0) / (tf + norm)
        best = sorted(scores.items(), key=lambda ds: (-ds[1], ds[0]))[:k]
        return [(self.texts[doc], score) for doc, score in best]

    def ask(self, question: str, k: int) -> Reply:
        t0 = time.perf_counter()
        top = self.top(question, k)
        texts = [text for text, _ in top]
        return Reply(facts=texts, answer=texts[0] if texts else "", shards=1,
                     seconds=time.perf_counter() - t0)
