"""The write path of the distributed graph: facts into per-shard rounds, and what a round's
failures cost.

``promote_fact`` places one fact at a time, and at N=100 that one fact goes to ~27 shards
(its RF owners, and the RF owners of each of its ~10 terms and its position key). The batch
placer (:func:`hive_core.placement.place`) is built for thousands of facts per call: per
shard it unions id sets and builds a :class:`StoreBatch` of fresh mappings, which for a
single fact was most of the cost of the write. :func:`place_one` gives each shard the
fact's :class:`StoreRecord` instead -- the same fact, term counts, posting keys and primary
role, as one tuple -- which a shard in this process stores as it is
(``ShardStore.put_record``) and a message carries as the one-fact batch ``place`` would
have sent.

The fact body and its term counts are shared by every shard's record, as ``place`` shares
them between batches: stores keep them read-only, and what leaves the process is
serialised.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hive_core.disk_space import DISK_FULL
from hive_core.errors import DiskFull, TransportError
from hive_core.facts import HiveFact
from hive_core.placement import batches, index_keys, place
from hive_core.ring import HashRing, MovingRing
from hive_core.shard_server import Placed, as_batch
from hive_core.store.base import StoreRecord
from hive_core.text import term_counts

FACTS_PER_MESSAGE = 2000
Round = Mapping[str, Placed]  # what each destination shard gets, as one message each
_PRIMARY = "\0primary"  # the primary role, as a role name no term can have


def place_one(fact: HiveFact, ring: HashRing | MovingRing) -> dict[str, StoreRecord]:
    """``place([fact], ring)`` for one fact, as records: the same shards, each with the same
    fact, term counts, posting keys and primary role."""
    fid = fact.fact_id
    tf = term_counts(fact.content)
    body = fact.to_dict()
    get_agents = ring.get_agents
    keys_of: dict[str, list[str]] = {}
    for key in index_keys(fact, tf):
        for agent in get_agents(key):
            held = keys_of.get(agent)
            if held is None:
                keys_of[agent] = [key]
            else:
                held.append(key)
    owners = get_agents(fid)
    out = {agent: StoreRecord(body, tf, tuple(keys), agent in owners)
           for agent, keys in keys_of.items()}
    for agent in owners:
        if agent not in out:
            out[agent] = StoreRecord(body, tf, (), True)
    return out


def place_rounds(facts: Sequence[HiveFact], ring: HashRing | MovingRing) -> list[Round]:
    """The rounds that store ``facts``: at most ``FACTS_PER_MESSAGE`` facts per message."""
    if len(facts) == 1:
        return [place_one(facts[0], ring)]
    return [place(facts[i : i + FACTS_PER_MESSAGE], ring)
            for i in range(0, len(facts), FACTS_PER_MESSAGE)]


def record_rounds(rows: Mapping[str, Sequence[StoreRecord]]) -> Sequence[Round]:
    """Rows per shard (a hand-off) as rounds of batches of at most ``FACTS_PER_MESSAGE``."""
    rounds: list[dict[str, Placed]] = []
    for agent, records in rows.items():
        for i, chunk in enumerate(batches(records, FACTS_PER_MESSAGE)):
            while len(rounds) <= i:
                rounds.append({})
            rounds[i][agent] = chunk
    return rounds


def check_coverage(rounds: Sequence[Round], failed: set[str], reasons: Mapping[str, str]
                   ) -> None:
    """Raise if some fact of ``rounds`` has a role that no shard outside ``failed`` took:
    it would be unfindable. A full disk among the ``reasons`` is named (the user can fix
    it); a dead replica alone costs redundancy, not the write."""
    lost = uncovered_facts(rounds, failed)
    if not lost:
        return
    full = [r[r.index(DISK_FULL):] for r in reasons.values() if DISK_FULL in r]
    if full:
        raise DiskFull(min(full))
    raise TransportError(f"{len(lost)} fact(s) reached no live owner for some role; "
                         f"store failed on shard(s) {', '.join(sorted(failed))}")


def uncovered_facts(rounds: Sequence[Round], failed: set[str]) -> list[str]:
    """Fact ids with a role (primary, or a term's postings) held by no shard that succeeded."""
    needed: dict[str, set[str]] = {}
    held: dict[str, set[str]] = {}
    for per_shard in rounds:
        for agent, placed in per_shard.items():
            batch = as_batch(placed)
            roles: dict[str, set[str]] = {fid: set() for fid in batch.facts}
            for term, fids in batch.postings.items():
                for fid in fids:
                    roles[fid].add(term)
            for fid in batch.primary:
                roles[fid].add(_PRIMARY)
            for fid, r in roles.items():
                needed.setdefault(fid, set()).update(r)
                if agent not in failed:
                    held.setdefault(fid, set()).update(r)
    return sorted(fid for fid, roles in needed.items() if roles - held.get(fid, set()))
