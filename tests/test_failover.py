"""The shared failover budget: each agent but the last gets half of what is left."""

from __future__ import annotations

import time

from hive_core.failover import tries


def test_each_agent_but_the_last_gets_half_of_what_is_left() -> None:
    deadline = time.monotonic() + 8.0
    got = list(tries(["a", "b", "c"], deadline, minimum=0.5))
    assert [a for a, _ in got] == ["a", "b", "c"]
    waits = [w for _, w in got]
    assert abs(waits[0] - 4.0) < 0.2 and abs(waits[1] - 4.0) < 0.2 and abs(waits[2] - 8.0) < 0.2


def test_the_minimum_applies_but_never_beyond_the_deadline() -> None:
    deadline = time.monotonic() + 1.0
    (_, first), *_ = tries(["a", "b"], deadline, minimum=5.0)
    assert 0.8 < first <= 1.0


def test_nothing_is_tried_once_the_time_is_up() -> None:
    assert list(tries(["a", "b"], time.monotonic() - 1.0, minimum=0.5)) == []
    assert list(tries(["a"], time.monotonic() + 0.3, minimum=0.5, floor=0.5)) == []
