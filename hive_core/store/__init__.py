"""Shard stores: the ShardStore protocol and its implementations."""

from hive_core.store.base import ScoredFact, ShardStore, StoreRecord, TermStats
from hive_core.store.memory import MemoryShardStore

__all__ = ["MemoryShardStore", "ScoredFact", "ShardStore", "StoreRecord", "TermStats"]
