"""Retraction: what a FORGET request asks for, and what learning finds retracted.

FORGET takes ``{"fact_ids": [...]}`` or ``{"match": text}`` (exactly one), and ``dry_run``.
A match is a plain substring of the fact's text (case-insensitive) among the best
``FORGET_LIMIT`` facts the hive's search finds for it, so a forget never scans every shard
and never removes what the text does not literally contain.

A retraction is a sticky tombstone on every holder, so learning the same sentence again
stores nothing. A learn therefore asks which of its facts are retracted
(:func:`retracted_among`) and says so, and ``learn --restore`` lifts those tombstones
hive-wide (:func:`restore`) before storing the facts again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hive_core.config import CoreSettings
from hive_core.errors import TransportError
from hive_core.messages import MessageType
from hive_core.ring import HashRing
from hive_core.shard_client import ShardClient

FORGET_LIMIT = 100
MAX_IDS = 1000
USAGE = ("FORGET needs {'fact_ids': [str, ...]} or {'match': str} (one of them), and "
         "optionally 'dry_run': bool")


@dataclass(frozen=True, slots=True)
class ForgetRequest:
    fact_ids: tuple[str, ...]
    match: str | None
    dry_run: bool


def forget_request(payload: Mapping[str, Any]) -> ForgetRequest:
    ids, match = payload.get("fact_ids"), payload.get("match")
    dry_run = payload.get("dry_run", False)
    if (ids is None) == (match is None) or not isinstance(dry_run, bool):
        raise ValueError(USAGE)
    if match is not None:
        if not isinstance(match, str) or not match.strip() or len(match) > 1000:
            raise ValueError("FORGET 'match' must be non-empty text of at most 1000 chars")
        return ForgetRequest((), match.strip(), dry_run)
    if not isinstance(ids, list) or not ids or len(ids) > MAX_IDS or not all(
            isinstance(i, str) and i.startswith("f_") for i in ids):
        raise ValueError(f"FORGET 'fact_ids' must be 1 to {MAX_IDS} fact ids (f_...)")
    return ForgetRequest(tuple(dict.fromkeys(ids)), None, dry_run)


# -- what a learn finds retracted, and undoing it ------------------------------------------------
class RetractionGraph(Protocol):
    """What :func:`retracted_among` and :func:`restore` need of a DistributedHiveGraph."""

    settings: CoreSettings

    @property
    def ring(self) -> HashRing: ...

    def client_for(self, agent_id: str | None) -> ShardClient: ...


def retracted_among(graph: RetractionGraph, sender: str, fact_ids: Sequence[str]) -> set[str]:
    """Those of ``fact_ids`` that some owner holds a tombstone for.

    A tombstone is sticky: a store silently refuses a retracted fact, so without asking, a
    re-learned retracted sentence was reported as learned while it stayed gone. Each id's
    ring owners are asked (one message per owner, in one parallel round); an owner that does
    not answer is not a reason to fail the learn -- its co-owners hold the same tombstones.
    """
    by_owner: dict[str, list[str]] = {}
    ring = graph.ring
    for fid in fact_ids:
        for owner in ring.get_agents(fid):
            by_owner.setdefault(owner, []).append(fid)
    if not by_owner:
        return set()
    calls = {o: (MessageType.SHARD_QUERY, {"op": "retracted", "fact_ids": ids})
             for o, ids in by_owner.items()}
    found: set[str] = set()
    for res in graph.client_for(sender).call_many(
            calls, timeout=graph.settings.store_timeout).values():
        if not isinstance(res, TransportError):
            found.update(str(f) for f in res.get("retracted") or ())
    return found


def restore(graph: RetractionGraph, sender: str, fact_ids: Sequence[str]) -> None:
    """Lift the tombstones of ``fact_ids`` on every member of the ring, or raise.

    Every member, not only today's owners: a tombstone moves with its range and anti-entropy
    spreads it back from any shard that still holds it, so one member left out would retract
    the facts again. A member that does not answer therefore fails the restore (the facts
    stay retracted: the members that did lift theirs get the tombstone back by gossip), and
    re-running once it is up is safe.
    """
    members = sorted(graph.ring.agents)
    calls = {m: (MessageType.SHARD_DELETE, {"restore": list(fact_ids)}) for m in members}
    results = graph.client_for(sender).call_many(calls, timeout=graph.settings.store_timeout)
    failed = sorted(m for m, r in results.items() if isinstance(r, TransportError))
    if failed:
        raise TransportError(
            f"cannot restore {len(fact_ids)} retracted fact(s): shard(s) {', '.join(failed)} "
            "did not answer (every agent must be running: one that keeps its tombstones "
            "would retract them again)")
