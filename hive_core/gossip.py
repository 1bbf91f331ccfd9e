"""Anti-entropy: replicas repair what they missed, comparing per-range digests.

A shard misses a write when it was down or unreachable (the writer reports it and moves on;
the other replicas have the fact), or loses data with its disk. Repair works range by range,
as Dynamo's and Cassandra's do with Merkle trees:

* The ring cuts the key space into *segments* (the arcs between consecutive tokens); every
  key of a segment has the same owners. A role (a fact's primary copy, keyed by its id, or
  one of its postings, keyed by the term) lies in the segment of its ring key.
* A shard's **digest** of a segment is the XOR of the hashes of the roles it holds there,
  and their count: 16 bytes that agree between two replicas exactly when (up to a 2^-64
  collision) they hold the same roles.
* One **exchange** between a shard A and a co-owner P is push-pull in two round trips:
  A sends the digests of the segments they share; P answers with the segments that differ,
  a Bloom filter of its roles there and its tombstones there. A then sends what P lacks,
  with its own filter; P stores it and answers with what A lacks (and the ids of facts it
  refused because it retracted them, which A then retracts too).

Bytes therefore grow with the *difference*: an exchange between replicas that agree costs
one message of digests (8 bytes per shared segment, however large the shard is). A shard
meets its co-owners in a rotation (:func:`round_peers`) that covers them all every
ceil(log2 N) rounds, so a wiped shard is whole again within that many rounds while a round
costs N/log2 N exchanges per shard, not N; an agent's first round after it starts meets
them all at once (catch-up). A Bloom false positive (which hides one missing role) shows
in a later round, whose salt differs. Replicas must route by the same ring: an exchange
between shards on different rings (a move under way) is skipped, and the hand-off
(hive_core.membership) covers that time.

A round waits for its shard's placement writes to pause (:class:`QuietGate`): while a
``learn`` is under way, replicas differ by the writes in flight, so every round
found mismatches and pulled the roles of whole segments -- O(facts held) memory and time
per round per co-owner: learning 6 MB took agents to 526 MB and 80 s, 252 MB and 50 s
without the rounds. A round deferred is logged; the first round after the writes pause
repairs what was missed meanwhile, an agent's first round (catch-up) always runs, and a
shard written without pause still runs a round after ``MAX_DEFERRED`` deferred ones -- then
after twice as many each time, up to ``MAX_DEFERRED_CAP``, until its writes pause. Why the
back-off: a round forced during writes still costs O(facts held) on both sides (each peer
computes its digests in its server thread), and on a 50 MB learn (600k facts per shard) every
forced round "repaired 0 fact(s)" -- its exchanges timed out -- while it held SHARD_STORE
replies to the learn 15-20 s late, past the writers' retry, and the learn failed.
"""

from __future__ import annotations

import base64
import bisect
import logging
import math
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from hive_core.bloom import BloomFilter
from hive_core.ring import HashRing, stable_hash
from hive_core.store.base import HeldRoles, ShardStore, StoreBatch, StoreRecord

log = logging.getLogger(__name__)


MAX_DEFERRED = 4  # rounds a busy shard may skip in a row (2 minutes at the 30 s default)
MAX_DEFERRED_CAP = 32  # ... doubled after each round forced in one write streak, up to this


class QuietGate:
    """Runs a shard's anti-entropy round only when no placement write (SHARD_STORE: a learn's
    facts) reached the shard since its previous round, ended or deferred: see the module
    docstring for why. Hand-off and repair writes do not count: a ring move keeps its
    rounds, as before."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}  # shard -> its placement-write count, last round
        self._deferred: dict[str, int] = {}  # shard -> rounds deferred in a row
        self._forced: dict[str, int] = {}  # shard -> rounds run in its current write streak
        self.deferred = 0  # rounds deferred, over this gate's life

    def limit(self, shard: str) -> int:
        """Rounds the shard may defer in a row now: MAX_DEFERRED, doubled per round already
        forced in this write streak, at most MAX_DEFERRED_CAP."""
        return min(MAX_DEFERRED << self._forced.get(shard, 0), MAX_DEFERRED_CAP)

    def deferring(self, shard: str, placed: int) -> bool:
        """True (and the round is counted as deferred) if the shard's count of placement
        writes, ``placed``, moved since its last round; a shard's first round always runs."""
        seen, now = self._seen.get(shard), placed
        self._seen[shard] = now
        if seen is None or seen == now:
            self._forced.pop(shard, None)
            streak = self._deferred.pop(shard, 0)
            if streak:
                log.info("anti-entropy for %s resumes: writes paused after %d deferred "
                         "round(s)", shard, streak)
            return False
        # Never more than limit() rounds in a row: a hive that learns without pause still
        # repairs its replicas (at the old cost, but every few rounds, then fewer).
        if self._deferred.get(shard, 0) >= self.limit(shard):
            streak = self._deferred.pop(shard, 0)
            self._forced[shard] = self._forced.get(shard, 0) + 1
            log.info("anti-entropy for %s runs while its shard is still being written, after "
                     "%d deferred round(s); the next such round waits %d", shard, streak,
                     self.limit(shard))
            return False
        self.deferred += 1
        streak = self._deferred[shard] = self._deferred.get(shard, 0) + 1
        if streak == 1:
            log.info("anti-entropy for %s deferred while its shard is being written", shard)
        return True


SEP = "\x1f"
_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15  # spreads the count over all 64 bits before the fold
MAX_REPAIR_FACTS = 2000  # per message; later rounds carry the rest
BLOOM_MIN_ITEMS = 64


def role_keys(record: StoreRecord | HeldRoles) -> Iterator[tuple[str, str | None]]:
    """(ring key, term or None for the primary role) of every role in ``record``."""
    if record.primary:
        yield record.fact_id, None
    for term in record.terms:
        yield term, term


def _key(fact_id: str, term: str | None) -> str:
    return fact_id if term is None else f"{fact_id}{SEP}{term}"


def rounds_to_cover(hive_size: int) -> int:
    """Rounds in which a shard meets each of its co-owners once: ceil(log2 N), at least 1."""
    return max(1, math.ceil(math.log2(max(hive_size, 2))))


def round_peers(peers: Sequence[str], round_no: int, hive_size: int) -> list[str]:
    """The peers a shard exchanges with in round ``round_no``: a rotation that meets each
    of ``peers`` once every :func:`rounds_to_cover` rounds, so a round costs about
    ``len(peers) / log2 N`` exchanges and a shard that lost data hears from all of its
    co-owners (and they from it) within ceil(log2 N) rounds."""
    every = rounds_to_cover(hive_size)
    return [p for i, p in enumerate(sorted(peers)) if i % every == round_no % every]


def ring_id(ring: HashRing) -> int:
    """Names a ring: two shards compare segments only when they cut the space alike."""
    return stable_hash("|".join(sorted(ring.agents)) + f"#{ring.replication_factor}")


class Segments:
    """The segments of one ring: owners per segment and, per agent, the segments it shares
    with each co-owner. Built once per ring (:func:`segments_of`); an exchange then costs
    its shared segments, not a walk over the whole ring."""

    def __init__(self, ring: HashRing) -> None:
        self.ring = ring
        self._points = ring.points
        # A segment's keys start at the previous token; its owners are that point's.
        self.owners_by_segment = [ring.owners_at(self._points[i - 1])
                                  for i in range(len(self._points))]
        self._shared: dict[str, dict[str, list[int]]] = {}

    def of(self, key: str) -> int:
        return bisect.bisect_right(self._points, stable_hash(key)) % len(self._points)

    def owners(self, segment: int) -> tuple[str, ...]:
        return self.owners_by_segment[segment]

    def shared(self, me: str) -> dict[str, list[int]]:
        """Co-owner -> the segments (ascending) that ``me`` and it both own."""
        out = self._shared.get(me)
        if out is None:
            out = {}
            for seg, owners in enumerate(self.owners_by_segment):
                if me in owners:
                    for peer in owners:
                        if peer != me:
                            out.setdefault(peer, []).append(seg)
            self._shared[me] = out
        return out


_SEGMENTS: dict[int, Segments] = {}
_SEGMENTS_LOCK = threading.Lock()


def segments_of(ring: HashRing) -> Segments:
    """The (cached) :class:`Segments` of ``ring``; a few rings are kept (a move has two)."""
    rid = ring_id(ring)
    with _SEGMENTS_LOCK:
        segs = _SEGMENTS.get(rid)
        if segs is None or segs.ring.points != ring.points:
            if len(_SEGMENTS) >= 4:
                _SEGMENTS.pop(next(iter(_SEGMENTS)))
            segs = _SEGMENTS[rid] = Segments(ring)
        return segs


def segment_table(records: Iterable[StoreRecord | HeldRoles], me: str, ring: HashRing
                  ) -> dict[int, list[int]]:
    """segment -> [xor of role hashes, role count] over the roles this shard holds in
    segments it owns (copies kept past a ring move are not this shard's to compare)."""
    segs = segments_of(ring)
    acc: dict[int, list[int]] = {}
    for rec in records:
        for ring_key, term in role_keys(rec):
            seg = segs.of(ring_key)
            if me not in segs.owners(seg):
                continue
            entry = acc.setdefault(seg, [0, 0])
            entry[0] ^= stable_hash(_key(rec.fact_id, term))
            entry[1] += 1
    return acc


def shared(table: dict[int, list[int]], me: str, ring: HashRing,
           peers: Iterable[str] | None = None) -> dict[str, dict[int, list[int]]]:
    """Per co-owner (all, or ``peers``): the digests of the segments shared with it."""
    wanted = None if peers is None else set(peers)
    return {peer: {seg: table.get(seg, [0, 0]) for seg in segments}
            for peer, segments in segments_of(ring).shared(me).items()
            if wanted is None or peer in wanted}


def digests(records: Iterable[StoreRecord | HeldRoles], me: str, ring: HashRing,
            peers: Iterable[str] | None = None) -> dict[str, dict[int, list[int]]]:
    """:func:`shared` of this shard's :func:`segment_table`."""
    return shared(segment_table(records, me, ring), me, ring, peers)


def _in_segments(store: ShardStore, ring: HashRing, segments: set[int]) -> list[HeldRoles]:
    """Roles held in ``segments``, without bodies: a filter and the lacking part need only
    ids and terms, and a mismatch can cover most of a shard (bodies: ~1.8 MB per 1,000
    facts held at the peak, roles ~0.3); bodies are read for what is sent (``_lacking``)."""
    segs = segments_of(ring)
    return store.select_held_roles(lambda key: segs.of(key) in segments)


def _bloom(records: Iterable[StoreRecord | HeldRoles], salt: int, rate: float) -> str:
    keys = [_key(r.fact_id, t) for r in records for _k, t in role_keys(r)]
    bloom = BloomFilter(max(len(keys), BLOOM_MIN_ITEMS), rate, salt=salt)
    bloom.update(keys)
    return base64.b64encode(bloom.to_bytes()).decode("ascii")


def _lacking(store: ShardStore, records: Iterable[HeldRoles], bloom_b64: str
             ) -> list[StoreRecord]:
    """The part of ``records`` whose roles are absent from the other side's filter, with
    their bodies (at most MAX_REPAIR_FACTS)."""
    bloom = BloomFilter.from_bytes(base64.b64decode(bloom_b64))
    out: list[HeldRoles] = []
    for rec in records:
        terms = tuple(t for t in rec.terms if _key(rec.fact_id, t) not in bloom)
        primary = rec.primary and rec.fact_id not in bloom
        if terms or primary:
            out.append(HeldRoles(rec.fact_id, terms, primary))
            if len(out) >= MAX_REPAIR_FACTS:
                break
    return store.records_of(out)


def _tombstones_in(store: ShardStore, ring: HashRing, segments: set[int]) -> list[str]:
    segs = segments_of(ring)
    return [f for f in store.tombstones() if segs.of(f) in segments]


# -- the initiator's side -----------------------------------------------------------------------
def _pack(digest: dict[int, list[int]]) -> str:
    """8 bytes per shared segment, in segment order (both sides know the order: they share
    the ring): the XOR folded with the count."""
    raw = b"".join(((x ^ (c * _GOLDEN)) & _MASK).to_bytes(8, "big")
                   for _s, (x, c) in sorted(digest.items()))
    return base64.b64encode(raw).decode("ascii")


def _unpack(text: str) -> list[bytes]:
    raw = base64.b64decode(text)
    return [raw[i:i + 8] for i in range(0, len(raw), 8)]


def offer(digest: dict[int, list[int]], ring: HashRing) -> dict[str, Any]:
    """Phase 1 request: the digests of the segments shared with one peer."""
    return {"phase": "digest", "ring": ring_id(ring), "digests": _pack(digest)}


def push(store: ShardStore, ring: HashRing, answer: dict[str, Any], salt: int,
         rate: float) -> dict[str, Any] | None:
    """Phase 2 request, from the peer's phase-1 answer: what the peer lacks, with this
    shard's own filter and tombstones; None when nothing differs."""
    apply_tombstones(store, answer.get("tombstones", ()))
    segments = {int(s) for s in answer.get("mismatch", ())}
    if not segments:
        return None
    mine = _in_segments(store, ring, segments)
    return {"phase": "push", "ring": answer["ring"], "segments": sorted(segments),
            "bloom": _bloom(mine, salt, rate),
            "batch": StoreBatch.from_records(_lacking(store, mine, answer["bloom"])).to_wire(),
            "tombstones": _tombstones_in(store, ring, segments)}


def apply_repair(store: ShardStore, payload: dict[str, Any]) -> int:
    """Store what a peer sent; returns how many facts it carried."""
    apply_tombstones(store, payload.get("tombstones", ()))
    batch = StoreBatch.from_wire(payload["batch"])
    if len(batch):
        store.put(batch)
    return len(batch)


def apply_tombstones(store: ShardStore, fact_ids: Iterable[str]) -> None:
    for fid in fact_ids:
        store.retract(fid)


# -- the answering side -------------------------------------------------------------------------
def answer(store: ShardStore, me: str, sender: str, payload: dict[str, Any],
           ring: HashRing, salt: int, rate: float) -> dict[str, Any]:
    """A co-owner's GOSSIP_DIGEST: phase 1 (compare digests) or phase 2 (take the push,
    send back what the sender lacks). The digests are computed afresh (two hashes per
    role held; a shard answers ~N/log2 N co-owners a round)."""
    if int(payload.get("ring", -1)) != ring_id(ring):
        return {"skipped": "the two shards route by different rings (a move is under way)",
                "mismatch": [], "ring": payload.get("ring")}
    if payload.get("phase") == "push":
        return _answer_push(store, ring, payload)
    mine = digests(store.held_roles(), me, ring, [sender]).get(sender, {})
    theirs = _unpack(str(payload["digests"]))
    if len(theirs) != len(mine):
        raise ValueError(f"{sender} sent {len(theirs)} segment digests, expected {len(mine)}")
    ours = _unpack(_pack(mine))
    mismatch = [seg for seg, a, b in zip(sorted(mine), theirs, ours, strict=True) if a != b]
    held = _in_segments(store, ring, set(mismatch)) if mismatch else []
    return {"ring": payload["ring"], "mismatch": mismatch,
            "bloom": _bloom(held, salt, rate),
            "tombstones": _tombstones_in(store, ring, set(mismatch)) if mismatch else []}


def _answer_push(store: ShardStore, ring: HashRing, payload: dict[str, Any]) -> dict[str, Any]:
    apply_tombstones(store, payload.get("tombstones", ()))
    batch = StoreBatch.from_wire(payload["batch"])
    gone = set(store.tombstones()) & set(batch.facts) if len(batch) else set()
    if len(batch):
        store.put(batch)  # retracted facts are refused by the store; say which, below
    segments = {int(s) for s in payload["segments"]}
    lacking = _lacking(store, _in_segments(store, ring, segments), payload["bloom"])
    return {"batch": StoreBatch.from_records(lacking).to_wire(), "tombstones": sorted(gone),
            "received": len(batch)}
