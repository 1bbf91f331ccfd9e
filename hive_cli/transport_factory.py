"""How the CLI opens a hive's transport: through hive_core.transports.registry, as agents do.

The CLI only *requests* (status, learn, ask); it never binds a handler. A transport that
knows who is live (a broker) is asked once right away, so an unreachable broker is one clear
line now instead of retries later.

Every message is signed with the hive's secret (hive_core.secret_store). A hive created
before messages were signed has none: the first command that talks to its agents (``start``,
normally) generates it and says so in one line on stderr.
"""

from __future__ import annotations

import os
import sys

from hive_cli.errors import CliFailure
from hive_core import secret_store
from hive_core.auth import MessageAuth
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


def ensure_secret(config: HiveConfig) -> None:
    """Give a hive made before messages were signed its secret (one line says so), unless
    the key comes from the environment."""
    if os.environ.get(secret_store.ENV_SECRET) or not config.config_path.exists():
        return
    if secret_store.ensure(config.directory):
        print(f"hive {config.name!r} had no message secret (made before messages were "
              f"signed); generated {secret_store.secret_path(config.directory)}",
              file=sys.stderr)


def open_transport(config: HiveConfig, auth: MessageAuth | None = None) -> ShardTransport:
    """A transport the CLI can ``request`` on; the caller closes it.

    The ``AMPLIHACK_MEMORY_*`` and transport overrides apply here exactly as in the agent
    processes (which inherit this environment), so the CLI reaches agents where they listen.
    ``auth``: the message policy (default: the hive's, hive_core.transports.registry).
    """
    config = config.with_env_overrides()
    check_available(config)
    ensure_secret(config)
    transport = registry.open_transport(config, auth)
    if isinstance(transport, BrokerTransport):
        try:
            transport.live_members()  # reachable? one clear line now, not retries later
        except BaseException:
            transport.close()
            raise
    return transport
