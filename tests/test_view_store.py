"""ViewStore implementations: compare-and-set of the ring view, and ``update`` on top.

Agents change the view concurrently (two ``add-agent`` at once, a ring keeper marking a
peer down while another flips); the store's swap is the only serialisation point, so a lost
update would silently drop a member. Both stores run the same tests: the file store (flock +
atomic rename) for the local transport, and the Redis store (Lua script) against the real
Redis at 127.0.0.1:6379 (never skipped).
"""

from __future__ import annotations

import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from redis_helpers import REDIS_URL

from hive_core.membership.redis_store import RedisViewStore
from hive_core.membership.store import FileViewStore, ViewStore, update
from hive_core.membership.view import RingView, initial, join
from hive_core.transports.redis_membership import RedisKeys

StoreFactory = Callable[[], ViewStore]


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


def joiner(agent: str) -> Callable[[RingView | None], RingView | None]:
    def transition(view: RingView | None) -> RingView | None:
        assert view is not None
        return join(view, agent)
    return transition


def test_stores_satisfy_the_protocol(make_store: StoreFactory) -> None:
    """Agents take either store through the ViewStore protocol."""
    assert isinstance(make_store(), ViewStore)


def test_load_is_none_before_the_first_swap(make_store: StoreFactory) -> None:
    """A hive that never started has no view; the first writer creates it at version 0."""
    assert make_store().load() is None


def test_first_swap_wins_once(make_store: StoreFactory) -> None:
    """Two agents creating the first view at once: exactly one wins, and its view is kept."""
    store = make_store()
    first = initial(["a", "b"])
    assert store.swap(0, first)
    assert store.load() == first
    assert not store.swap(0, initial(["x"]))
    assert make_store().load() == first


def test_a_stale_version_loses(make_store: StoreFactory) -> None:
    """A writer that read an older version must not overwrite the newer view."""
    store = make_store()
    v1 = initial(["a", "b"])
    assert store.swap(0, v1)
    v2 = join(v1, "c")
    assert v2 is not None and store.swap(v1.version, v2)
    stale = join(v1, "d")
    assert stale is not None
    assert not store.swap(v1.version, stale)
    assert not store.swap(v2.version + 1, stale)
    assert store.load() == v2
    v3 = join(v2, "d")
    assert v3 is not None and store.swap(v2.version, v3)
    assert store.load() == v3


def test_update_without_a_change_returns_the_stored_view(make_store: StoreFactory) -> None:
    """A transition with nothing to do writes nothing and returns what is in force."""
    store = make_store()
    view = initial(["a"])
    assert update(store, lambda v: view if v is None else None) == view
    assert update(store, joiner("a")) == view
    assert store.load() == view


def test_concurrent_updates_from_threads_lose_nothing(make_store: StoreFactory) -> None:
    """Eight agents joining at once all land, one epoch each, in some order."""
    seed = initial(["seed"])
    assert make_store().swap(0, seed)
    agents = [f"t{i}" for i in range(8)]
    barrier = threading.Barrier(len(agents))
    errors: list[BaseException] = []

    def run(agent: str) -> None:
        store = make_store()
        try:
            barrier.wait(timeout=10)
            update(store, joiner(agent))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(a,)) for a in agents]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    view = make_store().load()
    assert view is not None
    assert set(view.target) == {"seed", *agents}
    assert view.current == ("seed",)
    assert view.epoch == 1 + len(agents)
    assert view.version == 1 + len(agents)


def test_clear_forgets_the_view(make_store: StoreFactory) -> None:
    """Deleting a hive deletes its view; a later start begins again at version 0."""
    store = make_store()
    assert store.swap(0, initial(["a"]))
    store.clear()
    assert store.load() is None
    store.clear()  # idempotent
    assert store.swap(0, initial(["b"]))


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
