"""Group hives under a root: escalation up, broadcast across, federated queries.

Rules (the same for every HiveGraph implementation):

* A fact promoted with confidence >= ``escalation_confidence`` in a hive with a parent is
  escalated: the parent stores it and broadcasts it to its *other* children, never back to the
  hive it came from. A broadcast copy is stored without escalating again.
* ``query_federated`` walks the tree from the asking hive (itself, its children, its parent and
  through the parent its siblings), visiting each hive once even if links form a cycle, and
  merges the per-hive rankings with Reciprocal Rank Fusion (k = 60).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hive_core.facts import HiveFact
from hive_core.search import rrf_merge

if TYPE_CHECKING:
    from hive_core.graph import BaseHiveGraph


class Federation:
    """The links of one hive to its parent and children."""

    def __init__(self, owner: BaseHiveGraph) -> None:
        self.owner = owner
        self.parent: BaseHiveGraph | None = None
        self.children: list[BaseHiveGraph] = []

    def set_parent(self, parent: BaseHiveGraph | None) -> None:
        if parent is self.owner:
            raise ValueError("a hive cannot be its own parent")
        self.parent = parent
        if parent is not None and self.owner not in parent.federation.children:
            parent.federation.children.append(self.owner)

    def add_child(self, child: BaseHiveGraph) -> None:
        if child is self.owner:
            raise ValueError("a hive cannot be its own child")
        if child not in self.children:
            self.children.append(child)
        if child.federation.parent is not self.owner:
            child.federation.parent = self.owner

    def escalate(self, fact: HiveFact) -> bool:
        """Send ``fact`` to the parent, which stores it and tells the other children."""
        if self.parent is None:
            return False
        self.parent.federation.receive_escalation(fact, origin=self.owner)
        return True

    def receive_escalation(self, fact: HiveFact, origin: BaseHiveGraph) -> None:
        self.owner.store_federated(fact)
        self.broadcast(fact, exclude=origin)
        # Keep climbing: a grandparent learns it too (with its own broadcast rule).
        if fact.confidence >= self.owner.settings.escalation_confidence:
            self.escalate(fact)

    def broadcast(self, fact: HiveFact, exclude: BaseHiveGraph | None = None) -> int:
        sent = 0
        for child in self.children:
            if child is exclude:
                continue
            child.store_federated(fact)
            sent += 1
        return sent

    def query(self, query: str, limit: int) -> list[HiveFact]:
        rankings: list[list[HiveFact]] = []
        visited: set[int] = set()
        pending: list[BaseHiveGraph] = [self.owner]
        while pending:
            hive = pending.pop(0)
            if id(hive) in visited:
                continue
            visited.add(id(hive))
            rankings.append(hive.search(query, limit=limit).facts)
            pending.extend(hive.federation.children)
            if hive.federation.parent is not None:
                pending.append(hive.federation.parent)
        return rrf_merge(rankings, self.owner.settings.rrf_k, limit)
