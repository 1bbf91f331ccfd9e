"""The ring keeper: one agent's part in keeping the hive's ring alive.

Every ``ring_poll`` seconds the keeper of each agent process:

1. **reads the view** (:mod:`hive_core.membership.view`) and hands it to the graph (reads on
   the current ring, writes on current + target);
2. **watches its peers**: not-alive peers are routed around at once (suspected), and one
   unreachable for longer than ``rereplicate_after`` is marked down, which takes it out of
   the target ring so the others restore its replicas;
3. **pulls what it gains** while the ring moves, then records in the view that it is synced
   at this epoch (:mod:`hive_core.membership.handoff`);
4. **flips** the view once every gainer is synced (any agent may; compare-and-set makes it
   happen once);
5. **drops** what it no longer owns once the view has been settled for ``handoff_grace``
   seconds. Reads sent under an older epoch than that are refused from then on
   (StaleEpoch), so a reader on an old view refreshes instead of missing dropped facts.
   The keeper is its shard's write guard (:mod:`hive_core.membership.late_writes`): a
   cleanup waits for writes placed under an older ring to land, and one that lands after a
   cleanup began makes the keeper clean again at its next poll; ``cleaned_epoch`` says an
   epoch only while no such write escaped its cleanup.

It also fences messages (:meth:`admit`): a message from a newer epoch makes it refresh the
view before the message is handled; a write placed under an older epoch is refused, and the
writer refreshes and places it again. That is what keeps a pull complete: once a source has
answered a joiner's pull (sent at the joiner's epoch), every write it accepts also went to
the joiner.

At start the agent creates the hive's first view if there is none (the declared agents, all
normal) and joins it if it is not in the target ring (a new agent, or one that was marked
down and came back).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection, Sequence
from typing import Any

from hive_core.config import CoreSettings
from hive_core.distributed import DistributedHiveGraph
from hive_core.membership.handoff import PullReport, pull_gains, stale_roles
from hive_core.membership.late_writes import WriteTracker
from hive_core.membership.liveness import Liveness
from hive_core.membership.ranges import gainers
from hive_core.membership.store import ViewStore, update
from hive_core.membership.view import RingView, flip, initial, join, mark_down, record_sync
from hive_core.messages import Envelope, MessageType
from hive_core.ring import HashRing
from hive_core.store.base import ShardStore

log = logging.getLogger("agent_runtime")

LIVENESS_EVERY = 5.0  # seconds between liveness probes of every peer
NEVER_SEEN_GRACE = 60.0  # extra seconds before a never-seen peer is marked down
RECLEAN_EVERY = 60.0  # seconds between cleanup passes once the first one of an epoch ran
DROP_CHUNK = 256  # roles dropped per lock hold, so a write never waits long behind cleanup
_FENCED_READS = ("stats", "score", "get", "edges")


class RingKeeper:
    """Keeps one agent's view of the ring and does its share of every move."""

    def __init__(
        self, name: str, graph: DistributedHiveGraph, store: ShardStore, views: ViewStore,
        liveness: Liveness, declared: Sequence[str], settings: CoreSettings,
    ) -> None:
        self.name = name
        self.graph = graph
        self.store = store
        self.views = views
        self.liveness = liveness
        self.declared = list(declared)
        self.settings = settings
        self.view: RingView | None = None
        self.live: frozenset[str] = frozenset()
        # Writes to this shard by authorising epoch (hive_core.membership.late_writes), and
        # the last epoch cleaned with the tracker's generation then (see cleaned_epoch).
        self.writes = WriteTracker()
        self._cleaned = (0, 0)
        self._fence_epoch = 0  # reads from before this epoch are refused (cleanup began)
        self.last_pull: PullReport | None = None
        self.pulled_facts = 0  # over this process's life, for benchmarks and status
        self.pulled_bytes = 0
        self.last_error = ""
        self._epoch_seen = time.monotonic()
        self._unseen: dict[str, float] = {}
        self._seen: set[str] = set()  # peers seen alive since this agent started
        self._probed = 0.0  # when peers' liveness was last asked
        self._cleaned_at = 0.0  # when the last cleanup pass ran
        self._known: frozenset[str] = frozenset()  # the peers asked about then
        self._rings: dict[tuple[str, ...], HashRing] = {}
        self._gainers: dict[tuple[tuple[str, ...], tuple[str, ...]], frozenset[str]] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ring-keeper", daemon=True)

    # -- the view -----------------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        view = self.view
        return view.epoch if view is not None else 0

    @property
    def cleaned_epoch(self) -> int:
        """The last epoch whose stale roles are all dropped: the epoch of the last cleanup
        that no late write escaped, until one does (then one less: not clean any more)."""
        epoch, token = self._cleaned
        return epoch if self.writes.clean_since(token) else max(epoch - 1, 0)

    def clean_mark(self) -> tuple[int, int]:
        """Read before a shard's counts and handed to :meth:`status` after them, so a status
        never pairs counts from before a cleanup, or with a late copy, with a cleaned epoch
        from after it."""
        return self.cleaned_epoch, self.writes.generation

    # -- the write guard (hive_core.shard_server.WriteGuard) ----------------------------------
    def begin(self, epoch: int) -> int:
        """A write authorised under ``epoch`` (0: this agent's epoch now) starts landing."""
        used = epoch or self.epoch
        self.writes.begin(used)
        return used

    def end(self, epoch: int) -> None:
        self.writes.end(epoch)

    def adopt(self) -> RingView:
        """Take the hive's view, creating the first one (the declared agents, all normal)
        if there is none. The graph is usable from here; the agent may not be a member."""
        declared = self.declared
        view = update(self.views, lambda v: initial(declared) if v is None else None)
        assert view is not None
        self.apply(view)
        self.graph.on_stale = lambda _epoch: self.refresh()
        return view

    def join(self) -> RingView:
        """Enter the target ring if not in it (call once the agent serves: peers start
        writing to it at once)."""
        return self._update(lambda v: join(v, self.name))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.settings.store_timeout * 2 + 5.0)

    def apply(self, view: RingView) -> None:
        """Adopt ``view`` unless an equal or newer one is already in force."""
        with self._lock:
            old = self.view
            if old is not None and view.version <= old.version:
                return
            if old is None or view.epoch != old.epoch:  # rings change only with the epoch
                self.graph.set_rings(view.epoch, self.ring(view.current),
                                     self.ring(view.target))
                self._epoch_seen = time.monotonic()
                log.info("ring epoch %d: %s%s", view.epoch,
                         "settled" if view.settled else "moving",
                         "" if view.settled else
                         f" (joining: {_csv(set(view.target) - set(view.current))}; "
                         f"out: {_csv(set(view.current) - set(view.target))})")
            self.view = view

    def refresh(self) -> RingView:
        view = self.views.load()
        if view is None:  # deleted under us: keep serving on the last view, say so
            raise RuntimeError("the hive's ring view disappeared")
        self.apply(view)
        return self.view or view

    def ring(self, members: Sequence[str]) -> HashRing:
        key = tuple(members)
        ring = self._rings.get(key)
        if ring is None:
            if len(self._rings) > 16:
                self._rings.clear()
            ring = self._rings[key] = HashRing(
                key, virtual_nodes=self.graph.settings.virtual_nodes,
                replication_factor=self.graph.settings.replication_factor)
        return ring

    # -- fencing ------------------------------------------------------------------------------
    def admit(self, env: Envelope) -> Envelope | None:
        """None to handle ``env``; a StaleEpoch ERROR reply to refuse it (see module doc)."""
        if not env.epoch:
            return None  # no view behind it (status, the CLI, an in-process tool)
        if env.epoch > self.epoch:
            self.refresh()
        if env.epoch >= self.epoch:
            return None
        if env.type in (MessageType.SHARD_STORE, MessageType.SHARD_DELETE):
            return env.stale(self.epoch)
        if (env.type == MessageType.SHARD_QUERY and env.payload.get("op") in _FENCED_READS
                and env.epoch < self._fence_epoch):
            return env.stale(self.epoch)
        return None

    def recheck(self, env: Envelope) -> Envelope | None:
        """After handling ``env``: a StaleEpoch reply if it was a write and the view moved
        past its epoch meanwhile (see Agent.handle)."""
        if (env.epoch and env.type in (MessageType.SHARD_STORE, MessageType.SHARD_DELETE)
                and env.epoch < self.epoch):
            return env.stale(self.epoch)
        return None

    # -- the loop -----------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(self.settings.ring_poll):
            try:
                self.tick()
                self.last_error = ""
            except Exception as exc:  # reported in the log and in status; next tick retries
                msg = f"{type(exc).__name__}: {exc}"
                if msg != self.last_error:
                    log.warning("ring keeper: %s", msg)
                self.last_error = msg

    def tick(self) -> None:
        view = self.refresh()
        view = self._watch_peers(view)
        if self.name in view.down:  # marked down while alive (slow, or partitioned): rejoin
            view = self._update(lambda v: join(v, self.name))
        if not view.settled and self.name in view.target and not view.is_synced(self.name):
            view = self._sync(view)
        if not view.settled:
            view = self._update(lambda v: flip(v) if self._ready(v) else None)
        now = time.monotonic()
        if view.settled and now - self._epoch_seen >= self.settings.handoff_grace and (
                self.cleaned_epoch < view.epoch or now - self._cleaned_at >= RECLEAN_EVERY):
            # Again every RECLEAN_EVERY seconds: a repair that was in flight across the move
            # can bring back a role this shard no longer owns after the first pass.
            self._cleanup(view)
            self._cleaned_at = now

    def _update(self, transition: Any) -> RingView:
        view = update(self.views, lambda v: transition(v) if v is not None else None)
        assert view is not None
        self.apply(view)
        return self.view or view

    def _watch_peers(self, view: RingView) -> RingView:
        peers = set(view.members) - {self.name}
        now = time.monotonic()
        if now - self._probed >= LIVENESS_EVERY or not peers <= self._known:
            # Every peer every LIVENESS_EVERY seconds: at N=100 that is ~20 probes a second
            # per agent, ~18 us each. A death is acted on after rereplicate_after anyway, and
            # a request to a dead peer fails at once and suspects it meanwhile.
            self.live = frozenset(self.liveness.live_members(peers))
            self._probed, self._known = now, frozenset(peers)
        live = self.live & peers
        for peer in live:
            self._unseen.pop(peer, None)
        missing = peers - live
        for peer in missing:
            self._unseen.setdefault(peer, now)
        for peer in list(self._unseen):
            if peer not in peers:
                del self._unseen[peer]
        if missing:
            # A little longer than a poll, so suspicion never lapses between polls.
            self.graph.suspect(sorted(missing), seconds=self.settings.ring_poll * 2.5)
        self._seen.update(live)
        # A peer never seen alive since this agent started may simply be starting after
        # it (a hive of 100 starts over seconds): it gets NEVER_SEEN_GRACE more.
        overdue = sorted(p for p in missing if p in view.target and now - self._unseen[p] >= (
            self.settings.rereplicate_after + (0.0 if p in self._seen else NEVER_SEEN_GRACE)))
        for peer in overdue:
            log.warning("agent %s unreachable for %.0fs: marking it down and restoring its "
                        "replicas", peer, now - self._unseen[peer])
            view = self._update(lambda v, p=peer: mark_down(v, p))
        return view

    def gainers(self, view: RingView) -> frozenset[str]:
        """Members gaining ranges in the view's move; computed once per move (a walk over
        every segment of two rings: ~50 ms at N=100, too much for every poll)."""
        key = (view.current, view.target)
        gain = self._gainers.get(key)
        if gain is None:
            if len(self._gainers) > 8:
                self._gainers.clear()
            gain = self._gainers[key] = frozenset(
                gainers(self.ring(view.current), self.ring(view.target)))
        return gain

    def _ready(self, view: RingView) -> bool:
        """Every member that gains ranges in this move holds them at this epoch."""
        if view.settled:
            return False
        return all(view.is_synced(g) for g in self.gainers(view))

    def _sync(self, view: RingView) -> RingView:
        client = self.graph.client_for(self.name)
        report = pull_gains(client, self.store, self.name, self.ring(view.current),
                            self.ring(view.target), live=self.live | {self.name},
                            timeout=self.settings.handoff_timeout)
        self.last_pull = report
        self.pulled_facts += report.facts
        self.pulled_bytes += report.bytes
        if report.facts or report.failed:
            log.info("hand-off at epoch %d: pulled %d fact(s), %d bytes from %s%s",
                     view.epoch, report.facts, report.bytes, _csv(report.sources),
                     f"; failed: {_csv(report.failed)}" if report.failed else "")
        if not report.complete:
            return view
        return self._update(lambda v: record_sync(v, self.name, view.epoch))

    def _cleanup(self, view: RingView) -> None:
        token = self.writes.begin_cleanup(view.epoch)
        if token is None:  # its snapshot would miss them: the next poll tries again
            log.info("cleanup at epoch %d waits for %d write(s) placed under an older ring",
                     view.epoch, self.writes.older_in_flight(view.epoch))
            return
        drops = stale_roles(self.store.held_roles(), self.name, self.ring(view.current))
        with self._lock:
            if self.epoch != view.epoch:
                return
            # From here, readers on an older view may miss what is dropped: refuse them.
            self._fence_epoch = view.epoch
        for i in range(0, len(drops), DROP_CHUNK):
            with self._lock:
                if self.epoch != view.epoch:
                    return  # the ring moved again: this view's cleanup no longer applies
                for d in drops[i:i + DROP_CHUNK]:
                    self.store.drop(d.fact_id, d.terms, d.primary)
        if drops:
            log.info("dropped %d fact(s)' roles this shard no longer owns at epoch %d",
                     len(drops), view.epoch)
        if self.writes.clean_since(token):
            self._cleaned = (view.epoch, token)
        else:
            log.info("a write placed under an older ring landed during cleanup at epoch %d: "
                     "cleaning again", view.epoch)

    # -- reporting ----------------------------------------------------------------------------
    def under_replicated(self) -> int:
        """Facts whose live replicas in the current ring number fewer than they should.

        Each fact is counted once, by its first live owner; a replica counts when its agent
        is alive (whether it really holds the fact is anti-entropy's business).
        """
        view = self.view
        if view is None:
            return 0
        ring = self.ring(view.current)
        # Asked now, not the last tick's answer: a death a moment ago already counts.
        live = self.liveness.live_members(set(view.current) - {self.name}) | {self.name}
        want = min(self.graph.settings.replication_factor, len(view.current))
        count = 0
        for fid in self.store.primary_ids():
            owners = [o for o in ring.get_agents(fid) if o in live]
            if owners and owners[0] == self.name and len(owners) < want:
                count += 1
        return count

    def status(self, since: tuple[int, int] | None = None) -> dict[str, Any]:
        """The ring's part of an agent's status; ``since``: the :meth:`clean_mark` read
        before the shard's counts (if cleanup changed meanwhile, the epoch is not reported
        as cleaned: the counts may be from either side of it)."""
        view = self.view
        if view is None:
            return {"epoch": 0, "state": "absent", "settled": False}
        cleaned = self.cleaned_epoch
        if since is not None and since != self.clean_mark():
            cleaned = min(since[0], cleaned, view.epoch - 1)
        pending: list[str] = []
        if not view.settled:
            pending = sorted(g for g in self.gainers(view) if not view.is_synced(g))
        pull = self.last_pull
        return {
            "epoch": view.epoch,
            "state": view.state(self.name),
            "settled": view.settled,
            "current": list(view.current),
            "target": list(view.target),
            "down": list(view.down),
            "pending": pending,
            "under_replicated": self.under_replicated(),
            "cleaned_epoch": cleaned,
            # Writes placed under an older ring that landed after a cleanup began (each made
            # the keeper clean again), and those a cleanup now waits for.
            "late_writes": self.writes.late,
            "writes_waiting": self.writes.older_in_flight(view.epoch),
            "pulled": {"facts": self.pulled_facts, "bytes": self.pulled_bytes},
            "last_pull": None if pull is None else {
                "facts": pull.facts, "bytes": pull.bytes, "sources": pull.sources,
                "failed": pull.failed, "skipped": pull.skipped},
            "error": self.last_error,
        }


def _csv(names: Collection[str] | dict[str, str]) -> str:
    return ", ".join(sorted(names)) or "-"
