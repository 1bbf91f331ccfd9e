"""Anti-entropy: replicas repair what they missed by trading Bloom filters.

A shard misses a write when it was down or unreachable (the writer reports it and moves on;
the other replicas have the fact). Each round, a shard A tells every peer B which *roles*
it holds among those the two of them should share, as a Bloom filter (a few bytes per role
instead of the roles themselves). B walks its own records; every role that the ring says A
should hold and that is absent from A's filter is sent back in the reply, with B's
tombstones for facts A seems to hold. A stores them: the stores' idempotent merge makes a
repeated or redundant repair harmless.

Rounds are cheap by construction: a shard asks every peer only once, right after it starts
(to catch up on what it missed while down), and afterwards ``gossip_fanout`` random peers per
round, so an idle hive of N agents answers about N * fanout digests per interval, not N^2.

A role key is ``fact_id`` (the primary role) or ``fact_id + "\\x1f" + term`` (a posting).
A Bloom false positive hides a missing role for one round; the salt changes every round, so
it shows in the next (the "re-salt per round" fix for Bloom anti-entropy).
"""

from __future__ import annotations

import base64
from collections.abc import Collection, Iterable, Iterator
from typing import Any

from hive_core.bloom import BloomFilter
from hive_core.ring import HashRing
from hive_core.store.base import ShardStore, StoreBatch, StoreRecord

SEP = "\x1f"
MAX_REPAIR_FACTS = 2000  # per reply; later rounds carry the rest


def role_keys(record: StoreRecord) -> Iterator[tuple[str, str | None]]:
    """(ring key, term or None for the primary role) of every role in ``record``."""
    if record.primary:
        yield record.fact_id, None
    for term in record.terms:
        yield term, term


def _key(fact_id: str, term: str | None) -> str:
    return fact_id if term is None else f"{fact_id}{SEP}{term}"


def digests(
    records: Iterable[StoreRecord], self_id: str, ring: HashRing, salt: int, error_rate: float,
    peers: Collection[str] | None = None,
) -> dict[str, BloomFilter]:
    """Per peer (all, or ``peers``): a filter of the roles this shard holds that it co-owns."""
    wanted = set(ring.agents - {self_id}) if peers is None else set(peers) - {self_id}
    shared: dict[str, list[str]] = {}
    for rec in records:
        for ring_key, term in role_keys(rec):
            for peer in ring.get_agents(ring_key):
                if peer in wanted:
                    shared.setdefault(peer, []).append(_key(rec.fact_id, term))
    out = {}
    for peer in sorted(wanted):
        keys = shared.get(peer, [])
        bloom = BloomFilter(max(len(keys), 64), error_rate, salt=salt)
        bloom.update(keys)
        out[peer] = bloom
    return out


def held_filter(records: Iterable[StoreRecord], salt: int, error_rate: float) -> BloomFilter:
    """Every fact id this shard holds in any role: lets a peer send only relevant tombstones."""
    ids = [rec.fact_id for rec in records]
    bloom = BloomFilter(max(len(ids), 64), error_rate, salt=salt)
    bloom.update(ids)
    return bloom


def _b64(bloom: BloomFilter) -> str:
    return base64.b64encode(bloom.to_bytes()).decode("ascii")


def encode_digest(roles: BloomFilter, held: BloomFilter) -> dict[str, Any]:
    return {"bloom": _b64(roles), "held": _b64(held)}


def answer_digest(
    store: ShardStore, self_id: str, sender: str, payload: dict[str, Any], ring: HashRing
) -> dict[str, Any]:
    """What ``sender`` lacks of the roles this shard holds and the ring gives ``sender``."""
    bloom = BloomFilter.from_bytes(base64.b64decode(payload["bloom"]))
    held = BloomFilter.from_bytes(base64.b64decode(payload["held"]))
    missing: list[StoreRecord] = []
    for rec in store.records():
        terms = []
        primary = False
        for ring_key, term in role_keys(rec):
            owners = ring.get_agents(ring_key)
            # Only roles both sides own: the sender's filter holds just those, and a copy
            # this shard keeps past a ring move (until its cleanup) is not the sender's gap.
            if sender not in owners or self_id not in owners:
                continue
            key = _key(rec.fact_id, term)
            if key in bloom:
                continue
            if term is None:
                primary = True
            else:
                terms.append(term)
        if primary or terms:
            missing.append(StoreRecord(rec.fact, rec.tf, tuple(terms), primary))
            if len(missing) >= MAX_REPAIR_FACTS:
                break
    # A false positive here only sends a harmless extra tombstone.
    tombstones = [fid for fid in store.tombstones() if fid in held]
    return {"batch": StoreBatch.from_records(missing).to_wire(), "tombstones": tombstones,
            "repaired": len(missing)}


def apply_repair(store: ShardStore, payload: dict[str, Any]) -> int:
    """Store what a peer sent back; returns how many facts it carried."""
    for fid in payload.get("tombstones", ()):
        store.retract(fid)
    batch = StoreBatch.from_wire(payload["batch"])
    if len(batch):
        store.put(batch)
    return int(payload.get("repaired", len(batch)))
