"""One agent's part in a federation of hives: escalate, broadcast, answer across hives.

The tree comes from the hives' configs (hive_core.federation_tree, re-read every ~2 s, so
``federate`` and ``--detach`` reach a running hive). The rules are the library's
(hive_core.federation), carried over the hives' own transports (hive_core.federation_link):

* **escalation**: a fact learned here with confidence >= ``escalation_confidence``, in a
  hive that has a parent, goes into this agent's outbox for the parent before the LEARN is
  acknowledged (agent_runtime.outbox) and is delivered by a background thread, retried with
  backoff while the parent is down;
* **broadcast**: an agent of the parent that receives it stores it in its own hive (placed on
  its ring like any fact) and, before acknowledging, puts it in its outbox for every other
  group -- never back to the group it came from -- and, at or above the threshold, for its
  own parent. A group receiving a broadcast stores it and sends it nowhere;
* **questions** (``ask --federated``): hive_core.federated_search, one request per hive per
  round, each hive running its own <= ``query_fanout``-shard search.

A hive refuses a store or a question from a hive that is not (any more) its parent, group or
sibling, so a detach stops the flow both ways. Delivery is at least once; a fact's id is its
content hash, so a repeat stores nothing new ("exactly once" as the hives see it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from agent_runtime.outbox import DOWN, UP, Entry, Outbox
from hive_core import multihop
from hive_core.distributed import DistributedHiveGraph
from hive_core.errors import HiveError
from hive_core.facts import HiveFact
from hive_core.federated_search import HivePool, WorldStats, merge
from hive_core.federation_link import Links
from hive_core.federation_tree import TreeView
from hive_core.messages import MessageType
from hive_core.query import parse
from hive_core.search import SearchResult, shape
from hive_core.semantic.retrieval import pool_for
from hive_core.store.base import ScoredFact

log = logging.getLogger("agent_runtime.federation")

DELIVERY_TIMEOUT = 10.0  # seconds one delivery may take (a store of up to MAX_FACTS facts)
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0  # seconds between tries of a hive that failed
PUMP_IDLE = 1.0  # seconds between looks at the outbox when nothing woke the pump
MAX_FACTS = 2000  # facts in one HIVE_STORE (a learn batch's escalations fit)
MAX_POOL = 1000  # facts a hive returns for a federated question (the asker's pool size)
STATS_SHARE = 0.4  # of a federated question's budget, for the statistics round
STOP_WAIT = 2.0  # seconds a stopping agent waits for a delivery in flight


def _text(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


class HiveFederation:
    """Escalation, broadcast and federated questions for agent ``agent`` of ``hive``."""

    def __init__(self, hive: str, agent: str, graph: Callable[[], DistributedHiveGraph | None],
                 outbox: Path, threshold: float) -> None:
        self.hive = hive
        self.agent = agent
        self._graph = graph
        self.threshold = threshold
        self.view = TreeView()
        self.links = Links(sender=f"{hive}/{agent}")
        self.outbox = Outbox(outbox)
        self.counters = {"escalated": 0, "broadcast": 0, "received": 0, "delivered": 0,
                         "dropped": 0, "questions": 0}
        self.last_error: str | None = None
        self._lock = threading.Lock()
        self._retry_at: dict[str, tuple[float, float]] = {}  # hive -> (next try, delay)
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="federation")
        self._thread: threading.Thread | None = None

    # -- life -------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._pump, name="federation-pump", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.outbox.wake.set()
        if self._thread is not None:
            # A delivery cut short stays in the outbox: the next start sends it again.
            self._thread.join(timeout=STOP_WAIT)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.links.close()

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counters[key] += n

    def status(self) -> dict[str, Any]:
        tree = self.view.tree()
        with self._lock:
            counters = dict(self.counters)
            error = self.last_error
        return {"parent": tree.parent(self.hive), "children": tree.children(self.hive),
                "outbox": self.outbox.counts(), **counters, "last_error": error}

    # -- learning here ----------------------------------------------------------------------
    def learned(self, facts: Sequence[HiveFact]) -> None:
        """Facts this agent just placed in its hive: those at or above the threshold wait
        in the outbox for the parent (written before the LEARN is acknowledged)."""
        parent = self.view.tree().parent(self.hive)
        rising = [f for f in facts if f.confidence >= self.threshold]
        if parent is not None and rising:
            self.outbox.put(parent, UP, self.hive, rising)
            self._count("escalated", len(rising))

    # -- requests from other hives ----------------------------------------------------------
    def handle(self, kind: MessageType, sender: str, payload: Mapping[str, Any]
               ) -> dict[str, Any]:
        from_hive = payload.get("from_hive")
        if not isinstance(from_hive, str) or sender.split("/", 1)[0] != from_hive:
            raise ValueError(f"{kind} needs 'from_hive', the sending hive")
        if kind == MessageType.HIVE_STORE:
            return self._receive(from_hive, payload)
        return self._answer(from_hive, payload)

    def _receive(self, from_hive: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        tree = self.view.tree()
        direction, origin = payload.get("direction"), payload.get("origin")
        if direction == UP and tree.parent(from_hive) != self.hive:
            raise ValueError(f"hive {from_hive!r} is not a group of hive {self.hive!r}")
        if direction == DOWN and tree.parent(self.hive) != from_hive:
            raise ValueError(f"hive {from_hive!r} is not the parent of hive {self.hive!r}")
        if direction not in (UP, DOWN) or not isinstance(origin, str):
            raise ValueError("HIVE_STORE needs 'direction' (up or down) and 'origin'")
        raw = payload.get("facts")
        if not isinstance(raw, list) or not raw or len(raw) > MAX_FACTS:
            raise ValueError(f"HIVE_STORE needs 1 to {MAX_FACTS} facts")
        facts = [HiveFact.from_dict(d) for d in raw]
        for fact in facts:  # where it came from, kept like a LEARN's sender
            fact.metadata.setdefault("federated_from", origin)
        graph = self._graph()
        if graph is None:
            raise ValueError(f"agent {self.agent} is not serving")
        failed = graph.store_federated_facts(facts, via=self.agent)
        if direction == UP:  # on to the other groups, and up again if it rates so
            for child in tree.children(self.hive):
                if child != from_hive:
                    self.outbox.put(child, DOWN, origin, facts)
                    self._count("broadcast", len(facts))
            parent = tree.parent(self.hive)
            rising = [f for f in facts if f.confidence >= self.threshold]
            if parent is not None and rising:
                self.outbox.put(parent, UP, origin, rising)
                self._count("escalated", len(rising))
        self._count("received", len(facts))
        return {"stored": len(facts), "failed_shards": failed}

    def _answer(self, from_hive: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        if from_hive not in self.view.tree().federated(self.hive):
            raise ValueError(f"hive {from_hive!r} is not federated with hive {self.hive!r}")
        question, limit, budget = payload.get("question"), payload.get("limit"), \
            payload.get("timeout")
        if not isinstance(question, str) or not question.strip() or not isinstance(
                limit, int) or isinstance(limit, bool) or not 1 <= limit <= 1000:
            raise ValueError("HIVE_QUERY needs 'question' and 'limit' (1-1000)")
        if budget is not None and (isinstance(budget, bool) or
                                   not isinstance(budget, int | float) or budget <= 0):
            raise ValueError("HIVE_QUERY timeout must be a number of seconds > 0")
        graph = self._graph()
        if graph is None:
            raise ValueError(f"agent {self.agent} is not serving")
        self._count("questions")
        if payload.get("phase") == "stats":
            world, failed = graph.world_stats(question, self.agent, budget)
            return {"world": world.to_dict(), "shards_failed": failed}
        if payload.get("phase") != "search":
            raise ValueError("HIVE_QUERY phase must be 'stats' or 'search'")
        world, pool = WorldStats.from_dict(payload.get("world")), payload.get("pool")
        if not isinstance(pool, int) or isinstance(pool, bool) or not 1 <= pool <= MAX_POOL:
            raise ValueError(f"HIVE_QUERY search needs 'pool' (1-{MAX_POOL}), the facts to return")
        hop = self._hop(graph, payload.get("hop"))
        fetched: dict[str, list[ScoredFact]] = {}
        # The pool as BM25 ranked it, ``pool`` facts whatever this hive's own config: the
        # asker re-ranks (semantic, context) and shapes the merged pools once.
        result = graph.search(question, pool, self.agent, budget, world=world,
                              fetched=fetched, hop=hop)
        return HivePool(result, fetched).to_dict()

    def _hop(self, graph: DistributedHiveGraph, spec: Any) -> multihop.Hop | None:
        """The second hop a federated question asks of this hive: its finding terms routed
        preferring the shards this hive searched for the first hop."""
        if spec is None:
            return None
        finding, asked = (spec.get("finding"), spec.get("asked")) if isinstance(
            spec, dict) else (None, None)
        if not (isinstance(finding, list) and isinstance(asked, list) and all(
                isinstance(x, str) for x in [*finding, *asked])):
            raise ValueError("HIVE_QUERY hop needs 'finding' and 'asked' (lists of strings)")
        hop = graph.plan_hop(finding, asked, self.agent)
        if hop is None:
            raise ValueError(f"the second hop would take hive {self.hive} past "
                             f"query_fanout={graph.settings.query_fanout} shards")
        return hop

    # -- a federated question asked here ----------------------------------------------------
    def search(self, graph: DistributedHiveGraph, question: str, limit: int,
               budget: float) -> tuple[SearchResult, list[str], list[str]]:
        """The question over this hive and the hives it federates with; returns the merged,
        shaped result and the hives asked and failed (a failed hive is listed in
        ``shards_failed`` by name, so the result is partial). A two-hop question
        (hive_core.multihop) takes its second hop across the hives too: each plans it on the
        shards it searched for the first, as one flat hive would."""
        hives = self.view.tree().federated(self.hive)
        ends = time.monotonic() + budget
        failed: dict[str, str] = {}
        result = self._round(graph, question, limit, ends, hives, failed, {})
        chain = multihop.detect(question)
        if chain is not None:
            first = result

            def second_hop(second: str, finding: list[str]) -> SearchResult | None:
                asked = _shards_by_hive(first.shards_searched, self.hive)
                if graph.plan_hop(finding, asked.get(self.hive, []), self.agent) is None:
                    return None
                hops = {h: {"finding": finding, "asked": asked.get(h, [])}
                        for h in [self.hive, *hives]}
                return self._round(graph, second, limit, ends,
                                   [h for h in hives if h not in failed], failed, hops)

            result = multihop.follow(chain, first, limit, graph.settings.query_fanout,
                                     second_hop)
        result.shards_failed = sorted(set(result.shards_failed) | set(failed))
        for hive, why in failed.items():
            log.warning("federated question: hive %s left out: %s", hive, why)
        return result, hives, sorted(failed)

    def _round(self, graph: DistributedHiveGraph, question: str, limit: int, ends: float,
               hives: Sequence[str], failed: dict[str, str],
               hops: Mapping[str, dict[str, list[str]]]) -> SearchResult:
        """One federated search: the statistics round, then every hive's pool, merged,
        re-ranked and shaped (hive_core.federated_search). ``hops``: per hive, a second
        hop's plan. This hive's config decides the semantic re-rank (a second hop is
        lexical, as in one hive) and so the pool size every hive returns."""
        parsed = parse(question)
        semantic = graph.semantic if not hops else None
        rerank = None if semantic is None else semantic.relation_rerank(question)
        pool = pool_for(semantic, parsed, limit)
        base = {"question": question, "limit": limit, "from_hive": self.hive}
        stats_wait = max(0.1, ends - time.monotonic()) * STATS_SHARE
        remote = {h: self._ask(h, {**base, "phase": "stats"}, stats_wait) for h in hives}
        world, local_failed = graph.world_stats(question, self.agent, stats_wait)
        for hive, future in remote.items():
            got = self._outcome(hive, future, failed)
            if got is not None:
                try:
                    world = world + WorldStats.from_dict(got.get("world"))
                except ValueError as exc:
                    failed[hive] = _text(exc)

        left = max(0.1, ends - time.monotonic())
        search = {**base, "phase": "search", "world": world.to_dict(), "pool": pool}
        remote = {h: self._ask(h, {**search, **({"hop": hops[h]} if h in hops else {})},
                               left) for h in hives if h not in failed}
        fetched: dict[str, list[ScoredFact]] = {}
        local = graph.search(question, pool, self.agent, left, world=world, fetched=fetched,
                             hop=self._hop(graph, hops.get(self.hive)))
        pools: list[tuple[str, HivePool]] = [(self.hive, HivePool(local, fetched))]
        for hive, future in remote.items():
            got = self._outcome(hive, future, failed)
            if got is not None:
                try:
                    pools.append((hive, HivePool.from_dict(got)))
                except (ValueError, KeyError, TypeError) as exc:
                    failed[hive] = f"a malformed reply: {_text(exc)}"
        merged = merge(pools, pool, self.hive, rerank)
        merged.shards_failed = sorted(set(merged.shards_failed) | set(local_failed))
        return shape(merged, parsed, limit)

    def _ask(self, hive: str, payload: dict[str, Any], wait: float) -> Future[dict[str, Any]]:
        return self._pool.submit(self.links.to(hive).request, MessageType.HIVE_QUERY,
                                 payload, wait)

    @staticmethod
    def _outcome(hive: str, future: Future[dict[str, Any]], failed: dict[str, str]
                 ) -> dict[str, Any] | None:
        try:
            return future.result()  # the link's own deadline bounds this wait
        except Exception as exc:  # any failure of one hive leaves it out, named
            failed[hive] = _text(exc) if isinstance(exc, HiveError) else \
                f"{type(exc).__name__}: {_text(exc)}"
            return None

    # -- delivery ---------------------------------------------------------------------------
    def _pump(self) -> None:
        while not self._stop.is_set():
            self.outbox.wake.wait(PUMP_IDLE)
            self.outbox.wake.clear()
            try:
                self.deliver()
            except Exception as exc:  # reported, and the next round tries again
                self._error(f"outbox delivery failed: {type(exc).__name__}: {_text(exc)}")

    def deliver(self) -> int:
        """One pass over the outbox: each delivery whose hive is not backing off; returns
        how many were acknowledged."""
        entries, bad = self.outbox.pending()
        for path in bad:
            self._error(f"outbox file {path} is not a delivery; moved aside")
        tree = self.view.tree()
        done = 0
        for entry in entries:
            if self._stop.is_set():
                break
            still = (tree.parent(self.hive) == entry.to if entry.direction == UP
                     else tree.parent(entry.to) == self.hive)
            if not still:
                self.outbox.done(entry)
                self._count("dropped", len(entry.facts))
                self._error(f"dropped {len(entry.facts)} fact(s) for hive {entry.to}: it is "
                            f"no longer the {'parent' if entry.direction == UP else 'group'} "
                            f"of hive {self.hive}")
                continue
            if time.monotonic() < self._retry_at.get(entry.to, (0.0, 0.0))[0]:
                continue
            done += self._send(entry)
        return done

    def _send(self, entry: Entry) -> int:
        try:
            self.links.to(entry.to).request(MessageType.HIVE_STORE, entry.payload(self.hive),
                                            DELIVERY_TIMEOUT)
        except Exception as exc:  # kept and retried with backoff, whatever went wrong
            delay = min(BACKOFF_MAX, self._retry_at.get(entry.to, (0.0, BACKOFF_FIRST / 2))[1]
                        * 2)
            first = entry.to not in self._retry_at
            self._retry_at[entry.to] = (time.monotonic() + delay, delay)
            if first:  # once per outage, not once per try
                self._error(f"hive {entry.to} did not take {len(entry.facts)} fact(s) "
                            f"(kept, retried every <= {BACKOFF_MAX:g}s): {_text(exc)}")
            return 0
        if self._retry_at.pop(entry.to, None) is not None:
            log.warning("hive %s takes deliveries again", entry.to)
        self.outbox.done(entry)
        self._count("delivered", len(entry.facts))
        return 1

    def _error(self, message: str) -> None:
        log.warning("%s", message)
        with self._lock:
            self.last_error = message


def _shards_by_hive(shards: Sequence[str], home: str) -> dict[str, list[str]]:
    """A federated result's shards by hive: ``g2/agent_1`` is g2's, a bare name ``home``'s
    (hive_core.federated_search.merge)."""
    out: dict[str, list[str]] = {}
    for shard in shards:
        hive, _, agent = shard.rpartition("/")
        out.setdefault(hive or home, []).append(agent)
    return out
