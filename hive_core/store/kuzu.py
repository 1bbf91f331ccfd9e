"""KuzuShardStore: one agent's shard in a Kuzu database on disk, bounded and reopenable.

Layout: one directory per shard holding ``shard.kuzu`` (+ its WAL) and ``shard.lock`` (see
:mod:`hive_core.store.shard_lock`). Schema, deliberately one node table of four columns::

    Fact(id STRING PK,
         body STRING,      -- a fact record (JSON, every HiveFact field, see kuzu_log), or
                           -- the compressed text of a log entry (log rows)
         state INT64,      -- HELD 0, PRIMARY 1, TOMBSTONED 2 (sticky retraction), LOG 3
         seq INT64)        -- write that last set the body / the entry's sequence number
    Edge(FROM Fact TO Fact, edge_type, properties (JSON), created_at)

Rows of ``Fact`` are of four kinds: a fact held in the primary role (``PRIMARY``, its body
written: the hive's authoritative copy, RF rows per fact); a retracted id (``TOMBSTONED``);
a role-less row (``HELD``: an edge endpoint's anchor, or a fact whose primary role moved
away); and a *log row* (id ``#log/<seq>``, ``LOG``) holding one compressed entry of the
index-role log of :mod:`hive_core.store.kuzu_log`: the postings a put added and the bodies
and term counts of the facts it brought that have no primary row here.

Why a body record rather than a column per field: kuzu's costs grow with columns, not
bytes. Reads never query a field in Kuzu (the cache below answers them) and a body is
always written whole, so a column per field bought nothing, while each costs ~1-2.5 us per
row written. Going from 15 columns to these 4
raised bench ingest (100 shards, 20k facts) from ~3,400-4,400 to ~5,500 facts/s and lowered
peak RSS by ~45 MB. The record is the very text of the log's records, encoded once per
process for the ~25 shards a fact lands on, and round-trips every field exactly (floats
through ``repr``; id, ``content_hash`` and term counts stored only when not derivable).

Why this shape, measured on kuzu 0.11.3: a row per (fact, shard) pair is ~25 rows per fact at
100 shards and RF=3, and kuzu writes ~55k rows/s, so ingest was capped near 1,000 facts/s; a
put now writes RF/N primary rows per fact plus one log row. Every node table costs ~5.7 MB
resident per open database (its primary-key hash index, whatever the columns, buffer pool
or key type: INT64 and SERIAL keys measured the same) and a database ~0.8-1.1 MB, while rel
tables cost no measurable memory (``Edge``: ~0.5 ms per shard at creation): with 100 shards
in a process, a second node table would add ~570 MB, so log rows share the ``Fact`` table.
A new database is neither checked nor scanned on open.

Where a put's time and memory go (kuzu 0.11.3, bench batches, 2 shared cores, indicative):
~0.3-0.45 ms per write transaction whatever it holds (commit: ~5 ``pwrite`` + one
``fdatasync``, kept: a put is durable when it returns), ~1-2.5 us per row and column after
that (the ``$col[i]`` UNWIND shape beat ``UNWIND $rows`` of structs by 1.2-1.6x), a 16 KB
log string ~0.1 ms. kuzu releases the GIL in ``execute``. Memory: the first insert into a
database allocates ~0.1 MB whatever its columns (the ~1.2 MB once measured here was the
statement's shape, see Writes); uncommitted and
un-checkpointed data lives in the buffer pool (~2.5-3x its bytes), and a ``CHECKPOINT``
raises resident memory rather than lowering it. Term counts equal to ``term_counts(content)``
(all of them, for facts placed by this code) are stored as null and recomputed on open:
~1/3 fewer log bytes, a little less JSON.

What is cached, and why: everything reads need, derived from disk and never ahead of it --
the scoring index (:class:`~hive_core.store.index.TermIndex`, shared with the memory store so
both rank identically), the fact bodies (``score`` returns whole facts and a Kuzu round trip
per call cost more than the query latency target), the tombstones, and which ids have a
row. A body is kept as its record text (the string its row or log entry holds, decoded per
read by ``held_body``) and fact ids are interned: a body dict and a copy of the id per
posting made the heap 3.15 MB per 1,000 facts held, now 1.7 MB (tests/test_learn_memory.py),
and an agent holds nearly every fact of a small hive (a fact's terms land on every shard).
A write commits its Kuzu transaction first and updates the cache after; opening a shard
replays rows and log in sequence order (:class:`~hive_core.store.kuzu_log.Replay`), so a
reopen, in this process or another, reproduces the same facts and search results. Kuzu is
read only when a shard opens, and for edges.

Writes: one transaction per ``put``/``drop``/``retract``, a put usually one statement: a
single ``UNWIND`` over parameter lists creating its primary rows *and* its log row (``state``
is a list too). Shape matters for memory: the first ``UNWIND`` or ``MERGE`` a database runs
allocates ~0.55 MB it keeps (a plain ``CREATE`` or ``MATCH ... SET`` ~0.1 MB), and the former
``UNWIND ... WITH count(*) CREATE`` log row doubled that (~1.2 MB per database, ~120 MB over
100 shards); folding the log row into the one ``UNWIND`` cut bench peak RSS by ~50 MB.
Splitting rows into ``CREATE`` statements of k patterns avoided it entirely but cost ~0.2 ms
per extra statement, ingest fell by a third. Tombstones and anchors ``CREATE`` the row when
there is none (``_rows``) instead of ``MERGE``. Statements are prepared once per store, on
first use: in kuzu 0.11.3 an unprepared parameterised ``execute`` is re-planned each call
and keeps ~1 KB per parameter row resident in the connection, which on ingest grew 100
shards by gigabytes.
"""

from __future__ import annotations

import heapq
import json
import os
import re
import sys
import threading
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from hive_core.config import DEFAULTS, KUZU_MIN_BUFFER_POOL_SIZE, CoreSettings
from hive_core.disk_space import DISK_FULL, DiskGuard, disk_full, free_bytes, is_enospc
from hive_core.errors import (
    ConfigError,
    DiskFull,
    HiveError,
    ShardCorrupt,
    ShardError,
    ShardInUse,
)
from hive_core.facts import RETRACTED, HiveEdge, HiveFact, said_later
from hive_core.scoring import Bm25
from hive_core.store.base import ScoredFact, StoreBatch, StoreRecord
from hive_core.store.index import IndexedStore, TermIndex
from hive_core.store.kuzu_log import (
    Replay,
    drop_entry,
    encoded,
    held_body,
    log_id,
    put_entry,
    row_record,
)
from hive_core.store.shard_lock import ShardLock

DB_FILE = "shard.kuzu"
MIB = 1024 * 1024
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

_COLUMNS = (("id", "STRING"), ("body", "STRING"), ("state", "INT64"), ("seq", "INT64"))
# Fact.state: what a row is. A role-less row (anchor, or a fact whose primary role moved
# away) may still carry a body; a retracted id keeps its row and stays retracted.
HELD, PRIMARY, TOMBSTONED, LOG = 0, 1, 2, 3
_SCHEMA = (
    "CREATE NODE TABLE IF NOT EXISTS Fact("
    + ", ".join(f"{name} {kind}" for name, kind in _COLUMNS) + ", PRIMARY KEY(id))",
    "CREATE REL TABLE IF NOT EXISTS Edge(FROM Fact TO Fact, edge_type STRING, "
    "properties STRING, created_at DOUBLE)",
)
_STATEMENTS = {
    # a put's rows, its log row included: one statement, one pipeline (see the docstring)
    "create": "UNWIND range(1, $n) AS i CREATE (:Fact {id: $id[i], body: $body[i], "
              "state: $state[i], seq: $seq})",
    "promote": "UNWIND range(1, $n) AS i MATCH (f:Fact {id: $id[i]}) "
               f"SET f.state = {PRIMARY}, f.seq = $seq, f.body = $body[i]",
    "log": f"CREATE (:Fact {{id: $log_id, body: $log, state: {LOG}, seq: $seq}})",
    "demote": f"MATCH (f:Fact {{id: $id}}) WHERE f.state = {PRIMARY} SET f.state = {HELD}",
    "tombstone": f"MATCH (f:Fact {{id: $id}}) SET f.state = {TOMBSTONED}",
    "new_tombstone": f"CREATE (:Fact {{id: $id, state: {TOMBSTONED}}})",
    "untombstone": f"MATCH (f:Fact {{id: $id}}) WHERE f.state = {TOMBSTONED} "
                   f"SET f.state = {HELD}",
    "anchor": f"CREATE (:Fact {{id: $id, state: {HELD}}})",
    "edge": "MATCH (a:Fact {id: $src}), (b:Fact {id: $dst}) "
            "MERGE (a)-[e:Edge {edge_type: $type}]->(b) SET e.properties = $props, "
            "e.created_at = $at",
    "edges_of": "MATCH (a:Fact)-[e:Edge]->(b:Fact) WHERE a.id = $id OR b.id = $id "
                "RETURN a.id, b.id, e.edge_type, e.properties, e.created_at",
    "scan": "MATCH (f:Fact) RETURN f.id, f.body, f.state, f.seq",
    "columns": "CALL table_info('Fact') RETURN name",
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


def _rows(ids: list[str], bodies: list[str], seq: int, **more: Any) -> dict[str, Any]:
    return {"n": len(ids), "id": ids, "body": bodies, "seq": seq, **more}


def _interned(batch: StoreBatch) -> StoreBatch:
    """``batch`` with its fact ids interned: one string object per id however many places
    name it. Decoded from the wire, an id is a new string in every posting list and in the
    primary list (~70 B each, ~5 postings per fact per shard): the sets of the index, the
    rows and the body cache then held a copy each, a third of the index's memory."""
    intern = sys.intern
    return StoreBatch(
        {intern(fid): fact for fid, fact in batch.facts.items()},
        {intern(fid): tf for fid, tf in batch.tf.items()},
        {term: list(map(intern, fids)) for term, fids in batch.postings.items()},
        list(map(intern, batch.primary)))


class KuzuShardStore(IndexedStore):
    """One shard in a Kuzu database at ``path`` (a directory). Thread-safe via one lock."""

    def __init__(
        self, path: str | Path, *, agent_id: str = "", bm25: Bm25,
        buffer_pool_size: int, max_db_size: int, max_num_threads: int = 1,
        disk_reserve: int = DEFAULTS.disk_reserve_bytes,
    ) -> None:
        self.path = Path(path)
        self.agent_id = agent_id
        self.bm25 = bm25
        self._lock = threading.RLock()
        self._index = TermIndex(bm25)
        # fact_id -> record text (kuzu_log's, the very string of its row or log entry) of
        # every live fact: ~4x smaller than the body dict; decoded per read (held_body).
        self._bodies: dict[str, str] = {}
        self._tombstones: set[str] = set()
        self._rows: set[str] = set()  # ids with a non-log row (primary, demoted, anchor, ...)
        self._seq = 0  # sequence number of the last write
        self._disk = DiskGuard(self.path, disk_reserve)
        private_dir(self.path)
        self._claim: ShardLock | None = ShardLock.acquire(self.path)
        try:
            if self._open(buffer_pool_size, max_db_size, max_num_threads):
                self._rebuild()
            private_files(self.path)
        except BaseException:
            self._claim.release()
            self._claim = None
            raise

    def _open(self, buffer_pool_size: int, max_db_size: int, threads: int) -> bool:
        """Open (or create) the database; True if it existed, so there is state to replay.

        A new database is neither checked nor scanned: at 100 shards those two queries kept
        ~0.3 MB per database resident for nothing.
        """
        kz = _kuzu_module()
        target = self.path / DB_FILE
        existed = target.exists()
        try:
            self._disk.check()  # the engine aborts natively on a full disk
        except DiskFull:
            if not existed:
                raise  # a new shard would start by writing: refuse to start, naming the disk
            # An existing shard opens to serve reads; its writes are refused (logged once).
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
        self._stmts: dict[str, Any] = {}
        if not existed:
            return False
        found = [row[0] for row in self._run("columns", {})]
        if found != [name for name, _ in _COLUMNS]:
            self._conn.close()
            self._db.close()
            raise ShardCorrupt(f"shard {self.path} has another schema (Fact columns {found})")
        return True

    def _statement(self, name: str) -> Any:
        """Prepared on first use: each costs ~40 KB resident, and most shards use a few."""
        stmt = self._stmts.get(name)
        if stmt is None:
            with warnings.catch_warnings():
                # kuzu deprecates prepare(); it is still the only way to avoid per-call
                # re-planning and the per-call memory growth described in the module docstring.
                warnings.simplefilter("ignore", DeprecationWarning)
                stmt = self._stmts[name] = self._conn.prepare(_STATEMENTS[name])
        return stmt

    def _run(self, name: str, params: Mapping[str, Any]) -> list[list[Any]]:
        """Run a statement; one without parameters (the open-time scans) is not kept prepared."""
        query = self._statement(name) if params else _STATEMENTS[name]
        try:
            result = self._conn.execute(query, dict(params))
            rows = result.get_all()
            result.close()
        except RuntimeError as exc:
            if "no space left" in str(exc).lower():
                raise self._disk.failed(exc) from None
            raise ShardError(f"shard {self.path}: {name} failed: {exc}") from None
        except OSError as exc:
            if is_enospc(exc):
                raise self._disk.failed(exc) from None
            raise
        return rows

    def _transaction(self, steps: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
        """Every write goes through here: refused (DiskFull) while the disk is below its
        reserve, since the engine would abort the process instead of failing the write."""
        if not steps:
            return
        self._disk.check()
        if len(steps) == 1:  # one statement is a transaction of its own
            self._run(*steps[0])
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
        """Replay rows and log entries in write order (see :class:`Replay`)."""
        events: list[tuple[int, int, Any]] = []
        primary: list[str] = []
        for fid, body, state, seq in self._run("scan", {}):
            self._seq = max(self._seq, seq or 0)
            if state == LOG:
                events.append((seq, 1, body))
                continue
            if state not in (HELD, PRIMARY, TOMBSTONED):
                raise ShardCorrupt(f"shard {self.path}: row {fid!r} has unknown state {state}")
            self._rows.add(fid)
            if state == TOMBSTONED:
                self._tombstones.add(fid)
            if body is not None:  # else an anchor
                events.append((seq, 0, (fid, body)))
            if state == PRIMARY:
                primary.append(fid)
        replay = Replay()
        for _, kind, payload in heapq.nsmallest(len(events), events, key=lambda e: e[:2]):
            if kind:
                replay.entry(payload)
            else:
                replay.row(*row_record(*payload))
        live = replay.live(self._tombstones)
        live = [sys.intern(fid) for fid in live]
        bodies = {fid: replay.bodies[fid] for fid in live}
        self._bodies = {fid: encoded(fid, body, replay.tf[fid]) for fid, body in bodies.items()}
        self._index.merge_batch(_interned(StoreBatch(
            bodies, {fid: replay.tf[fid] for fid in live}, replay.postings(live),
            [fid for fid in primary if fid in self._bodies])))

    # -- writes -------------------------------------------------------------------------------
    def put(self, batch: StoreBatch) -> int:
        batch = _interned(batch)
        with self._lock:
            index, tombstones, held = self._index, self._tombstones, self._bodies
            refused: set[str] = set()
            new: dict[str, Mapping[str, Any]] = {}
            later: dict[str, Mapping[str, Any]] = {}  # held facts said again, later
            for fid, fact in batch.facts.items():  # one pass: ingest calls this ~25x per fact
                if fid in held:  # the facts the index holds
                    if said_later(held_body(fid, held[fid]), fact):
                        later[fid] = fact
                    continue
                if fid in tombstones or fact.get("status") == RETRACTED:
                    refused.add(fid)
                else:
                    new[fid] = fact
            postings = index.unseen(batch.postings, refused)
            promote = [fid for fid in dict.fromkeys(batch.primary)
                       if fid not in refused and fid not in index.primary]
            if later:
                self._resay(later)
            if not (new or postings or promote):
                return 0
            seq = self._seq + 1
            tfs = {fid: batch.tf[fid] for fid in new}
            # a known fact keeps the body and term counts it has here (as in the memory store):
            # its record text, as held, is the row's body
            texts = {fid: encoded(fid, new[fid], tfs[fid]) if fid in new else held[fid]
                     for fid in promote}
            created = [fid for fid in promote if fid not in self._rows]
            ids, states = list(created), [PRIMARY] * len(created)
            bodies = [texts[fid] for fid in created]
            promoting = set(promote)
            logged = {fid: fact for fid, fact in new.items() if fid not in promoting}
            if logged or postings:
                ids.append(log_id(seq))
                bodies.append(put_entry(logged, tfs, postings))
                states.append(LOG)
            steps: list[tuple[str, Mapping[str, Any]]] = []
            if ids:
                steps.append(("create", _rows(ids, bodies, seq, state=states)))
            promoted = [fid for fid in promote if fid in self._rows]
            if promoted:
                steps.append(("promote", _rows(
                    promoted, [texts[fid] for fid in promoted], seq)))
            self._transaction(steps)
            self._seq = seq
            self._rows.update(created)
            held.update((fid, encoded(fid, fact, tfs[fid])) for fid, fact in new.items())
            return index.merge_batch(StoreBatch(new, tfs, postings, promote))

    def _resay(self, bodies: Mapping[str, Mapping[str, Any]]) -> None:
        """Keep the latest saying of facts held here (hive_core.context.said_later): the
        new bodies are logged (replay keeps the last body it reads) and served from now."""
        seq = self._seq + 1
        tfs = {fid: self._index.tf[fid] for fid in bodies}
        self._transaction([("create", _rows([log_id(seq)], [put_entry(bodies, tfs, {})], seq,
                                            state=[LOG]))])
        self._seq = seq
        self._bodies.update((fid, encoded(fid, body, tfs[fid])) for fid, body in bodies.items())

    def retract(self, fact_id: str) -> bool:
        fact_id = sys.intern(fact_id)
        with self._lock:
            known = fact_id in self._rows
            self._transaction([("tombstone" if known else "new_tombstone", {"id": fact_id})])
            self._tombstones.add(fact_id)
            self._rows.add(fact_id)
            self._bodies.pop(fact_id, None)
            return self._index.remove(fact_id)

    def restore(self, fact_id: str) -> bool:
        """Lift a tombstone (``learn --restore``): the row becomes role-less; the put that
        follows the restore makes it primary again where this shard owns the fact."""
        with self._lock:
            if fact_id not in self._tombstones:
                return False
            self._transaction([("untombstone", {"id": fact_id})])
            self._tombstones.discard(fact_id)
            return True

    def drop(self, fact_id: str, terms: Iterable[str], primary: bool) -> None:
        with self._lock:
            index = self._index
            if fact_id not in index:
                return
            held = set(index.roles(fact_id))
            lost = held.intersection(terms)
            was_primary = fact_id in index.primary
            keeps_primary = was_primary and not primary
            forgotten = not keeps_primary and not (held - lost)
            if not (lost or (primary and was_primary) or forgotten):
                return
            self._seq += 1
            steps: list[tuple[str, Mapping[str, Any]]] = [
                ("log", {"log_id": log_id(self._seq), "seq": self._seq,
                         "log": drop_entry(fact_id, lost, forgotten)})]
            if primary and was_primary:
                steps.append(("demote", {"id": fact_id}))
            self._transaction(steps)
            if index.drop(fact_id, lost, primary):
                del self._bodies[fact_id]

    def add_edge(self, edge: HiveEdge) -> None:
        with self._lock:
            ends = [sys.intern(fid) for fid in dict.fromkeys((edge.source_id, edge.target_id))]
            steps: list[tuple[str, Mapping[str, Any]]] = [
                ("anchor", {"id": fid}) for fid in ends if fid not in self._rows]
            steps.append(("edge", {"src": edge.source_id, "dst": edge.target_id,
                                   "type": edge.edge_type, "props": json.dumps(edge.properties),
                                   "at": float(edge.created_at)}))
            self._transaction(steps)
            self._rows.update(ends)

    # -- reads --------------------------------------------------------------------------------
    def get(self, fact_id: str) -> HiveFact | None:
        with self._lock:
            text = self._bodies.get(fact_id)
        return HiveFact.from_dict(held_body(fact_id, text)) if text is not None else None

    def score(
        self, terms: Iterable[str], weights: Mapping[str, float], limit: int,
        avgdl: float | None = None,
    ) -> list[ScoredFact]:
        with self._lock:
            best = self._index.top(terms, weights, limit, avgdl)
            texts = [self._bodies[fid] for fid, _ in best]
        return [ScoredFact(HiveFact.from_dict(held_body(fid, text)), s)
                for text, (fid, s) in zip(texts, best, strict=True)]

    def _body(self, fact_id: str) -> Mapping[str, Any]:
        return held_body(fact_id, self._bodies[fact_id])

    def records(self) -> Iterator[StoreRecord]:
        with self._lock:
            index = self._index
            out = [StoreRecord(held_body(fid, text), index.tf[fid], index.roles(fid),
                               fid in index.primary)
                   for fid, text in self._bodies.items()]
        return iter(out)

    def get_edges(self, fact_id: str) -> list[HiveEdge]:
        with self._lock:
            rows = self._run("edges_of", {"id": fact_id})
        edges = [HiveEdge(src, dst, kind, json.loads(props) if props else {}, at)
                 for src, dst, kind, props, at in rows]
        return sorted(edges, key=lambda e: e.key)

    @property
    def disk_full(self) -> bool:
        """Writes are being refused for lack of disk space (see hive_core.disk_space)."""
        return self._disk.full

    def close(self) -> None:
        """Close the database and give up the claim on its directory (idempotent).

        The checkpoint (the write-ahead log folded into the database file) is taken here
        first, explicitly, because the engine's own one on close swallows a full disk: no
        error, the process exits 0 (measured, kuzu 0.11.3, a 40 MB tmpfs filled to 0-8 MB
        free: the data file grows as far as it can, the WAL stays and is replayed at the next
        open, so every acknowledged write survives -- but nobody is told). A full disk is
        raised as DiskFull *after* the shard is closed and its claim released: one line
        naming the path, for whoever stops the process (an agent exits 1 with it).
        """
        with self._lock:
            if self._claim is None:
                return
            problem = self._checkpoint()
            self._stmts = {}
            try:
                self._conn.close()
                self._db.close()
                private_files(self.path)
            finally:
                self._claim.release()
                self._claim = None
        if problem is not None:
            raise problem

    def _checkpoint(self) -> HiveError | None:
        """CHECKPOINT now; the error to raise once closed (None: written)."""
        try:
            self._conn.execute("CHECKPOINT")
            return None
        except RuntimeError as exc:
            if "no space left" not in str(exc).lower():
                return ShardError(f"shard {self.path}: checkpoint on close failed: "
                                  f"{str(exc).splitlines()[0][:200]}")
        try:
            free = free_bytes(self.path)
        except OSError:
            free = 0
        return DiskFull(f"{DISK_FULL}{self.path}: {free // MIB} MB free when the shard closed, "
                        "so its checkpoint was not written; its write-ahead log keeps every "
                        "acknowledged write and is replayed at the next open: free space "
                        "before restarting", str(self.path), free)


def private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) owner-only, whatever the process umask: a shard
    holds the hive's facts. Existing parents are left as they are (a storage path may sit in
    a shared folder); the shard's own folder is always made 0700."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    try:
        for folder in reversed(missing):
            folder.mkdir(mode=0o700, exist_ok=True)
            os.chmod(folder, 0o700)
        os.chmod(path, 0o700)
    except OSError as exc:
        if is_enospc(exc):
            raise disk_full(path.parent if path.parent.exists() else path) from exc
        raise


def private_files(path: Path) -> None:
    """Make every file in the shard folder 0600. The engine creates its files with the
    process umask (agents set 077; a library caller may not), and the folder is 0700 anyway:
    this makes the files say the same."""
    for entry in os.scandir(path):
        if entry.is_file(follow_symlinks=False) and entry.stat().st_mode & 0o077:
            os.chmod(entry.path, 0o600)


def open_kuzu_store(agent_id: str, path: Path | None, bm25: Bm25, settings: CoreSettings,
                    shards_in_process: int) -> KuzuShardStore:
    """The ``kuzu`` entry of hive_core.store.registry: the shard at ``path`` (created), its
    buffer pool one share of the process budget among ``shards_in_process`` shards."""
    if path is None:
        raise ConfigError("shard backend 'kuzu' needs a storage path")
    if not _SAFE_NAME.match(agent_id):
        raise ConfigError(f"agent id {agent_id!r} cannot name a shard directory")
    return KuzuShardStore(path, agent_id=agent_id, bm25=bm25,
                          buffer_pool_size=buffer_pool_for(shards_in_process, settings),
                          max_db_size=settings.kuzu_max_db_size,
                          disk_reserve=settings.disk_reserve_bytes)
