"""Transports: the ShardTransport protocol and its implementations.

Only the protocol and the server-less transports are imported here. The broker transports
live in their own modules (``hive_core.transports.redis``) and are imported where they are
chosen, so an agent on Unix sockets never loads a broker client (~5 MB per process, times
100 agents).
"""

from hive_core.transports.base import Handler, ShardTransport, check_reply, safe_handle
from hive_core.transports.local import LocalEventBus
from hive_core.transports.unix import UnixSocketTransport

__all__ = [
    "Handler", "LocalEventBus", "ShardTransport", "UnixSocketTransport", "check_reply",
    "safe_handle",
]
