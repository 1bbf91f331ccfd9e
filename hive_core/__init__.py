"""hive_core: the distributed fact memory of amplihack-hive (no CLI, no processes).

Follow one fact: :mod:`.facts` (the value) -> :mod:`.placement` (which shards) ->
:mod:`.store` (a shard) and back: :mod:`.search` (route, score, merge) ->
:mod:`.distributed` (the graph that wires them over a :mod:`.transports` bus).
"""

from hive_core.bloom import BloomFilter
from hive_core.config import DEFAULTS, CoreSettings
from hive_core.distributed import DistributedHiveGraph
from hive_core.errors import (
    AgentError,
    ConfigError,
    ConnectionLost,
    DeadlineExceeded,
    HiveError,
    HiveNotFound,
    MessageRejected,
    ShardCorrupt,
    ShardError,
    ShardInUse,
    TransportError,
)
from hive_core.facts import HiveAgent, HiveEdge, HiveFact
from hive_core.graph import HiveGraph, InMemoryHiveGraph
from hive_core.ring import HashRing
from hive_core.search import SearchResult

__all__ = [
    "DEFAULTS", "AgentError", "BloomFilter", "ConfigError", "ConnectionLost", "CoreSettings",
    "DeadlineExceeded", "DistributedHiveGraph", "HashRing", "HiveAgent", "HiveEdge", "HiveError",
    "HiveFact", "HiveGraph", "HiveNotFound", "InMemoryHiveGraph", "MessageRejected",
    "SearchResult", "ShardCorrupt", "ShardError", "ShardInUse", "TransportError",
]
