"""Serving a shard: turns wire messages into ShardStore calls and back.

One ``ShardServer`` per agent; its ``handle`` is what an agent binds on its transport. Every
reply is plain data. Handling is idempotent (stores merge by fact_id, retractions are
tombstones), so a redelivered message never duplicates a fact.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from hive_core.facts import HiveEdge
from hive_core.gossip import answer_digest
from hive_core.membership.ranges import RangeSet, roles_in
from hive_core.messages import Envelope, MessageType
from hive_core.ring import HashRing, MovingRing, stable_hash
from hive_core.store.base import ShardStore, StoreBatch

RingSource = Callable[[], HashRing | MovingRing]
HANDOFF_PAGE = 5000  # facts per hand-off reply (~2.5 MB of JSON, far below the message limit)


class ShardServer:
    """Handles SHARD_QUERY / SHARD_STORE / SHARD_DELETE for one agent's store."""

    def __init__(self, agent_id: str, store: ShardStore, ring: RingSource | None = None) -> None:
        self.agent_id = agent_id
        self.store = store
        self.ring = ring  # the hive's write ring as of now; needed to answer gossip

    def handle(self, env: Envelope) -> Envelope | None:
        if env.type == MessageType.SHARD_QUERY:
            return env.reply(self.query(env.payload))
        if env.type == MessageType.SHARD_STORE:
            return env.reply(self.store_payload(env.payload))
        if env.type == MessageType.SHARD_DELETE:
            return env.reply(self.delete_payload(env.payload))
        if env.type == MessageType.GOSSIP_DIGEST and self.ring is not None:
            return env.reply(answer_digest(self.store, self.agent_id, env.sender, env.payload,
                                           self.ring()))
        return env.error(f"{self.agent_id} does not handle {env.type}")

    # The three handlers below are also called directly for the asking agent's own shard.
    def query(self, p: Mapping[str, Any]) -> dict[str, Any]:
        op = p.get("op")
        store = self.store
        if op == "stats":
            stats = store.term_stats(p["terms"])
            return {"stats": {t: [s.df, s.max_tf_part] for t, s in stats.items()}}
        if op == "score":
            hits = store.score(p["terms"], p["weights"], int(p["limit"]))
            return {"hits": [[h.fact.to_dict(), h.score] for h in hits]}
        if op == "get":
            fact = store.get(p["fact_id"])
            return {"fact": fact.to_dict() if fact else None}
        if op == "count":
            return {"count": store.count(), "index_size": store.index_size()}
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
        raise ValueError(f"unknown shard query op {op!r}")

    def handoff_page(self, p: Mapping[str, Any]) -> dict[str, Any]:
        """The roles held here whose ring keys hash into ``ranges``, ``limit`` facts a page
        after fact id ``after`` (a joining or gaining shard pulls its new ranges this way;
        hive_core.membership.handoff). The first page also carries the tombstones of facts
        whose id lies in the ranges, so a retraction moves with its range."""
        ranges = RangeSet(p["ranges"])
        after = str(p.get("after") or "")
        limit = max(1, min(int(p.get("limit", HANDOFF_PAGE)), HANDOFF_PAGE))
        rows = sorted((r for r in self.store.records() if r.fact_id > after),
                      key=lambda r: r.fact_id)
        out = []
        cursor = None
        for rec in rows:
            part = roles_in(rec, ranges)
            if part is not None:
                out.append(part)
                if len(out) >= limit:
                    cursor = rec.fact_id
                    break
        tombstones = [] if after else [
            f for f in self.store.tombstones() if stable_hash(f) in ranges]
        return {"batch": StoreBatch.from_records(out).to_wire(), "tombstones": tombstones,
                "next": cursor}

    def store_payload(self, p: Mapping[str, Any]) -> dict[str, Any]:
        batch = StoreBatch.from_wire(p["batch"]) if "batch" in p else None
        added = self.store.put(batch) if batch else 0
        for edge in p.get("edges", ()):
            self.store.add_edge(HiveEdge.from_dict(edge))
        return {"added": added, "received": len(batch) if batch else 0}

    def delete_payload(self, p: Mapping[str, Any]) -> dict[str, Any]:
        retracted = [fid for fid in p.get("retract", ()) if self.store.retract(fid)]
        for d in p.get("drops", ()):
            self.store.drop(d["fact_id"], d["terms"], bool(d["primary"]))
        return {"retracted": retracted}
