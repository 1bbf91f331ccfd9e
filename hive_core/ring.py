"""Consistent-hash ring: which agents own a key.

Each agent appears at ``virtual_nodes`` pseudo-random points (its *tokens*); a key belongs to
the first ``n`` distinct agents met walking clockwise from the key's own point. Adding an agent
therefore takes over only the arcs just before its tokens (about 1/N of all keys) and moves
nothing else; removing one hands its arcs to the next agents on the ring.

The hash is MurmurHash3 (mmh3), 64 bits, never Python's ``hash()``: that one is salted per
process, and two agent processes must agree on every owner.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

import mmh3

from hive_core.config import DEFAULT_REPLICATION_FACTOR, VIRTUAL_NODES_PER_AGENT


def stable_hash(key: str) -> int:
    """64-bit unsigned hash of ``key``, identical in every process."""
    return mmh3.hash64(key.encode("utf-8"), signed=False)[0]


class HashRing:
    """Agents on a ring of 2**64 points, ``virtual_nodes`` tokens each."""

    __slots__ = ("_agents", "_cache", "_owners", "_points", "replication_factor", "virtual_nodes")

    def __init__(
        self,
        agents: Iterable[str] = (),
        *,
        virtual_nodes: int = VIRTUAL_NODES_PER_AGENT,
        replication_factor: int = DEFAULT_REPLICATION_FACTOR,
    ) -> None:
        if virtual_nodes < 1:
            raise ValueError("virtual_nodes must be >= 1")
        if replication_factor < 1:
            raise ValueError("replication_factor must be >= 1")
        self.virtual_nodes = virtual_nodes
        self.replication_factor = replication_factor
        self._agents: set[str] = set()
        self._points: list[int] = []
        self._owners: list[str] = []
        # key (for the replication factor) or (key, n) -> owners; cleared on any change.
        self._cache: dict[object, tuple[str, ...]] = {}
        # Built in one sort (adding agents one by one inserts into a list: quadratic, ~40 ms
        # for 100 agents, and agents rebuild rings at every ring-view epoch).
        tokens: list[tuple[int, str]] = []
        for agent in agents:
            if not agent:
                raise ValueError("agent_id must be non-empty")
            if agent in self._agents:
                raise ValueError(f"agent {agent!r} is already on the ring")
            self._agents.add(agent)
            tokens.extend((point, agent) for point in self._tokens(agent))
        tokens.sort()  # equal points (astronomically rare) ordered by agent id, as add_agent
        self._points = [p for p, _ in tokens]
        self._owners = [o for _, o in tokens]

    # -- membership -------------------------------------------------------------------------
    def _tokens(self, agent_id: str) -> list[int]:
        return [stable_hash(f"{agent_id}#vnode{i}") for i in range(self.virtual_nodes)]

    def add_agent(self, agent_id: str) -> None:
        if not agent_id:
            raise ValueError("agent_id must be non-empty")
        if agent_id in self._agents:
            raise ValueError(f"agent {agent_id!r} is already on the ring")
        self._agents.add(agent_id)
        for point in self._tokens(agent_id):
            i = bisect.bisect_left(self._points, point)
            # A collision of two 64-bit tokens is astronomically rare; order by agent id so
            # every process still builds the same ring.
            while i < len(self._points) and self._points[i] == point and self._owners[i] < agent_id:
                i += 1
            self._points.insert(i, point)
            self._owners.insert(i, agent_id)
        self._cache.clear()

    def remove_agent(self, agent_id: str) -> None:
        if agent_id not in self._agents:
            raise KeyError(agent_id)
        self._agents.discard(agent_id)
        keep = [(p, o) for p, o in zip(self._points, self._owners, strict=True) if o != agent_id]
        self._points = [p for p, _ in keep]
        self._owners = [o for _, o in keep]
        self._cache.clear()

    def copy(self) -> HashRing:
        clone = HashRing(virtual_nodes=self.virtual_nodes,
                         replication_factor=self.replication_factor)
        clone._agents = set(self._agents)
        clone._points = list(self._points)
        clone._owners = list(self._owners)
        return clone

    @property
    def agents(self) -> frozenset[str]:
        return frozenset(self._agents)

    def __len__(self) -> int:
        return len(self._agents)

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._agents

    # -- lookup -----------------------------------------------------------------------------
    def get_agents(self, key: str, n: int | None = None) -> tuple[str, ...]:
        """The ``n`` (default: replication factor) distinct owners of ``key``, primary first.

        Fewer than ``n`` when the ring has fewer agents; empty on an empty ring.
        """
        want = self.replication_factor if n is None else n
        cache_key = key if want == self.replication_factor else (key, want)
        cached = self._cache.get(cache_key)
        if cached is not None:
            return cached
        result = self.owners_at(stable_hash(key), want)
        if len(self._cache) > 200_000:
            self._cache.clear()
        self._cache[cache_key] = result
        return result

    def owners_at(self, point: int, n: int | None = None) -> tuple[str, ...]:
        """Owners of a key hashing to ``point``: the first ``n`` distinct agents whose
        tokens are strictly greater, walking clockwise (so a key's arc is ``[prev, token)``)."""
        want_real = min(self.replication_factor if n is None else n, len(self._agents))
        owners: list[str] = []
        if want_real > 0:
            total = len(self._points)
            i = bisect.bisect_right(self._points, point) % total
            for step in range(total):
                owner = self._owners[(i + step) % total]
                if owner not in owners:
                    owners.append(owner)
                    if len(owners) == want_real:
                        break
        return tuple(owners)

    @property
    def points(self) -> tuple[int, ...]:
        """Every token on the ring, ascending."""
        return tuple(self._points)

    def primary(self, key: str) -> str:
        owners = self.get_agents(key, 1)
        if not owners:
            raise LookupError("the ring has no agents")
        return owners[0]


class MovingRing:
    """Owners while the ring moves from ``current`` to ``target``: every current owner, then
    the target owners that are new. Writes placed with it reach both the shards reads use
    now and the ones they will use after the move (hive_core.membership.view)."""

    __slots__ = ("current", "replication_factor", "target")

    def __init__(self, current: HashRing, target: HashRing) -> None:
        self.current = current
        self.target = target
        self.replication_factor = current.replication_factor

    def get_agents(self, key: str, n: int | None = None) -> tuple[str, ...]:
        now = self.current.get_agents(key, n)
        return now + tuple(a for a in self.target.get_agents(key, n) if a not in now)

    @property
    def agents(self) -> frozenset[str]:
        return self.current.agents | self.target.agents

    def __len__(self) -> int:
        return len(self.agents)

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self.current or agent_id in self.target
