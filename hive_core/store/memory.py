"""In-memory ShardStore: dicts of plain data, for tests, benchmarks and small hives.

Facts are kept as the plain dicts they arrived in (not re-validated ``HiveFact`` objects): on
ingest a fact reaches ~25 shards, and building a dataclass per copy would dominate the cost.
They become ``HiveFact`` values again only when they leave the store as results. Roles and
postings live in a :class:`~hive_core.store.index.TermIndex`, shared with the Kuzu store so
both rank identically.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from hive_core.config import CoreSettings
from hive_core.facts import RETRACTED, HiveEdge, HiveFact, said_later
from hive_core.scoring import DEFAULT_BM25, Bm25
from hive_core.store.base import ScoredFact, StoreBatch, StoreRecord
from hive_core.store.index import IndexedStore, TermIndex


class MemoryShardStore(IndexedStore):
    """One shard in process memory. Thread-safe: the shard server may call from any thread."""

    def __init__(self, agent_id: str = "", *, bm25: Bm25 = DEFAULT_BM25) -> None:
        self.agent_id = agent_id
        self.bm25 = bm25
        self._index = TermIndex(bm25)
        self._facts: dict[str, Mapping[str, Any]] = {}
        self._tombstones: set[str] = set()
        self._edges: dict[tuple[str, str, str], HiveEdge] = {}
        self._edges_by_fact: dict[str, set[tuple[str, str, str]]] = {}
        self._lock = threading.RLock()

    # -- writes -------------------------------------------------------------------------------
    def put(self, batch: StoreBatch) -> int:
        with self._lock:
            facts = self._facts
            refused = self._tombstones.intersection(batch.facts) if self._tombstones else set()
            for fid, fact in batch.facts.items():
                if fid in refused:
                    continue
                held = facts.get(fid)
                if held is not None:
                    if said_later(held, fact):
                        facts[fid] = fact
                    continue
                if fact.get("status") == RETRACTED:
                    refused.add(fid)
                    continue
                facts[fid] = fact
            return self._index.merge_batch(batch, refused)

    def put_record(self, record: StoreRecord) -> int:
        """:meth:`put` of a one-fact batch, for one record without building the batch."""
        fact, tf, terms, primary = record
        fid = fact["fact_id"]
        with self._lock:
            if fid in self._tombstones:
                return 0
            facts = self._facts
            held = facts.get(fid)
            if held is not None:
                if said_later(held, fact):
                    facts[fid] = fact
            elif fact.get("status") == RETRACTED:
                return 0
            else:
                facts[fid] = fact
            return self._index.merge(fid, tf, terms, primary)

    def retract(self, fact_id: str) -> bool:
        with self._lock:
            self._tombstones.add(fact_id)
            self._facts.pop(fact_id, None)
            return self._index.remove(fact_id)

    def restore(self, fact_id: str) -> bool:
        with self._lock:
            if fact_id not in self._tombstones:
                return False
            self._tombstones.discard(fact_id)
            return True

    def drop(self, fact_id: str, terms: Iterable[str], primary: bool) -> None:
        with self._lock:
            if self._index.drop(fact_id, terms, primary):
                del self._facts[fact_id]

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

    def score(
        self, terms: Iterable[str], weights: Mapping[str, float], limit: int,
        avgdl: float | None = None,
    ) -> list[ScoredFact]:
        with self._lock:
            best = self._index.top(terms, weights, limit, avgdl)
            return [ScoredFact(HiveFact.from_dict(self._facts[fid]), s) for fid, s in best]

    def _body(self, fact_id: str) -> Mapping[str, Any]:
        return self._facts[fact_id]

    def records(self) -> Iterator[StoreRecord]:
        with self._lock:
            index = self._index
            snapshot = [
                StoreRecord(fact, index.tf[fid], index.roles(fid), fid in index.primary)
                for fid, fact in self._facts.items()
            ]
        return iter(snapshot)

    def get_edges(self, fact_id: str) -> list[HiveEdge]:
        with self._lock:
            keys = sorted(self._edges_by_fact.get(fact_id, ()))
            return [self._edges[k] for k in keys]

    def close(self) -> None:
        """Nothing to release; kept for the protocol."""


def open_memory_store(agent_id: str, _path: Path | None, bm25: Bm25, _settings: CoreSettings,
                      _shards_in_process: int) -> MemoryShardStore:
    """The ``memory`` entry of hive_core.store.registry (no files: ``path`` is ignored)."""
    return MemoryShardStore(agent_id, bm25=bm25)
