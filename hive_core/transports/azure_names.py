"""The names of a hive's Azure messaging entities, in one place.

The transports (hive_core.transports.eventhubs, .servicebus) and the deployment that
creates the entities (hive_cli.azure_deploy -> deploy/azure/main.bicep) must agree on every
name; they all read them here. No Azure SDK is imported, so the CLI can render a deployment
without it.
"""

from __future__ import annotations

import hashlib
from typing import Any

DEFAULT_TOPIC = "hive-graph"
DEFAULT_REPLY_QUEUE = "hive-graph-replies"
DEFAULT_CONSUMER_GROUP = "{agent}"  # a template: {agent} and {hive} are filled in
MAX_SUBSCRIPTION_NAME = 50  # a Service Bus limit


def event_hub(hive: str, options: dict[str, Any]) -> str:
    """The hive's event hub: ``transport_options.eventhub``, else ``hive-shards-HIVE``."""
    return str(options.get("eventhub") or f"hive-shards-{hive}")


def consumer_group(hive: str, agent: str, options: dict[str, Any]) -> str:
    """The consumer group ``agent`` reads its partition in."""
    template = str(options.get("consumer_group") or DEFAULT_CONSUMER_GROUP)
    return template.format(agent=agent, hive=hive)


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
