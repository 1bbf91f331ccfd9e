"""The ring view's pure transitions (hive_core.membership.view).

Every agent of a hive converges on one view and changes it only through these functions,
applied by a compare-and-set retry loop; so each must be exact about epochs (messages carry
them), about which syncs count, and about the cases where it must refuse or do nothing.
"""

from __future__ import annotations

import json

import pytest

from hive_core.errors import ConfigError
from hive_core.membership.view import (
    ABSENT,
    DOWN,
    JOINING,
    LEAVING,
    NORMAL,
    RingView,
    flip,
    initial,
    join,
    leave,
    mark_down,
    record_sync,
)


def _moved_from(before: RingView, after: RingView) -> None:
    """A ring change is a new epoch and a new version, and voids every recorded sync."""
    assert after.epoch == before.epoch + 1
    assert after.version == before.version + 1
    assert dict(after.synced) == {}


def test_initial_is_settled_with_every_agent_normal() -> None:
    """A hive's first view puts its declared agents (deduplicated, sorted) in both rings."""
    view = initial(["c", "a", "b", "a"])
    assert view.current == view.target == ("a", "b", "c")
    assert view.settled
    assert (view.epoch, view.version) == (1, 1)
    assert view.down == view.leaving == ()
    assert dict(view.synced) == {}
    assert view.members == ("a", "b", "c")
    assert all(view.state(a) == NORMAL for a in "abc")
    assert view.state("zz") == ABSENT


def test_join_adds_to_target_as_joining_at_a_new_epoch() -> None:
    """A joiner enters the target ring only: reads keep using current until the flip."""
    view = record_sync(initial(["a", "b"]), "a", 1)
    assert view is not None and view.is_synced("a")
    joined = join(view, "c")
    assert joined is not None
    _moved_from(view, joined)
    assert joined.current == ("a", "b")
    assert joined.target == ("a", "b", "c")
    assert not joined.settled
    assert joined.state("c") == JOINING
    assert joined.state("a") == NORMAL
    assert not joined.is_synced("a")


def test_join_of_a_member_changes_nothing() -> None:
    """Joining twice is a no-op (None), so a retried add-agent is harmless."""
    view = initial(["a", "b"])
    assert join(view, "a") is None
    moving = join(view, "c")
    assert moving is not None
    assert join(moving, "c") is None


def test_join_brings_back_a_down_or_leaving_agent() -> None:
    """A comeback clears the agent from down/leaving: it is joining again, nothing else."""
    view = mark_down(initial(["a", "b", "c"]), "c")
    assert view is not None and view.state("c") == DOWN
    back = join(view, "c")
    assert back is not None
    assert back.down == ()
    assert back.state("c") == NORMAL  # still in current, back in target
    leaving = leave(initial(["a", "b", "c"]), "b", replication_factor=1)
    assert leaving is not None and leaving.state("b") == LEAVING
    again = join(leaving, "b")
    assert again is not None
    assert again.leaving == ()
    assert again.state("b") == NORMAL


@pytest.mark.parametrize(("members", "rf"), [(["a", "b", "c"], 3), (["a", "b"], 2),
                                              (["a"], 1), (["a", "b", "c", "d"], 4)])
def test_leave_below_the_replication_factor_is_refused(members: list[str], rf: int) -> None:
    """Removing an agent that would leave fewer than RF owners loses replicas: refused,
    with a message that names the replication factor so the user knows what to do."""
    view = initial(members)
    with pytest.raises(ConfigError, match="replication factor") as info:
        leave(view, members[0], replication_factor=rf)
    assert str(rf) in str(info.value)
    assert repr(members[0]) in str(info.value)


def test_leave_of_a_current_member_marks_it_leaving() -> None:
    """A member leaving on purpose stays in current as a source until the flip."""
    view = initial(["a", "b", "c"])
    left = leave(view, "b", replication_factor=2)
    assert left is not None
    _moved_from(view, left)
    assert left.current == ("a", "b", "c")
    assert left.target == ("a", "c")
    assert left.leaving == ("b",)
    assert left.state("b") == LEAVING
    assert leave(left, "b", replication_factor=2) is None  # already out of target
    assert leave(view, "zz", replication_factor=1) is None  # not a member at all


def test_leave_of_a_joiner_is_not_marked_leaving() -> None:
    """A joiner that leaves before the flip held no ranges of current: it is simply gone."""
    moving = join(initial(["a", "b"]), "c")
    assert moving is not None
    left = leave(moving, "c", replication_factor=2)
    assert left is not None
    assert left.target == ("a", "b")
    assert left.leaving == ()
    assert left.state("c") == ABSENT


def test_mark_down_moves_an_agent_out_of_target_as_down() -> None:
    """A dead agent's ranges are restored elsewhere; it stays listed as down."""
    view = initial(["a", "b", "c"])
    down = mark_down(view, "c")
    assert down is not None
    _moved_from(view, down)
    assert down.target == ("a", "b")
    assert down.down == ("c",)
    assert down.state("c") == DOWN
    assert "c" in down.members
    assert mark_down(down, "c") is None


def test_mark_down_never_removes_the_last_target_member() -> None:
    """Nothing could take over from the last member, so it is never marked down."""
    view = initial(["a", "b"])
    one = mark_down(view, "a")
    assert one is not None and one.target == ("b",)
    assert mark_down(one, "b") is None
    assert mark_down(initial(["solo"]), "solo") is None


def test_record_sync_counts_only_at_the_current_epoch() -> None:
    """A sync recorded for an older move would let the view flip before the data moved."""
    view = join(initial(["a", "b"]), "c")
    assert view is not None and view.epoch == 2
    assert record_sync(view, "c", 1) is None
    assert record_sync(view, "c", 3) is None
    synced = record_sync(view, "c", 2)
    assert synced is not None
    assert synced.epoch == view.epoch  # not a ring change
    assert synced.version == view.version + 1  # but a write
    assert synced.is_synced("c")
    assert record_sync(synced, "c", 2) is None  # already recorded
    moved_on = join(synced, "d")
    assert moved_on is not None
    assert not moved_on.is_synced("c")


def test_flip_makes_target_current_and_clears_leaving() -> None:
    """After the flip reads use the target ring; nobody is leaving any more."""
    view = leave(initial(["a", "b", "c"]), "a", replication_factor=2)
    assert view is not None
    view = join(view, "d")
    assert view is not None
    flipped = flip(view)
    assert flipped is not None
    _moved_from(view, flipped)
    assert flipped.current == flipped.target == ("b", "c", "d")
    assert flipped.settled
    assert flipped.leaving == ()
    assert flipped.state("a") == ABSENT
    assert flipped.state("d") == NORMAL
    assert flip(flipped) is None


def test_down_member_is_down_before_and_after_the_flip() -> None:
    """Before the flip a down agent is still in current (its replicas are being restored);
    after it, it is outside both rings but still listed as down until it joins again."""
    view = mark_down(initial(["a", "b", "c"]), "b")
    assert view is not None
    assert view.state("b") == DOWN
    assert "b" in view.current
    flipped = flip(view)
    assert flipped is not None
    assert "b" not in flipped.current and "b" not in flipped.target
    assert flipped.state("b") == DOWN
    assert flipped.members == ("a", "b", "c")
    back = join(flipped, "b")
    assert back is not None
    assert back.state("b") == JOINING
    assert back.down == ()


def test_encode_decode_round_trip() -> None:
    """Every field survives the wire, including syncs and the down/leaving lists."""
    view = mark_down(initial(["a", "b", "c", "d"]), "d")
    assert view is not None
    view = leave(view, "c", replication_factor=2)
    assert view is not None
    view = join(view, "e")
    assert view is not None
    view = record_sync(view, "e", view.epoch)
    assert view is not None
    text = view.encode()
    back = RingView.decode(text)
    assert back == view
    assert RingView.decode(text.encode()) == view
    assert back.encode() == text
    assert RingView.from_dict(json.loads(text)) == view


@pytest.mark.parametrize("garbage", [
    "", "not json", "{", "null", "[]", "42", '"text"', "{}",
    b"\xff\xfe\x00", '{"epoch": 1}',
    '{"epoch": "one", "version": 1, "current": [], "target": []}',
    '{"epoch": 1, "version": 1, "current": 5, "target": []}',
    '{"epoch": 1, "version": 1, "current": [], "target": [], "synced": ["a"]}',
    '{"epoch": 1, "version": 1, "current": [], "target": [], "synced": {"a": "x"}}',
    '{"epoch": 1, "version": 1, "current": [1, "a"], "target": []}',
    '{"epoch": 1e999, "version": 1, "current": [], "target": []}',
    '{"epoch": 1, "version": 1, "current": [], "target": [], "synced": {"a": Infinity}}',
    "[" * 100_000,
])
def test_decode_of_garbage_is_one_config_error(garbage: str | bytes) -> None:
    """A corrupt ring.json (or Redis value) must surface as one ConfigError with a clear
    message, never as a raw KeyError/TypeError/OverflowError from deep inside."""
    with pytest.raises(ConfigError) as info:
        RingView.decode(garbage)
    message = str(info.value)
    assert message.startswith("the hive's ring view is")
    assert "\n" not in message
