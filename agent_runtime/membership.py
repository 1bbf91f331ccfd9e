"""Watching a hive's live members (transports with a membership service, i.e. Redis).

The rule, the same on every transport: **the ring is the hive's configured agents.** Every
agent process of one config, on any machine, computes the same ring without talking to the
others, which is what makes agents started on different machines (``start --agents`` a
subset on each) one hive, and what keeps every fact where every reader looks for it. A ring
built from whoever is live at a given moment would differ between writers during joins,
restarts and Redis outages, and facts written under one view would be missing from the shards
another view routes to; making that safe needs a hand-off protocol that the hive does not
have yet.

What Redis membership adds is *liveness*: every ``MEMBERSHIP_POLL`` seconds the agent reads
which configured agents are live (heartbeating) and routes reads around the others before
paying a failed request; when they come back they are used again within one poll. Writes
still go to every owner: a missing owner is reported per LEARN (``failed_shards``), and the
request to it fails at once (the transport checks liveness atomically with each send).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from hive_core.distributed import DistributedHiveGraph
from hive_core.errors import TransportError

log = logging.getLogger("agent_runtime")

MEMBERSHIP_POLL = 1.0


@runtime_checkable
class MembershipSource(Protocol):
    """A transport that knows which agents of its hive are live."""

    def live_members(self) -> set[str]: ...


class LivenessWatcher:
    """Polls live members and marks configured-but-not-live peers as suspects."""

    def __init__(
        self, source: MembershipSource, graph: DistributedHiveGraph, me: str,
        configured: Iterable[str], *, poll: float = MEMBERSHIP_POLL,
    ) -> None:
        self.source = source
        self.graph = graph
        self.me = me
        self.peers = frozenset(configured) - {me}
        self.poll = poll
        self.live: frozenset[str] = frozenset()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="membership", daemon=True)

    def start(self) -> None:
        self.check()
        self._thread.start()

    def check(self) -> frozenset[str]:
        """One poll: returns the live configured peers (and suspects the others)."""
        live = frozenset(self.source.live_members()) & self.peers
        down = self.peers - live
        if down:
            # Slightly longer than a poll so that suspicion never lapses between polls.
            self.graph.suspect(sorted(down), seconds=self.poll * 2.5)
        if live != self.live:
            log.info("live peers: %d of %d%s", len(live), len(self.peers),
                     f" (not live: {', '.join(sorted(down))})" if down else "")
        self.live = live
        return live

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            try:
                self.check()
            except TransportError as exc:  # Redis down: keep the last view, say so
                log.warning("membership poll failed: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.poll + 2.0)
