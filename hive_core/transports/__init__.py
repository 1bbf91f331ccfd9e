"""Transports: the ShardTransport protocol and its implementations."""

from hive_core.transports.base import Handler, ShardTransport, check_reply, safe_handle
from hive_core.transports.local import LocalEventBus

__all__ = ["Handler", "LocalEventBus", "ShardTransport", "check_reply", "safe_handle"]
