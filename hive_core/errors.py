"""The one exception tree of amplihack-hive.

Every error the hive raises on purpose descends from :class:`HiveError`, so callers (and the
CLI, which maps each class to one line and an exit code) can catch by meaning, not by module::

    HiveError
    ├── ConfigError            bad or missing configuration (a user can fix it)
    ├── HiveNotFound           no hive of that name
    ├── AgentError             an agent is unknown, duplicated or not running
    ├── TransportError         a message could not travel
    │   ├── DeadlineExceeded   no reply before the request's deadline
    │   ├── ConnectionLost     the link to a peer or broker went away
    │   ├── MessageRejected    a message was malformed, too large or of an unknown version
    │   │   ├── StaleEpoch     sent under an older ring view than the receiver's (refresh, resend)
    │   │   └── AuthRejected   failed authentication (hive_core.auth: Unsigned, BadMac, Stale,
    │   │                      Replayed), dropped and counted before it was parsed
    ├── DiskFull               a disk is below its free-space reserve, or a write met ENOSPC
    └── ShardError             a shard store failed
        ├── ShardInUse         another process holds the shard's database
        └── ShardCorrupt       the shard's files cannot be read

Python's own ``KeyError``/``ValueError`` are still used where the HiveGraph API promises them
(unknown agent, duplicate registration), because callers of the original API rely on them.
"""

from __future__ import annotations


class HiveError(Exception):
    """Root of every error amplihack-hive raises on purpose."""


class ConfigError(HiveError):
    """Configuration is invalid or incomplete."""


class HiveNotFound(HiveError):
    """No hive with the requested name exists."""


class AgentError(HiveError):
    """An agent is unknown, duplicated, or not in the state an operation needs."""


class TransportError(HiveError):
    """A message could not be delivered or answered."""


class DeadlineExceeded(TransportError):
    """No reply arrived before the request's deadline."""


class ConnectionLost(TransportError):
    """The connection to a peer or broker was lost."""


class PeerFailed(TransportError):
    """The receiver could not reach its own peers (a store or search round that failed or
    timed out): the request may succeed when sent again, to it or to another agent."""


class MessageRejected(TransportError):
    """A message was malformed, too large, or of an unsupported version."""


class StaleEpoch(MessageRejected):
    """The receiver has a newer ring view than the sender placed or routed the message with.

    ``epoch`` is the receiver's. The sender refreshes its view and sends again: a write placed
    under an old view might miss an owner that the new view added.
    """

    def __init__(self, message: str, epoch: int = 0) -> None:
        super().__init__(message)
        self.epoch = epoch


class DiskFull(HiveError):
    """A disk has less free space than the reserve (or a write met ENOSPC): writes there are
    refused, reads still served. The message names the path and the free space."""

    def __init__(self, message: str, path: str = "", free_bytes: int = 0) -> None:
        super().__init__(message)
        self.path = path
        self.free_bytes = free_bytes


class ShardError(HiveError):
    """A shard store failed."""


class ShardInUse(ShardError):
    """Another process holds the shard's database open."""


class ShardCorrupt(ShardError):
    """The shard's files cannot be read."""
