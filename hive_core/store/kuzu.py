"""KuzuShardStore: one agent's shard in a Kuzu database on disk, bounded and reopenable.

Layout: one directory per shard holding ``shard.kuzu`` (+ its WAL) and ``shard.lock`` (see
:mod:`hive_core.store.shard_lock`). Schema, deliberately one node table::

    Fact(id PK, content, concept, confidence, source_agent, tags STRING[], status,
         created_at, metadata (JSON), content_hash,      -- every HiveFact field
         tf (JSON term counts), terms STRING[],          -- postings: index roles on this shard
         is_primary, tombstoned)                         -- primary role, sticky retraction
    Edge(FROM Fact TO Fact, edge_type, properties (JSON), created_at)

Why postings are a ``terms`` list on the fact's row and not a table of their own: in Kuzu
0.11.3 every node table costs ~6 MB resident per open database (its hash index), and a
posting table doubles the rows written per record; with 100 shards in one process both
matter more than a join we never run. Retracted facts keep a row with ``tombstoned`` set,
and an edge to a fact this shard does not hold keeps a role-less "anchor" row.

What is cached, and why: the scoring index (roles, term counts, postings, per-term max
tf-part: :class:`~hive_core.store.index.TermIndex`, shared with the memory store so both
rank identically) and the set of tombstones. Scoring touches every posting of a term, so it
runs in Python on that index; the index is rebuilt from disk on open and updated only after
a write has committed, so disk stays the source of truth. Fact bodies and edges are read
from Kuzu (``get``, the top hits of ``score``, ``records``, ``get_edges``).

Writes: one transaction per ``put`` with at most three batched statements (``UNWIND`` over
parameter lists). They are prepared once per store: in kuzu 0.11.3 an unprepared
parameterised ``execute`` is re-planned each call and keeps ~1 KB per parameter row
resident in the connection, which on ingest grew 100 shards by gigabytes.
"""

from __future__ import annotations

import json
import re
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from hive_core.config import KUZU_MIN_BUFFER_POOL_SIZE, CoreSettings
from hive_core.errors import ConfigError, ShardCorrupt, ShardError, ShardInUse
from hive_core.facts import RETRACTED, HiveEdge, HiveFact
from hive_core.scoring import Bm25
from hive_core.store.base import ScoredFact, ShardStore, StoreBatch, StoreRecord, TermStats
from hive_core.store.index import TermIndex
from hive_core.store.shard_lock import ShardLock

DB_FILE = "shard.kuzu"
MIB = 1024 * 1024
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

BODY = ("content", "concept", "confidence", "source_agent", "tags", "status", "created_at",
        "metadata", "content_hash")
_SCHEMA = (
    "CREATE NODE TABLE IF NOT EXISTS Fact(id STRING, content STRING, concept STRING, "
    "confidence DOUBLE, source_agent STRING, tags STRING[], status STRING, created_at DOUBLE, "
    "metadata STRING, content_hash STRING, tf STRING, terms STRING[], is_primary BOOLEAN, "
    "tombstoned BOOLEAN, PRIMARY KEY(id))",
    "CREATE REL TABLE IF NOT EXISTS Edge(FROM Fact TO Fact, edge_type STRING, "
    "properties STRING, created_at DOUBLE)",
)
_ROLES = "f.terms = $terms[i], f.is_primary = $is_primary[i]"
_SET_BODY = ", ".join(f"f.{c} = ${c}[i]" for c in (*BODY, "tf"))
_CREATE_PROPS = ", ".join(f"{c}: ${c}[i]" for c in (*BODY, "tf", "terms", "is_primary"))
_RETURN_BODY = "f.id, " + ", ".join(f"f.{c}" for c in BODY)
_STATEMENTS = {
    "create": "UNWIND range(1, $n) AS i "
              f"CREATE (:Fact {{id: $id[i], tombstoned: false, {_CREATE_PROPS}}})",
    "rebody": f"UNWIND range(1, $n) AS i MATCH (f:Fact {{id: $id[i]}}) SET {_SET_BODY}, {_ROLES}",
    "roles": f"UNWIND range(1, $n) AS i MATCH (f:Fact {{id: $id[i]}}) SET {_ROLES}",
    "tombstone": "MERGE (f:Fact {id: $id}) SET f.tombstoned = true, f.is_primary = false, "
                 "f.terms = CAST([] AS STRING[])",
    "anchor": "MERGE (f:Fact {id: $id}) ON CREATE SET f.tombstoned = false, "
              "f.is_primary = false, f.terms = CAST([] AS STRING[])",
    "edge": "MATCH (a:Fact {id: $src}), (b:Fact {id: $dst}) "
            "MERGE (a)-[e:Edge {edge_type: $type}]->(b) SET e.properties = $props, "
            "e.created_at = $at",
    "edges_of": "MATCH (a:Fact)-[e:Edge]->(b:Fact) WHERE a.id = $id OR b.id = $id "
                "RETURN a.id, b.id, e.edge_type, e.properties, e.created_at",
    "fetch": f"UNWIND $ids AS x MATCH (f:Fact {{id: x}}) RETURN {_RETURN_BODY}",
    "bodies": f"MATCH (f:Fact) WHERE f.tombstoned = false RETURN {_RETURN_BODY}",
    "scan": "MATCH (f:Fact) RETURN f.id, f.tf, f.terms, f.is_primary, f.tombstoned",
}


def _kuzu_module() -> ModuleType:
    """The one import of the engine; the API-compatible fork would be swapped in here only."""
    import kuzu

    return kuzu


def buffer_pool_for(shard_count: int, settings: CoreSettings) -> int:
    """Per-shard pool: the process budget split over its shards, within [16 MiB, configured]."""
    share = settings.kuzu_process_buffer_budget // max(shard_count, 1)
    size = min(share, settings.kuzu_buffer_pool_size)
    return max(KUZU_MIN_BUFFER_POOL_SIZE, size // MIB * MIB)


def _fact_dict(row: Sequence[Any]) -> dict[str, Any]:
    fid, content, concept, confidence, source, tags, status, created, meta, digest = row
    return {"fact_id": fid, "content": content, "concept": concept, "confidence": confidence,
            "source_agent": source, "tags": list(tags or ()), "status": status,
            "created_at": created, "metadata": json.loads(meta) if meta else {},
            "content_hash": digest}


def _typed(lists: list[list[str]]) -> list[list[str]]:
    """``lists`` plus one trailing ``[""]`` that the statements never read (they stop at $n).

    kuzu infers a parameter's type from its value, and a list of only empty lists has no
    element type ("Data type of expression ... should not be modified"); the extra element
    makes every list parameter a STRING[][] whatever the batch holds.
    """
    return [*lists, [""]]


@dataclass(slots=True)
class _Pending:
    """What one put will write for one fact: its full roles after the merge."""

    kind: str  # "create" | "rebody" | "roles"
    fact: Mapping[str, Any]
    tf: Mapping[str, int]
    terms: set[str]
    primary: bool
    changed: bool = False
    new_terms: set[str] = field(default_factory=set)


class KuzuShardStore:
    """One shard in a Kuzu database at ``path`` (a directory). Thread-safe via one lock."""

    def __init__(
        self, path: str | Path, *, agent_id: str = "", bm25: Bm25,
        buffer_pool_size: int, max_db_size: int, max_num_threads: int = 1,
    ) -> None:
        self.path = Path(path)
        self.agent_id = agent_id
        self.bm25 = bm25
        self._lock = threading.RLock()
        self._index = TermIndex(bm25)
        self._tombstones: set[str] = set()
        self._idle: set[str] = set()  # rows with no role: dropped facts and edge anchors
        self.path.mkdir(parents=True, exist_ok=True)
        self._claim: ShardLock | None = ShardLock.acquire(self.path)
        try:
            self._open(buffer_pool_size, max_db_size, max_num_threads)
            self._rebuild()
        except BaseException:
            self._claim.release()
            self._claim = None
            raise

    def _open(self, buffer_pool_size: int, max_db_size: int, threads: int) -> None:
        kz = _kuzu_module()
        target = self.path / DB_FILE
        try:
            self._db = kz.Database(str(target), buffer_pool_size=buffer_pool_size,
                                   max_db_size=max_db_size, max_num_threads=threads)
            self._conn = kz.Connection(self._db, num_threads=threads)
            for ddl in _SCHEMA:
                self._conn.execute(ddl)
        except RuntimeError as exc:
            if "lock" in str(exc).lower():
                raise ShardInUse(f"shard {self.path} is locked by another program: {exc}") from None
            raise ShardCorrupt(f"cannot open Kuzu shard {self.path}: {exc}") from None
        with warnings.catch_warnings():
            # kuzu deprecates prepare(); it is still the only way to avoid per-call re-planning
            # and the per-call memory growth described in the module docstring.
            warnings.simplefilter("ignore", DeprecationWarning)
            self._stmts = {name: self._conn.prepare(q) for name, q in _STATEMENTS.items()}

    def _run(self, name: str, params: Mapping[str, Any]) -> list[list[Any]]:
        try:
            result = self._conn.execute(self._stmts[name], dict(params))
            rows = result.get_all()
            result.close()
        except RuntimeError as exc:
            raise ShardError(f"shard {self.path}: {name} failed: {exc}") from None
        return rows

    def _transaction(self, steps: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
        if not steps:
            return
        self._conn.execute("BEGIN TRANSACTION")
        try:
            for name, params in steps:
                self._run(name, params)
        except BaseException:
            try:
                self._conn.execute("ROLLBACK")
            except RuntimeError as exc:  # a failed statement already rolled kuzu back
                if "no active transaction" not in str(exc).lower():
                    raise
            raise
        self._conn.execute("COMMIT")

    def _rebuild(self) -> None:
        tfs: dict[str, Mapping[str, int]] = {}
        postings: dict[str, list[str]] = {}
        primary: list[str] = []
        for fid, tf_json, terms, is_primary, tombstoned in self._run("scan", {}):
            if tombstoned:
                self._tombstones.add(fid)
            elif is_primary or terms:
                tfs[fid] = json.loads(tf_json)
                for term in terms:
                    postings.setdefault(term, []).append(fid)
                if is_primary:
                    primary.append(fid)
            else:
                self._idle.add(fid)
        self._index.merge_batch(StoreBatch({fid: {} for fid in tfs}, tfs, postings, primary))

    # -- writes -------------------------------------------------------------------------------
    def _plan(self, records: Sequence[StoreRecord]) -> dict[str, _Pending]:
        plan: dict[str, _Pending] = {}
        for rec in records:
            fid = rec.fact_id
            if fid in self._tombstones or rec.fact.get("status") == RETRACTED:
                continue
            pending = plan.get(fid)
            if pending is None:
                index = self._index
                if fid not in index:
                    kind = "rebody" if fid in self._idle else "create"
                    pending = _Pending(kind, rec.fact, rec.tf, set(), False, changed=True)
                else:
                    pending = _Pending("roles", rec.fact, index.tf[fid], set(index.roles(fid)),
                                       fid in index.primary)
                plan[fid] = pending
            new_terms = set(rec.terms) - pending.terms
            if new_terms or (rec.primary and not pending.primary):
                pending.terms |= new_terms
                pending.new_terms |= new_terms
                pending.primary = pending.primary or rec.primary
                pending.changed = True
        return plan

    @staticmethod
    def _columns(items: list[tuple[str, _Pending]], body: bool) -> dict[str, Any]:
        cols: dict[str, Any] = {"n": len(items), "id": [fid for fid, _ in items],
                                "terms": _typed([sorted(p.terms) for _, p in items]),
                                "is_primary": [p.primary for _, p in items]}
        if body:
            facts = [p.fact for _, p in items]
            cols["content"] = [f["content"] for f in facts]
            cols["concept"] = [f.get("concept", "") for f in facts]
            cols["confidence"] = [float(f.get("confidence", 1.0)) for f in facts]
            cols["source_agent"] = [f.get("source_agent", "") for f in facts]
            cols["tags"] = _typed([[str(t) for t in f.get("tags", ())] for f in facts])
            cols["status"] = [f.get("status", "") for f in facts]
            cols["created_at"] = [float(f.get("created_at", 0.0)) for f in facts]
            cols["metadata"] = [json.dumps(f.get("metadata") or {}) for f in facts]
            cols["content_hash"] = [f.get("content_hash", "") for f in facts]
            cols["tf"] = [json.dumps(p.tf) for _, p in items]
        return cols

    def put(self, batch: StoreBatch) -> int:
        with self._lock:
            plan = self._plan(batch.records())
            steps = []
            for kind in ("create", "rebody", "roles"):
                items = [(f, p) for f, p in plan.items() if p.kind == kind and p.changed]
                if items:
                    steps.append((kind, self._columns(items, body=kind != "roles")))
            self._transaction(steps)
            changed = {fid: p for fid, p in plan.items() if p.changed}
            postings: dict[str, list[str]] = {}
            for fid, p in changed.items():
                for term in p.new_terms:
                    postings.setdefault(term, []).append(fid)
                self._idle.discard(fid)
            return self._index.merge_batch(StoreBatch(
                {f: p.fact for f, p in changed.items()}, {f: p.tf for f, p in changed.items()},
                postings, [f for f, p in changed.items() if p.primary]))

    def retract(self, fact_id: str) -> bool:
        with self._lock:
            self._transaction([("tombstone", {"id": fact_id})])
            self._tombstones.add(fact_id)
            self._idle.discard(fact_id)
            return self._index.remove(fact_id)

    def drop(self, fact_id: str, terms: Iterable[str], primary: bool) -> None:
        with self._lock:
            if fact_id not in self._index:
                return
            left = set(self._index.roles(fact_id)) - set(terms)
            keep_primary = fact_id in self._index.primary and not primary
            self._transaction([("roles", {"n": 1, "id": [fact_id], "terms": _typed([sorted(left)]),
                                          "is_primary": [keep_primary]})])
            if self._index.drop(fact_id, terms, primary):
                self._idle.add(fact_id)

    def add_edge(self, edge: HiveEdge) -> None:
        with self._lock:
            steps: list[tuple[str, Mapping[str, Any]]] = [
                ("anchor", {"id": fid}) for fid in dict.fromkeys((edge.source_id, edge.target_id))
            ]
            steps.append(("edge", {"src": edge.source_id, "dst": edge.target_id,
                                   "type": edge.edge_type, "props": json.dumps(edge.properties),
                                   "at": float(edge.created_at)}))
            self._transaction(steps)
            for fid in (edge.source_id, edge.target_id):
                if fid not in self._index and fid not in self._tombstones:
                    self._idle.add(fid)

    # -- reads --------------------------------------------------------------------------------
    def _fetch(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        return {row[0]: _fact_dict(row) for row in self._run("fetch", {"ids": list(ids)})}

    def get(self, fact_id: str) -> HiveFact | None:
        with self._lock:
            if fact_id not in self._index:
                return None
            fact = self._fetch([fact_id]).get(fact_id)
            return HiveFact.from_dict(fact) if fact is not None else None

    def is_tombstoned(self, fact_id: str) -> bool:
        return fact_id in self._tombstones

    def term_stats(self, terms: Iterable[str]) -> dict[str, TermStats]:
        with self._lock:
            return self._index.term_stats(terms)

    def score(
        self, terms: Iterable[str], weights: Mapping[str, float], limit: int
    ) -> list[ScoredFact]:
        with self._lock:
            best = self._index.top(terms, weights, limit)
            bodies = self._fetch([fid for fid, _ in best])
        missing = [fid for fid, _ in best if fid not in bodies]
        if missing:
            raise ShardCorrupt(f"shard {self.path}: indexed facts missing on disk: {missing}")
        return [ScoredFact(HiveFact.from_dict(bodies[fid]), s) for fid, s in best]

    def search(self, query: str, limit: int = 10) -> list[ScoredFact]:
        from hive_core.search import search_single_store

        return search_single_store(self, query, limit).scored()

    def count(self) -> int:
        return self._index.primary_live

    def index_size(self) -> int:
        with self._lock:
            return self._index.size()

    def records(self) -> Iterator[StoreRecord]:
        with self._lock:
            index = self._index
            if not index.tf:
                return iter(())
            out = []
            for row in self._run("bodies", {}):
                fid = row[0]
                if fid in index:
                    out.append(StoreRecord(_fact_dict(row), index.tf[fid], index.roles(fid),
                                           fid in index.primary))
        return iter(out)

    def tombstones(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._tombstones))

    def get_edges(self, fact_id: str) -> list[HiveEdge]:
        with self._lock:
            rows = self._run("edges_of", {"id": fact_id})
        edges = [HiveEdge(src, dst, kind, json.loads(props) if props else {}, at)
                 for src, dst, kind, props, at in rows]
        return sorted(edges, key=lambda e: e.key)

    def close(self) -> None:
        """Close the database and give up the claim on its directory (idempotent)."""
        with self._lock:
            if self._claim is None:
                return
            self._stmts = {}
            self._conn.close()
            self._db.close()
            self._claim.release()
            self._claim = None


def kuzu_store_factory(
    root: Path, settings: CoreSettings, bm25: Bm25, shard_count: Callable[[], int]
) -> Callable[[str], ShardStore]:
    """Stores for a hive: one directory per agent under ``root``, pools sized per process."""

    def make(agent_id: str) -> ShardStore:
        if not _SAFE_NAME.match(agent_id):
            raise ConfigError(f"agent id {agent_id!r} cannot name a shard directory")
        return KuzuShardStore(
            root / agent_id, agent_id=agent_id, bm25=bm25,
            buffer_pool_size=buffer_pool_for(shard_count(), settings),
            max_db_size=settings.kuzu_max_db_size,
        )

    return make
