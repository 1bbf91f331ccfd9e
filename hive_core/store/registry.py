"""The one place a shard backend's name becomes a store: ``open_store(name, ...)``.

The in-process hive (DistributedHiveGraph) and an agent process both open shards here, so a
backend is one module plus one line in :data:`BACKENDS`. Backends are imported when chosen
(Kuzu loads a ~30 MB native library a memory-only hive never needs).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from hive_core.config import CoreSettings
from hive_core.errors import ConfigError
from hive_core.scoring import Bm25
from hive_core.store.base import ShardStore

# name -> "module:function"; the function takes (agent_id, path, bm25, settings,
# shards_in_process) and returns an open ShardStore.
BACKENDS: dict[str, str] = {
    "memory": "hive_core.store.memory:open_memory_store",
    "kuzu": "hive_core.store.kuzu:open_kuzu_store",
}

Opener = Callable[[str, Path | None, Bm25, CoreSettings, int], ShardStore]


def names() -> tuple[str, ...]:
    return tuple(BACKENDS)


def check_name(name: str) -> str:
    if name not in BACKENDS:
        raise ConfigError(f"unknown shard backend {name!r}: choose one of {', '.join(BACKENDS)}")
    return name


def open_store(
    name: str, agent_id: str, *, bm25: Bm25, settings: CoreSettings,
    path: Path | None = None, shards_in_process: int = 1,
) -> ShardStore:
    """Open ``agent_id``'s shard with backend ``name`` (at ``path`` for on-disk backends).

    ``shards_in_process`` sizes per-process budgets (Kuzu's buffer pool is shared out among
    the shards one process holds).
    """
    module, _, func = BACKENDS[check_name(name)].partition(":")
    try:
        opener: Opener = getattr(importlib.import_module(module), func)
    except ImportError as exc:
        raise ConfigError(f"shard backend {name!r} is not available: {exc}") from exc
    return opener(agent_id, path, bm25, settings, shards_in_process)
