from __future__ import annotations

import json
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from hive_core.ring import HashRing, stable_hash

agent_names = st.lists(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=12),
    min_size=1, max_size=30, unique=True,
)


@given(agent_names, st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=50),
       st.integers(min_value=1, max_value=5))
@settings(max_examples=60, deadline=None)
def test_owners_are_distinct_and_bounded(agents, keys, rf) -> None:
    ring = HashRing(agents, virtual_nodes=16, replication_factor=rf)
    for key in keys:
        owners = ring.get_agents(key)
        assert len(owners) == min(rf, len(agents))
        assert len(set(owners)) == len(owners)
        assert set(owners) <= set(agents)


def test_owners_identical_in_a_fresh_subprocess() -> None:
    agents = [f"agent_{i}" for i in range(20)]
    keys = [f"key-{i}" for i in range(300)] + ["CVE-2024-3094", "falcon", "ü-ñ"]
    ring = HashRing(agents)
    here = {k: list(ring.get_agents(k)) for k in keys}
    code = (
        "import json,sys\nfrom hive_core.ring import HashRing\n"
        "a,k=json.load(sys.stdin)\nr=HashRing(a)\n"
        "print(json.dumps({x: list(r.get_agents(x)) for x in k}))"
    )
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps([agents, keys]),
                         capture_output=True, text=True, check=True, timeout=60,
                         env={"PYTHONHASHSEED": "12345", "PATH": ""})
    assert json.loads(out.stdout) == here
    assert stable_hash("falcon") == stable_hash("falcon")


@given(st.integers(min_value=3, max_value=40), st.integers(min_value=0, max_value=10_000))
@settings(max_examples=25, deadline=None)
def test_adding_an_agent_moves_about_one_nth_and_only_to_it(n, seed) -> None:
    agents = [f"a{seed}_{i}" for i in range(n)]
    ring = HashRing(agents, replication_factor=1)
    keys = [f"k{seed}-{i}" for i in range(4000)]
    before = {k: ring.get_agents(k)[0] for k in keys}
    newcomer = f"new{seed}"
    ring.add_agent(newcomer)
    after = {k: ring.get_agents(k)[0] for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    assert all(after[k] == newcomer for k in moved), "keys moved between old agents"
    share = len(moved) / len(keys)
    expected = 1 / (n + 1)
    assert 0.4 * expected <= share <= 2.0 * expected


def test_replica_sets_change_only_where_the_newcomer_enters() -> None:
    agents = [f"a{i}" for i in range(30)]
    ring = HashRing(agents)
    keys = [f"key{i}" for i in range(3000)]
    before = {k: ring.get_agents(k) for k in keys}
    ring.add_agent("zz")
    for k in keys:
        after = ring.get_agents(k)
        if "zz" not in after:
            assert after == before[k]
        else:
            assert set(after) - {"zz"} <= set(before[k])


def test_remove_and_small_rings() -> None:
    ring = HashRing(["a", "b"], replication_factor=3)
    assert sorted(ring.get_agents("x")) == ["a", "b"]
    ring.remove_agent("a")
    assert ring.get_agents("x") == ("b",)
    ring.remove_agent("b")
    assert ring.get_agents("x") == ()


def test_load_spread_with_64_vnodes() -> None:
    ring = HashRing([f"agent_{i}" for i in range(100)], replication_factor=1)
    counts: dict[str, int] = {}
    for i in range(50_000):
        owner = ring.get_agents(f"fact-{i}")[0]
        counts[owner] = counts.get(owner, 0) + 1
    mean = 50_000 / 100
    assert max(counts.values()) / mean < 1.6
