"""Which ranges of the key space an agent gains when the ring changes, and what is in them.

Between two rings the key space splits into *segments*: the arcs between consecutive tokens
of either ring, on which both rings have constant owners. An agent *gains* a segment when it
owns it in the new ring and did not in the old one; the segment's old owners are the only
shards that can hold its data, so a gainer asks just those (a join at N=100 touches ~64 x RF
segments and a handful of sources each, never every shard).

A role's ring key is its fact id (the primary role) or its term (a posting), as in
:mod:`hive_core.placement`; a role lies in a range when its key's hash does. Ranges travel
as ``[lo, hi)`` pairs of 64-bit integers (JSON carries them exactly), so a source needs
neither ring to answer: it filters its records by hash.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise

from hive_core.ring import HashRing

SPACE = 1 << 64  # the ring's key space: stable_hash is a 64-bit unsigned value


@dataclass(frozen=True, slots=True)
class Segment:
    """Keys hashing into ``[lo, hi)``, held by ``sources`` in the old ring."""

    lo: int
    hi: int
    sources: tuple[str, ...]


def _cuts(old: HashRing, new: HashRing) -> list[int]:
    return sorted(set(old.points) | set(new.points))


def _spans(cuts: Sequence[int]) -> Iterator[tuple[int, int, int]]:
    """(lo, hi, representative point) covering the whole space; the wrap-around arc is
    split at 0 and both halves share the last token's owners."""
    if not cuts:
        return
    last = cuts[-1]
    if cuts[0] > 0:
        yield 0, cuts[0], last
    for a, b in pairwise(cuts):
        yield a, b, a
    yield last, SPACE, last


def gained_segments(old: HashRing, new: HashRing, agent: str) -> list[Segment]:
    """Segments ``agent`` owns in ``new`` but not in ``old`` (adjacent ones merged)."""
    out: list[Segment] = []
    for lo, hi, point in _spans(_cuts(old, new)):
        if agent not in new.owners_at(point) or agent in (before := old.owners_at(point)):
            continue
        if out and out[-1].hi == lo and out[-1].sources == before:
            out[-1] = Segment(out[-1].lo, hi, before)
        else:
            out.append(Segment(lo, hi, before))
    return out


def gainers(old: HashRing, new: HashRing) -> set[str]:
    """Every member of ``new`` that owns some range it did not own in ``old``."""
    out: set[str] = set()
    for _lo, _hi, point in _spans(_cuts(old, new)):
        before = old.owners_at(point)
        out.update(a for a in new.owners_at(point) if a not in before)
    return out


class RangeSet:
    """Disjoint ``[lo, hi)`` ranges with an O(log n) membership test for a hash."""

    __slots__ = ("_his", "_los")

    def __init__(self, ranges: Iterable[Sequence[int]]) -> None:
        pairs = sorted((int(lo), int(hi)) for lo, hi in ranges)
        self._los = [lo for lo, _ in pairs]
        self._his = [hi for _, hi in pairs]

    def __contains__(self, point: object) -> bool:
        i = bisect.bisect_right(self._los, point) - 1  # type: ignore[arg-type]
        return i >= 0 and point < self._his[i]  # type: ignore[operator]

    def __len__(self) -> int:
        return len(self._los)
