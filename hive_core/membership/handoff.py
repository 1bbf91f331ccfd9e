"""Moving ranges: a gaining shard pulls them; an old owner later drops what it lost.

Pull, not push: the shard that gains ranges (a joiner, or the next owner of a dead or
leaving agent's ranges) is the one that knows when it has all of them, so it can say so in
the view (``record_sync``) and the view flips only when every gainer has. It asks each old
owner of its gained segments (:func:`~hive_core.membership.ranges.gained_segments`) for the
roles hashing into them, page by page, each page with a deadline. Old owners that are not
alive are skipped (the other replicas of their segments answer); one that is alive but fails
makes the pull incomplete, and the caller tries again on its next tick.

Stores merge idempotently, so a page that arrives twice, or a range pulled from two
replicas, is harmless.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from hive_core.errors import TransportError
from hive_core.gossip import apply_repair
from hive_core.membership.ranges import Segment, gained_segments
from hive_core.messages import MessageType, new_id
from hive_core.placement import Drop
from hive_core.ring import HashRing
from hive_core.shard_client import Call, ShardClient
from hive_core.shard_server import HANDOFF_PAGE
from hive_core.store.base import HeldRoles, ShardStore, StoreRecord

# Sources paged at once by one gainer: enough to overlap their scans, few enough that a move
# where every agent gains (a leave or death at N=20) does not starve the hive's questions.
SOURCES_AT_ONCE = 4


@dataclass(slots=True)
class PullReport:
    """What one pull did: sources that answered fully, those that failed, what arrived."""

    sources: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # not alive: their replicas answer
    failed: dict[str, str] = field(default_factory=dict)
    unserved: int = 0  # segments whose every alive old owner failed
    facts: int = 0
    bytes: int = 0
    segments: int = 0

    @property
    def complete(self) -> bool:
        return not self.unserved


def pull_gains(
    client: ShardClient, store: ShardStore, me: str, old: HashRing, new: HashRing, *,
    live: Collection[str] | None = None, timeout: float, page: int = HANDOFF_PAGE,
) -> PullReport:
    """Pull into ``store`` every role ``me`` owns in ``new`` and did not own in ``old``.

    Each segment is pulled from ONE of its old owners (its replicas hold the same roles;
    asking all of them tripled the bytes of a join), spread over the owners by segment;
    when that owner fails, its segments go to the next old owner in the same call. Owners
    not alive are skipped; a segment none of whose owners answered leaves the pull
    incomplete.
    """
    report = PullReport()
    segments = gained_segments(old, new, me)
    report.segments = len(segments)
    choices: list[list[str]] = []
    for seg in segments:
        owners = [s for s in seg.sources if s != me]
        alive = [s for s in owners if live is None or s in live]
        report.skipped.extend(s for s in owners if s not in alive and s not in report.skipped)
        if alive:
            turn = seg.lo % len(alive)
            choices.append(alive[turn:] + alive[:turn])
        else:
            choices.append([])
    pending = [i for i, c in enumerate(choices) if c]
    while pending:
        by_source: dict[str, list[int]] = {}
        for i in pending:
            by_source.setdefault(choices[i][0], []).append(i)
        pending = []
        groups = sorted(by_source.items())
        failed: dict[str, list[int]] = {}
        for g in range(0, len(groups), SOURCES_AT_ONCE):
            failed.update(_pull_all(client, store, segments, dict(groups[g:g + SOURCES_AT_ONCE]),
                                    timeout, page, report))
        for idx in failed.values():
            for i in idx:  # that source failed: its segments go to their next old owner
                choices[i].pop(0)
                if choices[i]:
                    pending.append(i)
                else:
                    report.unserved += 1
    return report


def _pull_all(client: ShardClient, store: ShardStore, segments: list[Segment],
              by_source: dict[str, list[int]], timeout: float, page: int,
              report: PullReport) -> dict[str, list[int]]:
    """Page through every source at once (one request per source per round, so sources
    scan in parallel); returns the segments of the sources that failed."""
    ranges = {src: [[segments[i].lo, segments[i].hi] for i in idx]
              for src, idx in by_source.items()}
    cursors = dict.fromkeys(by_source, "")
    pulls = {src: new_id() for src in by_source}  # a source keeps its selection by this id
    failed: dict[str, list[int]] = {}
    while cursors:
        calls: dict[str, Call] = {
            src: (MessageType.SHARD_QUERY, {"op": "handoff", "ranges": ranges[src],
                                            "after": after, "limit": page,
                                            "pull": pulls[src]})
            for src, after in cursors.items()}
        for src, res in client.call_many(calls, timeout=timeout).items():
            if isinstance(res, TransportError):
                report.failed[src] = str(res) or type(res).__name__
                failed[src] = by_source[src]
                del cursors[src]
                continue
            report.bytes += len(json.dumps(res, separators=(",", ":")))
            report.facts += apply_repair(store, res)
            if res.get("next"):
                cursors[src] = str(res["next"])
            else:
                del cursors[src]
                report.sources.append(src)
    return failed


def stale_roles(records: Iterable[StoreRecord | HeldRoles], me: str, ring: HashRing
                ) -> list[Drop]:
    """Roles held here that ``ring`` gives to other shards only (to drop after a move)."""
    drops = []
    for rec in records:
        lost_terms = frozenset(t for t in rec.terms if me not in ring.get_agents(t))
        lost_primary = rec.primary and me not in ring.get_agents(rec.fact_id)
        if lost_terms or lost_primary:
            drops.append(Drop(rec.fact_id, lost_terms, lost_primary))
    return drops
