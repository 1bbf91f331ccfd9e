"""Values of the hive: facts, edges between facts, agents.

They are frozen, slotted dataclasses: a fact is shared by reference between shards of one
process and copied as plain data (``to_dict``/``from_dict``) between processes, so it must
never change under a reader. "Changing" a fact (retracting it, say) makes a new value.

A fact's identity is its *content*: ``fact_id`` is derived from the content hash, so the same
content promoted twice, by any agent, on any shard, is one fact and lands on the same ring
owners. That is what makes redelivered stores idempotent.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

PROMOTED = "promoted"
RETRACTED = "retracted"
FACT_STATUSES = (PROMOTED, RETRACTED)

EDGE_TYPES = ("CONTRADICTS", "CONFIRMED_BY", "SUPERSEDES", "PARENT_HIVE", "RELATED_TO")

_WS = re.compile(r"\s+")


def normalize_content(content: str) -> str:
    """Content as compared for dedup: whitespace folded, case folded."""
    return _WS.sub(" ", content).strip().casefold()


@lru_cache(maxsize=1 << 12)
def content_hash(content: str) -> str:
    """Stable hex digest of normalised content (same in every process and machine).
    Cached: a search rebuilds each fact it returns from its record, and with it this
    digest (a quarter of an in-process question's time), mostly for the same facts."""
    return hashlib.blake2b(normalize_content(content).encode("utf-8"), digest_size=16).hexdigest()


def fact_id_for(content: str) -> str:
    """The content-addressed id every replica of this content shares."""
    return "f_" + content_hash(content)[:20]


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, float(value)))


@dataclass(frozen=True, slots=True)
class HiveFact:
    """One fact in the hive. ``fact_id`` and ``content_hash`` are derived from ``content``."""

    content: str
    concept: str = ""
    confidence: float = 1.0
    source_agent: str = ""
    tags: tuple[str, ...] = ()
    status: str = PROMOTED
    created_at: float = field(default_factory=time.time)
    metadata: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    fact_id: str = field(init=False, default="")
    content_hash: str = field(init=False, default="")

    def __post_init__(self) -> None:
        if not isinstance(self.content, str) or not self.content.strip():
            raise ValueError("a fact needs non-empty content")
        if self.status not in FACT_STATUSES:
            raise ValueError(f"fact status must be one of {FACT_STATUSES}, got {self.status!r}")
        digest = content_hash(self.content)
        object.__setattr__(self, "content_hash", digest)
        object.__setattr__(self, "fact_id", "f_" + digest[:20])
        object.__setattr__(self, "confidence", _clamp(self.confidence, 0.0, 1.0))
        object.__setattr__(self, "tags", tuple(str(t) for t in self.tags))

    @property
    def is_retracted(self) -> bool:
        return self.status == RETRACTED

    def _evolve(self, **changes: Any) -> HiveFact:
        """A copy with fields that do not touch identity changed (content, hence fact_id and
        content_hash, stays): skips re-validation and re-hashing, which ``replace`` would
        redo for every fact of a batch."""
        clone = object.__new__(HiveFact)
        for name in HiveFact.__slots__:
            object.__setattr__(clone, name, changes.get(name, getattr(self, name)))
        return clone

    def retracted(self) -> HiveFact:
        return self._evolve(status=RETRACTED)

    def stamped(self, created_at: float) -> HiveFact:
        """The same fact as of ``created_at`` (its turn's time, not the clock's)."""
        return self._evolve(created_at=float(created_at))

    def with_source(self, agent_id: str) -> HiveFact:
        return self._evolve(source_agent=agent_id)

    def rated(self, confidence: float) -> HiveFact:
        """The same fact with the confidence its turn was given (a checked statement can
        be rated 1.0 and so escalate to the parent hive; extraction alone rates lower)."""
        return self._evolve(confidence=_clamp(confidence, 0.0, 1.0))

    def to_dict(self) -> dict[str, Any]:
        return {
            "fact_id": self.fact_id,
            "content": self.content,
            "concept": self.concept,
            "confidence": self.confidence,
            "source_agent": self.source_agent,
            "tags": list(self.tags),
            "status": self.status,
            "created_at": self.created_at,
            "metadata": dict(self.metadata),
            "content_hash": self.content_hash,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HiveFact:
        return cls(
            content=data["content"],
            concept=data.get("concept", ""),
            confidence=data.get("confidence", 1.0),
            source_agent=data.get("source_agent", ""),
            tags=tuple(data.get("tags", ())),
            status=data.get("status", PROMOTED),
            created_at=data.get("created_at", 0.0),
            metadata=dict(data.get("metadata") or {}),
        )


@dataclass(frozen=True, slots=True)
class HiveEdge:
    """A typed, directed relation between two facts (or hives, for PARENT_HIVE)."""

    source_id: str
    target_id: str
    edge_type: str
    properties: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    created_at: float = field(default_factory=time.time, compare=False)

    def __post_init__(self) -> None:
        if self.edge_type not in EDGE_TYPES:
            raise ValueError(f"edge type must be one of {EDGE_TYPES}, got {self.edge_type!r}")

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.source_id, self.target_id, self.edge_type)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source_id": self.source_id,
            "target_id": self.target_id,
            "edge_type": self.edge_type,
            "properties": dict(self.properties),
            "created_at": self.created_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HiveEdge:
        return cls(
            source_id=data["source_id"],
            target_id=data["target_id"],
            edge_type=data["edge_type"],
            properties=dict(data.get("properties") or {}),
            created_at=data.get("created_at", 0.0),
        )


@dataclass(frozen=True, slots=True)
class HiveAgent:
    """A member of the hive. ``trust`` is clamped to [0, 2]."""

    agent_id: str
    domain: str = ""
    trust: float = 1.0
    fact_count: int = 0
    status: str = "active"

    def __post_init__(self) -> None:
        if not self.agent_id:
            raise ValueError("agent_id must be non-empty")
        object.__setattr__(self, "trust", _clamp(self.trust, 0.0, 2.0))

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent_id": self.agent_id,
            "domain": self.domain,
            "trust": self.trust,
            "fact_count": self.fact_count,
            "status": self.status,
        }


def place_of(metadata: Mapping[str, Any]) -> tuple[str, int] | None:
    """Where a fact was said: ``(metadata["session"], metadata["turn"])``, or None."""
    session, turn = metadata.get("session"), metadata.get("turn")
    if not isinstance(session, str) or not isinstance(turn, int) or isinstance(turn, bool):
        return None
    return session, turn


def said_later(held: Mapping[str, Any], incoming: Mapping[str, Any]) -> bool:
    """Whether fact body ``incoming`` records a later saying of the same sentence than
    ``held`` (its turn's time, then its place). One sentence said in several turns is one
    fact; every copy of it keeps the latest saying, so which copy reached a shard first --
    parallel agents deliver in any order -- never decides the place retrieval reads. Only
    facts with a place are compared; others keep the first body a shard received."""
    a, b = place_of(held.get("metadata") or {}), place_of(incoming.get("metadata") or {})
    if a is None or b is None:
        return False
    return (float(incoming.get("created_at", 0.0)), b) > (float(held.get("created_at", 0.0)), a)
