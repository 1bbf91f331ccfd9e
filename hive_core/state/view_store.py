"""The ring view as one blob: a :class:`~hive_core.membership.store.ViewStore` for hives whose
agents share only a blob container.

The protocol speaks in the view's own ``version`` (callers never see etags); underneath,
the swap is the blob's ETag compare-and-set. ``swap(expected_version, view)`` writes
``if_match`` the etag of the blob that holds version ``expected_version`` (or
``if_none_match`` for version 0, the hive's first view), so two agents that read the same
version cannot both win, on one machine or many. The document is ``RingView.encode()``, the
same JSON the file and Redis stores keep.
"""

from __future__ import annotations

from hive_core.membership.view import RingView
from hive_core.state.blobs import Blobs, PreconditionFailed, check_name


class BlobViewStore:
    """ViewStore on a :class:`~hive_core.state.blobs.Blobs` (see module docstring).

    The blobs belong to the caller (one container serves the view, liveness and
    checkpoints), so :meth:`close` leaves them open unless ``owns_blobs``.
    """

    def __init__(self, blobs: Blobs, name: str = "ring.json", *,
                 owns_blobs: bool = False) -> None:
        self.blobs = blobs
        self.owns_blobs = owns_blobs
        self.name = check_name(name)
        # (etag, view) of the last blob read or written: saves a decode per poll, and lets a
        # swap right after a load skip the re-read.
        self._known: tuple[str, RingView] | None = None

    def _read(self) -> tuple[str, RingView] | None:
        blob = self.blobs.read(self.name)
        if blob is None:
            return None
        known = self._known
        if known is not None and known[0] == blob.etag:
            return known
        found = (blob.etag, RingView.decode(blob.data))
        self._known = found
        return found

    def load(self) -> RingView | None:
        found = self._read()
        return None if found is None else found[1]

    def _write(self, view: RingView, etag: str | None) -> bool:
        data = view.encode().encode()
        try:
            if etag is None:
                new = self.blobs.write(self.name, data, if_none_match=True)
            else:
                new = self.blobs.write(self.name, data, if_match=etag)
        except PreconditionFailed:
            return False
        self._known = (new, view)
        return True

    def swap(self, expected_version: int, view: RingView) -> bool:
        known = self._known
        # Right after a load of that version, its etag is known: try it first. If the blob
        # changed since, whether it still holds expected_version (a clear and a re-create
        # can bring a version back) is for a fresh read to decide.
        if (expected_version and known is not None and known[1].version == expected_version
                and self._write(view, known[0])):
            return True
        current = self._read()
        if (current[1].version if current is not None else 0) != expected_version:
            return False
        return self._write(view, current[0] if current is not None else None)

    def clear(self) -> None:
        self.blobs.delete(self.name)
        self._known = None

    def close(self) -> None:
        """Close the blobs if they are this store's own (see ``owns_blobs``)."""
        if self.owns_blobs:
            self.blobs.close()
