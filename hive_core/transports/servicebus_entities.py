"""The entities a hive needs on a Service Bus namespace, made idempotently, and removed.

A hive's Service Bus transport (:mod:`hive_core.transports.servicebus`) receives from one
subscription per agent and replies through one session queue; both are created on first use
when the deployment did not create them (the administration API needs Manage rights), and
``delete --purge-data`` removes the subscriptions (:func:`purge`). Every step may race
another agent doing the same, so "already exists" and "not found" are both fine: a claim
interrupted half-way is completed by the next one.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from datetime import timedelta
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError

from hive_core.errors import ConfigError, ConnectionLost
from hive_core.hive_config import HiveConfig
from hive_core.redact import redact_secret
from hive_core.transports import azure_names

log = logging.getLogger("hive_core.transports.servicebus")

REPLY_TTL = timedelta(hours=1)  # replies nobody reads (the asker died) expire
RULE_NAME = "hive-target"
SDK_ERRORS: tuple[type[BaseException], ...] = (AzureError, OSError, ValueError)


class ServiceBusEntities:
    """Topic, per-agent subscriptions and the reply queue of one hive (thread-safe)."""

    def __init__(self, sdk: Any, connection_string: str, hive: str, *, topic: str,
                 reply_queue: str, max_delivery_count: int, lock_duration: float,
                 where: str) -> None:
        self.sdk = sdk
        self.hive = hive
        self.topic = topic
        self.reply_queue = reply_queue
        self.max_delivery_count = max_delivery_count
        self.lock_duration = lock_duration
        self.where = where
        self._conn = connection_string
        self._admin: Any = None
        self._lock = threading.Lock()
        self._topic_ready = self._replies_ready = False

    def _client(self) -> Any:
        if self._admin is None:
            self._admin = self.sdk.ServiceBusAdministrationClient.from_connection_string(
                self._conn)
        return self._admin

    def ensure_subscription(self, name: str, agent: str) -> None:
        """The topic, then ``agent``'s subscription ``name`` with a correlation rule on the
        hive and the target (the catch-all ``$Default`` rule removed)."""
        with self._lock:
            admin = self._client()
            if not self._topic_ready:
                try:
                    admin.get_topic(self.topic)
                except ResourceNotFoundError:
                    with contextlib.suppress(ResourceExistsError):
                        admin.create_topic(self.topic)
                self._topic_ready = True
            with contextlib.suppress(ResourceNotFoundError):
                admin.get_subscription(self.topic, name)
                return
            with contextlib.suppress(ResourceExistsError):
                admin.create_subscription(self.topic, name,
                                          max_delivery_count=self.max_delivery_count,
                                          lock_duration=timedelta(seconds=self.lock_duration))
            rule = self.sdk.CorrelationRuleFilter(properties={"hive": self.hive,
                                                              "target": agent})
            with contextlib.suppress(ResourceExistsError):
                admin.create_rule(self.topic, name, RULE_NAME, filter=rule)
            with contextlib.suppress(ResourceNotFoundError):
                admin.delete_rule(self.topic, name, "$Default")
        log.info("%s: created subscription %s on %s", agent, name, self.where)

    def ensure_reply_queue(self) -> None:
        with self._lock:
            if self._replies_ready:
                return
            admin = self._client()
            try:
                admin.get_queue(self.reply_queue)
            except ResourceNotFoundError:
                with contextlib.suppress(ResourceExistsError):
                    admin.create_queue(self.reply_queue, requires_session=True,
                                       default_message_time_to_live=REPLY_TTL)
            self._replies_ready = True

    def close(self) -> None:
        if self._admin is not None:
            try:
                self._admin.close()
            except SDK_ERRORS as exc:
                log.warning("closing a Service Bus administration client failed (%s)",
                            type(exc).__name__)


def purge(config: HiveConfig) -> list[str]:
    """``delete --purge-data``: the subscriptions of the hive's agents (replies left in the
    shared reply queue expire on their own after REPLY_TTL)."""
    from hive_core.transports.servicebus import load_sdk

    if not config.connection_string:
        raise ConfigError("transport 'azure_service_bus' needs a connection string")
    conn = config.connection_string
    topic = azure_names.topic(config.transport_options)
    admin = load_sdk(conn).ServiceBusAdministrationClient.from_connection_string(conn)
    removed: list[str] = []
    try:
        for agent in config.agent_names():
            name = azure_names.subscription_name(config.name, agent)
            try:
                admin.delete_subscription(topic, name)
            except ResourceNotFoundError:
                continue
            removed.append(f"Service Bus subscription {topic}/{name}")
    except SDK_ERRORS as exc:
        raise ConnectionLost(f"could not purge hive {config.name!r} from Service Bus: "
                             f"{type(exc).__name__}: {redact_secret(str(exc))}") from None
    finally:
        admin.close()
    return removed
