"""DistributedHiveGraph: the HiveGraph on a consistent-hash ring of agent shards.

Composition root of the memory: a :class:`~hive_core.ring.HashRing` decides owners,
:mod:`~hive_core.placement` turns facts into per-shard records, every cross-shard request is
an envelope on a :class:`~hive_core.transports.base.ShardTransport` (the in-process
``LocalEventBus`` by default), and :mod:`~hive_core.search` ranks exactly like one big memory
while asking at most ``query_fanout`` shards.

Failure handling: every request has a deadline; a shard that fails or times out is listed in
``SearchResult.shards_failed`` (``partial=True``) and is avoided as a replica for a short
while (a suspicion, as in SWIM) so later questions route around it.

A living ring: an agent process feeds the graph its hive's ring view (:meth:`set_rings`,
see :mod:`hive_core.membership.view`). Reads route on the *current* ring, writes go to the
owners of the current and the *target* ring while a move is under way, and every message
carries the view's epoch. A shard with a newer view refuses writes placed under an older
one (StaleEpoch); the graph then asks ``on_stale`` to refresh its view and places the batch
again, so no write lands only where the old ring put it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from hive_core import context, gossip, multihop
from hive_core.config import DEFAULTS, CoreSettings
from hive_core.errors import ConfigError, StaleEpoch, TransportError
from hive_core.facts import HiveEdge, HiveFact
from hive_core.federated_search import WorldStats, pool_context, with_world_df
from hive_core.graph import BaseHiveGraph
from hive_core.late_stores import store_patiently
from hive_core.messages import MessageType
from hive_core.placement import handoff, index_keys
from hive_core.placement_writes import Round, check_coverage, place_rounds, record_rounds
from hive_core.query import parse
from hive_core.ring import HashRing, MovingRing
from hive_core.scoring import Bm25, CorpusStats
from hive_core.search import (
    SearchResult,
    group_by_shard,
    ranked_search,
    route_terms,
    shape,
    with_context,
)
from hive_core.semantic.retrieval import SemanticIndex, pool_for
from hive_core.shard_client import Call, ShardClient
from hive_core.shard_server import ShardServer
from hive_core.store.base import ScoredFact, ShardStore
from hive_core.store.registry import check_name, open_store
from hive_core.transports.base import ShardTransport
from hive_core.transports.local import LocalEventBus

StoreFactory = Callable[[str], ShardStore]
SUSPECT_SECONDS = 5.0
# Seconds a search waits for the members' collection statistics (a small count each, asked
# at most every collection_ttl): a member slower than that counts with its last known part,
# so a hung one costs a refresh at most this, not the whole search deadline.
COLLECTION_WAIT = 1.0
STALE_RETRIES = 3  # a write or search re-placed after as many view refreshes, then fails


class DistributedHiveGraph(BaseHiveGraph):
    """Facts placed on RF ring owners; questions routed to <= ``query_fanout`` shards."""

    def __init__(
        self,
        hive_id: str = "hive",
        replication_factor: int | None = None,
        query_fanout: int | None = None,
        shard_backend: str = "memory",
        storage_path: str | Path | None = None,
        transport: ShardTransport | None = None,
        *,
        settings: CoreSettings = DEFAULTS,
        search_timeout: float | None = None,
        store_factory: StoreFactory | None = None,
    ) -> None:
        changes: dict[str, Any] = {}
        if replication_factor is not None:
            changes["replication_factor"] = replication_factor
        if query_fanout is not None:
            changes["query_fanout"] = query_fanout
        if search_timeout is not None:
            changes["search_timeout"] = search_timeout
        settings = replace(settings, **changes) if changes else settings
        if settings.replication_factor < 1 or settings.query_fanout < 1:
            raise ConfigError("replication_factor and query_fanout must be >= 1")
        super().__init__(hive_id, settings)
        self.bm25 = Bm25.from_settings(settings)
        self.ring = HashRing(virtual_nodes=settings.virtual_nodes,
                             replication_factor=settings.replication_factor)
        # Set while the ring moves (set_rings): the owners of the current and target rings.
        self._moving: MovingRing | None = None
        self.epoch = 0  # the ring view's epoch; 0 = no view (an in-process hive)
        # Called with a receiver's newer epoch; must refresh the view (set_rings) or raise.
        self.on_stale: Callable[[int], None] | None = None
        # Called with the facts an agent of this process just placed (before its LEARN is
        # acknowledged): an agent process's federation escalates from here.
        self.on_promoted: Callable[[list[HiveFact]], None] | None = None
        self.semantic: SemanticIndex | None = None  # set to turn hive_core.semantic on
        self._owns_transport = transport is None
        self.transport: ShardTransport = transport or LocalEventBus()

        self._servers: dict[str, ShardServer] = {}
        self._direct: tuple[tuple[int, int], Mapping[str, ShardServer]] | None = None
        self._suspects: dict[str, float] = {}
        self.write_failures: list[str] = []
        self.gossip_failures: list[str] = []
        self.gossip_gate = gossip.QuietGate()  # rounds wait for a shard's writes to pause
        self._make_store = store_factory or self._backend_factory(shard_backend, storage_path)
        self._client_name = f"{hive_id}/client"
        # Collection statistics of an agent process (see collection()).
        self._collection = CorpusStats()
        self._collection_at: float | None = None
        self._collection_changes = -1  # the local shards' write counter when last fetched
        self._collection_parts: dict[str, CorpusStats] = {}

    def _backend_factory(self, backend: str, storage_path: str | Path | None) -> StoreFactory:
        check_name(backend)
        root = Path(storage_path) if storage_path is not None else None
        if backend == "kuzu" and root is None:
            raise ConfigError("shard_backend='kuzu' needs a storage_path")

        def make(agent_id: str) -> ShardStore:
            return open_store(backend, agent_id, bm25=self.bm25, settings=self.settings,
                              path=None if root is None else root / agent_id,
                              shards_in_process=len(self._servers) + 1)

        return make

    # -- membership ---------------------------------------------------------------------------
    def register_agent(self, agent_id: str, domain: str = "", trust: float = 1.0) -> None:
        super().register_agent(agent_id, domain, trust)
        server = ShardServer(agent_id, self._make_store(agent_id), self._current_ring)
        self._servers[agent_id] = server
        self.transport.bind(agent_id, server.handle)
        old = self.ring.copy()
        self.ring.add_agent(agent_id)
        self._rebalance(old, [a for a in self._servers if a != agent_id])

    def add_remote_agent(self, agent_id: str, domain: str = "", trust: float = 1.0) -> None:
        """Add a member whose shard lives in another process (reached over the transport).

        Only the ring and the registry change: no local store, no hand-off. An agent process
        builds its view of the hive this way, one local shard plus every configured peer.
        """
        super().register_agent(agent_id, domain, trust)
        self.ring.add_agent(agent_id)

    def add_local_agent(
        self, agent_id: str, store: ShardStore, domain: str = "", *, bind: bool = True
    ) -> ShardServer:
        """Add a member whose shard is ``store`` in this process, without hand-off.

        Used by an agent process for its own shard (peers join with ``add_remote_agent``);
        requests from this agent to its own shard bypass the transport. With ``bind=False``
        the caller binds its own handler (wrapping the returned server) once it is ready to
        serve, which is how an agent process makes "socket up" mean "ready".
        """
        super().register_agent(agent_id, domain)
        server = ShardServer(agent_id, store, self._current_ring)
        self._servers[agent_id] = server
        if bind:
            self.transport.bind(agent_id, server.handle)
        self.ring.add_agent(agent_id)
        return server

    def unregister_agent(self, agent_id: str) -> None:
        if agent_id not in self._servers:
            super().unregister_agent(agent_id)
            self.ring.remove_agent(agent_id)
            return
        super().unregister_agent(agent_id)
        old = self.ring.copy()
        self.ring.remove_agent(agent_id)
        self._rebalance(old, list(self._servers))
        self.transport.unbind(agent_id)
        self._servers.pop(agent_id).store.close()

    def set_rings(self, epoch: int, current: HashRing, target: HashRing) -> None:
        """Adopt a ring view: reads route on ``current``; writes also reach ``target``'s
        owners while the two differ. No data moves here (hive_core.membership does that).
        The caller builds the rings (the ring keeper keeps them per view)."""
        ring = current
        moving = None if target.agents == current.agents else MovingRing(current, target)
        for agent in current.agents | target.agents:
            if agent not in self._agents:
                BaseHiveGraph.register_agent(self, agent)
        # In this order (a tuple assignment binds left to right): a writer that reads the
        # epoch first and the rings after may place by a newer ring than its epoch says
        # (refused as stale, placed again) but never label an old placement with the new
        # epoch; and a write ring read half-way is the old moving ring (a superset of the
        # owners) or a ring that matches the old epoch.
        self.ring, self._moving, self.epoch = ring, moving, epoch

    @property
    def write_ring(self) -> HashRing | MovingRing:
        """Where writes go: the moving ring during a move, else the ring."""
        return self._moving or self.ring

    def _current_ring(self) -> HashRing:
        return self.ring

    def _rebalance(self, old: HashRing, holders: Sequence[str]) -> None:
        """Each holder hands the roles it no longer (solely) owns to their new owners."""
        for holder in holders:
            server = self._servers[holder]
            sends, drops = handoff(server.store.records(), holder, old, self.ring)
            client = self.client_for(holder)
            failed = self._send(client, record_rounds(sends))
            if failed:  # dropping roles now could lose their only copy
                raise TransportError(f"hand-off failed on shard(s) {', '.join(sorted(failed))}")
            for d in drops:
                server.store.drop(d.fact_id, d.terms, d.primary)

    def _send(self, client: ShardClient, rounds: Sequence[Round],
              stale: dict[str, int] | None = None,
              reasons: dict[str, str] | None = None) -> set[str]:
        """Deliver batches (one message per shard per round); returns the shards that failed
        (recorded in ``write_failures`` and suspected; why, in ``reasons`` if given). With
        ``stale`` given, shards that refused as stale go there (shard -> their epoch)
        instead, for the caller to retry."""
        failed: set[str] = set()
        for per_shard in rounds:
            # a timed-out store is sent again with more time (hive_core.late_stores)
            results = store_patiently(client, per_shard, self.settings.store_timeout)
            for agent, res in results.items():
                if isinstance(res, StaleEpoch) and stale is not None:
                    stale[agent] = max(res.epoch, stale.get(agent, 0))
                elif isinstance(res, TransportError):
                    failed.add(agent)
                    if reasons is not None:
                        reasons[agent] = str(res)
        if failed:
            self.write_failures.extend(sorted(failed))
            self._suspect(failed)
        return failed

    def _refresh_view(self, used: int, newer: int) -> bool:
        """A shard at epoch ``newer`` refused what was routed at epoch ``used``: bring the
        view up to date; True if it is now newer than ``used`` (so routing again helps).
        Another thread may have refreshed it meanwhile, which counts too."""
        if self.on_stale is not None and self.epoch < newer:
            self.on_stale(newer)
        return self.epoch > used

    def client_for(self, agent_id: str | None) -> ShardClient:
        """A client sending as ``agent_id`` (a local shard, reached without the transport)
        or as the hive itself; its messages carry the current epoch."""
        sender = agent_id if agent_id is not None and agent_id in self._servers \
            else self._client_name
        return ShardClient(self.hive_id, self.transport, sender=sender, local=self._servers,
                           timeout=self.settings.search_timeout, epoch=self.epoch,
                           direct=self._delivered_here())

    def _delivered_here(self) -> Mapping[str, ShardServer]:
        """The servers the transport would hand a message to in this process, unchanged: a
        direct call is the same delivery without the thread hand-off (promote_fact at
        N=100: ~4,300 facts/s instead of ~840). A bus that round-trips JSON, a handler bound
        in a server's place (a test's fault) or another transport: not these. Cached until
        the bus binds or unbinds (its ``version``) or the shards here change."""
        bus = self.transport
        if not isinstance(bus, LocalEventBus) or bus.strict:
            return {}
        key = (bus.version, len(self._servers))
        cached = self._direct
        if cached is not None and cached[0] == key:
            return cached[1]
        here = MappingProxyType({s: server for s, server in list(self._servers.items())
                                 if bus.handler(s) == server.handle})
        self._direct = (key, here)
        return here

    @property
    def _client(self) -> ShardClient:
        return self.client_for(None)

    def _suspect(self, agents: Sequence[str] | set[str]) -> None:
        self.suspect(agents)

    def suspect(self, agents: Sequence[str] | set[str], seconds: float = SUSPECT_SECONDS) -> None:
        """Route reads around ``agents`` for ``seconds`` (a failure seen, or a membership
        service saying they are not live). Writes still go to every owner and report them."""
        until = time.monotonic() + seconds
        for agent in agents:
            self._suspects[agent] = max(until, self._suspects.get(agent, 0.0))

    def _avoid(self) -> frozenset[str]:
        now = time.monotonic()
        return frozenset(a for a, until in self._suspects.items() if until > now)

    # -- facts --------------------------------------------------------------------------------
    def _store(self, facts: Sequence[HiveFact], via: str | None = None) -> list[str]:
        """Write to every owner; succeed if each role of each fact reached a live owner.

        A dead replica costs redundancy, not the fact, so it is reported (returned, listed in
        ``write_failures``, suspected) rather than failing the batch. If some fact lost every
        owner of its primary role or of one of its terms, it would be unfindable: that raises.
        """
        for attempt in range(STALE_RETRIES + 1):
            # The client (and the epoch its messages carry) before the ring: set_rings
            # assigns the epoch last, so a batch is never labelled newer than its placement.
            client = self.client_for(via)
            used, ring = client.epoch, self.write_ring
            if not len(ring):
                raise ConfigError(f"hive {self.hive_id!r} has no agents to hold facts")
            rounds = place_rounds(facts, ring)
            stale: dict[str, int] = {}
            reasons: dict[str, str] = {}
            failed = self._send(client, rounds, stale, reasons)
            # Placed under an old view: refresh and place again (stores are idempotent, so
            # the shards that did take the batch take it again harmlessly).
            if not stale or attempt == STALE_RETRIES or not self._refresh_view(
                    used, max(stale.values())):
                break
        if stale:
            raise StaleEpoch(f"shard(s) {', '.join(sorted(stale))} are at a newer ring epoch "
                             f"({max(stale.values())}) than this agent ({self.epoch}) after "
                             f"{STALE_RETRIES} refreshes", max(stale.values()))
        if failed:
            check_coverage(rounds, failed, reasons)
        return sorted(failed)

    def promote_facts_report(
        self, agent_id: str, facts: Sequence[HiveFact]
    ) -> tuple[list[str], list[str]]:
        ids, failed = super().promote_facts_report(agent_id, facts)
        if self.on_promoted is not None and facts:
            self.on_promoted([f if f.source_agent else f.with_source(agent_id) for f in facts])
        return ids, failed

    def store_federated_facts(self, facts: Sequence[HiveFact], via: str | None = None
                              ) -> list[str]:
        """Facts from another hive of a federation, placed on this ring like any fact (no
        agent's count, no escalation: the receiving agent's federation decides what goes
        on). Returns the shards that missed a copy; raises if a fact reached no owner."""
        return self._store(list(facts), via=via)

    def collection(self, asking_agent: str | None = None,
                   deadline: float | None = None) -> CorpusStats:
        """The hive's collection statistics: its live facts and their total length, summed
        over the agents' primaries (each fact has one primary, whatever the ring).

        Exact and fresh when every member's shard is in this process (the library hive).
        An agent process asks the live members for their parts when it searches, at most
        every ``collection_ttl`` seconds -- and at once when its own shard changed since (a
        learn spreads facts over most shards, so the hive's statistics are fresh right
        after one); a member that does not answer within ``COLLECTION_WAIT`` (or the asker's
        ``deadline``) counts with its last known part, and so does a suspected one, without
        being asked: a hung peer must not cost every question its whole search deadline.
        """
        members = sorted(self.ring.agents)
        if all(m in self._servers for m in members):
            return sum((self._servers[m].collection_part() for m in members), CorpusStats())
        now = time.monotonic()
        changes = sum(server.store.changes() for server in self._servers.values())
        # While the ring moves, shards change with hand-offs, not learning, and the parts
        # are summed over a ring in flux: keep the statistics the move started with.
        fresh = changes == self._collection_changes or self._moving is not None
        if self._collection_at is not None and fresh and \
                now - self._collection_at < self.settings.collection_ttl:
            return self._collection
        self._collection_changes = changes
        parts = self._collection_parts
        for m in members:
            if m in self._servers:
                parts[m] = self._servers[m].collection_part()
        avoid = self._avoid()
        remote = [m for m in members if m not in self._servers and m not in avoid]
        calls = {m: (MessageType.SHARD_QUERY, {"op": "collection"}) for m in remote}
        client = self.client_for(asking_agent)
        client.deadline = deadline
        for member, res in client.call_many(calls, COLLECTION_WAIT).items():
            if not isinstance(res, TransportError):
                parts[member] = CorpusStats(int(res["docs"]), int(res["length"]))
        self._collection = sum((parts.get(m, CorpusStats()) for m in members), CorpusStats())
        self._collection_at = now
        return self._collection

    def search(
        self, query: str, limit: int = 10, asking_agent: str | None = None,
        timeout: float | None = None, world: WorldStats | None = None,
        fetched: dict[str, list[ScoredFact]] | None = None, hop: multihop.Hop | None = None,
    ) -> SearchResult:
        """Ranked search (hive_core.search). With ``timeout`` (an asker that waits that many
        seconds), every shard request of the search ends by then: one asked too late fails
        and is listed, so the result is partial instead of late.

        For a federated question (hive_core.federated_search): ``world``, the statistics of
        several hives summed, to score with instead of this hive's own; ``fetched``, a dict
        to fill with the neighbour facts of the whole pool -- then the candidate pool comes
        back as ranked, ``limit`` facts (the asker's pool size), neither re-ranked (by context
        or meaning) nor shaped: the asker does that once, on the pools of all hives merged."""
        deadline = None if timeout is None else time.monotonic() + timeout
        parsed = parse(query)
        fanout = self.settings.query_fanout
        semantic = self.semantic if hop is None and fetched is None else None
        chain, routed = multihop.plan(  # a two-hop question keeps a shard for its second hop
            parsed, fanout, hop, searched=world is None and fetched is None)
        emphasis = parsed.emphasis(self.settings.anchor_boost)
        bm25 = self.bm25.for_collection(
            world.collection if world is not None else self.collection(asking_agent, deadline))
        for attempt in range(STALE_RETRIES + 1):
            client = self.client_for(asking_agent)
            client.deadline = deadline
            # Every term gets a shard for its df (the routed ones first, so they are placed
            # as before); only the routed ones are searched for candidates.
            route = multihop.pinned(self._route(parsed.terms, asking_agent,
                                                asked=multihop.asked(hop)), hop)
            stats = client.stats if world is None else with_world_df(client.stats, world)
            result = ranked_search(route, stats, client.score, bm25, limit if fetched is not
                                   None else pool_for(semantic, parsed, limit), emphasis, routed)
            fetch = self._context_fetch(client, result, asking_agent)
            if semantic is not None:  # re-ranks result in place
                fetch = semantic.relation_rerank(query)(result, fetch)
            if fetched is None:
                result = shape(with_context(result, fetch), parsed, limit)
            else:
                fetched.clear()
                fetched.update(pool_context(result, fetch))
        # A shard that may have dropped what an old ring routed to it refused: refresh
            # the view and route again.
            if not client.stale_epoch or attempt == STALE_RETRIES or not self._refresh_view(
                    client.epoch, client.stale_epoch):
                break
        # Suspect the shards that failed, not those only left unasked for lack of time.
        failed = [s for s in result.shards_failed if s not in client.out_of_time]
        if failed:
            self._suspect(failed)
        if chain is not None:  # the second hop of a two-hop question (hive_core.multihop)
            first = result

            def second_hop(question: str, finding: list[str]) -> SearchResult | None:
                hop = self.plan_hop(finding, first.shards_searched, asking_agent)
                return None if hop is None else self.search(
                    question, limit, asking_agent, multihop.left(deadline), hop=hop)

            result = multihop.follow(chain, first, limit, fanout, second_hop)
        return result

    def plan_hop(self, finding: Sequence[str], searched: Sequence[str],
                 asking_agent: str | None) -> multihop.Hop | None:
        """A two-hop question's second hop, routed preferring the shards its first hop
        ``searched`` (None: past ``query_fanout``; hive_core.multihop.planned)."""
        return multihop.planned(finding, searched, self.settings.query_fanout,
                                lambda t, a: self._route(t, asking_agent, asked=a))

    def world_stats(self, query: str, asking_agent: str | None = None,
                    timeout: float | None = None) -> tuple[WorldStats, list[str]]:
        """This hive's part of a federated question's statistics: its collection and the df
        of every term of ``query`` (one stats round, routed as :meth:`search` routes), and
        the shards that failed (their terms count as absent: the result is then partial)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        collection = self.collection(asking_agent, deadline)
        client = self.client_for(asking_agent)
        client.deadline = deadline
        route = self._route(parse(query).terms, asking_agent)
        stats, failures = client.stats(group_by_shard(route))
        return WorldStats(collection, {t: s.df for t, s in stats.items()}), sorted(failures)

    def _context_fetch(self, client: ShardClient, result: SearchResult,
                       asking_agent: str | None) -> context.Fetch:
        """Fetch for :func:`~hive_core.search.with_context`: each position key from one of
        its owners (the asker, then shards this question already asked), in one round."""
        def fetch(keys: Sequence[str]
                  ) -> tuple[dict[str, list[ScoredFact]], dict[str, str], list[str]]:
            by_shard = group_by_shard(self._route(keys, asking_agent,
                                                  also_avoid=result.shards_failed))
            hits, failed = client.neighbours(by_shard, result.weights, result.avgdl)
            return hits, failed, list(by_shard)
        return fetch

    def route_query(self, query: str) -> list[str]:
        terms = parse(query).routed(self.settings.query_fanout)
        return sorted(set(self._route(terms).values()))

    def _route(self, terms: Sequence[str], asking_agent: str | None = None, *,
               asked: Sequence[str] = (), also_avoid: Sequence[str] = ()) -> dict[str, str]:
        """Each term's shard on this ring (hive_core.search.route_terms): the asker or a
        shard already ``asked`` first, never a suspected one (nor ``also_avoid``)."""
        return route_terms(terms, self.ring.get_agents, prefer=asking_agent,
                           avoid=self._avoid() | frozenset(also_avoid), asked=asked)

    def _ask_owners(self, key: str, payload: dict[str, Any]) -> list[dict[str, Any]]:
        owners = self.ring.get_agents(key)
        results = self._client.call_many({o: (MessageType.SHARD_QUERY, payload) for o in owners})
        return [r for r in results.values() if not isinstance(r, TransportError)]

    def get_fact(self, fact_id: str) -> HiveFact | None:
        for res in self._ask_owners(fact_id, {"op": "get", "fact_id": fact_id}):
            if res["fact"] is not None:
                return HiveFact.from_dict(res["fact"])
        return None

    def retract_fact(self, fact_id: str) -> bool:
        fact = self.get_fact(fact_id)
        if fact is None:
            return False
        holders = set(self.ring.get_agents(fact_id))
        for key in index_keys(fact):
            holders.update(self.ring.get_agents(key))
        calls = {h: (MessageType.SHARD_DELETE, {"retract": [fact_id]}) for h in holders}
        results = self._client.call_many(calls, timeout=self.settings.store_timeout)
        failed = sorted(h for h, r in results.items() if isinstance(r, TransportError))
        if failed:
            raise TransportError(f"retract of {fact_id} failed on shard(s) {', '.join(failed)}")
        return True

    def add_edge(self, edge: HiveEdge) -> None:
        holders = set(self.ring.get_agents(edge.source_id))
        holders.update(self.ring.get_agents(edge.target_id))
        calls = {h: (MessageType.SHARD_STORE, {"edges": [edge.to_dict()]}) for h in holders}
        results = self._client.call_many(calls, timeout=self.settings.store_timeout)
        failed = sorted(h for h, r in results.items() if isinstance(r, TransportError))
        if failed:
            raise TransportError(f"edge store failed on shard(s) {', '.join(failed)}")

    def get_edges(self, fact_id: str) -> list[HiveEdge]:
        edges: dict[tuple[str, str, str], HiveEdge] = {}
        for res in self._ask_owners(fact_id, {"op": "edges", "fact_id": fact_id}):
            for data in res["edges"]:
                edge = HiveEdge.from_dict(data)
                edges.setdefault(edge.key, edge)
        return [edges[k] for k in sorted(edges)]

    def _shard_counts(self) -> dict[str, int]:
        calls = {a: (MessageType.SHARD_QUERY, {"op": "count"}) for a in sorted(self.ring.agents)}
        out = {}
        for agent, res in self._client.call_many(calls).items():
            out[agent] = -1 if isinstance(res, TransportError) else int(res["count"])
        return out

    def gossip_round(
        self, agent_id: str, salt: int, peers: Collection[str] | None = None
    ) -> dict[str, int]:
        """One anti-entropy round for a local shard with every co-owner (or ``peers``):
        per-segment digests, then push-pull of what differs (hive_core.gossip).

        Returns facts moved per peer that answered (both ways); peers that failed are
        listed in ``gossip_failures`` (not an error: the next round tries again). A round
        over a shard that received placement writes since its last one is deferred and
        returns {} (``gossip_gate``; hive_core.gossip says why).
        """
        server, store = self._servers[agent_id], self._servers[agent_id].store
        if self.gossip_gate.deferring(agent_id, server.placements):
            return {}
        # The epoch before the ring (set_rings assigns it last): what peers send back is owned
        # here under it; the shard's guard holds a cleanup back while that lands.
        epoch, ring = self.epoch, self.ring
        rate = self.settings.bloom_false_positive_rate
        per_peer = gossip.digests(store.held_roles(), agent_id, ring, peers)
        client = self.client_for(agent_id)
        timeout = self.settings.store_timeout
        calls: dict[str, Call] = {
            peer: (MessageType.GOSSIP_DIGEST, {**gossip.offer(digest, ring), "salt": salt})
            for peer, digest in per_peer.items()}
        failed: list[str] = []
        repaired: dict[str, int] = {}
        pushes: dict[str, Call] = {}
        for peer, res in client.call_many(calls, timeout=timeout).items():
            if isinstance(res, TransportError):
                failed.append(peer)
                continue
            repaired[peer] = 0
            body = gossip.push(store, ring, res, salt, rate)
            if body is not None:
                pushes[peer] = (MessageType.GOSSIP_DIGEST, {**body, "salt": salt})
        for peer, res in client.call_many(pushes, timeout=timeout).items():
            if isinstance(res, TransportError):
                failed.append(peer)
                continue
            repaired[peer] = server.write(epoch, self._take_repair, store, ring, res)
        self.gossip_failures = sorted(failed)
        return repaired

    def _take_repair(self, store: ShardStore, ring: HashRing, res: dict[str, Any]) -> int:
        """A peer's phase-2 answer, stored unless the ring moved meanwhile (it may be stale
        now; the next round repairs), checked inside the guarded write."""
        if self.ring is not ring:
            return 0
        return gossip.apply_repair(store, res) + int(res.get("received", 0))

    def shard_store(self, agent_id: str) -> ShardStore:
        """The store behind one agent's shard (for inspection in tests and benchmarks)."""
        return self._servers[agent_id].store

    def close(self) -> None:
        for agent_id, server in list(self._servers.items()):
            self.transport.unbind(agent_id)
            server.store.close()
        self._servers.clear()
        if self._owns_transport:
            self.transport.close()

