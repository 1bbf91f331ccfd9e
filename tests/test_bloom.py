from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hive_core.bloom import BloomFilter, optimal_parameters


def test_size_matches_the_formula() -> None:
    bits, hashes = optimal_parameters(1000, 0.01)
    assert bits == 9586 and hashes == 7
    assert BloomFilter(1000, 0.01).size_bytes <= 1199


@given(st.lists(st.text(max_size=30), max_size=300))
@settings(max_examples=50, deadline=None)
def test_no_false_negatives(items) -> None:
    bf = BloomFilter(max(1, len(items)), 0.01, salt=7)
    bf.update(items)
    assert all(item in bf for item in items)


@pytest.mark.parametrize(("capacity", "rate"), [(1000, 0.01), (5000, 0.01), (2000, 0.05)])
def test_false_positive_rate_at_capacity_within_1_5x(capacity: int, rate: float) -> None:
    bf = BloomFilter(capacity, rate)
    bf.update(f"member-{i}" for i in range(capacity))
    probes = 50_000
    fp = sum(f"outsider-{i}" in bf for i in range(probes))
    assert fp / probes <= 1.5 * rate


def test_serialisation_carries_parameters() -> None:
    bf = BloomFilter(500, 0.02, salt=99)
    bf.update(["a", "b", "c"])
    again = BloomFilter.from_bytes(bf.to_bytes())
    assert (again.m, again.k, again.salt, again.count) == (bf.m, bf.k, bf.salt, bf.count)
    assert again.error_rate == pytest.approx(0.02)
    assert all(x in again for x in "abc")
    with pytest.raises(ValueError):
        BloomFilter.from_bytes(b"nope")


def test_salt_changes_false_positives() -> None:
    a, b = BloomFilter(200, 0.1, salt=1), BloomFilter(200, 0.1, salt=2)
    members = [f"m{i}" for i in range(200)]
    a.update(members)
    b.update(members)
    fp_a = {f"x{i}" for i in range(5000) if f"x{i}" in a}
    fp_b = {f"x{i}" for i in range(5000) if f"x{i}" in b}
    assert fp_a != fp_b
