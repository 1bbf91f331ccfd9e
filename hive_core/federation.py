"""Group hives under a root: escalation up, broadcast across, federated queries.

Rules (the same for every HiveGraph implementation):

* A fact promoted with confidence >= ``escalation_confidence`` in a hive with a parent is
  escalated: the parent stores it and broadcasts it to its *other* children, never back to the
  hive it came from. A broadcast copy is stored without escalating again.
* ``query_federated`` walks the tree from the asking hive (itself, its children, its parent and
  through the parent its siblings), visiting each hive once even if links form a cycle, and
  merges the per-hive rankings so that **a fact counts once** (:func:`merge_once`).

One owner for the links: the child's parent pointer. A parent's list of children is changed
only by :meth:`Federation.set_parent` of the child (``add_child`` calls it), so re-parenting
moves the child out of the old parent's list in the same step. The links used to be edited
from both ends, and ``c.set_parent(a); c.set_parent(b)`` left ``a`` listing -- and asking --
``c``. The on-disk tree of the CLI follows the same rule (hive_core.federation_tree).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from hive_core.facts import HiveFact

if TYPE_CHECKING:
    from hive_core.graph import BaseHiveGraph


def merge_once(results: Sequence[tuple[Sequence[HiveFact], Sequence[float]]],
               limit: int) -> list[HiveFact]:
    """Merge per-hive rankings ``(facts best first, their scores)``, each fact once.

    Reciprocal Rank Fusion sums 1/(k + rank) over the rankings a fact appears in. Across
    hives of one tree that sum counts *copies*: an escalated fact is held by the root and
    broadcast to every group, so it collected one term per holder and a weak match held
    four times ("Osprey" for a question about Heron) beat the answer held once. Here a fact
    has its best rank among the hives (RRF with max instead of sum: 1/(k + rank) falls with
    rank, so k drops out), and facts of equal best rank are ordered by their best score
    (every hive ranked them first, so the score is what tells the answer from a hive's best
    weak match), then by fact_id for a stable order.
    """
    best: dict[str, tuple[int, float]] = {}
    facts: dict[str, HiveFact] = {}
    for ranking, scores in results:
        for rank, fact in enumerate(ranking, start=1):
            score = float(scores[rank - 1]) if rank <= len(scores) else 0.0
            old = best.get(fact.fact_id)
            if old is None:
                best[fact.fact_id] = (rank, score)
                facts[fact.fact_id] = fact
            else:
                best[fact.fact_id] = (min(old[0], rank), max(old[1], score))
    order = sorted(best, key=lambda fid: (best[fid][0], -best[fid][1], fid))[:limit]
    return [facts[fid] for fid in order]


class Federation:
    """The links of one hive to its parent and children."""

    def __init__(self, owner: BaseHiveGraph) -> None:
        self.owner = owner
        self._parent: BaseHiveGraph | None = None
        # Kept by the children's set_parent only (see the module docstring).
        self._children: list[BaseHiveGraph] = []

    @property
    def parent(self) -> BaseHiveGraph | None:
        return self._parent

    @property
    def children(self) -> list[BaseHiveGraph]:
        """The hives whose parent is this one, in the order they joined (a copy)."""
        return list(self._children)

    def set_parent(self, parent: BaseHiveGraph | None) -> None:
        """Make ``parent`` this hive's parent (None detaches): the one method that edits a
        link, so the old parent forgets this hive as the new one learns it."""
        if parent is self.owner:
            raise ValueError("a hive cannot be its own parent")
        old = self._parent
        if old is parent:
            return
        if old is not None:
            old.federation._children.remove(self.owner)
        self._parent = parent
        if parent is not None:
            parent.federation._children.append(self.owner)

    def add_child(self, child: BaseHiveGraph) -> None:
        """``child.set_parent(owner)``: a child has one parent, so it leaves its old one."""
        if child is self.owner:
            raise ValueError("a hive cannot be its own child")
        child.federation.set_parent(self.owner)

    def escalate(self, fact: HiveFact) -> bool:
        """Send ``fact`` to the parent, which stores it and tells the other children."""
        if self._parent is None:
            return False
        self._parent.federation.receive_escalation(fact, origin=self.owner)
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
        results: list[tuple[list[HiveFact], list[float]]] = []
        visited: set[int] = set()
        pending: list[BaseHiveGraph] = [self.owner]
        while pending:
            hive = pending.pop(0)
            if id(hive) in visited:
                continue
            visited.add(id(hive))
            found = hive.search(query, limit=limit)
            results.append((found.facts, found.scores))
            pending.extend(hive.federation.children)
            if hive.federation.parent is not None:
                pending.append(hive.federation.parent)
        return merge_once(results, limit)
