"""Serving a shard: turns wire messages into ShardStore calls and back.

One ``ShardServer`` per agent; its ``handle`` is what an agent binds on its transport. Every
reply is plain data. Handling is idempotent (stores merge by fact_id, retractions are
tombstones), so a redelivered message never duplicates a fact.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

from hive_core import context, gossip
from hive_core.config import BLOOM_FALSE_POSITIVE_RATE
from hive_core.facts import HiveEdge
from hive_core.membership.ranges import RangeSet
from hive_core.messages import Envelope, MessageType
from hive_core.ring import HashRing, stable_hash
from hive_core.scoring import CorpusStats
from hive_core.store.base import ShardStore, StoreBatch, StoreRecord

RingSource = Callable[[], HashRing]
T = TypeVar("T")
# What placement gives one shard: a batch, or one fact's record (promote_fact's write).
Placed = StoreBatch | StoreRecord
SELECTION_TTL = 120.0  # seconds a pull's selection is kept between its pages
SELECTIONS_KEPT = 8  # concurrent pulls served from a kept selection; more rescan
HANDOFF_PAGE = 2000  # facts per hand-off reply (~1 MB of JSON), each page its own deadline


class WriteGuard(Protocol):
    """Told of every write that lands on a shard, with the ring epoch it was authorised
    under (an agent's ring keeper: hive_core.membership.late_writes says why)."""

    def begin(self, epoch: int) -> int:
        """A write authorised under ``epoch`` (0: the shard's own epoch now) starts; returns
        the epoch to hand to :meth:`end`."""
        ...

    def end(self, epoch: int) -> None: ...


class ShardServer:
    """Handles SHARD_QUERY / SHARD_STORE / SHARD_DELETE for one agent's store."""

    def __init__(self, agent_id: str, store: ShardStore, ring: RingSource | None = None) -> None:
        self.agent_id = agent_id
        self.store = store
        self.ring = ring  # the hive's current ring; needed to answer anti-entropy
        self._pulls = _Selections()  # hand-off selections by pull id (handoff_page)
        # SHARD_STORE batches stored: anti-entropy waits while they arrive (gossip.QuietGate)
        self.placements = 0
        self._part: tuple[object, int, CorpusStats] | None = None  # (ring, changes, part)
        self.guard: WriteGuard | None = None  # set by an agent's ring keeper

    def write(self, epoch: int, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``, a write authorised under ring ``epoch`` (0: this shard's own epoch),
        told to the guard before and after, so a cleanup neither begins while it is landing
        nor counts as finished if it lands after one began (hive_core.membership.late_writes)."""
        guard = self.guard
        if guard is None:
            return fn(*args)
        used = guard.begin(epoch)
        try:
            return fn(*args)
        finally:
            guard.end(used)

    def collection_part(self) -> CorpusStats:
        """This shard's part of the hive's collection statistics: the facts it holds whose
        FIRST ring owner it is, so that every fact counts once over the hive however many
        replicas it has. Cached until the store or the ring changes."""
        ring = self.ring() if self.ring is not None else None
        changes = self.store.changes()
        cached = self._part
        if cached is not None and cached[0] is ring and cached[1] == changes:
            return cached[2]
        if ring is None or len(ring) == 0:
            part = self.store.collection()
        else:
            me, owners = self.agent_id, ring.get_agents
            part = self.store.collection(lambda fid: owners(fid, 1)[:1] == (me,))
        self._part = (ring, changes, part)
        return part

    def handle(self, env: Envelope) -> Envelope | None:
        if env.type == MessageType.SHARD_QUERY:
            return env.reply(self.query(env.payload))
        if env.type == MessageType.SHARD_STORE:
            # Placed under the sender's epoch, which the receiver admitted (not older than
            # its own then): the epoch its roles are owned under.
            return env.reply(self.write(env.epoch, self.store_payload, env.payload))
        if env.type == MessageType.SHARD_DELETE:
            return env.reply(self.delete_payload(env.payload))
        if env.type == MessageType.GOSSIP_DIGEST and self.ring is not None:
            ring_now = self.ring

            def answer() -> dict[str, Any]:
                return gossip.answer(self.store, self.agent_id, env.sender, env.payload,
                                     ring_now(), int(env.payload.get("salt", 0)),
                                     BLOOM_FALSE_POSITIVE_RATE)

            # A push stores what the sender found missing here, owned under this shard's
            # ring as answer() reads it: after the guard took this shard's epoch (0).
            return env.reply(self.write(0, answer) if env.payload.get("phase") == "push"
                             else answer())
        return env.error(f"{self.agent_id} does not handle {env.type}")

    # The three handlers below are also called directly for the asking agent's own shard.
    def query(self, p: Mapping[str, Any]) -> dict[str, Any]:
        op = p.get("op")
        store = self.store
        if op == "stats":
            stats = store.term_stats(p["terms"])
            return {"stats": {t: [s.df, s.max_tf, s.min_dl] for t, s in stats.items()}}
        if op == "score":
            avgdl = p.get("avgdl")
            hits = store.score(p["terms"], p["weights"], int(p["limit"]),
                               None if avgdl is None else float(avgdl))
            return {"hits": [[h.fact.to_dict(), h.score] for h in hits]}
        if op == "neighbours":  # the context fetch: each position key's facts, scored
            found = context.score_keys(store, p["keys"], p["weights"], float(p["avgdl"]))
            return {"hits": {key: [[h.fact.to_dict(), h.score] for h in hits]
                             for key, hits in found.items()}}
        if op == "get":
            fact = store.get(p["fact_id"])
            return {"fact": fact.to_dict() if fact else None}
        if op == "count":
            return {"count": store.count(), "index_size": store.index_size()}
        if op == "collection":
            part = self.collection_part()
            return {"docs": part.docs, "length": part.length}
        if op == "edges":
            return {"edges": [e.to_dict() for e in store.get_edges(p["fact_id"])]}
        if op == "records":
            return {"records": [r.to_wire() for r in store.records()],
                    "tombstones": list(store.tombstones())}
        if op == "search":
            hits = store.search(p["query"], int(p.get("limit", 10)))
            return {"hits": [[h.fact.to_dict(), h.score] for h in hits]}
        if op == "handoff":
            return self.handoff_page(p)
        if op == "retracted":  # which of these ids are tombstoned here (agent_runtime.forgetting)
            return {"retracted": store.retracted_among(p["fact_ids"])}
        raise ValueError(f"unknown shard query op {op!r}")

    def handoff_page(self, p: Mapping[str, Any]) -> dict[str, Any]:
        """The roles held here whose ring keys hash into ``ranges``, ``limit`` facts a page
        after fact id ``after`` (a joining or gaining shard pulls its new ranges this way;
        hive_core.membership.handoff). The first page also carries the tombstones of facts
        whose id lies in the ranges, so a retraction moves with its range.

        The shard is scanned once per pull: the first page (``after`` empty) selects every
        matching role and keeps the selection under the pull's id for the later pages. A
        snapshot is enough: a write that arrives after it was placed under the puller's
        epoch or newer (older ones are refused), so it reached the puller directly.
        """
        after = str(p.get("after") or "")
        pull = str(p.get("pull") or "")
        limit = max(1, min(int(p.get("limit", HANDOFF_PAGE)), HANDOFF_PAGE))
        ranges = RangeSet(p["ranges"])
        rows = self._pulls.get(pull) if after and pull else None
        if rows is None:
            rows = sorted(self.store.select_roles(lambda key: stable_hash(key) in ranges),
                          key=lambda r: r.fact_id)
            if pull:
                self._pulls.put(pull, rows)
        start = bisect.bisect_right(rows, after, key=lambda r: r.fact_id) if after else 0
        page = rows[start:start + limit]
        cursor = page[-1].fact_id if start + limit < len(rows) else None
        if cursor is None and pull:
            self._pulls.forget(pull)
        tombstones = [] if after else [
            f for f in self.store.tombstones() if stable_hash(f) in ranges]
        return {"batch": StoreBatch.from_records(page).to_wire(), "tombstones": tombstones,
                "next": cursor}

    def store_payload(self, p: Mapping[str, Any]) -> dict[str, Any]:
        reply = self.put(StoreBatch.from_wire(p["batch"]) if "batch" in p else None)
        for edge in p.get("edges", ()):
            self.store.add_edge(HiveEdge.from_dict(edge))
        return reply

    def put(self, placed: Placed | None) -> dict[str, Any]:
        """Store what placement gave this shard: the SHARD_STORE of :meth:`store_payload`,
        and what an in-process writer calls with the object itself, a batch or one fact's
        record (no wire form to build and parse again; ShardClient.store_many)."""
        if type(placed) is StoreRecord:  # a tuple: its len() is not a fact count
            added, received = self.store.put_record(placed), 1
        elif placed is None or not len(placed.facts):
            return {"added": 0, "received": 0}
        else:
            added, received = self.store.put(placed), len(placed.facts)
        self.placements += 1
        return {"added": added, "received": received}

    def delete_payload(self, p: Mapping[str, Any]) -> dict[str, Any]:
        retracted = [fid for fid in p.get("retract", ()) if self.store.retract(fid)]
        restored = [fid for fid in p.get("restore", ()) if self.store.restore(fid)]
        for d in p.get("drops", ()):
            self.store.drop(d["fact_id"], d["terms"], bool(d["primary"]))
        return {"retracted": retracted, "restored": restored}


def as_batch(placed: Placed) -> StoreBatch:
    """The batch form of what a shard was given (the form a SHARD_STORE message carries)."""
    return StoreBatch.from_records([placed]) if type(placed) is StoreRecord else placed


class _Selections:
    """A few hand-off selections, by pull id, each kept for SELECTION_TTL seconds."""

    def __init__(self) -> None:
        self._items: OrderedDict[str, tuple[float, list[StoreRecord]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> list[StoreRecord] | None:
        with self._lock:
            item = self._items.get(key)
            return item[1] if item is not None and item[0] > time.monotonic() else None

    def put(self, key: str, rows: list[StoreRecord]) -> None:
        with self._lock:
            self._items[key] = (time.monotonic() + SELECTION_TTL, rows)
            while len(self._items) > SELECTIONS_KEPT:
                self._items.popitem(last=False)

    def forget(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)
