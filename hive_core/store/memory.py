"""In-memory ShardStore: dicts of plain data, for tests, benchmarks and small hives.

Facts are kept as the plain dicts they arrived in (not re-validated ``HiveFact`` objects): on
ingest a fact reaches ~25 shards, and building a dataclass per copy would dominate the cost.
They become ``HiveFact`` values again only when they leave the store as results.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from hive_core.facts import RETRACTED, HiveEdge, HiveFact
from hive_core.scoring import DEFAULT_BM25, Bm25
from hive_core.store.base import ScoredFact, StoreRecord, TermStats


class _Doc:
    __slots__ = ("dl", "fact", "primary", "terms", "tf")

    def __init__(self, fact: Mapping[str, Any], tf: Mapping[str, int], dl: int) -> None:
        self.fact = fact
        self.tf = tf
        self.dl = dl
        self.terms: set[str] = set()
        self.primary = False


class MemoryShardStore:
    """One shard in process memory. Thread-safe: the shard server may call from any thread."""

    def __init__(self, agent_id: str = "", *, bm25: Bm25 = DEFAULT_BM25) -> None:
        self.agent_id = agent_id
        self.bm25 = bm25
        self._docs: dict[str, _Doc] = {}
        self._postings: dict[str, set[str]] = {}
        # Largest tf-part per term, computed when first asked and forgotten when the term's
        # postings grow (ingest stays a set insert; a query pays the scan once per change).
        # Removals keep the old value: still a valid upper bound for the search pruning.
        self._max_tf_part: dict[str, float] = {}
        self._tombstones: set[str] = set()
        self._edges: dict[tuple[str, str, str], HiveEdge] = {}
        self._edges_by_fact: dict[str, set[tuple[str, str, str]]] = {}
        self._primary_live = 0
        self._lock = threading.RLock()

    # -- writes -------------------------------------------------------------------------------
    def put(self, records: Sequence[StoreRecord]) -> int:
        added = 0
        with self._lock:
            docs, postings, stale = self._docs, self._postings, self._max_tf_part
            tombstones = self._tombstones
            for fact, tf, terms, primary in records:
                fid = fact["fact_id"]
                if fid in tombstones or fact.get("status") == RETRACTED:
                    continue
                doc = docs.get(fid)
                if doc is None:
                    doc = docs[fid] = _Doc(fact, tf, sum(tf.values()))
                if primary and not doc.primary:
                    doc.primary = True
                    added += 1
                    self._primary_live += 1
                held = doc.terms
                for term in terms:
                    if term in held:
                        continue
                    held.add(term)
                    posting = postings.get(term)
                    if posting is None:
                        posting = postings[term] = set()
                    posting.add(fid)
                    stale.pop(term, None)
        return added

    def _unindex(self, fid: str, doc: _Doc, terms: Iterable[str]) -> None:
        for term in list(terms):
            posting = self._postings.get(term)
            if posting is not None:
                posting.discard(fid)
                if not posting:
                    del self._postings[term]
                    self._max_tf_part.pop(term, None)
            doc.terms.discard(term)

    def retract(self, fact_id: str) -> bool:
        with self._lock:
            self._tombstones.add(fact_id)
            doc = self._docs.pop(fact_id, None)
            if doc is None:
                return False
            self._unindex(fact_id, doc, doc.terms)
            if doc.primary:
                self._primary_live -= 1
            return True

    def drop(self, fact_id: str, terms: Iterable[str], primary: bool) -> None:
        with self._lock:
            doc = self._docs.get(fact_id)
            if doc is None:
                return
            self._unindex(fact_id, doc, terms)
            if primary and doc.primary:
                doc.primary = False
                self._primary_live -= 1
            if not doc.primary and not doc.terms:
                del self._docs[fact_id]

    def add_edge(self, edge: HiveEdge) -> None:
        with self._lock:
            self._edges[edge.key] = edge
            for fid in (edge.source_id, edge.target_id):
                self._edges_by_fact.setdefault(fid, set()).add(edge.key)

    # -- reads --------------------------------------------------------------------------------
    def get(self, fact_id: str) -> HiveFact | None:
        with self._lock:
            doc = self._docs.get(fact_id)
            return HiveFact.from_dict(doc.fact) if doc is not None else None

    def is_tombstoned(self, fact_id: str) -> bool:
        return fact_id in self._tombstones

    def term_stats(self, terms: Iterable[str]) -> dict[str, TermStats]:
        with self._lock:
            out = {}
            for term in terms:
                posting = self._postings.get(term)
                if posting:
                    best = self._max_tf_part.get(term)
                    if best is None:
                        part, docs = self.bm25.tf_part, self._docs
                        best = max(part(docs[f].tf[term], docs[f].dl) for f in posting)
                        self._max_tf_part[term] = best
                    out[term] = TermStats(len(posting), best)
            return out

    def score(
        self, terms: Iterable[str], weights: Mapping[str, float], limit: int
    ) -> list[ScoredFact]:
        with self._lock:
            candidates: set[str] = set()
            for term in terms:
                candidates |= self._postings.get(term, set())
            scored = []
            for fid in candidates:
                doc = self._docs[fid]
                s = self.bm25.score(weights, doc.tf, doc.dl)
                if s > 0.0:
                    scored.append((-s, fid))
            best = heapq.nsmallest(limit, scored)
            return [ScoredFact(HiveFact.from_dict(self._docs[fid].fact), -neg) for neg, fid in best]

    def search(self, query: str, limit: int = 10) -> list[ScoredFact]:
        from hive_core.search import search_single_store

        return search_single_store(self, query, limit).scored()

    def count(self) -> int:
        return self._primary_live

    def index_size(self) -> int:
        with self._lock:
            return sum(len(p) for p in self._postings.values())

    def records(self) -> Iterator[StoreRecord]:
        with self._lock:
            snapshot = [
                StoreRecord(d.fact, d.tf, tuple(sorted(d.terms)), d.primary)
                for d in self._docs.values()
            ]
        return iter(snapshot)

    def tombstones(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._tombstones))

    def get_edges(self, fact_id: str) -> list[HiveEdge]:
        with self._lock:
            keys = sorted(self._edges_by_fact.get(fact_id, ()))
            return [self._edges[k] for k in keys]

    def close(self) -> None:
        """Nothing to release; kept for the protocol."""
