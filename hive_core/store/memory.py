"""In-memory ShardStore: dicts of plain data, for tests, benchmarks and small hives.

Facts are kept as the plain dicts they arrived in (not re-validated ``HiveFact`` objects): on
ingest a fact reaches ~25 shards, and building a dataclass per copy would dominate the cost.
They become ``HiveFact`` values again only when they leave the store as results.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from hive_core.facts import RETRACTED, HiveEdge, HiveFact
from hive_core.scoring import DEFAULT_BM25, Bm25
from hive_core.store.base import ScoredFact, StoreBatch, StoreRecord, TermStats


class MemoryShardStore:
    """One shard in process memory. Thread-safe: the shard server may call from any thread.

    A document is spread over a few dicts keyed by fact_id (fact, term counts, length; its
    index roles are derived from the postings) instead of one object per document: a
    100-agent hive holds ~25 documents per fact, and half a million small container objects
    made every full garbage collection walk them all (it was two thirds of ingest time).
    """

    def __init__(self, agent_id: str = "", *, bm25: Bm25 = DEFAULT_BM25) -> None:
        self.agent_id = agent_id
        self.bm25 = bm25
        self._facts: dict[str, Mapping[str, Any]] = {}  # fid -> fact as plain data
        self._tf: dict[str, Mapping[str, int]] = {}  # fid -> term counts
        self._dl: dict[str, int] = {}  # fid -> document length (sum of term counts)
        self._primary: set[str] = set()  # fids held in the primary role
        self._postings: dict[str, set[str]] = {}
        # Largest tf-part per term, computed when first asked and forgotten when the term's
        # postings grow (ingest stays a set insert; a query pays the scan once per change).
        # Removals keep the old value: still a valid upper bound for the search pruning.
        self._max_tf_part: dict[str, float] = {}
        self._tombstones: set[str] = set()
        self._edges: dict[tuple[str, str, str], HiveEdge] = {}
        self._edges_by_fact: dict[str, set[tuple[str, str, str]]] = {}
        self._lock = threading.RLock()

    # -- writes -------------------------------------------------------------------------------
    def put(self, batch: StoreBatch) -> int:
        with self._lock:
            facts, tfs, dls = self._facts, self._tf, self._dl
            postings, stale, primaries = self._postings, self._max_tf_part, self._primary
            refused = self._tombstones.intersection(batch.facts) if self._tombstones else set()
            for fid, fact in batch.facts.items():
                if fid in facts:
                    continue
                if fact.get("status") == RETRACTED:
                    refused.add(fid)
                    continue
                if fid in refused:
                    continue
                facts[fid] = fact
                tf = tfs[fid] = batch.tf[fid]
                dls[fid] = sum(tf.values())
            for term, fids in batch.postings.items():
                if refused:
                    fids = [f for f in fids if f not in refused]
                posting = postings.get(term)
                if posting is None:
                    posting = postings[term] = set()
                before = len(posting)
                posting.update(fids)
                if len(posting) != before:
                    stale.pop(term, None)
            before = len(primaries)
            primaries.update(f for f in batch.primary if f not in refused)
            return len(primaries) - before

    def _roles(self, fid: str) -> tuple[str, ...]:
        """Terms whose postings here hold ``fid`` (derived, so ingest need not track it)."""
        postings = self._postings
        return tuple(t for t in self._tf[fid] if fid in postings.get(t, ()))

    def _unindex(self, fid: str, terms: Iterable[str]) -> None:
        for term in terms:
            posting = self._postings.get(term)
            if posting is not None:
                posting.discard(fid)
                if not posting:
                    del self._postings[term]
                    self._max_tf_part.pop(term, None)

    def _forget(self, fid: str) -> None:
        for table in (self._facts, self._tf, self._dl):
            table.pop(fid, None)
        self._primary.discard(fid)

    def retract(self, fact_id: str) -> bool:
        with self._lock:
            self._tombstones.add(fact_id)
            if fact_id not in self._facts:
                return False
            self._unindex(fact_id, self._tf[fact_id])
            self._forget(fact_id)
            return True

    def drop(self, fact_id: str, terms: Iterable[str], primary: bool) -> None:
        with self._lock:
            if fact_id not in self._facts:
                return
            self._unindex(fact_id, terms)
            if primary:
                self._primary.discard(fact_id)
            if fact_id not in self._primary and not self._roles(fact_id):
                self._forget(fact_id)

    def add_edge(self, edge: HiveEdge) -> None:
        with self._lock:
            self._edges[edge.key] = edge
            for fid in (edge.source_id, edge.target_id):
                self._edges_by_fact.setdefault(fid, set()).add(edge.key)

    # -- reads --------------------------------------------------------------------------------
    def get(self, fact_id: str) -> HiveFact | None:
        with self._lock:
            fact = self._facts.get(fact_id)
            return HiveFact.from_dict(fact) if fact is not None else None

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
                        part, tfs, dls = self.bm25.tf_part, self._tf, self._dl
                        best = max(part(tfs[f][term], dls[f]) for f in posting)
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
            score, tfs, dls = self.bm25.score, self._tf, self._dl
            for fid in candidates:
                s = score(weights, tfs[fid], dls[fid])
                if s > 0.0:
                    scored.append((-s, fid))
            best = heapq.nsmallest(limit, scored)
            return [ScoredFact(HiveFact.from_dict(self._facts[fid]), -neg) for neg, fid in best]

    def search(self, query: str, limit: int = 10) -> list[ScoredFact]:
        from hive_core.search import search_single_store

        return search_single_store(self, query, limit).scored()

    def count(self) -> int:
        return len(self._primary)

    def index_size(self) -> int:
        with self._lock:
            return sum(len(p) for p in self._postings.values())

    def records(self) -> Iterator[StoreRecord]:
        with self._lock:
            snapshot = [
                StoreRecord(fact, self._tf[fid], self._roles(fid), fid in self._primary)
                for fid, fact in self._facts.items()
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
