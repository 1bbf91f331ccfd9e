"""How the CLI opens a hive's transport: through hive_core.transports.registry, as agents do.

The CLI only *requests* (status, learn, ask); it never binds a handler. A transport that
knows who is live (a broker) is asked once right away, so an unreachable broker is one clear
line now instead of retries later.
"""

from __future__ import annotations

from hive_cli.errors import CliFailure
from hive_core.errors import ConfigError
from hive_core.hive_config import HiveConfig
from hive_core.transports import registry
from hive_core.transports.base import ShardTransport
from hive_core.transports.broker import BrokerTransport


class TransportUnavailable(CliFailure):
    """The hive's transport cannot be opened with its configuration and environment."""


def check_available(config: HiveConfig) -> None:
    """Fail before any side effect when the hive's transport cannot be opened (a missing
    connection string, bad options), with the environment's overrides applied."""
    try:
        registry.check(config.with_env_overrides(), connection_required=True)
    except ConfigError as exc:
        raise TransportUnavailable(f"hive {config.name!r}: {exc}") from exc


def open_transport(config: HiveConfig) -> ShardTransport:
    """A transport the CLI can ``request`` on; the caller closes it.

    The ``AMPLIHACK_MEMORY_*`` and transport overrides apply here exactly as in the agent
    processes (which inherit this environment), so the CLI reaches agents where they listen.
    """
    config = config.with_env_overrides()
    check_available(config)
    transport = registry.open_transport(config)
    if isinstance(transport, BrokerTransport):
        try:
            transport.live_members()  # reachable? one clear line now, not retries later
        except BaseException:
            transport.close()
            raise
    return transport
