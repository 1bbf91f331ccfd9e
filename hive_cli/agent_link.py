"""Talking to running agents: the three requests the CLI makes (status, learn, ask).

Every request is an :class:`~hive_core.messages.Envelope` from sender ``cli`` on the hive's
transport, with a deadline. Replies are turned into payloads (or the error they carried) with
:func:`~hive_core.transports.base.request_payloads`, so a failure is always a value or an
exception, never a silently missing number.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hive_core.errors import HiveError
from hive_core.messages import Envelope, MessageType
from hive_core.redact import redact_secret
from hive_core.transports.base import ShardTransport, request_payloads

SENDER = "cli"

Result = dict[str, Any] | HiveError


class AgentLink:
    """Requests from the CLI to the agents of one hive."""

    def __init__(self, hive: str, transport: ShardTransport) -> None:
        self.hive = hive
        self.transport = transport

    def _envelope(self, kind: MessageType, agent: str, payload: dict[str, Any]) -> Envelope:
        return Envelope(kind, hive=self.hive, sender=SENDER, target=agent, payload=payload)

    def request_many(
        self, kind: MessageType, payloads: Mapping[str, dict[str, Any]], timeout: float
    ) -> dict[str, Result]:
        """One request per agent, all concurrent; each result is a payload or an error."""
        if not payloads:
            return {}
        envelopes = [self._envelope(kind, a, p) for a, p in payloads.items()]
        return dict(request_payloads(self.transport, envelopes, timeout))

    def status(self, agents: Sequence[str], timeout: float) -> dict[str, Result]:
        return self.request_many(
            MessageType.SHARD_QUERY, {a: {"op": "status"} for a in agents}, timeout
        )

    def learn(self, batches: Mapping[str, list[Any]], timeout: float,
              batch_ids: Mapping[str, str] | None = None, restore: bool = False
              ) -> dict[str, Result]:
        """One LEARN per agent. A batch id lets the agent answer a re-sent batch from its
        journal; the deadline (a little less than ours) bounds how long it waits for the
        work in progress of an earlier send of the same batch."""
        payloads: dict[str, dict[str, Any]] = {}
        for agent, turns in batches.items():
            payload: dict[str, Any] = {"turns": turns, "timeout": round(timeout * 0.9, 3)}
            if batch_ids is not None and agent in batch_ids:
                payload["batch_id"] = batch_ids[agent]
            if restore:
                payload["restore"] = True
            payloads[agent] = payload
        return self.request_many(MessageType.LEARN, payloads, timeout)

    def ask(self, agent: str, question: str, limit: int, timeout: float,
            federated: bool = False) -> dict[str, Any]:
        # The agent gets the deadline too (a little less, for the reply's way back), so it
        # answers with what it has instead of searching past the point anyone waits.
        payload = {"question": question, "limit": limit, "timeout": round(timeout * 0.9, 3),
                   "federated": federated}
        result = self.request_many(MessageType.ASK, {agent: payload}, timeout)[agent]
        if isinstance(result, HiveError):
            raise result
        return result


def describe(error: HiveError) -> str:
    """A short reason for a failed request, for tables and one-line errors."""
    return redact_secret(" ".join((str(error) or type(error).__name__).split()))
