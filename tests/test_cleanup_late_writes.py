"""Once an agent says an epoch is cleaned, it holds no role the settled ring gives elsewhere.

CI once saw four old owners and two joiners all report ``cleaned_epoch == epoch`` while
their primaries summed to 1,058 instead of 960: 98 over, exactly the primaries agent a2
drops going from the 4-agent ring to the 6-agent one. The status had read a2's counts,
then a2's keeper ran its whole cleanup, then the status read the cleaned epoch. These
tests run a real Agent (its RingKeeper, ShardServer and store, memory and Kuzu) in this
process with its keeper ticked by hand, and put the other threads' work exactly where it
hurts: the cleanup between a status's counts and its ring part; a store admitted before
the move that lands after the cleanup began; a learn's local round placed before the move
and stored after the cleanup. The expected holding is computed from placement on the two
rings alone (what the shard was given, less what the settled ring gives elsewhere).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from agent_runtime.agent import Agent
from bench.cli_processes import synthetic_turns
from bench.ring_load import extract
from hive_core.config import DEFAULTS
from hive_core.facts import HiveFact
from hive_core.hive_config import AgentConfig, HiveConfig
from hive_core.membership.late_writes import WriteTracker
from hive_core.membership.store import FileViewStore, update
from hive_core.membership.view import flip, initial, join
from hive_core.messages import Envelope, MessageType
from hive_core.placement import place
from hive_core.ring import HashRing
from hive_core.store.base import StoreBatch
from hive_core.transports.local import LocalEventBus

RF = 3
OLD = ["a0", "a1", "a2", "a3"]
NEW = [*OLD, "a4", "a5"]
ME = "a2"
WAIT = 10.0  # seconds any wait on another thread may take here
# No background tick or gossip round during a test: the test ticks the keeper itself.
SETTINGS = replace(DEFAULTS, handoff_grace=0.0, ring_poll=3600.0, gossip_interval=3600.0)


def ring(names: list[str]) -> HashRing:
    return HashRing(names, virtual_nodes=SETTINGS.virtual_nodes, replication_factor=RF)


def given(facts: list[HiveFact]) -> StoreBatch:
    """What the 4-agent ring places on ME."""
    return place(facts, ring(OLD))[ME]


def kept(facts: list[HiveFact]) -> tuple[int, int]:
    """(primaries, postings) ME holds after a clean move: what it was given on the old ring
    and still owns on the new one."""
    old, new = given(facts), place(facts, ring(NEW)).get(ME)
    assert new is not None
    primaries = set(old.primary) & set(new.primary)
    postings = ({(t, f) for t, fs in old.postings.items() for f in fs}
                & {(t, f) for t, fs in new.postings.items() for f in fs})
    return len(primaries), len(postings)


def holding(status: dict) -> tuple[int, int]:
    return status["facts"], status["index_size"]


@pytest.fixture(params=["memory", "kuzu"])
def agent(request: pytest.FixtureRequest, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[Agent]:
    """ME on a settled 4-agent view (epoch 1); its peers are never started (nothing here
    sends to them)."""
    monkeypatch.setenv("AMPLIHACK_HOME", str(tmp_path / "home"))
    config = HiveConfig(name="late", shard_backend=request.param, replication_factor=RF,
                        agents=tuple(AgentConfig(n) for n in NEW),
                        storage_path=str(tmp_path / "data"))
    views = FileViewStore(config.data_dir)
    update(views, lambda v: initial(OLD) if v is None else None)
    bus = LocalEventBus()
    one = Agent(config, ME, transport=bus, settings=SETTINGS)
    one.start()
    try:
        assert one.keeper is not None and one.keeper.epoch == 1
        yield one
    finally:
        one.stop()
        bus.close()


def store_env(batch: StoreBatch, epoch: int) -> Envelope:
    return Envelope(MessageType.SHARD_STORE, "late", "a0", ME, {"batch": batch.to_wire()},
                    epoch=epoch)


def settle_on_six(one: Agent) -> int:
    """a4 and a5 join and the view flips (in the view store, as peers would do it)."""
    views = FileViewStore(one.config.data_dir)
    for name in ("a4", "a5"):
        update(views, lambda v, n=name: join(v, n) if v is not None else None)
    view = update(views, lambda v: flip(v) if v is not None else None)
    assert view is not None and view.settled
    return view.epoch


def facts_split() -> tuple[list[HiveFact], list[HiveFact]]:
    facts = list(extract(synthetic_turns(80), file_name=None).values())
    return facts[: len(facts) // 2], facts[len(facts) // 2:]


def test_a_cleanup_between_the_counts_and_the_ring_status_is_not_reported_as_done(
        agent: Agent, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = facts_split()
    everything = first + second
    reply = agent.handle(store_env(given(everything), 1))
    assert reply is not None and "added" in reply.payload, reply.payload
    epoch = settle_on_six(agent)
    keeper, store = agent.keeper, agent.server.store  # type: ignore[union-attr]
    assert keeper is not None
    count = store.count
    ran: list[bool] = []

    def count_then_clean() -> int:
        """The keeper's thread runs its whole cleanup right after the count was read."""
        n = count()
        if not ran:
            ran.append(True)
            keeper.tick()
        return n

    monkeypatch.setattr(store, "count", count_then_clean)
    st = agent.status()
    assert ran and keeper.cleaned_epoch == epoch  # the cleanup did run in between
    assert st["ring"]["settled"] and st["ring"]["epoch"] == epoch
    # Counts from before the drops must not come with the epoch those drops cleaned.
    assert st["ring"]["cleaned_epoch"] < epoch or holding(st) == kept(everything), st
    again = agent.status()
    assert again["ring"]["cleaned_epoch"] == epoch
    assert holding(again) == kept(everything)


def test_a_store_admitted_before_the_move_that_lands_after_it_is_cleaned_too(
        agent: Agent, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = facts_split()
    agent.handle(store_env(given(first), 1))
    keeper, store = agent.keeper, agent.server.store  # type: ignore[union-attr]
    assert keeper is not None
    put = store.put
    entered, release = threading.Event(), threading.Event()

    def slow_put(batch: StoreBatch) -> int:
        entered.set()
        assert release.wait(WAIT), "never released"
        return put(batch)

    monkeypatch.setattr(store, "put", slow_put)
    replies: list[Envelope | None] = []
    late = threading.Thread(target=lambda: replies.append(
        agent.handle(store_env(given(second), 1))))
    late.start()
    try:
        assert entered.wait(WAIT), "the store never reached the shard"
        epoch = settle_on_six(agent)
        keeper.tick()  # the grace is over: the keeper would clean now
        mid = agent.status()
    finally:
        release.set()
        late.join(WAIT)
    assert not late.is_alive()
    # It was admitted at epoch 1, so it was stored, and refused after the fact: the writer
    # places it again under the new view.
    assert replies and replies[0] is not None
    assert replies[0].payload.get("code") == "stale_epoch"
    monkeypatch.setattr(store, "put", put)
    st = agent.status()
    assert st["ring"]["cleaned_epoch"] < epoch or holding(st) == kept(first + second), st
    # The cleanup waited for it: a snapshot taken while it was landing would miss it.
    assert mid["ring"]["cleaned_epoch"] < epoch and mid["ring"]["writes_waiting"] == 1
    keeper.tick()
    st = agent.status()
    assert st["ring"]["cleaned_epoch"] == epoch and st["ring"]["writes_waiting"] == 0
    assert holding(st) == kept(first + second)


def test_a_local_round_placed_before_the_move_and_stored_after_the_cleanup(
        agent: Agent) -> None:
    """A learn places all its rounds first and stores them one by one (minutes, on a busy
    hive); its own shard's copy is a direct call, past every message fence."""
    first, second = facts_split()
    agent.handle(store_env(given(first), 1))
    keeper, graph = agent.keeper, agent.graph
    assert keeper is not None and graph is not None
    client = graph.client_for(ME)  # the learn's client: epoch 1
    epoch = settle_on_six(agent)
    keeper.tick()
    st = agent.status()
    assert st["ring"]["cleaned_epoch"] == epoch and holding(st) == kept(first)
    result = client.store_many({ME: given(second)})[ME]
    assert isinstance(result, dict) and result["received"] == len(given(second).facts)
    st = agent.status()
    assert st["ring"]["cleaned_epoch"] < epoch or holding(st) == kept(first + second), st
    assert st["ring"]["late_writes"] == 1
    keeper.tick()
    st = agent.status()
    assert st["ring"]["cleaned_epoch"] == epoch and holding(st) == kept(first + second)


def test_the_tracker_holds_a_cleanup_back_and_voids_it_after_a_late_write() -> None:
    tracker = WriteTracker()
    tracker.begin(3)
    assert tracker.begin_cleanup(4) is None and tracker.older_in_flight(4) == 1
    tracker.begin(4)  # a write under the settled epoch never holds its cleanup back
    tracker.end(3)
    token = tracker.begin_cleanup(4)
    assert token is not None and tracker.clean_since(token)
    tracker.end(4)
    tracker.begin(3)  # placed before the move, landing after the cleanup began
    assert not tracker.clean_since(token) and tracker.late == 1
    assert tracker.begin_cleanup(4) is None
    tracker.end(3)
    again = tracker.begin_cleanup(4)
    assert again is not None and tracker.clean_since(again)
