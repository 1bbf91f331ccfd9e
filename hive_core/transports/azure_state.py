"""The hive state an Azure broker leans on: who is live, and where consumers resumed.

Event Hubs and Service Bus carry messages only; they cannot say which agents are live, nor
keep a consumer's position. Both live in the hive's state store (``state_store`` in the
config), the same place as the ring view:

* ``auto`` / ``dir`` -- the hive's folder: liveness is an ``flock`` per agent in ``run/``
  (exact, for agents of one machine), checkpoints are files under ``data/state/``;
* ``blob`` -- an Azure Blob container (AMPLIHACK_BLOB_CONNECTION_STRING): heartbeat blobs
  and checkpoint blobs, for agents spread over several Container Apps.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from hive_core.errors import ConfigError
from hive_core.hive_config import HiveConfig
from hive_core.membership.liveness import FileLiveness
from hive_core.state import BlobLiveness, Blobs, CheckpointStore, open_state
from hive_core.state.checkpoints import BlobCheckpoints

BLOB_ENV = "AMPLIHACK_BLOB_CONNECTION_STRING"
BLOB_CONTAINER_ENV = "AMPLIHACK_BLOB_CONTAINER"


class Presence(Protocol):
    """Liveness that this process can also assert for the agents it serves."""

    def hold(self, agent: str) -> None: ...

    def release(self, agent: str) -> None: ...

    def live_members(self, candidates: Iterable[str]) -> set[str]: ...

    def close(self) -> None: ...


def state_blobs(config: HiveConfig) -> Blobs:
    """The hive's state blobs: its folder (``auto``/``dir``) or a blob container."""
    if config.state_store in ("auto", "dir"):
        return open_state("dir", folder=Path(config.data_dir) / "state")
    conn = os.environ.get(BLOB_ENV)
    if not conn:
        raise ConfigError(f"state_store 'blob' needs {BLOB_ENV} (an Azure Storage "
                          "connection string) in the environment")
    return open_state("blob", connection_string=conn,
                      container=os.environ.get(BLOB_CONTAINER_ENV) or "hive-state")


def open_presence(config: HiveConfig) -> Presence:
    if config.state_store in ("auto", "dir"):
        return FileLiveness(config.run_dir)
    return BlobLiveness(state_blobs(config))


def open_checkpoints(config: HiveConfig) -> CheckpointStore:
    return BlobCheckpoints(state_blobs(config))
