"""The Agent: one hive member in one process, and the composition root of that process.

It owns one shard (Kuzu on disk by default, or memory) and a view of the whole hive: a
:class:`~hive_core.distributed.DistributedHiveGraph` whose rings follow the hive's ring view
(:mod:`hive_core.membership`), kept by a :class:`~agent_runtime.ring_keeper.RingKeeper`:
agents join, leave and die while the hive runs, and ranges move between them without a wrong
or partial answer. Liveness comes from the transport's side of the machine: an ``flock`` per
agent on one machine (``local``), heartbeat keys on Redis.

On its transport the agent serves, beside its shard's SHARD_QUERY/STORE/DELETE:

* ``SHARD_QUERY {"op": "status"}`` -> agent, ready, pid, facts, index_size, rss_mb, ...
* ``LEARN {"turns": [str | {"content", "session", "turn"}]}`` -> facts extracted (each with
  its turn's session and index in ``metadata``), placed on their ring owners (not stored
  here unless this shard owns them), with the shards that missed their copy.
* ``ASK {"question": str, "limit": int[, "federated": bool]}`` -> an answer line, its
  sources, the facts found, the shards asked and those that failed; federated, the hives of
  its federation are asked too (agent_runtime.federation), listed in ``hives_asked``.
* ``HIVE_STORE`` / ``HIVE_QUERY`` from the other hives of a federation: facts escalated or
  broadcast to this hive, and the two rounds of a federated question.

The socket is bound only after the shard is open and the ring view adopted, so a status
reply means ready; the agent then joins the ring if it is not a member yet (its status says
``joining`` until it holds what it owns). A background thread runs anti-entropy
(:mod:`hive_core.gossip`) soon after start and every ``gossip_interval`` seconds, so an
agent that was down, or restarted with an empty shard, gets back the replicas it missed.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Mapping
from typing import Any

import psutil

from agent_runtime.answering import Answerer, ExtractiveAnswerer
from agent_runtime.federation import HiveFederation
from agent_runtime.forgetting import FORGET_LIMIT, forget_request
from agent_runtime.learn_requests import LearnBudget, LearnJournal, learn_payload, learn_turns
from agent_runtime.learning import Extractor, make_extractor
from agent_runtime.ring_keeper import RingKeeper
from hive_core import gossip
from hive_core.auth import Authenticated
from hive_core.config import CoreSettings
from hive_core.distributed import DistributedHiveGraph
from hive_core.errors import HiveError
from hive_core.hive_config import HiveConfig
from hive_core.membership.liveness import FileLiveness, Liveness
from hive_core.membership.store import ViewStore, open_view_store
from hive_core.messages import Envelope, MessageType
from hive_core.scoring import Bm25
from hive_core.search import SearchResult
from hive_core.semantic import semantic_index
from hive_core.shard_server import ShardServer
from hive_core.store.base import ShardStore
from hive_core.store.registry import open_store
from hive_core.transports.base import ShardTransport
from hive_core.transports.registry import open_transport
from hive_core.transports.unix import UnixSocketTransport

log = logging.getLogger("agent_runtime")

MAX_ASK_LIMIT = 100
DEFAULT_ASK_LIMIT = 5
FEDERATED_BUDGET = 10.0  # seconds a federated question may take when its asker set none
ASK_MIN_ROUND = 0.05  # seconds: less left than this before the asker's deadline, no 2nd round


def open_shard(config: HiveConfig, name: str, settings: CoreSettings, bm25: Bm25) -> ShardStore:
    """This agent's shard store (one shard in this process: it gets the whole pool)."""
    return open_store(config.shard_backend, name, bm25=bm25, settings=settings,
                      path=config.shard_path(name), shards_in_process=1)


class Agent:
    """One agent process's state and message handler (see module docstring)."""

    def __init__(
        self, config: HiveConfig, name: str, *, prompt: str = "",
        extractor: Extractor | None = None, answerer: Answerer | None = None,
        transport: ShardTransport | None = None, settings: CoreSettings | None = None,
    ) -> None:
        config.agent(name)  # ConfigError if the hive has no such agent
        self.config = config
        self.name = name
        self.prompt = prompt
        self.extractor = extractor or make_extractor(prompt=prompt)
        self.answerer = answerer or ExtractiveAnswerer()
        self.transport = transport or open_transport(config)
        self.settings = settings or CoreSettings.from_env()
        self.graph: DistributedHiveGraph | None = None
        self.server: ShardServer | None = None
        self.keeper: RingKeeper | None = None
        self._liveness: FileLiveness | None = None
        self._views: ViewStore | None = None
        self._started = time.monotonic()
        self._process = psutil.Process()
        self._stopping = threading.Event()
        self._gossip: threading.Thread | None = None
        self.gossip_rounds = 0
        self.learn_budget = LearnBudget(config.max_turn_bytes)
        self.learn_journal = LearnJournal()
        self.federation = HiveFederation(
            config.name, name, lambda: self.graph, config.data_dir / "federation" / name,
            self.settings.escalation_confidence)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self, store: ShardStore | None = None) -> None:
        """Open the shard, build the ring, then bind: from here on the agent is ready."""
        graph = DistributedHiveGraph(
            hive_id=self.config.name, transport=self.transport, settings=self.settings,
            replication_factor=self.config.replication_factor,
            query_fanout=self.config.query_fanout, search_timeout=self.config.search_timeout)
        if self.config.semantic:  # hive_core.semantic; a missing extra is a ConfigError
            graph.semantic = semantic_index()
        liveness = self._liveness_source()
        store = store if store is not None else open_shard(
            self.config, self.name, graph.settings, graph.bm25)
        try:
            self.server = graph.add_local_agent(self.name, store, bind=False)
            self._views = open_view_store(self.config)
            keeper = RingKeeper(self.name, graph, store, self._views, liveness,
                                self.config.agent_names(), graph.settings)
            keeper.adopt()
            self.server.guard = keeper  # writes land under its eye (membership.late_writes)
            self.keeper = keeper
            graph.on_promoted = self.federation.learned
            self.graph = graph
            self.transport.bind(self.name, self.handle)
            keeper.join()
            keeper.start()
        except BaseException:
            self.graph = None
            store.close()
            self._release()
            raise
        self._started = time.monotonic()
        self._gossip = threading.Thread(target=self._gossip_loop, name="gossip", daemon=True)
        self._gossip.start()
        self.federation.start()

    def _liveness_source(self) -> Liveness:
        """Who is alive: the transport when it knows (Redis heartbeats), else an flock per
        agent in the hive's run folder, held from here until stop."""
        if isinstance(self.transport, Liveness):
            return self.transport
        self._liveness = FileLiveness(self.config.run_dir)
        self._liveness.hold(self.name)
        return self._liveness

    def _release(self) -> None:
        if self.keeper is not None:
            self.keeper.stop()
            self.keeper = None
        if self._views is not None:
            self._views.close()
            self._views = None
        if self._liveness is not None:
            self._liveness.close()
            self._liveness = None

    def _gossip_loop(self) -> None:
        """Anti-entropy in the background: soon after start with every live co-owner (a
        restarted agent catches up on what it missed), then every ``gossip_interval`` seconds
        with a rotation of them (digests only, unless replicas differ: hive_core.gossip). A
        round that meets dead peers is logged and retried next round, never fatal."""
        interval = self.settings.gossip_interval
        # The first round meets every co-owner: spread over a few seconds in a big hive
        # whose agents all start at once, so their first rounds do not pile up.
        wait = min(2.0 + random.uniform(0.0, 0.05 * len(self.config.agents)), interval)
        while not self._stopping.wait(wait):
            wait = interval
            graph = self.graph
            if graph is None:
                return
            self.gossip_rounds += 1
            keeper = self.keeper
            # Not-alive peers would only cost a failed request.
            live = sorted(keeper.live) if keeper is not None else sorted(
                graph.ring.agents - {self.name})
            # The first round meets every co-owner (catch up after a restart), later ones a
            # rotation that meets each every ceil(log2 N) rounds (hive_core.gossip).
            peers = live if self.gossip_rounds == 1 else gossip.round_peers(
                live, self.gossip_rounds, len(graph.ring))
            try:
                repaired = graph.gossip_round(self.name, salt=self.gossip_rounds, peers=peers)
            except Exception as exc:  # reported, and the next round tries again
                log.warning("gossip round %d failed: %s: %s", self.gossip_rounds,
                            type(exc).__name__, exc)
                continue
            total = sum(repaired.values())
            if total or graph.gossip_failures:
                log.info("gossip round %d: repaired %d fact(s) from %s; unreachable: %s",
                         self.gossip_rounds, total,
                         ",".join(p for p, n in sorted(repaired.items()) if n) or "-",
                         ",".join(graph.gossip_failures) or "-")

    def stop(self) -> None:
        """Stop serving (requests in flight finish), close the shard, close the transport."""
        self._stopping.set()
        self.federation.stop()
        if self._gossip is not None:
            self._gossip.join(timeout=self.settings.store_timeout + 1.0)
        try:
            if self.keeper is not None:
                self.keeper.stop()
            if self.graph is not None:
                # Unbinds first, which waits for requests in flight (they still use the
                # graph), then closes the store. Only then is the graph dropped.
                self.graph.close()
                self.graph = None
        finally:
            self._release()
            self.transport.close()

    # -- messages -----------------------------------------------------------------------------
    def handle(self, env: Envelope) -> Envelope | None:
        """The transport handler (called concurrently; errors become ERROR replies)."""
        server = self.server
        if server is None:
            return env.error(f"agent {self.name} is not serving")
        if env.type == MessageType.SHARD_QUERY and env.payload.get("op") == "status":
            return env.reply(self.status())
        if env.type in (MessageType.SHARD_QUERY, MessageType.SHARD_STORE,
                        MessageType.SHARD_DELETE, MessageType.GOSSIP_DIGEST):
            keeper = self.keeper
            if keeper is None:
                return server.handle(env)
            refusal = keeper.admit(env)
            if refusal is not None:
                return refusal
            reply = server.handle(env)
            # A write admitted just before the view moved may have missed a pull that
            # scanned meanwhile: refuse it after the fact, so the writer places it again
            # under the new view (storing twice is harmless).
            return keeper.recheck(env) or reply
        if env.type == MessageType.LEARN:
            # Its (authenticated) sender is kept with every fact as provenance.
            return env.reply(self._logged(
                "LEARN", lambda p: self.learn(p, sender=env.sender), env.payload))
        if env.type == MessageType.ASK:
            return env.reply(self._logged("ASK", self.ask, env.payload))
        if env.type == MessageType.FORGET:
            return env.reply(self._logged("FORGET", self.forget, env.payload))
        if env.type in (MessageType.HIVE_STORE, MessageType.HIVE_QUERY):
            return env.reply(self._logged(str(env.type), lambda p: self.federation.handle(
                env.type, env.sender, p), env.payload))
        return env.error(f"agent {self.name} does not handle {env.type}")

    def _logged(self, kind: str, fn: Any, payload: Mapping[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        try:
            out = fn(payload)
        except Exception as exc:
            log.warning("%s failed: %s: %s", kind, type(exc).__name__, exc)
            raise
        ms = (time.monotonic() - started) * 1000
        if kind == "LEARN" and "turns" not in out:
            log.info("LEARN batch %s still in progress after %.0f ms", out.get("batch_id"), ms)
        elif kind == "LEARN":
            log.info("LEARN %sturns=%d facts=%d retracted=%d restored=%d failed_shards=%s "
                     "in %.0f ms", "repeat (answered from the journal) " if out.get("repeat")
                     else "", out["turns"], out["facts"], len(out["retracted"]),
                     len(out["restored"]), out["failed_shards"] or "-", ms)
        elif kind == "HIVE_STORE":
            log.info("HIVE_STORE from %s: %d fact(s) stored, failed_shards=%s in %.0f ms",
                     payload.get("from_hive"), out["stored"], out["failed_shards"] or "-", ms)
        elif kind == "HIVE_QUERY":
            log.info("HIVE_QUERY %s from %s in %.0f ms", payload.get("phase"),
                     payload.get("from_hive"), ms)
        elif kind == "FORGET":
            log.warning("FORGET matched=%d forgotten=%s failed=%s in %.0f ms",
                        len(out["matched"]), ",".join(out["forgotten"]) or "-",
                        out["failed"] or "-", ms)
        else:
            log.info("ASK %r -> %d fact(s), shards=%s failed=%s rerouted=%s in %.0f ms",
                     out["question"][:80], len(out["facts"]), ",".join(out["shards_queried"]),
                     out["shards_failed"] or "-", out["shards_rerouted"] or "-", ms)
        return out

    def status(self) -> dict[str, Any]:
        assert self.server is not None
        store = self.server.store
        keeper = self.keeper
        # The keeper's cleanup runs in its own thread: its mark is read before the counts
        # and compared after them, so "cleaned at epoch E" always comes with counts taken
        # after that cleanup's drops (once, the counts of a shard about to drop 98 primaries
        # came with the cleaned epoch of the pass that dropped them).
        mark = keeper.clean_mark() if keeper is not None else None
        facts, index_size = store.count(), store.index_size()
        return {
            "agent": self.name,
            "ready": True,
            "pid": os.getpid(),
            "facts": facts,
            "index_size": index_size,
            "rss_mb": round(self._process.memory_info().rss / 2**20, 1),
            "uptime_s": round(time.monotonic() - self._started, 1),
            "transport": self.config.transport,
            "gossip_rounds": self.gossip_rounds,
            # Rounds put off while the shard was being written (hive_core.gossip.QuietGate).
            "gossip_deferred": self.graph.gossip_gate.deferred if self.graph else 0,
            "live_peers": sorted(self.keeper.live) if self.keeper is not None else None,
            "ring": keeper.status(since=mark) if keeper is not None else None,
            "learn": self.learn_journal.status(),
            # Its hive's place in a federation and this agent's deliveries to other hives
            # (agent_runtime.federation): outbox = deliveries waiting per hive.
            "federation": self.federation.status(),
            # Messages dropped unauthenticated, by reason, and the key generation in force
            # (hive_core.auth; rotate-secret waits for every agent to report the new one).
            **({"auth_rejected": self.transport.auth.rejected(),
                "auth": self.transport.auth.describe()}
               if isinstance(self.transport, Authenticated) else {}),
            # The socket listener's counters (open, refused over the cap, closed idle, ...);
            # None on a broker transport, which has no listener of its own.
            "connections": self.transport.connection_stats(self.name)
            if isinstance(self.transport, UnixSocketTransport) else None,
        }

    def learn(self, payload: Mapping[str, Any], sender: str = "") -> dict[str, Any]:
        """A LEARN within the budget, done once per batch id (agent_runtime.learn_requests)."""
        turns, batch_id, restore, wait = learn_payload(payload)
        self.learn_budget.check(turns)
        graph = self.graph
        assert graph is not None
        return self.learn_journal.run(batch_id, wait, lambda: learn_turns(
            self.extractor, graph, self.name, turns, restore, sender))

    def ask(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        question = payload.get("question")
        if not isinstance(question, str) or not question.strip():
            raise ValueError("ASK needs a payload {'question': str, 'limit': int}")
        limit = payload.get("limit", DEFAULT_ASK_LIMIT)
        if not isinstance(limit, int) or isinstance(limit, bool) or not (
                1 <= limit <= MAX_ASK_LIMIT):
            raise ValueError(f"ASK limit must be an integer between 1 and {MAX_ASK_LIMIT}")
        budget = payload.get("timeout")
        if budget is not None and (isinstance(budget, bool) or
                                   not isinstance(budget, int | float) or budget <= 0):
            raise ValueError("ASK timeout must be a number of seconds > 0")
        federated = payload.get("federated", False)
        if not isinstance(federated, bool):
            raise ValueError("ASK federated must be true or false")
        hives: list[str] = []
        hives_failed: list[str] = []
        if federated and self.federation.view.tree().federated(self.config.name):
            assert self.graph is not None
            result, hives, hives_failed = self.federation.search(
                self.graph, question, limit, budget or FEDERATED_BUDGET)
            queried, rerouted = list(result.shards_queried), []
        else:
            result, queried, rerouted = self._search(question, limit, budget)
        answer = self.answerer.answer(question, result)
        return {
            "question": question,
            "agent": self.name,
            "answer": answer.text,
            "sources": [
                {"fact_id": result.facts[i].fact_id, "content": result.facts[i].content,
                 "source_agent": result.facts[i].source_agent,
                 "score": round(result.scores[i], 6),
                 "hive": result.facts[i].metadata.get("hive", self.config.name)}
                for i in answer.sources
            ],
            "facts": [
                {"fact_id": f.fact_id, "content": f.content, "source_agent": f.source_agent,
                 "score": round(s, 6), "concept": f.concept,
                 "episode": f.metadata.get("episode"), "session": f.metadata.get("session"),
                 "turn": f.metadata.get("turn"),
                 "learned_from": f.metadata.get("learned_from"),
                 "federated_from": f.metadata.get("federated_from"),
                 "hive": f.metadata.get("hive", self.config.name)}
                for f, s in zip(result.facts, result.scores, strict=True)
            ],
            "shards_queried": queried,
            "shards_searched": list(result.shards_searched),  # asked to score: <= fanout
            "shards_failed": list(result.shards_failed),  # the answer lacks their data
            "shards_rerouted": rerouted,  # failed, but a replica answered for them
            "partial": result.partial,
            # A federated question: the other hives asked, and those left out (also named
            # in shards_failed, so the result is partial).
            "hives_asked": hives,
            "hives_failed": hives_failed,
        }

    def forget(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Retract facts hive-wide: by id, or those whose text contains ``match`` among the
        best ``FORGET_LIMIT`` for it. ``dry_run`` only says what would go."""
        assert self.graph is not None
        forgetting = forget_request(payload)
        partial = False
        if forgetting.match is not None:
            result = self.graph.search(forgetting.match, FORGET_LIMIT, asking_agent=self.name)
            partial = result.partial
            needle = forgetting.match.casefold()
            found = [f for f in result.facts if needle in f.content.casefold()]
            missing: list[str] = []
        else:
            fetched = {fid: self.graph.get_fact(fid) for fid in forgetting.fact_ids}
            found = [f for f in fetched.values() if f is not None]
            missing = [fid for fid, f in fetched.items() if f is None]
        forgotten: list[str] = []
        failed: list[dict[str, str]] = []
        for fact in [] if forgetting.dry_run else found:
            try:
                self.graph.retract_fact(fact.fact_id)
                forgotten.append(fact.fact_id)
            except HiveError as exc:
                failed.append({"fact_id": fact.fact_id, "error": str(exc)})
        return {"matched": [{"fact_id": f.fact_id, "content": f.content} for f in found],
                "forgotten": forgotten, "failed": failed, "not_found": missing,
                "partial": partial}

    def _search(self, question: str, limit: int, budget: float | None = None
                ) -> tuple[SearchResult, list[str], list[str]]:
        """Search; if shards failed, search once more: the graph now routes around them.

        A dead replica thus costs one extra (fast: its socket refuses) round, and the answer
        comes from the live replicas. Returns (result, shards queried, shards *rerouted*:
        those that failed the first round but whose data the answer has from a replica).
        ``result.shards_failed`` are the shards whose data the answer lacks; the result is
        partial exactly when that list is not empty. With the asker's ``budget`` (seconds),
        every shard request ends within it: the first round gets half, the second the rest
        (none left: the first round's answer, partial, is the answer).
        """
        assert self.graph is not None
        ends = None if budget is None else time.monotonic() + budget
        first_wait = None if budget is None else budget / 2
        result = self.graph.search(question, limit, asking_agent=self.name, timeout=first_wait)
        queried, rerouted = list(result.shards_queried), []
        left = None if ends is None else ends - time.monotonic()
        if result.partial and (left is None or left > ASK_MIN_ROUND):
            first = result.shards_failed
            result = self.graph.search(question, limit, asking_agent=self.name, timeout=left)
            queried += [s for s in result.shards_queried if s not in queried]
            rerouted = sorted(set(first) - set(result.shards_failed))
        return result, queried, rerouted
