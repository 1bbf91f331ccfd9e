"""Constants of the hive, each overridable, none hard-coded at its point of use.

Every default lives here once. Callers take a value from :data:`DEFAULTS` (or a
:class:`CoreSettings` they built) instead of repeating a literal, so a deployment can tune the
hive with ``AMPLIHACK_*`` environment variables without touching code.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields, replace

DEFAULT_REPLICATION_FACTOR = 3
DEFAULT_QUERY_FANOUT = 5
VIRTUAL_NODES_PER_AGENT = 64
KUZU_BUFFER_POOL_SIZE = 256 * 1024 * 1024
KUZU_MAX_DB_SIZE = 1024 * 1024 * 1024
# All Kuzu shards of one process share this many bytes of buffer pool (each gets at least
# KUZU_MIN_BUFFER_POOL_SIZE), so that a 100-agent hive in one process stays bounded.
KUZU_PROCESS_BUFFER_BUDGET = 1024 * 1024 * 1024
KUZU_MIN_BUFFER_POOL_SIZE = 16 * 1024 * 1024
DEFAULT_SEARCH_TIMEOUT = 2.0
DEFAULT_STORE_TIMEOUT = 5.0
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
ESCALATION_CONFIDENCE = 0.9
RRF_K = 60
BLOOM_FALSE_POSITIVE_RATE = 0.01


@dataclass(frozen=True, slots=True)
class CoreSettings:
    """Tunable numbers of the memory. ``from_env`` applies ``AMPLIHACK_<FIELD>`` overrides."""

    replication_factor: int = DEFAULT_REPLICATION_FACTOR
    query_fanout: int = DEFAULT_QUERY_FANOUT
    virtual_nodes: int = VIRTUAL_NODES_PER_AGENT
    kuzu_buffer_pool_size: int = KUZU_BUFFER_POOL_SIZE
    kuzu_max_db_size: int = KUZU_MAX_DB_SIZE
    kuzu_process_buffer_budget: int = KUZU_PROCESS_BUFFER_BUDGET
    search_timeout: float = DEFAULT_SEARCH_TIMEOUT
    store_timeout: float = DEFAULT_STORE_TIMEOUT
    max_message_bytes: int = MAX_MESSAGE_BYTES
    escalation_confidence: float = ESCALATION_CONFIDENCE
    rrf_k: int = RRF_K
    bloom_false_positive_rate: float = BLOOM_FALSE_POSITIVE_RATE
    # BM25 parameters. Searches use the hive's real collection size and average length
    # (hive_core.scoring.Collection); the two constants are the fallback of a hive that
    # knows nothing yet.
    bm25_k1: float = 1.2
    bm25_b: float = 0.5
    bm25_avgdl: float = 12.0
    bm25_reference_docs: int = 1_000_000
    # Seconds an agent process reuses the hive's collection statistics before asking the
    # live agents for their parts again (one small request each, only when it searches).
    collection_ttl: float = 10.0
    # Seconds between anti-entropy rounds of an agent process (hive_core.gossip).
    gossip_interval: float = 30.0
    # Weight multiplier for a question's names and identifiers (hive_core.search).
    anchor_boost: float = 1.5
    # A living ring (hive_core.membership). Seconds an agent may be unreachable before the
    # others mark it down and restore its replicas on the next owners.
    rereplicate_after: float = 60.0
    # Seconds after a ring move settles before old owners drop what they no longer own
    # (readers still on the previous view find it meanwhile).
    handoff_grace: float = 10.0
    # Seconds between an agent's checks of the ring view and of its peers' liveness.
    ring_poll: float = 1.0
    # Deadline of one hand-off page (a source scans its shard for it; under load that takes
    # longer than a store, and a page that misses it is asked again from the start).
    handoff_timeout: float = 30.0
    # An agent's socket listener (hive_core.transports.listener_limits): connections open at
    # once (more are refused and counted), seconds a connection may stay silent before it is
    # closed, and the two fixed worker pools (shard requests; requests that fan out).
    listener_max_connections: int = 4096
    listener_idle_timeout: float = 60.0
    listener_workers: int = 16
    listener_fanout_workers: int = 8
    # Bytes of free disk a shard keeps in reserve: below it writes are refused (reads still
    # served) instead of letting the engine meet a full disk (hive_core.store.disk_space).
    disk_reserve_bytes: int = 64 * 1024 * 1024

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> CoreSettings:
        """Defaults overridden by ``AMPLIHACK_<UPPER_FIELD_NAME>`` variables."""
        env = os.environ if environ is None else environ
        base = cls()
        changes: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(f"AMPLIHACK_{f.name.upper()}")
            if raw is None:
                continue
            kind = type(getattr(base, f.name))
            try:
                value = kind(raw)
            except ValueError:
                value = None
            # Every tunable is a size, a count, a duration or a weight: nan, inf and
            # negative values have no meaning and would fail far from here.
            if value is None or not math.isfinite(value) or value < 0:
                from hive_core.errors import ConfigError

                what = "whole number" if kind is int else "number"
                raise ConfigError(f"AMPLIHACK_{f.name.upper()}={raw!r} is not valid: use a "
                                  f"finite {what} >= 0")
            changes[f.name] = value
        return replace(base, **changes) if changes else base


DEFAULTS = CoreSettings()
