"""Shared hive state besides the shards: ring view, liveness, broker checkpoints, on blobs.

Agents on one machine share a folder; agents spread over Container Apps share only an Azure
Blob container. Both are a :class:`~hive_core.state.blobs.Blobs` (read / conditional write /
delete / list), and the three kinds of state are built once on top of it:
:class:`~hive_core.state.view_store.BlobViewStore`,
:class:`~hive_core.state.liveness.BlobLiveness` and
:class:`~hive_core.state.checkpoints.BlobCheckpoints`. :func:`open_state` picks the blobs.
"""

from __future__ import annotations

from pathlib import Path

from hive_core.errors import ConfigError
from hive_core.state.blobs import (
    Blob,
    BlobInfo,
    Blobs,
    DirBlobs,
    MemoryBlobs,
    PreconditionFailed,
)
from hive_core.state.checkpoints import BlobCheckpoints, CheckpointStore, MemoryCheckpoints
from hive_core.state.liveness import BlobLiveness
from hive_core.state.view_store import BlobViewStore

KINDS = ("memory", "dir", "blob")

__all__ = [
    "KINDS",
    "Blob",
    "BlobCheckpoints",
    "BlobInfo",
    "BlobLiveness",
    "BlobViewStore",
    "Blobs",
    "CheckpointStore",
    "DirBlobs",
    "MemoryBlobs",
    "MemoryCheckpoints",
    "PreconditionFailed",
    "open_state",
]


def open_state(kind: str, *, folder: Path | None = None, connection_string: str | None = None,
               container: str = "hive-state") -> Blobs:
    """The blobs of ``kind``: "memory", "dir" (needs ``folder``) or "blob" (an Azure
    container; needs ``connection_string``; the Azure SDK is imported only then)."""
    if kind == "memory":
        return MemoryBlobs()
    if kind == "dir":
        if folder is None:
            raise ConfigError("hive state kind 'dir' needs a folder")
        return DirBlobs(Path(folder))
    if kind == "blob":
        if not connection_string:
            raise ConfigError("hive state kind 'blob' needs an Azure Storage connection string")
        from hive_core.state.azure_blobs import AzureBlobs

        return AzureBlobs(connection_string, container)
    raise ConfigError(f"unknown hive state kind {kind!r}: choose {', '.join(KINDS)}")
