"""Where facts live: placement on the ring, and hand-off when the ring changes.

A fact has two kinds of owners (see :mod:`hive_core.store.base`): the ring owners of its
``fact_id`` keep it as a primary replica, and the ring owners of each of its terms keep it in
that term's postings. Neither is the agent that learned it. ``place`` turns a batch of facts
into one list of records per destination shard, so a batch costs one message per shard.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hive_core.facts import HiveFact
from hive_core.ring import HashRing
from hive_core.store.base import StoreRecord
from hive_core.text import term_counts


def _records(fact: HiveFact, ring: HashRing) -> list[tuple[str, StoreRecord]]:
    fact_dict = fact.to_dict()
    tf = term_counts(fact.content)
    get_agents = ring.get_agents
    terms_by_agent: dict[str, list[str]] = {}
    for term in tf:
        for agent in get_agents(term):
            held = terms_by_agent.get(agent)
            if held is None:
                terms_by_agent[agent] = [term]
            else:
                held.append(term)
    primaries = get_agents(fact.fact_id)
    out = [(agent, StoreRecord(fact_dict, tf, tuple(terms), agent in primaries))
           for agent, terms in terms_by_agent.items()]
    out.extend((agent, StoreRecord(fact_dict, tf, (), True))
               for agent in primaries if agent not in terms_by_agent)
    return out


def records_for(fact: HiveFact, ring: HashRing) -> dict[str, StoreRecord]:
    """The record each owner of ``fact`` should hold."""
    return dict(_records(fact, ring))


def place(facts: Iterable[HiveFact], ring: HashRing) -> dict[str, list[StoreRecord]]:
    """Records grouped by destination shard for a batch of facts."""
    batches: dict[str, list[StoreRecord]] = {}
    for fact in facts:
        for agent, record in _records(fact, ring):
            batch = batches.get(agent)
            if batch is None:
                batches[agent] = [record]
            else:
                batch.append(record)
    return batches


@dataclass(frozen=True, slots=True)
class Drop:
    fact_id: str
    terms: frozenset[str]
    primary: bool


def handoff(
    records: Iterable[StoreRecord], self_id: str, old: HashRing, new: HashRing
) -> tuple[dict[str, list[StoreRecord]], list[Drop]]:
    """What one shard must send and give up when the ring changes from ``old`` to ``new``.

    Every holder of a role sends it to the role's new owners that did not own it before
    (stores are idempotent, so replicas sending the same record is harmless), then drops the
    roles it no longer owns. Only roles whose owner set changed move: about 1/N of them when
    one agent joins or leaves.
    """
    sends: dict[str, dict[str, tuple[StoreRecord, set[str], bool]]] = {}
    drops: list[Drop] = []

    def route(rec: StoreRecord, key: str, term: str | None) -> bool:
        new_owners = new.get_agents(key)
        old_owners = set(old.get_agents(key))
        for agent in new_owners:
            if agent not in old_owners and agent != self_id:
                entry = sends.setdefault(agent, {}).setdefault(rec.fact_id, (rec, set(), False))
                if term is None:
                    sends[agent][rec.fact_id] = (entry[0], entry[1], True)
                else:
                    entry[1].add(term)
        return self_id in new_owners

    for rec in records:
        lost_terms = {t for t in rec.terms if not route(rec, t, t)}
        lost_primary = rec.primary and not route(rec, rec.fact_id, None)
        if lost_terms or lost_primary:
            drops.append(Drop(rec.fact_id, frozenset(lost_terms), lost_primary))
    out = {
        agent: [StoreRecord(r.fact, r.tf, tuple(sorted(terms)), primary)
                for r, terms, primary in by_fact.values()]
        for agent, by_fact in sends.items()
    }
    return out, drops


def split_batches(records: Sequence[StoreRecord], size: int) -> list[Sequence[StoreRecord]]:
    """Chunks of at most ``size`` records, so no message exceeds the size limit."""
    return [records[i : i + size] for i in range(0, len(records), size)] or [records]
