"""Asking shards: envelopes out, plain results back, failures kept per shard.

Requests to the asking agent's own shard bypass the transport (a direct call), everything
else travels as a message with a deadline. A shard that fails is reported by name, never
dropped silently.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

from hive_core.errors import DeadlineExceeded, StaleEpoch, TransportError
from hive_core.facts import HiveFact
from hive_core.messages import Envelope, MessageType
from hive_core.shard_server import Placed, ShardServer, as_batch
from hive_core.store.base import ScoredFact, TermStats
from hive_core.transports.base import ShardTransport, request_payloads

Call = tuple[MessageType, dict[str, Any]]
# What a shard server answers in-process without an envelope (see ShardClient._direct).
DIRECT_KINDS = frozenset({MessageType.SHARD_QUERY, MessageType.SHARD_STORE,
                          MessageType.SHARD_DELETE})


class ShardClient:
    """Scatter/gather over shards for one sender (an agent, or the hive itself)."""

    def __init__(
        self,
        hive_id: str,
        transport: ShardTransport,
        *,
        sender: str,
        local: Mapping[str, ShardServer] | None = None,
        timeout: float,
        epoch: int = 0,
        direct: Mapping[str, ShardServer] | None = None,
    ) -> None:
        self.hive_id = hive_id
        self.transport = transport
        self.sender = sender
        self.local = local if local is not None else {}
        self.timeout = timeout
        self.epoch = epoch  # the sender's ring view, carried by every envelope
        self.stale_epoch = 0  # the newest epoch a shard refused us with (StaleEpoch)
        # The servers of other shards that may be called directly too (not only the
        # sender's own, in ``local``): those the transport would deliver to the same handler
        # in this process, where a message costs a thread hand-off and buys nothing.
        self.direct: Mapping[str, ShardServer] = direct if direct is not None else {}
        # The asker's deadline (time.monotonic()), if it has one: no request waits past it,
        # and a shard there is no time left to ask fails at once (listed, so partial).
        self.deadline: float | None = None
        self.out_of_time: set[str] = set()  # shards not asked for lack of time (not at fault)

    def call_many(
        self, calls: Mapping[str, Call], timeout: float | None = None
    ) -> dict[str, dict[str, Any] | TransportError]:
        """One call per shard; each result is the reply payload or the error it met."""
        out: dict[str, dict[str, Any] | TransportError] = {}
        remote: list[Envelope] = []
        for shard, (kind, payload) in calls.items():
            server = self._server(shard) if kind in DIRECT_KINDS else None
            if server is not None:
                out[shard] = self._direct(server, kind, payload, self.epoch)
            else:
                remote.append(Envelope(kind, self.hive_id, self.sender, shard, payload,
                                       epoch=self.epoch))
        if remote:
            wait = timeout or self.timeout
            left = None if self.deadline is None else self.deadline - time.monotonic()
            if left is not None and left <= 0:
                for env in remote:
                    out[env.target] = DeadlineExceeded(
                        f"{env.target}: not asked, the asker's deadline had passed")
                    self.out_of_time.add(env.target)
            else:
                wait = wait if left is None else min(wait, left)
                out.update(request_payloads(self.transport, remote, wait))
        for res in out.values():
            if isinstance(res, StaleEpoch):
                self.stale_epoch = max(self.stale_epoch, res.epoch)
        return out

    def _server(self, shard: str) -> ShardServer | None:
        """The server to call directly for ``shard`` (None: send it a message): one of
        ``direct``, or the sender's own."""
        server = self.direct.get(shard)
        if server is None and shard == self.sender:
            return self.local.get(shard)
        return server

    @staticmethod
    def _direct(server: ShardServer, kind: MessageType, payload: dict[str, Any], epoch: int
                ) -> dict[str, Any] | TransportError:
        """A call without an envelope; a store is placed under the sender's ``epoch``."""
        handle: Callable[[dict[str, Any]], dict[str, Any]] = (
            server.query if kind == MessageType.SHARD_QUERY else
            partial(server.write, epoch, server.store_payload)
            if kind == MessageType.SHARD_STORE else server.delete_payload)
        return _guarded(server.agent_id, handle, payload)

    def store_many(
        self, placed: Mapping[str, Placed], timeout: float | None = None
    ) -> dict[str, dict[str, Any] | TransportError]:
        """SHARD_STORE of what placement gave each shard (a batch, or one fact's record),
        as :meth:`call_many` would send it, except that a shard called directly is handed
        the object itself: its wire form would only be built to be unpacked again. One
        fact's promotion stores on ~27 shards, so this is per-shard cost on the hot write
        path. A reply means stored, as a message's reply does."""
        out: dict[str, dict[str, Any] | TransportError] = {}
        remote: dict[str, Call] = {}
        for shard, item in placed.items():
            server = self._server(shard)
            if server is None:
                remote[shard] = (MessageType.SHARD_STORE, {"batch": as_batch(item).to_wire()})
                continue
            try:  # _guarded, inlined: this runs once per shard of every fact promoted
                # placed under this client's epoch: the guard (an agent's ring keeper)
                # learns of it (hive_core.membership.late_writes)
                out[shard] = (server.put(item) if server.guard is None else
                              server.write(self.epoch, server.put, item))
            except Exception as exc:
                out[shard] = _failure(shard, exc)
                if isinstance(exc, StaleEpoch):
                    self.stale_epoch = max(self.stale_epoch, exc.epoch)
        if remote:
            out.update(self.call_many(remote, timeout))
        return out

    def gather(self, calls: Mapping[str, Call]
               ) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        """:meth:`call_many`, split: (replies by shard, failed shards with their reason)."""
        replies: dict[str, dict[str, Any]] = {}
        failed: dict[str, str] = {}
        for shard, res in self.call_many(calls).items():
            if isinstance(res, TransportError):
                failed[shard] = str(res) or type(res).__name__
            else:
                replies[shard] = res
        return replies, failed

    def call(self, shard: str, kind: MessageType, payload: dict[str, Any]) -> dict[str, Any]:
        result = self.call_many({shard: (kind, payload)})[shard]
        if isinstance(result, TransportError):
            raise result
        return result

    # -- the calls of ranked_search ----------------------------------------------------------
    def stats(
        self, by_shard: Mapping[str, Sequence[str]]
    ) -> tuple[dict[str, TermStats], dict[str, str]]:
        calls = {s: (MessageType.SHARD_QUERY, {"op": "stats", "terms": list(t)})
                 for s, t in by_shard.items()}
        replies, failed = self.gather(calls)
        stats = {term: TermStats(int(df), int(max_tf), int(min_dl))
                 for res in replies.values() for term, (df, max_tf, min_dl) in res["stats"].items()}
        return stats, failed

    def score(
        self, shard: str, terms: Sequence[str], weights: Mapping[str, float], limit: int,
        avgdl: float,
    ) -> list[ScoredFact]:
        res = self.call(shard, MessageType.SHARD_QUERY,
                        {"op": "score", "terms": list(terms), "weights": dict(weights),
                         "limit": limit, "avgdl": avgdl})
        return [ScoredFact(HiveFact.from_dict(f), float(s)) for f, s in res["hits"]]

    def neighbours(
        self, by_shard: Mapping[str, Sequence[str]], weights: Mapping[str, float], avgdl: float,
    ) -> tuple[dict[str, list[ScoredFact]], dict[str, str]]:
        """The facts posted under position keys, scored with the question's weights, per
        key, in one parallel round (the context fetch of hive_core.context)."""
        calls = {s: (MessageType.SHARD_QUERY, {"op": "neighbours", "keys": list(k),
                                               "weights": dict(weights), "avgdl": avgdl})
                 for s, k in by_shard.items()}
        replies, failed = self.gather(calls)
        found = {key: [ScoredFact(HiveFact.from_dict(f), float(sc)) for f, sc in hits]
                 for res in replies.values() for key, hits in res["hits"].items()}
        return found, failed


def _guarded(shard: str, handle: Callable[[Any], dict[str, Any]], arg: Any
             ) -> dict[str, Any] | TransportError:
    """A direct call to a shard server, with a remote call's contract: what it raises is
    the shard's failure, returned (a TransportError as is), never raised to the caller."""
    try:
        return handle(arg)
    except Exception as exc:
        return _failure(shard, exc)


def _failure(shard: str, exc: Exception) -> TransportError:
    """What a direct call's exception is to its caller: a TransportError as is, anything
    else as the shard's failure (a remote handler's exception becomes an ERROR reply)."""
    if isinstance(exc, TransportError):
        return exc
    return TransportError(f"{shard}: {type(exc).__name__}: {exc}")
