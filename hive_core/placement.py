"""Where facts live: placement on the ring, and hand-off when the ring changes.

A fact has two kinds of owners (see :mod:`hive_core.store.base`): the ring owners of its
``fact_id`` keep it as a primary replica, and the ring owners of each of its terms (and of
its position key, :func:`index_keys`) keep it in that key's postings. Neither is the agent
that learned it. ``place`` turns a batch of facts into one list of records per destination
shard, so a batch costs one message per shard.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hive_core import context
from hive_core.facts import HiveFact
from hive_core.ring import HashRing
from hive_core.store.base import StoreBatch, StoreRecord
from hive_core.text import term_counts


def index_keys(fact: HiveFact, tf: Iterable[str] | None = None) -> list[str]:
    """Every posting key a fact is indexed under: its terms, and its position key when it
    has a place in a conversation (:mod:`hive_core.context`; not a term, so it adds nothing
    to the fact's length or to any term statistic)."""
    keys = list(term_counts(fact.content) if tf is None else tf)
    keys.extend(context.fact_keys(fact.metadata))
    return keys


def place(facts: Iterable[HiveFact], ring: HashRing) -> dict[str, StoreBatch]:
    """One :class:`StoreBatch` per destination shard for a batch of facts.

    Work is per fact and per *distinct term of the batch* (one ring lookup each); the
    (fact, shard) fan-out happens in set unions and dict comprehensions.
    """
    batch_facts: dict[str, dict] = {}
    batch_tf: dict[str, dict[str, int]] = {}
    term_fids: dict[str, list[str]] = {}
    for fact in facts:
        fid = fact.fact_id
        if fid in batch_facts:
            continue
        batch_facts[fid] = fact.to_dict()
        tf = batch_tf[fid] = term_counts(fact.content)
        for term in index_keys(fact, tf):
            fids = term_fids.get(term)
            if fids is None:
                term_fids[term] = [fid]
            else:
                fids.append(fid)
    get_agents = ring.get_agents
    postings: dict[str, dict[str, list[str]]] = {}
    for term, fids in term_fids.items():
        for agent in get_agents(term):
            held = postings.get(agent)
            if held is None:
                postings[agent] = {term: fids}
            else:
                held[term] = fids
    primary: dict[str, list[str]] = {}
    for fid in batch_facts:
        for agent in get_agents(fid):
            primary.setdefault(agent, []).append(fid)
    out = {}
    for agent in postings.keys() | primary.keys():
        mine = postings.get(agent, {})
        prim = primary.get(agent, [])
        fids = set(prim).union(*mine.values())
        out[agent] = StoreBatch({f: batch_facts[f] for f in fids}, {f: batch_tf[f] for f in fids},
                                mine, prim)
    return out


@dataclass(frozen=True, slots=True)
class Drop:
    fact_id: str
    terms: frozenset[str]
    primary: bool


def handoff(
    records: Iterable[StoreRecord], self_id: str, old: HashRing, new: HashRing
) -> tuple[dict[str, list[StoreRecord]], list[Drop]]:
    # Rows, not batches: hand-off is rare and touches ~1/N of a shard; callers chunk the rows
    # into StoreBatch messages (``batches``).
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


def batches(records: Sequence[StoreRecord], size: int) -> list[StoreBatch]:
    """Rows as StoreBatch chunks of at most ``size`` facts, so no message exceeds its limit."""
    return [StoreBatch.from_records(records[i : i + size]) for i in range(0, len(records), size)]
