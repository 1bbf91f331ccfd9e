"""Transports: the ShardTransport protocol and its implementations."""

from hive_core.transports.base import Handler, ShardTransport, check_reply, safe_handle
from hive_core.transports.local import LocalEventBus
from hive_core.transports.redis import RedisShardTransport
from hive_core.transports.unix import UnixSocketTransport

__all__ = [
    "Handler", "LocalEventBus", "RedisShardTransport", "ShardTransport", "UnixSocketTransport",
    "check_reply", "safe_handle",
]
