"""Writes placed under an older ring that land across a cleanup: a cleanup is finished only
when none did.

After a move, an old owner drops the roles it no longer owns once the ring has been settled
for the grace period (``agent_runtime.ring_keeper``). That pass works from a snapshot of
what the shard holds, so a write that was *authorised under an older epoch* -- a
SHARD_STORE admitted just before the view moved, an anti-entropy exchange checked against
the old ring, the local copy of a learn placed before the move -- and lands after the
snapshot would leave roles the shard does not own under the settled ring behind, while the
shard reported that epoch as cleaned (its next pass was a minute away).

A :class:`WriteTracker` closes that gap with two rules, both decided by the epoch each write
was authorised under (the receiver's epoch for a message it admitted, the placing client's
for a local write, the ring a repair exchange was checked against):

* a cleanup of epoch E **begins** only while no write authorised under an epoch older than
  E is in flight (:meth:`begin_cleanup` returns None; the keeper tries at its next poll):
  every such write has landed, and the snapshot sees it;
* a write authorised under an epoch older than the cleanup begun last, that begins after
  it, is **late** (:meth:`begin`): it may bring roles that cleanup did not see. The
  tracker's ``generation`` moves, which tells the keeper that the epoch it cleaned is not
  clean any more (its status says so) and that it must clean again, which it does at its
  next poll. Such writes are rare and finite: only a writer that placed before the move
  and stores after it makes one (a local learn round; messages from an older epoch are
  refused at admission).

Writes never wait here and nothing is refused: a late write is stored as it always was (it
may be the copy a re-placement still needs), and dropped by the next pass if the settled
ring does not give it to this shard.
"""

from __future__ import annotations

import threading


class WriteTracker:
    """Writes in flight by authorising epoch, and the cleanup they may have escaped."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight: dict[int, int] = {}  # authorising epoch -> writes in flight
        self.cleaning = 0  # epoch of the cleanup begun last
        self.generation = 0  # moves with every late write: cleanups before it are void
        self.late = 0  # late writes over this tracker's life (status)

    def begin(self, epoch: int) -> None:
        """A write authorised under ``epoch`` starts landing (pair with :meth:`end`)."""
        with self._lock:
            self._in_flight[epoch] = self._in_flight.get(epoch, 0) + 1
            if epoch < self.cleaning:
                self.generation += 1
                self.late += 1

    def end(self, epoch: int) -> None:
        """The write begun under ``epoch`` has landed (or failed)."""
        with self._lock:
            left = self._in_flight[epoch] - 1
            if left:
                self._in_flight[epoch] = left
            else:
                del self._in_flight[epoch]

    def older_in_flight(self, epoch: int) -> int:
        """Writes in flight that were authorised under an epoch older than ``epoch``."""
        with self._lock:
            return sum(n for e, n in self._in_flight.items() if e < epoch)

    def begin_cleanup(self, epoch: int) -> int | None:
        """Start a cleanup of ``epoch``: its token for :meth:`clean_since`, or None while a
        write authorised under an older epoch is still landing (try again later)."""
        with self._lock:
            if any(e < epoch for e in self._in_flight):
                return None
            self.cleaning = max(self.cleaning, epoch)
            return self.generation

    def clean_since(self, token: int) -> bool:
        """No late write began since the cleanup that got ``token`` began."""
        return self.generation == token
