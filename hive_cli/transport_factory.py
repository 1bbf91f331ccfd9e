"""The one place where the CLI turns a hive's ``transport`` setting into a transport object.

The CLI only *requests* (status, learn, ask); it never binds a handler. ``local`` hives talk
over Unix sockets in the hive's ``run/`` folder; ``redis`` hives through Redis Streams under
the hive's key prefix (the CLI gets a reply stream of its own, which expires after use).
Other transports are configured per hive but not yet reachable from the CLI; choosing one
fails with a clear line instead of a fallback.
"""

from __future__ import annotations

from hive_cli.errors import CliFailure
from hive_core.hive_config import HiveConfig
from hive_core.transports.base import ShardTransport

AVAILABLE = ("local", "redis")


class TransportUnavailable(CliFailure):
    """The hive's transport exists in the schema but the CLI cannot use it yet."""


def check_available(config: HiveConfig) -> None:
    """Fail before any side effect when the hive's transport cannot be used."""
    if config.transport not in AVAILABLE:
        raise TransportUnavailable(
            f"transport {config.transport!r} of hive {config.name!r} is not available yet "
            f"(available: {', '.join(AVAILABLE)})"
        )


def open_transport(config: HiveConfig) -> ShardTransport:
    """A transport the CLI can ``request`` on; the caller closes it.

    The ``AMPLIHACK_MEMORY_*`` overrides apply here exactly as in the agent processes (which
    inherit this environment), so the CLI reaches agents where they actually listen.
    """
    config = config.with_env_overrides()
    check_available(config)
    if config.transport == "redis":
        from hive_core.transports.redis import RedisShardTransport

        assert config.connection_string is not None  # HiveConfig validates it
        transport = RedisShardTransport(config.connection_string, config.name,
                                        key_prefix=config.key_prefix)
        try:
            transport.live_members()  # reachable? one clear line now, not retries later
        except BaseException:
            transport.close()
            raise
        return transport
    from hive_core.transports.unix import UnixSocketTransport

    return UnixSocketTransport(config.run_dir)
