"""Agent liveness by heartbeat blobs, for agents that share no machine (and so no ``flock``).

An agent process that holds a name (:meth:`BlobLiveness.hold`) writes ``live/AGENT`` and
rewrites it every ``interval`` seconds from one daemon thread; a peer counts the agent live
while the blob was modified within ``ttl`` seconds. One ``list`` of ``live/`` answers for
every peer at once, so a ring keeper can poll it as cheaply as the file probe.

A name has one holder: the blob carries the holder's random token, and every refresh is a
write ``if_match`` the etag of its previous one. A second process asking for a name whose
heartbeat is fresh gets :class:`~hive_core.errors.AgentError` (as with Redis membership); if
the heartbeat is older than ``ttl`` (its holder crashed), the newcomer takes it over with a
compare-and-set, and a holder that was only paused finds its next refresh refused, stops
refreshing, logs an error and calls ``on_lost``.

Clocks. Ages are ``local now - last_modified``, and ``last_modified`` is stamped by the
store (the storage service, for Azure), never by the agents, so agents' clocks do not
matter, only the *observer's* offset ``s`` from the store's clock. A live holder's
heartbeat is at most ``interval`` + one call's latency + 1 s (Azure's whole-second
timestamps) old, so it is never reported dead while ``s < ttl - interval - latency - 1 s``
(about 10 s with the defaults ttl=15, interval=3); an observer ``s`` seconds behind reports
a crashed holder dead ``s`` seconds late. That is why ``ttl`` must be several intervals
(at least two are required): NTP-synchronised hosts are within well under a second.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from hive_core.errors import AgentError, ConfigError
from hive_core.state.blobs import (
    Blob,
    Blobs,
    PreconditionFailed,
    escape_segment,
    unescape_segment,
)
from hive_core.transports.retry import Backoff, RetryState

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Hold:
    token: str
    etag: str
    beats: int = 0


class BlobLiveness:
    """Liveness of a hive's agents from heartbeat blobs (see module docstring)."""

    def __init__(self, blobs: Blobs, *, ttl: float = 15.0, interval: float = 3.0,
                 prefix: str = "live/", join_timeout: float = 30.0,
                 on_lost: Callable[[str], None] | None = None) -> None:
        if not interval > 0 or not ttl >= 2 * interval:
            raise ConfigError(f"liveness ttl ({ttl:g}s) must be at least two heartbeat "
                              f"intervals ({interval:g}s), so one late beat is not a death")
        self.blobs = blobs
        self.ttl = float(ttl)
        self.interval = float(interval)
        self.prefix = prefix
        self.join_timeout = join_timeout
        self.on_lost = on_lost
        self._held: dict[str, _Hold] = {}
        self._lock = threading.Lock()  # guards _held; held across one blob call at most
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _name(self, agent: str) -> str:
        return self.prefix + escape_segment(agent)

    def _body(self, agent: str, hold: _Hold) -> bytes:
        return json.dumps({"agent": agent, "token": hold.token, "host": socket.gethostname(),
                           "pid": os.getpid(), "beat": hold.beats}).encode()

    @staticmethod
    def _token_of(blob: Blob) -> str | None:
        try:
            token = json.loads(blob.data).get("token")
        except (ValueError, AttributeError):
            return None
        return token if isinstance(token, str) else None

    # -- holding --------------------------------------------------------------------------------
    def hold(self, agent: str) -> None:
        """Be ``agent`` until :meth:`release`, :meth:`close` or death (AgentError if another
        live process is that agent; a crashed holder's name is free ``ttl`` after its last
        heartbeat)."""
        name = self._name(agent)
        with self._lock:
            if self._stop.is_set():
                raise AgentError("this liveness tracker is closed")
            if agent in self._held:
                return
            hold = _Hold(token=uuid.uuid4().hex, etag="")
            current = self.blobs.read(name)
            if current is not None:
                age = time.time() - current.last_modified
                if age <= self.ttl:
                    raise AgentError(
                        f"agent {agent!r} is already running (its heartbeat {name} is "
                        f"{max(age, 0):.1f}s old; a crashed holder's name is free after "
                        f"{self.ttl:g}s)")
            try:
                if current is None:
                    hold.etag = self.blobs.write(name, self._body(agent, hold),
                                                 if_none_match=True)
                else:
                    hold.etag = self.blobs.write(name, self._body(agent, hold),
                                                 if_match=current.etag)
            except PreconditionFailed:
                raise AgentError(f"agent {agent!r} is already running (another process "
                                 "took the name at the same moment)") from None
            self._held[agent] = hold
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="hive-liveness",
                                                daemon=True)
                self._thread.start()

    def held(self) -> set[str]:
        """The agents this instance still holds (a lost one is no longer listed)."""
        with self._lock:
            return set(self._held)

    def release(self, agent: str) -> None:
        """Stop being ``agent`` and delete its heartbeat, unless another holder owns it now."""
        name = self._name(agent)
        with self._lock:
            hold = self._held.pop(agent, None)
            if hold is None:
                return
            try:
                self.blobs.delete(name, if_match=hold.etag)
                return
            except PreconditionFailed:
                pass  # our last write may have landed unreported; look before giving up
            current = self.blobs.read(name)
            if current is None or self._token_of(current) != hold.token:
                log.info("agent %r: heartbeat already taken over or gone; nothing to release",
                         agent)
                return
            try:
                self.blobs.delete(name, if_match=current.etag)
            except PreconditionFailed:
                log.info("agent %r: heartbeat taken over while releasing", agent)

    # -- heartbeat ------------------------------------------------------------------------------
    def _beat(self, agent: str) -> None:
        name = self._name(agent)
        with self._lock:
            hold = self._held.get(agent)
            if hold is None:
                return
            hold.beats += 1
            try:
                hold.etag = self.blobs.write(name, self._body(agent, hold), if_match=hold.etag)
                return
            except PreconditionFailed:
                current = self.blobs.read(name)
            if current is not None and self._token_of(current) == hold.token:
                hold.etag = current.etag  # a retried write of ours had landed
                return
            if current is None:
                try:  # deleted under us (a hive reset?): still ours if nobody else took it
                    hold.etag = self.blobs.write(name, self._body(agent, hold),
                                                 if_none_match=True)
                    return
                except PreconditionFailed:
                    pass
            del self._held[agent]
        log.error("agent %r: another process took over its liveness (this one was silent "
                  "longer than %gs?); no longer refreshing it", agent, self.ttl)
        if self.on_lost is not None:
            self.on_lost(agent)

    def _run(self) -> None:
        retry = RetryState(Backoff(base=min(0.1, self.interval / 4), cap=self.interval),
                           stop=self._stop)
        wait = self.interval
        while not self._stop.wait(wait):
            try:
                for agent in sorted(self.held()):
                    self._beat(agent)
            except Exception as exc:
                log.warning("liveness heartbeat failed (attempt %d), retrying: %s: %s",
                            retry.attempts + 1, type(exc).__name__, exc)
                retry.failed()  # backs off; returns early when closing
                wait = 0.0
            else:
                retry.ok()
                wait = self.interval

    # -- asking ---------------------------------------------------------------------------------
    def live_members(self, candidates: Iterable[str]) -> set[str]:
        """Those of ``candidates`` whose heartbeat is younger than ``ttl`` (one list call)."""
        wanted = set(candidates)
        if not wanted:
            return set()
        infos = self.blobs.list(self.prefix)
        now = time.time()
        live = set()
        for info in infos:
            agent = unescape_segment(info.name[len(self.prefix):])
            if agent in wanted and now - info.last_modified <= self.ttl:
                live.add(agent)
        return live

    def is_live(self, agent: str) -> bool:
        return agent in self.live_members([agent])

    def close(self) -> None:
        """Stop the heartbeat (waiting at most ``join_timeout``) and release every name.

        Raises the first release error after trying them all: an unreleased name stays live
        until its ``ttl`` runs out, which the caller should hear about.
        """
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=self.join_timeout)
            if thread.is_alive():
                log.warning("liveness heartbeat thread still busy after %gs; releasing anyway",
                            self.join_timeout)
        errors: list[Exception] = []
        for agent in sorted(self.held()):
            try:
                self.release(agent)
            except Exception as exc:
                log.warning("agent %r: heartbeat not released (it expires after %gs): %s",
                            agent, self.ttl, exc)
                errors.append(exc)
        if errors:
            raise errors[0]
