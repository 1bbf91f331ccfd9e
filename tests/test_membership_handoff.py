"""Moving data between shards on ring changes, without processes (membership.handoff).

The living ring's promise: after any sequence of joins, leaves and deaths (each move
finished: every gainer pulled, every shard dropped what it lost, the view flipped), each
shard holds exactly what a fresh hive of the final members would hold; no role lost, none
left behind. Here the pulls travel as real messages over a strict (JSON-encoding)
LocalEventBus to ShardServers, the same path agents use, and the moves are decided by the
view's own transitions, so refusals (RF) and the last-member rule shape the sequences.
"""

from __future__ import annotations

from collections.abc import Iterable

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hive_core.errors import ConfigError
from hive_core.facts import HiveFact
from hive_core.membership.handoff import pull_gains, stale_roles
from hive_core.membership.ranges import gainers
from hive_core.membership.view import RingView, flip, initial, join, leave, mark_down
from hive_core.placement import place
from hive_core.ring import HashRing
from hive_core.shard_client import ShardClient
from hive_core.shard_server import ShardServer
from hive_core.store.base import StoreRecord
from hive_core.store.memory import MemoryShardStore
from hive_core.transports.local import LocalEventBus

VNODES = 16
NAMES = ("a1", "b2", "c3", "d4", "e5", "f6", "g7")
WORDS = ("falcon heron osprey kestrel ledger billing outage rollback subnet kafka redis "
         "postgres audit budget latency gateway checkout release migration incident").split()
TIMEOUT = 5.0

Role = tuple[str, frozenset[str], bool]
# join: enters; leave: decommissioned (serves while the move runs); crash: dead before the
# move, skipped as not live; crash_unseen: dead, but the gainers still think it is live, so
# the pull to it fails and its segments must come from another old owner.
KINDS = ("join", "leave", "crash", "crash_unseen")

steps_strategy = st.lists(st.tuples(st.sampled_from(KINDS), st.sampled_from(NAMES)),
                          min_size=1, max_size=5)
facts_strategy = st.lists(
    st.lists(st.sampled_from(WORDS), min_size=1, max_size=5).map(" ".join),
    min_size=1, max_size=40)


def ring(agents: Iterable[str], rf: int) -> HashRing:
    return HashRing(sorted(agents), virtual_nodes=VNODES, replication_factor=rf)


def roles(records: Iterable[StoreRecord]) -> set[Role]:
    return {(r.fact_id, frozenset(r.terms), r.primary) for r in records}


class Cluster:
    """One MemoryShardStore per member, each served by a ShardServer on one strict bus."""

    def __init__(self, bus: LocalEventBus) -> None:
        self.bus = bus
        self.stores: dict[str, MemoryShardStore] = {}

    def start(self, name: str) -> MemoryShardStore:
        store = self.stores[name] = MemoryShardStore(name)
        self.bus.bind(name, ShardServer(name, store, None).handle)
        return store

    def stop(self, name: str) -> None:
        self.bus.unbind(name)
        self.stores.pop(name).close()


def apply_step(view: RingView, kind: str, name: str, rf: int) -> RingView | None:
    """The view's own transition for a step (None when the view refuses or has nothing to
    do: a join of a member, a leave below RF, a death of the last member)."""
    if kind == "join":
        return join(view, name)
    if kind == "leave":
        try:
            return leave(view, name, rf)
        except ConfigError:
            return None
    return mark_down(view, name)


@given(st.sets(st.sampled_from(NAMES), min_size=1, max_size=6),
       st.integers(min_value=1, max_value=3), facts_strategy, steps_strategy,
       st.integers(min_value=1, max_value=7))
@settings(max_examples=15, deadline=None)
def test_moves_end_where_a_fresh_hive_would_be(
    start: set[str], rf: int, contents: list[str], steps: list[tuple[str, str]], page: int
) -> None:
    if rf == 1:  # at RF=1 a death loses data by definition; only planned moves then
        steps = [(k, n) for k, n in steps if k in ("join", "leave")]
    facts = [HiveFact(content=c) for c in contents]
    bus = LocalEventBus(strict=True, max_workers=4)
    cluster = Cluster(bus)
    try:
        view = initial(start)
        for name in view.current:
            cluster.start(name)
        for agent, batch in place(facts, ring(view.current, rf)).items():
            cluster.stores[agent].put(batch)

        applied = 0
        for kind, name in steps:
            moving = apply_step(view, kind, name, rf)
            if moving is None:
                continue
            applied += 1
            old, new = ring(moving.current, rf), ring(moving.target, rf)
            if kind == "join":
                cluster.start(name)
            dead: set[str] = set()
            if kind.startswith("crash"):
                cluster.stop(name)  # gone before anyone could pull from it
                dead.add(name)
            live = None if kind == "crash_unseen" else set(old.agents) - dead

            for gainer in sorted(gainers(old, new)):
                client = ShardClient("h", bus, sender=gainer, timeout=TIMEOUT)
                report = pull_gains(client, cluster.stores[gainer], gainer, old, new,
                                    live=live, timeout=TIMEOUT, page=page)
                assert report.complete, report
                assert gainer not in report.sources
                assert not set(report.sources) & dead
                if kind == "crash_unseen":
                    assert set(report.failed) <= dead
                else:
                    assert not report.failed
                    assert set(report.skipped) <= dead

            for member in moving.target:
                store = cluster.stores[member]
                for drop in stale_roles(list(store.records()), member, new):
                    store.drop(drop.fact_id, drop.terms, drop.primary)
            for gone in set(moving.current) - set(moving.target) - dead:
                cluster.stop(gone)  # decommissioned: its store is discarded after the move

            flipped = flip(moving)
            assert flipped is not None
            view = flipped
            assert set(cluster.stores) == set(view.current)
        assume(applied > 0)

        final = ring(view.current, rf)
        expected = {agent: roles(batch.records()) for agent, batch in place(facts, final).items()}
        by_id: dict[str, dict] = {}
        for f in facts:
            by_id.setdefault(f.fact_id, f.to_dict())  # place keeps a batch's first copy
        for member, store in cluster.stores.items():
            held = list(store.records())
            assert roles(held) == expected.get(member, set()), member
            for rec in held:
                assert rec.fact == by_id[rec.fact_id]
            assert store.count() == sum(1 for _, _, primary in expected.get(member, ())
                                        if primary)
    finally:
        bus.close()


def test_stale_roles_names_exactly_the_roles_a_shard_lost() -> None:
    """After a join, an old owner drops just the terms and primaries the joiner took over,
    and keeps everything it still owns (a record may lose some roles and keep others)."""
    facts = [HiveFact(content=" ".join(WORDS[i:i + 4])) for i in range(len(WORDS) - 3)]
    old, new = ring(["a1", "b2"], 1), ring(["a1", "b2", "c3"], 1)
    placed_old, placed_new = place(facts, old), place(facts, new)
    for member in ("a1", "b2"):
        records = placed_old[member].records()
        drops = {(d.fact_id, d.terms, d.primary) for d in stale_roles(records, member, new)}
        keep = roles(placed_new[member].records()) if member in placed_new else set()
        want = set()
        for fid, terms, primary in roles(records):
            kept = next((k for k in keep if k[0] == fid), (fid, frozenset(), False))
            lost = (fid, terms - kept[1], primary and not kept[2])
            if lost[1] or lost[2]:
                want.add(lost)
        assert drops == want
    assert any(stale_roles(placed_old[m].records(), m, new) for m in ("a1", "b2"))
