"""The ring view: which agents own data now, which will, and the epoch that names it.

The hive's config lists the *declared* agents; the view is the *live* ring that every agent
of the hive converges on (one document in a :class:`~hive_core.membership.store.ViewStore`).
A change of ownership is a two-step move, as Cassandra's bootstrap and decommission are:

* ``current``: the ring reads use. Its owners hold every fact of their ranges.
* ``target``: the ring being moved to (equal to ``current`` when the view is settled).
  Writes go to the owners in *both* rings, so nothing written during a move is missed.

A member of ``target`` that owns ranges it did not own in ``current`` (a *gainer*) pulls
them from their current owners; when every gainer has recorded that it is synced at this
epoch, any agent flips the view (``current = target``, a new epoch). Old owners keep their
copies for a grace period after the flip (readers on the previous epoch still find them),
then drop what they no longer own.

Each member's state follows from the two rings::

    normal    in current and target
    joining   in target only: pulling what it will own; reads do not use it yet
    leaving   in current only, on purpose (remove-agent / stop --decommission): a source
    down      in current only, unreachable past rereplicate_after: its ranges are being
              restored from the other replicas; after the flip it stays listed as down
              (outside both rings) until it comes back and joins again

``epoch`` changes with every change of ``current`` or ``target`` (messages carry it, see
:class:`~hive_core.messages.Envelope`); ``version`` changes with every write and is the
compare-and-set token. Values of this module are immutable; transitions are pure functions
returning a new view, or ``None`` when there is nothing to change, so the stores' retry
loop can apply them to whatever view it finds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from hive_core.errors import ConfigError

NORMAL = "normal"
JOINING = "joining"
LEAVING = "leaving"
DOWN = "down"
ABSENT = "absent"  # not in the view: never started, or left on purpose


def _names(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(values)))


@dataclass(frozen=True, slots=True)
class RingView:
    epoch: int
    version: int
    current: tuple[str, ...]
    target: tuple[str, ...]
    down: tuple[str, ...] = ()
    leaving: tuple[str, ...] = ()
    synced: Mapping[str, int] = field(default_factory=dict)  # member -> epoch it synced at
    changed_at: float = 0.0  # wall clock of the last epoch change

    # -- reading ------------------------------------------------------------------------------
    @property
    def settled(self) -> bool:
        """No member joining, leaving or being restored: current and target agree."""
        return self.current == self.target

    @property
    def members(self) -> tuple[str, ...]:
        """Every agent the view knows about (in a ring, or listed as down)."""
        return _names((*self.current, *self.target, *self.down))

    def state(self, agent: str) -> str:
        in_current, in_target = agent in self.current, agent in self.target
        if in_current and in_target:
            return NORMAL
        if in_target:
            return JOINING
        if in_current:
            return LEAVING if agent in self.leaving else DOWN
        return DOWN if agent in self.down else ABSENT

    def is_synced(self, agent: str) -> bool:
        return self.synced.get(agent) == self.epoch

    # -- wire ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "version": self.version, "current": list(self.current),
                "target": list(self.target), "down": list(self.down),
                "leaving": list(self.leaving), "synced": dict(self.synced),
                "changed_at": self.changed_at}

    def encode(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Any) -> RingView:
        lists = ("current", "target", "down", "leaving")
        if not isinstance(data, dict) or any(
                not isinstance(data.get(k, []), list) for k in lists):
            raise ConfigError("the hive's ring view is unreadable: expected an object with "
                              "lists of agent names (current, target, down, leaving)")
        try:
            return cls(
                epoch=int(data["epoch"]), version=int(data["version"]),
                current=_names(data["current"]), target=_names(data["target"]),
                down=_names(data.get("down", ())), leaving=_names(data.get("leaving", ())),
                synced={str(k): int(v) for k, v in dict(data.get("synced") or {}).items()},
                changed_at=float(data.get("changed_at") or 0.0))
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise ConfigError(f"the hive's ring view is unreadable: {exc}") from exc

    @classmethod
    def decode(cls, text: str | bytes) -> RingView:
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise ConfigError(f"the hive's ring view is not valid JSON: {exc}") from exc
        return cls.from_dict(data)


# -- transitions (pure: a new view, or None when nothing changes) ------------------------------
def initial(agents: Iterable[str]) -> RingView:
    """The first view of a hive: its declared agents, all normal (their shards are empty or
    hold exactly what this ring placed there before views existed)."""
    names = _names(agents)
    return RingView(epoch=1, version=1, current=names, target=names, changed_at=time.time())


def _moved(view: RingView, **changes: Any) -> RingView:
    """A new epoch: ring membership changed, so every sync recorded so far is void."""
    return replace(view, epoch=view.epoch + 1, version=view.version + 1, synced={},
                   changed_at=time.time(), **changes)


def join(view: RingView, agent: str) -> RingView | None:
    """``agent`` enters the target ring (joining); a down or leaving agent comes back."""
    if agent in view.target:
        return None
    return _moved(view, target=_names((*view.target, agent)),
                  down=_names(a for a in view.down if a != agent),
                  leaving=_names(a for a in view.leaving if a != agent))


def leave(view: RingView, agent: str, replication_factor: int) -> RingView | None:
    """``agent`` leaves on purpose; refused (ConfigError) below ``replication_factor``."""
    if agent not in view.target:
        return None
    rest = _names(a for a in view.target if a != agent)
    if len(rest) < replication_factor:
        raise ConfigError(
            f"cannot remove {agent!r}: {len(rest)} agent(s) would remain, fewer than the "
            f"replication factor {replication_factor}; add an agent first")
    leaving = (*view.leaving, agent) if agent in view.current else view.leaving
    return _moved(view, target=rest, leaving=_names(leaving))


def mark_down(view: RingView, agent: str) -> RingView | None:
    """``agent`` is unreachable for good: restore its ranges on the next owners.

    The last member of the target ring is never marked down (nothing could take over).
    """
    if agent not in view.target or len(view.target) <= 1:
        return None
    return _moved(view, target=_names(a for a in view.target if a != agent),
                  down=_names((*view.down, agent)))


def record_sync(view: RingView, agent: str, epoch: int) -> RingView | None:
    """``agent`` holds everything it gains in the move named by ``epoch``."""
    if epoch != view.epoch or view.synced.get(agent) == epoch:
        return None
    return replace(view, version=view.version + 1, synced={**view.synced, agent: epoch})


def flip(view: RingView) -> RingView | None:
    """The move is done: reads switch to the target ring at a new epoch."""
    if view.settled:
        return None
    return _moved(view, current=view.target, leaving=())
