"""TermIndex: a shard's roles, term counts and postings, which is all that scoring reads.

Both shard stores keep one. The memory store keeps the fact bodies next to it; the Kuzu store
keeps them only on disk and rebuilds this index from disk when it opens. Keeping the two
stores on one index is what makes them rank identically: the same postings, the same
``max_tf_part`` bookkeeping and the same :class:`~hive_core.scoring.Bm25` call per document.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping

from hive_core.scoring import Bm25
from hive_core.store.base import TermStats


class IndexedDoc:
    """One fact's entry: its term counts, length and the roles this shard holds it in."""

    __slots__ = ("dl", "primary", "terms", "tf")

    def __init__(self, tf: Mapping[str, int]) -> None:
        self.tf = tf
        self.dl = sum(tf.values())
        self.terms: set[str] = set()
        self.primary = False


class TermIndex:
    """Postings and roles of one shard. Not thread-safe: the owning store holds its lock."""

    def __init__(self, bm25: Bm25) -> None:
        self.bm25 = bm25
        self.docs: dict[str, IndexedDoc] = {}
        self._postings: dict[str, set[str]] = {}
        self._max_tf_part: dict[str, float] = {}
        self.primary_live = 0

    def merge(self, fid: str, tf: Mapping[str, int], terms: Iterable[str], primary: bool) -> bool:
        """Add roles for ``fid`` (creating its entry); True if it newly became primary here."""
        doc = self.docs.get(fid)
        if doc is None:
            doc = self.docs[fid] = IndexedDoc(tf)
        became_primary = primary and not doc.primary
        if became_primary:
            doc.primary = True
            self.primary_live += 1
        for term in terms:
            if term in doc.terms:
                continue
            doc.terms.add(term)
            self._postings.setdefault(term, set()).add(fid)
            part = self.bm25.tf_part(doc.tf.get(term, 0), doc.dl)
            if part > self._max_tf_part.get(term, 0.0):
                self._max_tf_part[term] = part
        return became_primary

    def _unindex(self, fid: str, doc: IndexedDoc, terms: Iterable[str]) -> None:
        for term in list(terms):
            posting = self._postings.get(term)
            if posting is not None:
                posting.discard(fid)
                if not posting:
                    del self._postings[term]
                    self._max_tf_part.pop(term, None)
            doc.terms.discard(term)

    def remove(self, fid: str) -> bool:
        """Forget ``fid`` entirely (retraction); True if it was indexed."""
        doc = self.docs.pop(fid, None)
        if doc is None:
            return False
        self._unindex(fid, doc, doc.terms)
        if doc.primary:
            self.primary_live -= 1
        return True

    def drop(self, fid: str, terms: Iterable[str], primary: bool) -> bool:
        """Give up roles; True if ``fid`` has no role left and was forgotten."""
        doc = self.docs.get(fid)
        if doc is None:
            return False
        self._unindex(fid, doc, terms)
        if primary and doc.primary:
            doc.primary = False
            self.primary_live -= 1
        if not doc.primary and not doc.terms:
            del self.docs[fid]
            return True
        return False

    def term_stats(self, terms: Iterable[str]) -> dict[str, TermStats]:
        out = {}
        for term in terms:
            posting = self._postings.get(term)
            if posting:
                out[term] = TermStats(len(posting), self._max_tf_part[term])
        return out

    def top(
        self, terms: Iterable[str], weights: Mapping[str, float], limit: int
    ) -> list[tuple[str, float]]:
        """(fact_id, score) of the best ``limit`` facts in the postings of ``terms``.

        Sorted by (-score, fact_id); facts scoring 0 are never returned.
        """
        candidates: set[str] = set()
        for term in terms:
            candidates |= self._postings.get(term, set())
        scored = []
        for fid in candidates:
            doc = self.docs[fid]
            s = self.bm25.score(weights, doc.tf, doc.dl)
            if s > 0.0:
                scored.append((-s, fid))
        return [(fid, -neg) for neg, fid in heapq.nsmallest(limit, scored)]

    def size(self) -> int:
        """Number of (term, fact) postings."""
        return sum(len(p) for p in self._postings.values())
