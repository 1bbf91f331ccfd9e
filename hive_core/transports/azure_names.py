"""The names of a hive's Azure messaging entities, in one place.

The transports (hive_core.transports.eventhubs, .servicebus) and the deployment that
creates the entities (hive_cli.azure_deploy -> deploy/azure/main.bicep) must agree on every
name; they all read them here. No Azure SDK is imported, so the CLI can render a deployment
without it.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from hive_core.errors import ConfigError

DEFAULT_TOPIC = "hive-graph"
DEFAULT_REPLY_QUEUE = "hive-graph-replies"
DEFAULT_CONSUMER_GROUP = "{agent}"  # a template: {agent}, {hive} and {app} are filled in
APP_ENV = "AMPLIHACK_APP"  # the Container App an agent runs in (set by main.bicep)
MAX_SUBSCRIPTION_NAME = 50  # a Service Bus limit


def event_hub(hive: str, options: dict[str, Any]) -> str:
    """The hive's event hub: ``transport_options.eventhub``, else ``hive-shards-HIVE``."""
    return str(options.get("eventhub") or f"hive-shards-{hive}")


def consumer_group(hive: str, agent: str, options: dict[str, Any],
                   app: str | None = None) -> str:
    """The consumer group ``agent`` reads its partition in: one per agent by default,
    ``{app}`` for one per Container App (``app``, else $AMPLIHACK_APP, else "local"). Each
    agent keeps its own checkpoint either way; Event Hubs allows 5 readers per partition and
    group, so keep agents per app <= 5 with ``{app}``."""
    template = str(options.get("consumer_group") or DEFAULT_CONSUMER_GROUP)
    try:
        return template.format(agent=agent, hive=hive,
                               app=app or os.environ.get(APP_ENV) or "local")
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(f"transport_options.consumer_group {template!r} is not a valid "
                          f"template ({exc}): use {{agent}}, {{hive}} or {{app}}") from None


def topic(options: dict[str, Any]) -> str:
    return str(options.get("topic") or DEFAULT_TOPIC)


def reply_queue(options: dict[str, Any]) -> str:
    return str(options.get("reply_queue") or DEFAULT_REPLY_QUEUE)


def subscription_name(hive: str, agent: str) -> str:
    """``HIVE.AGENT`` (hives may share a topic and agent names), shortened with a digest to
    the 50 characters Service Bus allows."""
    name = f"{hive}.{agent}"
    if len(name) <= MAX_SUBSCRIPTION_NAME:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:10]
    return f"{name[:MAX_SUBSCRIPTION_NAME - 11]}-{digest}"
