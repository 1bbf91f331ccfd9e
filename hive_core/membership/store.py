"""Where a hive's ring view lives, changed only by compare-and-set.

A :class:`ViewStore` has two primitives, like a kombu channel: ``load`` the view, and
``swap`` it for a new one if its ``version`` is still the one the caller read. Everything
else (join, leave, flip, ...) is a pure transition (:mod:`hive_core.membership.view`)
applied by :func:`update`, which re-reads and retries when another agent won the race: two
``add-agent`` at once both land, in one epoch order, and none is lost.

Implementations: :class:`FileViewStore` (the ``local`` transport: one JSON file in the
hive's data folder, written atomically under an ``flock``) and
:class:`~hive_core.membership.redis_store.RedisViewStore` (one key under the hive's prefix,
swapped by a Lua script). The store is where the transport already is, so no new service.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from hive_core.atomic import write_private
from hive_core.errors import ConfigError, TransportError
from hive_core.membership.view import RingView

if TYPE_CHECKING:
    from hive_core.hive_config import HiveConfig

Transition = Callable[[RingView | None], RingView | None]
UPDATE_DEADLINE = 10.0


@runtime_checkable
class ViewStore(Protocol):
    def load(self) -> RingView | None:
        """The stored view, or None before the hive's first start."""
        ...

    def swap(self, expected_version: int, view: RingView) -> bool:
        """Store ``view`` iff the stored version is ``expected_version`` (0: no view yet)."""
        ...

    def clear(self) -> None:
        """Forget the view (the hive is deleted with its data)."""
        ...

    def close(self) -> None: ...


def update(store: ViewStore, transition: Transition,
           deadline: float = UPDATE_DEADLINE) -> RingView | None:
    """Apply ``transition`` to the stored view until a swap wins; returns the view in force
    afterwards (the new one, or the unchanged one when the transition had nothing to do).

    Raises TransportError if no swap wins within ``deadline`` seconds (a store that keeps
    changing under us, or one that cannot be reached).
    """
    end = time.monotonic() + deadline
    pause = 0.005
    while True:
        view = store.load()
        new = transition(view)
        if new is None:
            return view
        if store.swap(view.version if view is not None else 0, new):
            return new
        if time.monotonic() >= end:
            raise TransportError(f"ring view kept changing; no update within {deadline:g}s")
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


class FileViewStore:
    """The view as ``ring.json`` beside the hive's shards; writers serialise on ``ring.lock``.

    Readers need no lock: a write is a rename of a complete temporary file, so a reader sees
    the old or the new document, never half of one.
    """

    def __init__(self, folder: Path) -> None:
        self.path = folder / "ring.json"
        self.lock_path = folder / "ring.lock"
        # Agents load the view every poll; a stat tells whether the file was replaced.
        self._cached: tuple[tuple[int, int, int], RingView] | None = None

    def load(self) -> RingView | None:
        try:
            st = os.stat(self.path)
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
            cached = self._cached
            if cached is not None and cached[0] == stamp:
                return cached[1]
            view = RingView.decode(self.path.read_text())
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError(f"cannot read the ring view {self.path}: {exc}") from exc
        self._cached = (stamp, view)
        return view

    @contextmanager
    def _locked(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def swap(self, expected_version: int, view: RingView) -> bool:
        with self._locked():
            current = self.load()
            if (current.version if current is not None else 0) != expected_version:
                return False
            write_private(self.path, view.encode())
            return True

    def clear(self) -> None:
        with self._locked():
            self.path.unlink(missing_ok=True)
        self.lock_path.unlink(missing_ok=True)

    def close(self) -> None:
        """Nothing held between calls."""


def open_view_store(config: HiveConfig) -> ViewStore:
    """Where the hive's ring view lives: a key under its prefix when the transport keeps the
    hive's state (``redis``); else by ``state_store``: a file beside the shards (``auto``,
    ``dir``: one machine or a shared volume) or a blob container (``blob``)."""
    from hive_core.transports import registry

    if registry.spec(config.transport).state_in_broker:
        from hive_core.membership.redis_store import RedisViewStore

        assert config.connection_string is not None  # HiveConfig validates it
        return RedisViewStore(config.connection_string, config.name, config.key_prefix)
    if config.state_store in ("auto", "dir"):
        return FileViewStore(config.data_dir)
    from hive_core.state.view_store import BlobViewStore
    from hive_core.transports.azure_state import state_blobs

    return BlobViewStore(state_blobs(config), owns_blobs=True)
