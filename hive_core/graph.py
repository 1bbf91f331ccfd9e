"""The HiveGraph API and its single-memory implementation.

``HiveGraph`` keeps the method names users of the original system know. ``BaseHiveGraph``
holds what every implementation shares (agent registry, promotion rules, federation), so
``InMemoryHiveGraph`` (every fact in one shard) and
:class:`~hive_core.distributed.DistributedHiveGraph` (facts on the ring) differ only in where
facts are stored and how they are searched.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Protocol, runtime_checkable

from hive_core.config import DEFAULTS, CoreSettings
from hive_core.facts import HiveAgent, HiveEdge, HiveFact
from hive_core.federation import Federation
from hive_core.placement import place
from hive_core.ring import HashRing
from hive_core.scoring import Bm25
from hive_core.search import SearchResult, search_single_store
from hive_core.store.memory import MemoryShardStore
from hive_core.text import key_terms, overlap


@runtime_checkable
class HiveGraph(Protocol):
    def register_agent(self, agent_id: str, domain: str = "", trust: float = 1.0) -> None: ...
    def unregister_agent(self, agent_id: str) -> None: ...
    def get_agent(self, agent_id: str) -> HiveAgent | None: ...
    def list_agents(self) -> list[HiveAgent]: ...
    def update_trust(self, agent_id: str, trust: float) -> None: ...
    def promote_fact(self, agent_id: str, fact: HiveFact) -> str: ...
    def get_fact(self, fact_id: str) -> HiveFact | None: ...
    def query_facts(self, query: str, limit: int = 20) -> list[HiveFact]: ...
    def search(
        self, query: str, limit: int = 10, asking_agent: str | None = None
    ) -> SearchResult: ...
    def retract_fact(self, fact_id: str) -> bool: ...
    def add_edge(self, edge: HiveEdge) -> None: ...
    def get_edges(self, fact_id: str) -> list[HiveEdge]: ...
    def check_contradictions(self, content: str, concept: str) -> list[HiveFact]: ...
    def route_query(self, query: str) -> list[str]: ...
    def set_parent(self, parent: Any) -> None: ...
    def add_child(self, child: Any) -> None: ...
    def escalate_fact(self, fact: HiveFact) -> bool: ...
    def broadcast_fact(self, fact: HiveFact) -> int: ...
    def query_federated(self, query: str, limit: int = 20) -> list[HiveFact]: ...
    def get_stats(self) -> dict[str, Any]: ...
    def close(self) -> None: ...


class BaseHiveGraph(ABC):
    """Agent registry, promotion and federation; storage is the subclass's."""

    def __init__(self, hive_id: str, settings: CoreSettings = DEFAULTS) -> None:
        self.hive_id = hive_id
        self.settings = settings
        self._agents: dict[str, HiveAgent] = {}
        self._lock = threading.RLock()
        self.federation = Federation(self)

    # -- storage primitives the subclasses provide ------------------------------------------
    @abstractmethod
    def _store(self, facts: Sequence[HiveFact], via: str | None = None) -> list[str]:
        """Place ``facts`` in the hive; ``via`` is the agent sending them, if any.

        Returns the shards that missed their copy (every fact still reached a live owner for
        each of its roles, or this raises).
        """

    @abstractmethod
    def search(
        self, query: str, limit: int = 10, asking_agent: str | None = None
    ) -> SearchResult: ...

    @abstractmethod
    def get_fact(self, fact_id: str) -> HiveFact | None: ...

    @abstractmethod
    def retract_fact(self, fact_id: str) -> bool: ...

    @abstractmethod
    def add_edge(self, edge: HiveEdge) -> None: ...

    @abstractmethod
    def get_edges(self, fact_id: str) -> list[HiveEdge]: ...

    @abstractmethod
    def route_query(self, query: str) -> list[str]: ...

    @abstractmethod
    def _shard_counts(self) -> dict[str, int]: ...

    def close(self) -> None:
        """Release resources (nothing for the base)."""
        return None

    # -- agents -------------------------------------------------------------------------------
    def register_agent(self, agent_id: str, domain: str = "", trust: float = 1.0) -> None:
        with self._lock:
            if agent_id in self._agents:
                raise ValueError(f"agent {agent_id!r} is already registered in {self.hive_id}")
            self._agents[agent_id] = HiveAgent(agent_id, domain=domain, trust=trust)

    def unregister_agent(self, agent_id: str) -> None:
        with self._lock:
            self._require(agent_id)
            del self._agents[agent_id]

    def _require(self, agent_id: str) -> HiveAgent:
        agent = self._agents.get(agent_id)
        if agent is None:
            raise KeyError(f"agent {agent_id!r} is not registered in {self.hive_id}")
        return agent

    def get_agent(self, agent_id: str) -> HiveAgent | None:
        return self._agents.get(agent_id)

    def list_agents(self) -> list[HiveAgent]:
        return sorted(self._agents.values(), key=lambda a: a.agent_id)

    def update_trust(self, agent_id: str, trust: float) -> None:
        with self._lock:
            self._agents[agent_id] = replace(self._require(agent_id), trust=trust)

    # -- facts --------------------------------------------------------------------------------
    def promote_fact(self, agent_id: str, fact: HiveFact) -> str:
        """Store ``fact`` for ``agent_id``; returns its (content-addressed) id.

        The same content promoted twice is one fact with one id. A fact at or above the
        escalation confidence is also escalated to the parent hive, if any.
        """
        return self.promote_facts(agent_id, [fact])[0]

    def promote_facts(self, agent_id: str, facts: Sequence[HiveFact]) -> list[str]:
        """Batch form of :meth:`promote_fact`: one message per destination shard."""
        return self.promote_facts_report(agent_id, facts)[0]

    def promote_facts_report(
        self, agent_id: str, facts: Sequence[HiveFact]
    ) -> tuple[list[str], list[str]]:
        """:meth:`promote_facts` that also says which shards missed their copy.

        A dead replica does not fail the write while each fact still reached a live owner for
        every role; the caller (an agent's LEARN reply) reports those shards to the user.
        """
        with self._lock:
            agent = self._require(agent_id)
            self._agents[agent_id] = replace(agent, fact_count=agent.fact_count + len(facts))
        stamped = [f if f.source_agent else f.with_source(agent_id) for f in facts]
        failed = self._store(stamped, via=agent_id)
        for fact in stamped:
            if fact.confidence >= self.settings.escalation_confidence:
                self.federation.escalate(fact)
        return [f.fact_id for f in stamped], failed

    def store_federated(self, fact: HiveFact) -> None:
        """Store a fact that arrived from another hive (no agent, no re-escalation)."""
        self._store([fact])

    def query_facts(self, query: str, limit: int = 20) -> list[HiveFact]:
        return self.search(query, limit=limit).facts

    def check_contradictions(self, content: str, concept: str) -> list[HiveFact]:
        """Live facts on the same concept that say something different about it.

        Same (case-insensitive) concept, different content, and enough shared terms
        (Jaccard >= 0.3) to be about the same thing: e.g. two deadlines of one project.
        """
        if not concept:
            return []
        terms = key_terms(content)
        probe = HiveFact(content=content)
        out = []
        for fact in self.search(f"{concept} {content}", limit=20).facts:
            if fact.concept.casefold() != concept.casefold():
                continue
            if fact.content_hash == probe.content_hash:
                continue
            if overlap(terms, key_terms(fact.content)) >= 0.3:
                out.append(fact)
        return out

    # -- federation ---------------------------------------------------------------------------
    def set_parent(self, parent: BaseHiveGraph | None) -> None:
        """Link this hive under ``parent`` (None detaches); it leaves its old parent."""
        self.federation.set_parent(parent)

    def add_child(self, child: BaseHiveGraph) -> None:
        """Same link as ``child.set_parent(self)``: the child's parent pointer owns it."""
        self.federation.add_child(child)

    def escalate_fact(self, fact: HiveFact) -> bool:
        return self.federation.escalate(fact)

    def broadcast_fact(self, fact: HiveFact) -> int:
        return self.federation.broadcast(fact)

    def query_federated(self, query: str, limit: int = 20) -> list[HiveFact]:
        """This hive and the tree around it, merged so a broadcast fact counts once."""
        return self.federation.query(query, limit)

    def get_stats(self) -> dict[str, Any]:
        shards = self._shard_counts()
        return {
            "hive_id": self.hive_id,
            "agents": len(self._agents),
            "shards": shards,
            "replica_facts": sum(shards.values()),
            "parent": self.federation.parent.hive_id if self.federation.parent else None,
            "children": [c.hive_id for c in self.federation.children],
        }


class InMemoryHiveGraph(BaseHiveGraph):
    """Every fact in one shard: for small hives, tests, and as the "one big memory" baseline."""

    SHARD = "local"

    def __init__(self, hive_id: str = "hive", settings: CoreSettings = DEFAULTS) -> None:
        super().__init__(hive_id, settings)
        self.store = MemoryShardStore(self.SHARD, bm25=Bm25.from_settings(settings))
        self._ring = HashRing([self.SHARD], replication_factor=1)

    def _store(self, facts: Sequence[HiveFact], via: str | None = None) -> list[str]:
        if facts:
            self.store.put(place(facts, self._ring)[self.SHARD])
        return []

    def search(
        self, query: str, limit: int = 10, asking_agent: str | None = None
    ) -> SearchResult:
        result = search_single_store(self.store, query, limit, self.settings)
        return result

    def get_fact(self, fact_id: str) -> HiveFact | None:
        return self.store.get(fact_id)

    def retract_fact(self, fact_id: str) -> bool:
        return self.store.retract(fact_id)

    def add_edge(self, edge: HiveEdge) -> None:
        self.store.add_edge(edge)

    def get_edges(self, fact_id: str) -> list[HiveEdge]:
        return self.store.get_edges(fact_id)

    def route_query(self, query: str) -> list[str]:
        return [self.SHARD]

    def _shard_counts(self) -> dict[str, int]:
        return {self.SHARD: self.store.count()}
