"""ViewStore implementations: compare-and-set of the ring view, and ``update`` on top.

Agents change the view concurrently (two ``add-agent`` at once, a ring keeper marking a
peer down while another flips); the store's swap is the only serialisation point, so a lost
update would silently drop a member. Both stores run the same checks
(tests/view_store_checks.py, which the blob store of tests/test_state_store.py runs too): the
file store (flock + atomic rename) for the local transport, and the Redis store (Lua script)
against the real Redis at 127.0.0.1:6379 (never skipped).
"""

from __future__ import annotations

import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from redis_helpers import REDIS_URL
from view_store_checks import CHECKS, StoreFactory

from hive_core.membership.redis_store import RedisViewStore
from hive_core.membership.store import FileViewStore, ViewStore
from hive_core.membership.view import RingView, initial, join
from hive_core.transports.redis_membership import RedisKeys


@pytest.fixture(params=["file", "redis"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """A factory of store handles on one shared view (each thread may open its own)."""
    opened: list[ViewStore] = []
    if request.param == "file":
        def factory() -> ViewStore:
            store = FileViewStore(tmp_path / "hive")
            opened.append(store)
            return store
    else:
        prefix: str = request.getfixturevalue("prefix")

        def factory() -> ViewStore:
            store = RedisViewStore(REDIS_URL, "h", key_prefix=prefix)
            opened.append(store)
            return store
    yield factory
    for store in opened:
        store.close()


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_view_store_contract(make_store: StoreFactory,
                             check: Callable[[StoreFactory], None]) -> None:
    """The shared ViewStore checks (tests/view_store_checks.py), on file and Redis."""
    check(make_store)


def test_redis_view_lives_under_the_hive_prefix(prefix: str) -> None:
    """The view is one key under ``{prefix}:{hive}``, so hives sharing a Redis never meet."""
    store = RedisViewStore(REDIS_URL, "h", key_prefix=prefix)
    other = RedisViewStore(REDIS_URL, "other", key_prefix=prefix)
    try:
        view = initial(["a"])
        assert store.swap(0, view)
        assert store.key == RedisKeys(prefix, "h").ring
        assert store.key.startswith(f"{prefix}:h:")
        assert RingView.decode(store.client.get(store.key)) == view
        assert other.load() is None
    finally:
        store.close()
        other.close()


def test_file_store_is_private_and_clear_removes_its_files(tmp_path: Path) -> None:
    """ring.json names the hive's members: readable by its owner only (0600), like the
    lock; clear() removes both."""
    store = FileViewStore(tmp_path / "hive")
    assert store.swap(0, initial(["a"]))
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.lock_path.stat().st_mode) == 0o600
    v2 = join(initial(["a"]), "b")
    assert v2 is not None and store.swap(1, v2)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600  # every rewrite, not just the first
    assert sorted(p.name for p in store.path.parent.iterdir()) == ["ring.json", "ring.lock"]
    store.clear()
    assert not store.path.exists()
    assert not store.lock_path.exists()
    assert store.load() is None


_CHILD = """
import sys, time
from pathlib import Path
from hive_core.membership.store import FileViewStore, update
from hive_core.membership.view import join
folder, go, names = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
store = FileViewStore(folder)
while not go.exists():
    time.sleep(0.005)
for name in names:
    update(store, lambda v, name=name: join(v, name))
"""


def test_concurrent_updates_from_processes_lose_nothing(tmp_path: Path) -> None:
    """Agent processes of one machine share ring.json; their joins all land (flock)."""
    folder = tmp_path / "hive"
    store = FileViewStore(folder)
    assert store.swap(0, initial(["seed"]))
    go = tmp_path / "go"
    names = {i: [f"p{i}x{j}" for j in range(5)] for i in range(4)}
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD, str(folder), str(go), *n],
                              stderr=subprocess.PIPE, text=True)
             for n in names.values()]
    try:
        go.touch()  # release them together, so their updates really race
        for proc in procs:
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    view = store.load()
    assert view is not None
    joined = [a for n in names.values() for a in n]
    assert set(view.target) == {"seed", *joined}
    assert view.epoch == 1 + len(joined)
    assert sorted(p.name for p in folder.iterdir()) == ["ring.json", "ring.lock"]  # no temp left
