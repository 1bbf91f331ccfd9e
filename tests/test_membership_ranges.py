"""Which key ranges an agent gains between two rings (hive_core.membership.ranges).

A gainer pulls exactly its gained segments from their old owners, so the segment maths must
agree with the ring itself key by key: a key missing from the segments would be lost by a
move, a key wrongly included would be copied to a shard that then drops it. These tests
compare it against brute force (``get_agents`` per key, on both rings).
"""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from hive_core.membership.ranges import (
    SPACE,
    RangeSet,
    gained_segments,
    gainers,
)
from hive_core.ring import HashRing, MovingRing, stable_hash

VNODES = 8
NAMES = "abcdefg"

members = st.sets(st.sampled_from(NAMES), max_size=len(NAMES))
rf_values = st.integers(min_value=1, max_value=3)
key_lists = st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=60)


def ring(agents: set[str], rf: int) -> HashRing:
    return HashRing(sorted(agents), virtual_nodes=VNODES, replication_factor=rf)


def probe_points(old: HashRing, new: HashRing) -> list[int]:
    """Hashes on and next to every token of either ring, and both ends of the space: the
    places where an off-by-one in the segment boundaries would show."""
    points = {0, 1, SPACE - 1}
    for p in (*old.points, *new.points):
        points.update(q for q in (p - 1, p, p + 1) if 0 <= q < SPACE)
    return sorted(points)


@given(members, members, rf_values, key_lists)
@settings(max_examples=80, deadline=None)
def test_gained_segments_match_brute_force_per_key(
    old_agents: set[str], new_agents: set[str], rf: int, keys: list[str]
) -> None:
    """For every agent and key: it gains the key iff the key's hash is in its segments, and
    a segment's sources are exactly the key's old owners."""
    old, new = ring(old_agents, rf), ring(new_agents, rf)
    for agent in NAMES:
        segments = gained_segments(old, new, agent)
        ranges = RangeSet((s.lo, s.hi) for s in segments)
        for seg in segments:
            assert 0 <= seg.lo < seg.hi <= SPACE
            assert agent not in seg.sources
        for lo_seg, hi_seg in pairwise(segments):
            assert lo_seg.hi <= hi_seg.lo  # sorted and disjoint
        for key in keys:
            h = stable_hash(key)
            gains = agent in new.get_agents(key) and agent not in old.get_agents(key)
            assert gains == (h in ranges), (agent, key)
            for seg in segments:
                if seg.lo <= h < seg.hi:
                    assert seg.sources == old.get_agents(key)
        for h in probe_points(old, new):
            gains = agent in new.owners_at(h) and agent not in old.owners_at(h)
            assert gains == (h in ranges), (agent, h)
            for seg in segments:
                if seg.lo <= h < seg.hi:
                    assert seg.sources == old.owners_at(h)


@given(members, members, rf_values, key_lists)
@settings(max_examples=60, deadline=None)
def test_gainers_cover_every_agent_that_gains_a_key(
    old_agents: set[str], new_agents: set[str], rf: int, keys: list[str]
) -> None:
    """Every agent that gains some sampled key is a gainer, and gainers() is exactly the set
    of agents with a non-empty gained segment list (the view waits for each one's sync)."""
    old, new = ring(old_agents, rf), ring(new_agents, rf)
    brute = {a for k in keys for a in new.get_agents(k) if a not in old.get_agents(k)}
    found = gainers(old, new)
    assert brute <= found
    assert found == {a for a in NAMES if gained_segments(old, new, a)}
    assert found <= new_agents
    if old_agents == new_agents:
        assert found == set()


def test_a_join_gains_about_its_share_from_few_sources() -> None:
    """A joiner at RF=3 gains about 3/N of the space, from old owners only (never itself)."""
    before = {f"a{i}" for i in range(10)}
    old = HashRing(sorted(before), virtual_nodes=64, replication_factor=3)
    new = HashRing(sorted(before | {"new"}), virtual_nodes=64, replication_factor=3)
    segments = gained_segments(old, new, "new")
    share = sum(s.hi - s.lo for s in segments) / SPACE
    assert 0.1 < share < 0.5
    sources = {src for seg in segments for src in seg.sources}
    assert "new" not in sources and sources <= before


ranges_strategy = st.lists(st.integers(min_value=0, max_value=SPACE), max_size=12, unique=True)


def disjoint(cuts: list[int]) -> list[tuple[int, int]]:
    ordered = sorted(cuts)
    return [(a, b) for a, b in zip(ordered[::2], ordered[1::2], strict=False)]


@given(ranges_strategy, st.lists(st.integers(min_value=0, max_value=SPACE - 1), max_size=40))
@settings(max_examples=80, deadline=None)
def test_rangeset_membership_is_half_open(cuts: list[int], points: list[int]) -> None:
    """``lo`` is in a range, ``hi`` is not, and a point is in the set iff one range has it."""
    pairs = disjoint(cuts)
    ranges = RangeSet(pairs)
    assert len(ranges) == len(pairs)
    probes = [*points, *(lo for lo, _ in pairs), *(hi for _, hi in pairs),
              *(hi - 1 for _, hi in pairs)]
    for p in probes:
        assert (p in ranges) == any(lo <= p < hi for lo, hi in pairs)


words = st.text(alphabet="abcdefghij", min_size=1, max_size=5)


@given(members.filter(bool), members.filter(bool), rf_values, key_lists,
       st.one_of(st.none(), st.integers(min_value=1, max_value=4)))
@settings(max_examples=60, deadline=None)
def test_moving_ring_is_current_owners_then_new_target_owners(
    cur: set[str], tgt: set[str], rf: int, keys: list[str], n: int | None
) -> None:
    """Writes during a move go to the current owners first (reads use them), then to the
    target owners that are not among them, each once."""
    current, target = ring(cur, rf), ring(tgt, rf)
    moving = MovingRing(current, target)
    assert moving.agents == frozenset(cur | tgt)
    assert len(moving) == len(cur | tgt)
    assert moving.replication_factor == rf
    for agent in NAMES:
        assert (agent in moving) == (agent in cur | tgt)
    for key in keys:
        now = current.get_agents(key, n)
        later = target.get_agents(key, n)
        got = moving.get_agents(key, n)
        assert got == now + tuple(a for a in later if a not in now)
        assert len(set(got)) == len(got)
