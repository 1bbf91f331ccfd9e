"""The one place a transport's name becomes a transport: name -> factory and config checks.

Config validation (hive_core.hive_config), the agent runtime and the CLI all read
:data:`TRANSPORTS`, so a new broker is one module plus one line here. A transport module
is imported only when its transport is opened: an agent on Unix sockets never loads a broker
SDK (~5-30 MB per process, times 100 agents).

Opening a transport also loads the hive's message key (hive_core.secret_store): every
transport authenticates with it (Unix sockets once per connection, the others every message,
with the replay window its spec names).

The module named by a spec provides ``open_transport(config, auth) -> ShardTransport`` and may
provide ``purge(config) -> list[str]`` (what ``delete --purge-data`` removes from the broker).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hive_core import connection_strings
from hive_core.auth import BROKER_WINDOW, WINDOW
from hive_core.errors import ConfigError
from hive_core.redact import redact_secret

if TYPE_CHECKING:
    from hive_core.auth import MessageAuth
    from hive_core.hive_config import HiveConfig
    from hive_core.transports.base import ShardTransport


def _eventhubs_options(options: Mapping[str, Any]) -> None:
    from hive_core.transports import azure_names

    azure_names.consumer_group("hive", "agent", dict(options), app="app")  # a valid template?


@dataclass(frozen=True, slots=True)
class TransportSpec:
    """What the rest of the product knows about one transport."""

    name: str
    module: str  # provides open_transport(config, auth) and optionally purge(config)
    summary: str
    needs_connection_string: bool = False
    # Environment variables that may hold the connection string (checked in this order,
    # after AMPLIHACK_MEMORY_CONNECTION_STRING), so a secret need not be written to disk.
    connection_env: tuple[str, ...] = ()
    # Environment variable -> transport_options key it sets (AMPLIHACK_EH_NAME -> eventhub).
    option_env: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, type] = field(default_factory=dict)  # allowed transport_options
    check_connection: Callable[[str], str | None] | None = None  # None = fine, else why not
    check_options: Callable[[Mapping[str, Any]], None] | None = None  # raises ConfigError
    # The hive's state (ring view, liveness) lives where the transport is (redis), or in the
    # hive's folder / a blob container (state_store).
    state_in_broker: bool = False
    # Seconds a signed message may be old (hive_core.auth): a broker redelivers minutes later.
    replay_window: float = WINDOW


TRANSPORTS: dict[str, TransportSpec] = {spec.name: spec for spec in (
    TransportSpec("local", "hive_core.transports.unix",
                  "Unix sockets on one machine (no server)"),
    TransportSpec("redis", "hive_core.transports.redis", "Redis Streams across machines",
                  needs_connection_string=True,
                  check_connection=connection_strings.redis_problem, state_in_broker=True,
                  replay_window=BROKER_WINDOW),
    TransportSpec("azure_event_hubs", "hive_core.transports.eventhubs",
                  "Azure Event Hubs (one event hub per hive)", needs_connection_string=True,
                  connection_env=("AMPLIHACK_EH_CONNECTION_STRING",),
                  option_env={"AMPLIHACK_EH_NAME": "eventhub"},
                  options={"eventhub": str, "consumer_group": str, "reply_partition": int},
                  check_connection=connection_strings.azure_problem,
                  check_options=_eventhubs_options, replay_window=BROKER_WINDOW),
    TransportSpec("azure_service_bus", "hive_core.transports.servicebus",
                  "Azure Service Bus (one topic per hive)", needs_connection_string=True,
                  connection_env=("AMPLIHACK_SB_CONNECTION_STRING",),
                  option_env={"AMPLIHACK_SB_TOPIC": "topic"},
                  options={"topic": str, "reply_queue": str, "max_delivery_count": int},
                  check_connection=connection_strings.azure_problem,
                  replay_window=BROKER_WINDOW),
)}


def names() -> tuple[str, ...]:
    return tuple(TRANSPORTS)


def spec(name: str) -> TransportSpec:
    try:
        return TRANSPORTS[name]
    except KeyError:
        raise ConfigError(
            f"unknown transport {name!r}: choose one of {', '.join(TRANSPORTS)}") from None


def check(config: HiveConfig, *, connection_required: bool) -> None:
    """The transport's config checks; ``connection_required`` also demands a connection
    string now (from the config or the environment), as opening it would."""
    s = spec(config.transport)
    unknown = sorted(set(config.transport_options) - set(s.options))
    if unknown:
        allowed = ", ".join(s.options) or "none"
        raise ConfigError(f"unknown transport_options for {s.name}: {', '.join(unknown)} "
                          f"(allowed: {allowed})")
    for key, kind in s.options.items():
        value = config.transport_options.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise ConfigError(f"transport_options.{key} must be a {kind.__name__}")
    if s.check_options is not None:
        s.check_options(config.transport_options)
    conn = config.connection_string
    if conn and s.check_connection is not None and (why := s.check_connection(conn)):
        # A URL password with a space would be cut in two by redaction: not shown at all.
        shown = "(not shown)" if "://" in conn and "@" in conn and re.search(r"\s", conn) \
            else repr(redact_secret(conn))
        raise ConfigError(f"invalid {s.name} connection string {shown}: {why}")
    if connection_required and s.needs_connection_string and not conn:
        where = " or ".join(("--connection-string", *s.connection_env))
        raise ConfigError(f"transport {s.name!r} needs a connection string ({where})")


def env_overrides(transport: str, env: Mapping[str, str]) -> dict[str, Any]:
    """HiveConfig changes the transport's own environment variables ask for."""
    s = TRANSPORTS.get(transport)
    if s is None:
        return {}
    changes: dict[str, Any] = {}
    for var in s.connection_env:
        if env.get(var):
            changes["connection_string"] = env[var]
            break
    options = {key: env[var] for var, key in s.option_env.items() if env.get(var)}
    if options:
        changes["transport_options"] = options
    return changes


def _module(config: HiveConfig) -> Any:
    return importlib.import_module(spec(config.transport).module)


def hive_auth(config: HiveConfig) -> MessageAuth:
    """The message policy of ``config``'s hive: its key (AMPLIHACK_HIVE_SECRET or the secret
    file; ConfigError when there is neither) and its transport's replay window."""
    from hive_core import secret_store

    return secret_store.hive_auth(config.directory, spec(config.transport).replay_window)


def open_transport(config: HiveConfig, auth: MessageAuth | None = None) -> ShardTransport:
    """The transport of ``config`` (env overrides applied by the caller), checked first,
    signing with ``auth`` (default: the hive's own policy, :func:`hive_auth`)."""
    check(config, connection_required=True)
    policy = auth if auth is not None else hive_auth(config)
    return _module(config).open_transport(config, policy)


def purge(config: HiveConfig) -> list[str]:
    """Remove the hive's data from its broker (``delete --purge-data``); what was removed."""
    module = _module(config)
    return list(module.purge(config)) if hasattr(module, "purge") else []
