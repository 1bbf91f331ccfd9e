"""How much one agent's socket listener may hold: connections, idle time, worker threads.

An adversarial pass opened 20,000 idle connections to one agent: with a thread per
connection it spawned ~19,800 threads and stopped answering for a minute. The listener now
serves every connection from one selector loop and a fixed number of worker threads, and
these limits bound the rest (each tunable as ``AMPLIHACK_LISTENER_<NAME>``, see
:class:`hive_core.config.CoreSettings`):

* ``max_connections``: connections open at once. Over it a new connection gets one ERROR
  frame ("too many connections") and is closed, and is counted as refused. The effective
  cap also stays below the process's open-file limit, so ``accept`` never fails for lack of
  descriptors first (:func:`effective_cap`).
* ``idle_timeout``: a connection that sends nothing for this long (no request running, no
  frame started) is closed and counted. Clients check a pooled connection for end of stream
  before reusing it and reconnect; one closed between that check and the send (the listener
  never read the request) is sent once more on a fresh connection (hive_core.transports.unix).
* ``workers`` / ``fanout_workers``: the two thread pools (see
  :mod:`hive_core.transports.unix_listener` for why there are two).
* ``body_timeout``: a frame that has started must be complete within this many seconds.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

from hive_core.config import CoreSettings
from hive_core.errors import ConfigError

FD_HEADROOM = 128  # descriptors kept for the shard, logs, outgoing connections, ...


@dataclass(frozen=True, slots=True)
class ListenerLimits:
    max_connections: int = 4096
    idle_timeout: float = 60.0
    workers: int = 16
    fanout_workers: int = 8
    body_timeout: float = 30.0

    def __post_init__(self) -> None:
        for name in ("max_connections", "workers", "fanout_workers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"listener {name} must be >= 1, not {getattr(self, name)}")
        for name in ("idle_timeout", "body_timeout"):
            value = getattr(self, name)
            if not value > 0 or value == float("inf"):
                raise ConfigError(f"listener {name} must be a finite number > 0, not {value}")

    @classmethod
    def from_settings(cls, settings: CoreSettings) -> ListenerLimits:
        return cls(max_connections=settings.listener_max_connections,
                   idle_timeout=settings.listener_idle_timeout,
                   workers=settings.listener_workers,
                   fanout_workers=settings.listener_fanout_workers)


def effective_cap(configured: int) -> int:
    """``configured``, lowered to stay ``FD_HEADROOM`` below the open-file limit (a cap the
    process could never reach would let ``accept`` fail with EMFILE instead)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    return max(1, min(configured, soft - FD_HEADROOM))
