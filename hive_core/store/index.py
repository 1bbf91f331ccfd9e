"""TermIndex: a shard's term counts, roles and postings, which is all that scoring reads.

Both shard stores keep one. The memory store keeps the fact bodies next to it; the Kuzu store
keeps them only on disk and rebuilds this index from disk when it opens. Keeping the two
stores on one index is what makes them rank identically: the same postings, the same
term extremes (largest count, shortest fact) and the same Bm25 call per document.

Layout: plain dicts keyed by fact id (term counts, length), one set of primary ids and one
set of fact ids per term; a fact's index roles are *derived* (the terms whose postings hold
it). No object per document: a 100-agent hive holds ~25 entries per fact, and half a million
small objects made every full garbage collection walk them all (once two thirds of ingest).
A batch merges with C-level ``set.update`` per term instead of a Python step per posting.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Any

from hive_core.scoring import Bm25, CorpusStats
from hive_core.store.base import (
    KEY_PREFIX,
    HeldRoles,
    ScoredFact,
    StoreBatch,
    StoreRecord,
    TermStats,
)

ROLES_CHUNK = 1024  # facts per lock hold while streaming held_roles


class TermIndex:
    """Postings and roles of one shard. Not thread-safe: the owning store holds its lock."""

    def __init__(self, bm25: Bm25) -> None:
        self.bm25 = bm25
        self.tf: dict[str, Mapping[str, int]] = {}  # fid -> term counts
        self.dl: dict[str, int] = {}  # fid -> document length
        self.primary: set[str] = set()
        self._postings: dict[str, set[str]] = {}
        # Posting keys that are not terms of the fact (its position keys, hive_core.context):
        # not derivable from its term counts, so kept per fact (usually one). A tuple, not a
        # set: most learned facts have one, and a set per fact cost ~170 B more each.
        self._extra: dict[str, tuple[str, ...]] = {}
        # (largest count, shortest length) per term, computed when first asked and forgotten
        # when the term's postings grow (ingest stays a set insert; a query pays the scan
        # once per change). Removals keep the old pair: still a valid bound for pruning.
        self._extremes: dict[str, tuple[int, int]] = {}
        self.changes = 0  # bumped by every write: lets readers cache what they derive

    # -- writes -------------------------------------------------------------------------------
    def merge_batch(self, batch: StoreBatch, refused: Collection[str] = ()) -> int:
        """Add every role in ``batch`` except for ``refused`` ids; returns new primaries."""
        self.changes += 1
        tfs, dls, postings, stale = self.tf, self.dl, self._postings, self._extremes
        for fid, tf in batch.tf.items():
            if fid not in tfs and fid not in refused:
                tfs[fid] = tf
                dls[fid] = sum(tf.values())
        for term, fids in batch.postings.items():
            if refused:
                fids = [f for f in fids if f not in refused]
            if term.startswith(KEY_PREFIX):
                extra = self._extra
                for fid in fids:
                    keys = extra.get(fid, ())
                    if term not in keys:
                        extra[fid] = (*keys, term)
            posting = postings.get(term)
            if posting is None:  # a new term (one fact's batch is mostly these)
                postings[term] = set(fids)
                stale.pop(term, None)
                continue
            before = len(posting)
            posting.update(fids)
            if len(posting) != before:
                stale.pop(term, None)
        primary = batch.primary
        if not primary:  # most shards of a fact hold it only in some postings
            return 0
        held = self.primary
        before = len(held)
        held.update([f for f in primary if f not in refused] if refused else primary)
        return len(held) - before

    def merge(self, fid: str, tf: Mapping[str, int], terms: Iterable[str], primary: bool) -> int:
        """Add roles for one fact (row form); 1 if it newly became primary here, else 0.

        What :meth:`merge_batch` does with a one-fact batch, without the batch: promoting
        one fact merges it into ~27 shards, and building a batch for each cost more than
        the merge."""
        self.changes += 1
        if fid not in self.tf:
            self.tf[fid] = tf
            self.dl[fid] = sum(tf.values())
        postings, stale = self._postings, self._extremes
        for term in terms:
            if term.startswith(KEY_PREFIX):
                keys = self._extra.get(fid, ())
                if term not in keys:
                    self._extra[fid] = (*keys, term)
            posting = postings.get(term)
            if posting is None:
                postings[term] = {fid}
                stale.pop(term, None)
            elif fid not in posting:
                posting.add(fid)
                stale.pop(term, None)
        if not primary or fid in self.primary:
            return 0
        self.primary.add(fid)
        return 1

    def _unindex(self, fid: str, terms: Iterable[str]) -> None:
        terms = list(terms)
        extra = self._extra.get(fid)
        if extra is not None:
            kept = tuple(k for k in extra if k not in terms)
            if kept:
                self._extra[fid] = kept
            else:
                del self._extra[fid]
        for term in terms:
            posting = self._postings.get(term)
            if posting is not None:
                posting.discard(fid)
                if not posting:
                    del self._postings[term]
                    self._extremes.pop(term, None)

    def _forget(self, fid: str) -> None:
        self.changes += 1
        self._extra.pop(fid, None)
        self.tf.pop(fid, None)
        self.dl.pop(fid, None)
        self.primary.discard(fid)

    def remove(self, fid: str) -> bool:
        """Forget ``fid`` entirely (retraction); True if it was indexed."""
        tf = self.tf.get(fid)
        if tf is None:
            return False
        self._unindex(fid, [*tf, *self._extra.get(fid, ())])
        self._forget(fid)
        return True

    def drop(self, fid: str, terms: Iterable[str], primary: bool) -> bool:
        """Give up roles; True if ``fid`` has no role left and was forgotten."""
        if fid not in self.tf:
            return False
        self._unindex(fid, terms)
        self.changes += 1
        if primary:
            self.primary.discard(fid)
        if fid not in self.primary and not self.roles(fid):
            self._forget(fid)
            return True
        return False

    # -- reads --------------------------------------------------------------------------------
    def unseen(
        self, postings: Mapping[str, Iterable[str]], refused: Collection[str] = ()
    ) -> dict[str, list[str]]:
        """The part of ``postings`` not held yet (deduplicated, ``refused`` left out): what a
        store that persists only changes has to write."""
        out: dict[str, list[str]] = {}
        held_by = self._postings
        for term, fids in postings.items():
            held = held_by.get(term, ())
            fresh = [f for f in dict.fromkeys(fids) if f not in held and f not in refused]
            if fresh:
                out[term] = fresh
        return out

    def __contains__(self, fid: object) -> bool:
        return fid in self.tf

    def select(self, keep: Callable[[str], bool]) -> dict[str, tuple[list[str], bool]]:
        """fact id -> (terms, primary) of the roles whose ring key passes ``keep`` (a term
        for a posting, the fact id for the primary role). One test per distinct term and per
        primary, not per (fact, term): what a hand-off source answers with."""
        out: dict[str, tuple[list[str], bool]] = {}
        for term, fids in self._postings.items():
            if keep(term):
                for fid in fids:
                    out.setdefault(fid, ([], False))[0].append(term)
        for fid in self.primary:
            if keep(fid):
                terms = out.get(fid, ([], False))[0]
                out[fid] = (terms, True)
        return out

    def roles(self, fid: str) -> tuple[str, ...]:
        """Keys (terms, position keys) whose postings here hold ``fid``."""
        postings = self._postings
        keys = [*self.tf.get(fid, ()), *sorted(self._extra.get(fid, ()))]
        return tuple(t for t in keys if fid in postings.get(t, ()))

    @property
    def primary_live(self) -> int:
        return len(self.primary)

    def term_stats(self, terms: Iterable[str]) -> dict[str, TermStats]:
        out = {}
        for term in terms:
            posting = self._postings.get(term)
            if not posting:
                continue
            extremes = self._extremes.get(term)
            if extremes is None:
                tfs, dls = self.tf, self.dl
                extremes = (max(tfs[f][term] for f in posting), min(dls[f] for f in posting))
                self._extremes[term] = extremes
            out[term] = TermStats(len(posting), *extremes)
        return out

    def top(
        self, terms: Iterable[str], weights: Mapping[str, float], limit: int,
        avgdl: float | None = None,
    ) -> list[tuple[str, float]]:
        """(fact_id, score) of the best ``limit`` facts in the postings of ``terms``, with
        the hive's average length ``avgdl`` (this index's constant when None).

        Sorted by (-score, fact_id); facts scoring 0 or less are never returned.
        """
        bm25 = self.bm25 if avgdl is None else replace(self.bm25, avgdl=float(avgdl))
        candidates: set[str] = set()
        for term in terms:
            candidates |= self._postings.get(term, set())
        score, tfs, dls = bm25.score, self.tf, self.dl
        scored = []
        for fid in candidates:
            s = score(weights, tfs[fid], dls[fid])
            if s > 0.0:
                scored.append((-s, fid))
        return [(fid, -neg) for neg, fid in heapq.nsmallest(limit, scored)]

    def primary_stats(self, keep: Callable[[str], bool] | None = None) -> tuple[int, int]:
        """(count, total length) of the facts held in the primary role (those passing
        ``keep``)."""
        dls = self.dl
        ids = self.primary if keep is None else [f for f in self.primary if keep(f)]
        return len(ids), sum(dls[f] for f in ids)

    def size(self) -> int:
        """Number of (term, fact) postings."""
        return sum(len(p) for p in self._postings.values())


class IndexedStore:
    """The reads every store answers from its :class:`TermIndex` alone, written once.

    A store sets ``_index``, ``_lock`` (an RLock) and ``_tombstones``; scoring, counting and
    whole-shard search then mean the same thing on every backend.
    """

    _index: TermIndex
    _lock: threading.RLock
    _tombstones: set[str]

    def term_stats(self, terms: Iterable[str]) -> dict[str, TermStats]:
        with self._lock:
            return self._index.term_stats(terms)

    def search(self, query: str, limit: int = 10) -> list[ScoredFact]:
        from hive_core.search import search_single_store

        return search_single_store(self, query, limit).scored()  # type: ignore[arg-type]

    def count(self) -> int:
        return self._index.primary_live

    def collection(self, keep: Callable[[str], bool] | None = None) -> CorpusStats:
        with self._lock:
            return CorpusStats(*self._index.primary_stats(keep))

    def changes(self) -> int:
        return self._index.changes

    def primary_ids(self) -> list[str]:
        with self._lock:
            return list(self._index.primary)

    def put(self, batch: StoreBatch) -> int:
        """Merge a batch (each store writes its own way; see ShardStore.put)."""
        raise NotImplementedError

    def put_record(self, record: StoreRecord) -> int:
        """:meth:`put` of one fact's record (a store may do it without building a batch)."""
        return self.put(StoreBatch.from_records([record]))

    def _body(self, fact_id: str) -> Mapping[str, Any]:
        """The stored plain-data fact (each store keeps its bodies its own way)."""
        raise NotImplementedError

    def select_roles(self, keep: Callable[[str], bool]) -> list[StoreRecord]:
        with self._lock:
            index = self._index
            return [StoreRecord(self._body(fid), index.tf[fid], tuple(terms), primary)
                    for fid, (terms, primary) in index.select(keep).items()]

    def select_held_roles(self, keep: Callable[[str], bool]) -> list[HeldRoles]:
        with self._lock:
            return [HeldRoles(fid, tuple(terms), primary)
                    for fid, (terms, primary) in self._index.select(keep).items()]

    def records_of(self, roles: Iterable[HeldRoles]) -> list[StoreRecord]:
        with self._lock:
            index = self._index
            return [StoreRecord(self._body(r.fact_id), index.tf[r.fact_id], r.terms, r.primary)
                    for r in roles if r.fact_id in index]

    def held_roles(self) -> Iterator[HeldRoles]:
        """Chunks of ``ROLES_CHUNK`` facts, each computed under the lock (writes go on in
        between; a fact written after the id snapshot is seen by the next pass)."""
        with self._lock:
            ids = list(self._index.tf)
        for i in range(0, len(ids), ROLES_CHUNK):
            with self._lock:
                index = self._index
                chunk = [HeldRoles(fid, index.roles(fid), fid in index.primary)
                         for fid in ids[i:i + ROLES_CHUNK] if fid in index]
            yield from chunk

    def index_size(self) -> int:
        with self._lock:
            return self._index.size()

    def tombstones(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._tombstones))

    def retracted_among(self, fact_ids: Iterable[str]) -> list[str]:
        """Those of ``fact_ids`` tombstoned here (what a learn asks before it reports)."""
        with self._lock:
            return [fid for fid in fact_ids if fid in self._tombstones]
