"""The index-role log of a Kuzu shard: one compact entry per write, replayed when it opens.

Why a log and not a row per (fact, term): at 100 shards and RF=3 a fact lands on ~25
shards, almost all of them because they own one of its terms, and kuzu 0.11.3 writes ~55k
rows/s. Rows per (fact, shard) capped ingest near 1,000 facts/s. So a shard writes faithful
``Fact`` rows only for its primary role (RF rows per fact) and one *log entry* per ``put``
holding what the index role needs: the postings the put added, and the bodies and term
counts of the facts it newly holds without a primary row. A ``drop`` logs the roles it gave
up. Replaying the entries in sequence order, over the bodies of the ``Fact`` rows, rebuilds
exactly the state the writes left (see :class:`Replay`).

Entry text: JSON, zlib level 1 (the bodies repeat their words in the term counts, ~4x
smaller, which is what keeps kuzu's per-database write buffers small), then base64 because
kuzu 0.11.3 accepts no ``bytes`` parameter::

    put:  {"f": [[fact_id, content, concept, confidence, source_agent, tags, status,
                  created_at, metadata, content_hash, tf], ...],
           "p": {term: [fact_id, ...]}}
    drop: {"d": fact_id, "t": [term, ...], "x": forgotten}   # x: no role was left after it
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hive_core.errors import ShardCorrupt
from hive_core.facts import PROMOTED

# Body fields in log order (everything in HiveFact.to_dict but fact_id), with defaults for
# plain-data facts that omit some.
BODY = ("content", "concept", "confidence", "source_agent", "tags", "status", "created_at",
        "metadata", "content_hash")
_DEFAULTS: dict[str, Any] = {"concept": "", "confidence": 1.0, "source_agent": "", "tags": [],
                             "status": PROMOTED, "created_at": 0.0, "metadata": {},
                             "content_hash": ""}
LOG_PREFIX = "#log/"


def log_id(seq: int) -> str:
    """Row id of the entry with sequence number ``seq`` (fact ids start with ``f_``)."""
    return f"{LOG_PREFIX}{seq:012d}"


def normalized(fact: Mapping[str, Any]) -> dict[str, Any]:
    """The body as stored: every field present, tags a list, metadata a dict."""
    out = {"fact_id": fact["fact_id"]}
    for key in BODY:
        value = fact.get(key, _DEFAULTS.get(key))
        out[key] = value
    out["tags"] = [str(t) for t in out["tags"] or ()]
    out["metadata"] = dict(out["metadata"] or {})
    out["confidence"] = float(out["confidence"])
    out["created_at"] = float(out["created_at"])
    return out


def _encode(obj: Any) -> str:
    raw = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return base64.b64encode(zlib.compress(raw, 1)).decode("ascii")


def decode(text: str) -> dict[str, Any]:
    try:
        return json.loads(zlib.decompress(base64.b64decode(text)))
    except (binascii.Error, zlib.error, ValueError) as exc:
        raise ShardCorrupt(f"unreadable log entry: {exc}") from None


def put_entry(
    bodies: Mapping[str, Mapping[str, Any]], tfs: Mapping[str, Mapping[str, int]],
    postings: Mapping[str, Sequence[str]],
) -> str:
    """Entry for a put: ``bodies`` (with their ``tfs``) of facts newly held without a primary
    row, and the ``postings`` the put added."""
    rows = []
    for fid, fact in bodies.items():
        body = normalized(fact)
        rows.append([fid, *(body[k] for k in BODY), tfs[fid]])
    return _encode({"f": rows, "p": postings})


def drop_entry(fact_id: str, terms: Iterable[str], forgotten: bool) -> str:
    return _encode({"d": fact_id, "t": sorted(terms), "x": forgotten})


@dataclass(slots=True)
class Replay:
    """Shard state rebuilt from events applied in write order.

    Events: a ``Fact`` row's body (written when the fact became primary here) and log
    entries. A body is written only when a fact is new to the shard, so the last body
    written for an id is the one the shard held. Roles: postings added by puts, removed by
    drops; a drop that left no role forgets the fact until a later write brings it back.
    The primary flags and tombstones are current state on the rows, applied by the caller.
    """

    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)
    tf: dict[str, dict[str, int]] = field(default_factory=dict)
    roles: dict[str, set[str]] = field(default_factory=dict)

    def row(self, body: dict[str, Any], tf: dict[str, int]) -> None:
        fid = body["fact_id"]
        self.bodies[fid] = body
        self.tf[fid] = tf
        self.roles.setdefault(fid, set())

    def entry(self, text: str) -> None:
        data = decode(text)
        if "d" in data:
            fid = data["d"]
            held = self.roles.get(fid)
            if held is not None:
                held.difference_update(data["t"])
            if data["x"]:
                self.roles.pop(fid, None)
            return
        for fid, *values, tf in data["f"]:
            self.row({"fact_id": fid, **dict(zip(BODY, values, strict=True))}, tf)
        for term, fids in data["p"].items():
            for fid in fids:
                self.roles[fid].add(term)

    def postings(self, live: Iterable[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for fid in live:
            for term in self.roles[fid]:
                out.setdefault(term, []).append(fid)
        return out
