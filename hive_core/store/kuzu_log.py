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

    put:  {"f": [record, ...],                          # facts newly held, see below
           "t": [[term, ...], ...],                     # postings added, per fact of "f"
           "p": {term: [fact_id, ...]}}                 # postings added for facts held before
    drop: {"d": fact_id, "t": [term, ...], "x": forgotten}   # x: no role was left after it

A *record* is one fact as plain JSON, the same text in a log entry and in the ``body`` of a
``Fact`` row (so a fact placed on ~25 shards is encoded once per process, see
:class:`_Fragments`)::

    [fact_id, content, concept, confidence, source_agent, tags, status, created_at,
     metadata, tf, content_hash]
    # null when derivable: fact_id = fact_id_for(content), tf = term_counts(content),
    # content_hash = content_hash(content)

Floats go through ``repr`` and back, so every field round-trips exactly. Derivable fields
are left out because they are most of what does not compress: the random-looking ids were
a third of the compressed log, and kuzu keeps ~2.5-3x the bytes it is given resident.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import zlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hive_core.errors import ShardCorrupt
from hive_core.facts import PROMOTED, content_hash, fact_id_for
from hive_core.text import term_counts

# Body fields in log order (everything in HiveFact.to_dict but fact_id), with defaults for
# plain-data facts that omit some.
BODY = ("content", "concept", "confidence", "source_agent", "tags", "status", "created_at",
        "metadata", "content_hash")
_DEFAULTS: dict[str, Any] = {"concept": "", "confidence": 1.0, "source_agent": "", "tags": [],
                             "status": PROMOTED, "created_at": 0.0, "metadata": {},
                             "content_hash": ""}
_DERIVED = BODY[:-1]  # written as they are; content_hash and tf are null when derivable
LOG_PREFIX = "#log/"
FRAGMENT_MEMO_SIZE = 8192  # > facts per SHARD_STORE message (FACTS_PER_MESSAGE = 2000)


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


def _encode(fid: str, fact: Mapping[str, Any], tf: Mapping[str, int]) -> str:
    body = normalized(fact)
    content = body["content"]
    digest = content_hash(content)
    own_id = None if fid == fact_id_for(content) else fid
    own_tf = None if tf == term_counts(content) else tf
    own_hash = None if body["content_hash"] == digest else body["content_hash"]
    return json.dumps([own_id, *(body[k] for k in _DERIVED), own_tf, own_hash],
                      separators=(",", ":"), ensure_ascii=False)


def record(values: Sequence[Any]) -> tuple[dict[str, Any], dict[str, int]]:
    """A fact's body and term counts from a decoded record (see the module docstring)."""
    try:
        fid, *fields, tf, own_hash = values
        body = {"fact_id": fid, **dict(zip(_DERIVED, fields, strict=True))}
        content = body["content"]
        digest = content_hash(content)
    except (TypeError, ValueError, AttributeError) as exc:
        raise ShardCorrupt(f"unreadable fact record: {exc}") from None
    if fid is None:
        body["fact_id"] = fact_id_for(content)
    body["content_hash"] = digest if own_hash is None else own_hash
    return body, term_counts(content) if tf is None else tf


def held_body(fid: str, text: str) -> dict[str, Any]:
    """The body of fact ``fid`` from its record ``text`` (what a Kuzu shard keeps in memory
    per fact, see its docstring): :func:`record` without the term counts, which the shard's
    index already holds, so a read does not re-tokenize the content."""
    try:
        values = json.loads(text)
        _, *fields, _, own_hash = values
        body = {"fact_id": fid, **dict(zip(_DERIVED, fields, strict=True))}
        body["content_hash"] = content_hash(body["content"]) if own_hash is None else own_hash
    except (TypeError, ValueError, AttributeError) as exc:
        raise ShardCorrupt(f"unreadable record of fact {fid!r}: {exc}") from None
    return body


def row_record(fid: str, text: str) -> tuple[dict[str, Any], dict[str, int]]:
    """Body and term counts from the ``body`` of the ``Fact`` row ``fid``."""
    try:
        values = json.loads(text)
    except ValueError as exc:
        raise ShardCorrupt(f"unreadable body of fact row {fid!r}: {exc}") from None
    body, tf = record(values)
    if body["fact_id"] != fid:
        raise ShardCorrupt(f"fact row {fid!r} holds the body of {body['fact_id']!r}")
    return body, tf


class _Fragments:
    """Process-wide memo of :func:`_encode`, keyed by fact id and checked by identity.

    In one process a placed fact is the *same* dict (and term-count dict) in every shard's
    batch, ~25 of them at 100 shards, so it is encoded once, not once per shard. An entry
    is used only if it was made from these very objects (it holds them, so their ids cannot
    be reused); a fact that arrived over the wire simply misses. Bounded: oldest out first.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._memo: dict[str, tuple[Mapping[str, Any], Mapping[str, int], str]] = {}
        self._lock = threading.Lock()

    def get(self, fid: str, fact: Mapping[str, Any], tf: Mapping[str, int]) -> str:
        hit = self._memo.get(fid)
        if hit is not None and hit[0] is fact and hit[1] is tf:
            return hit[2]
        enc = _encode(fid, fact, tf)
        with self._lock:
            memo = self._memo
            memo.pop(fid, None)
            memo[fid] = (fact, tf, enc)
            while len(memo) > self.size:
                del memo[next(iter(memo))]
        return enc


_FRAGMENTS = _Fragments(FRAGMENT_MEMO_SIZE)
encoded = _FRAGMENTS.get


def decode(text: str) -> dict[str, Any]:
    try:
        return json.loads(zlib.decompress(base64.b64decode(text)))
    except (binascii.Error, zlib.error, ValueError) as exc:
        raise ShardCorrupt(f"unreadable log entry: {exc}") from None


def _pack(raw: str) -> str:
    return base64.b64encode(zlib.compress(raw.encode("utf-8"), 1)).decode("ascii")


def put_entry(
    bodies: Mapping[str, Mapping[str, Any]], tfs: Mapping[str, Mapping[str, int]],
    postings: Mapping[str, Sequence[str]],
) -> str:
    """Entry for a put: ``bodies`` (with their ``tfs``) of facts newly held without a primary
    row, and the ``postings`` the put added: those of the facts in ``bodies`` as a term list
    per fact (``t``, so the random-looking ids are written once), the rest in ``p``."""
    position = {fid: i for i, fid in enumerate(bodies)}
    terms: list[list[str]] = [[] for _ in position]
    others: dict[str, list[str]] = {}
    for term, fids in postings.items():
        for fid in fids:
            i = position.get(fid)
            if i is None:
                others.setdefault(term, []).append(fid)
            else:
                terms[i].append(term)
    frags = ",".join(encoded(fid, fact, tfs[fid]) for fid, fact in bodies.items())
    tail = json.dumps({"t": terms, "p": others}, separators=(",", ":"), ensure_ascii=False)
    return _pack(f'{{"f":[{frags}],{tail[1:]}')


def drop_entry(fact_id: str, terms: Iterable[str], forgotten: bool) -> str:
    return _pack(json.dumps({"d": fact_id, "t": sorted(terms), "x": forgotten}))


@dataclass(slots=True)
class Replay:
    """Shard state rebuilt from events applied in write order.

    Events: a ``Fact`` row's body (at the write that last set it, when the fact became
    primary here) and log entries. A body is written when a fact is new to the shard, or
    copied from the one held when a known fact becomes primary, so the last body written
    for an id is the one the shard holds. Roles: postings added by puts, removed by drops;
    a drop that left no role forgets the fact until a later write brings it back. A posting
    may name a fact whose only body event is a row rewritten later (demoted, then primary
    again): the role is kept and the body arrives with that row. The primary flags and
    tombstones are current state on the rows, applied by the caller.
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
        for values, terms in zip(data["f"], data["t"], strict=True):
            body, tf = record(values)
            self.row(body, tf)
            self.roles[body["fact_id"]].update(terms)
        for term, fids in data["p"].items():
            for fid in fids:  # its body may be on a Fact row rewritten by a later write
                self.roles.setdefault(fid, set()).add(term)

    def live(self, tombstones: Collection[str]) -> list[str]:
        """Ids the shard holds: known, not retracted; each must have a body."""
        out = [fid for fid in self.roles if fid not in tombstones]
        missing = [fid for fid in out if fid not in self.bodies]
        if missing:
            raise ShardCorrupt(f"indexed facts without a body: {missing[:5]}")
        return out

    def postings(self, live: Iterable[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for fid in live:
            for term in self.roles[fid]:
                out.setdefault(term, []).append(fid)
        return out
