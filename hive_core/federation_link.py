"""A hive's client of another hive of its federation (its parent, a group, a sibling).

A link is what the CLI is to a hive: it opens the other hive's transport from that hive's
config (so group hives may use different transports), signs with that hive's secret, and
sends one request to one of its agents -- never shard by shard: the agent it reaches runs
the hive's own routed search or placement. Every request has the caller's deadline; an
agent that cannot be reached passes the request to the next one (in an order that starts
somewhere different for every sender, to spread the load) while time is left. A refusal of
the request itself (a bad payload) is final: another agent would refuse it too.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Sequence
from typing import Any

from hive_core.errors import HiveError, MessageRejected, TransportError
from hive_core.failover import tries
from hive_core.hive_config import HiveConfig
from hive_core.messages import Envelope, MessageType
from hive_core.transports import registry
from hive_core.transports.base import ShardTransport, check_reply
from hive_core.transports.broker import BrokerTransport

MIN_TRY = 0.5  # seconds: an agent that gets less than this is not worth asking


class LinkFailed(TransportError):
    """No agent of the other hive answered (each one's reason is in the message)."""


class HiveLink:
    """Requests from ``sender`` (``HIVE/AGENT`` of the asking hive) to hive ``target``."""

    def __init__(self, target: str, sender: str) -> None:
        self.target = target
        self.sender = sender
        self._lock = threading.Lock()
        self._config: HiveConfig | None = None
        self._transport: ShardTransport | None = None

    def _open(self) -> tuple[HiveConfig, ShardTransport]:
        with self._lock:
            if self._transport is None or self._config is None:
                config = HiveConfig.load(self.target).with_env_overrides()
                self._transport = registry.open_transport(config, registry.hive_auth(config))
                self._config = config
            return self._config, self._transport

    def _order(self, config: HiveConfig, transport: ShardTransport) -> list[str]:
        agents = config.agent_names()
        if isinstance(transport, BrokerTransport):  # the broker knows who is live: ask them
            live = transport.live_members(agents)
            agents = [a for a in agents if a in live]
        if not agents:
            return []
        start = zlib.crc32(self.sender.encode()) % len(agents)
        return agents[start:] + agents[:start]

    def request(self, kind: MessageType, payload: dict[str, Any], timeout: float
                ) -> dict[str, Any]:
        """The reply payload of the first agent of the hive that answers within ``timeout``;
        raises :class:`LinkFailed` (a TransportError) when none does, MessageRejected when
        the hive refuses the request."""
        deadline = time.monotonic() + timeout
        try:
            config, transport = self._open()
        except HiveError as exc:
            raise LinkFailed(f"hive {self.target}: cannot open its transport: {exc}") from exc
        agents = self._order(config, transport)
        misses: list[str] = []
        for agent, wait in tries(agents, deadline, MIN_TRY, floor=MIN_TRY):
            env = Envelope(kind, hive=self.target, sender=self.sender, target=agent,
                           payload={**payload, "timeout": round(wait * 0.9, 3)})
            try:
                return check_reply(transport.request([env], wait)[0]).payload
            except MessageRejected:
                raise
            except TransportError as exc:
                misses.append(f"{agent}: {' '.join(str(exc).split())[:120]}")
        why = "; ".join(misses) if misses else "no live agent"
        raise LinkFailed(f"hive {self.target}: no agent answered within {timeout:g}s ({why})")

    def close(self) -> None:
        with self._lock:
            if self._transport is not None:
                self._transport.close()
            self._transport = None
            self._config = None


class Links:
    """One :class:`HiveLink` per hive this agent talks to, opened on first use."""

    def __init__(self, sender: str) -> None:
        self.sender = sender
        self._links: dict[str, HiveLink] = {}
        self._lock = threading.Lock()

    def to(self, hive: str) -> HiveLink:
        with self._lock:
            link = self._links.get(hive)
            if link is None:
                link = self._links[hive] = HiveLink(hive, self.sender)
            return link

    def drop(self, keep: Sequence[str]) -> None:
        """Close the links to hives no longer in ``keep`` (a detached group)."""
        with self._lock:
            gone = [h for h in self._links if h not in keep]
            links = [self._links.pop(h) for h in gone]
        for link in links:
            link.close()

    def close(self) -> None:
        self.drop(())
