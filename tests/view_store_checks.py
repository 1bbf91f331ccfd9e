"""The ViewStore contract, as checks any store's tests run against their own factory.

Every store (file, Redis, blob on memory / a folder / Azure) must pass the same checks:
agents take any of them through the protocol, so they must agree exactly. A test module
parametrises over its stores with a ``make_store`` factory (each call: a new handle on one
shared view) and runs each of :data:`CHECKS`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from hive_core.membership.store import ViewStore, update
from hive_core.membership.view import RingView, initial, join

StoreFactory = Callable[[], ViewStore]


def joiner(agent: str) -> Callable[[RingView | None], RingView | None]:
    def transition(view: RingView | None) -> RingView | None:
        assert view is not None
        return join(view, agent)
    return transition


def check_stores_satisfy_the_protocol(make_store: StoreFactory) -> None:
    """Agents take any store through the ViewStore protocol."""
    assert isinstance(make_store(), ViewStore)


def check_load_is_none_before_the_first_swap(make_store: StoreFactory) -> None:
    """A hive that never started has no view; the first writer creates it at version 0."""
    assert make_store().load() is None


def check_first_swap_wins_once(make_store: StoreFactory) -> None:
    """Two agents creating the first view at once: exactly one wins, and its view is kept."""
    store = make_store()
    first = initial(["a", "b"])
    assert store.swap(0, first)
    assert store.load() == first
    assert not store.swap(0, initial(["x"]))
    assert make_store().load() == first


def check_a_stale_version_loses(make_store: StoreFactory) -> None:
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


def check_update_without_a_change_returns_the_stored_view(make_store: StoreFactory) -> None:
    """A transition with nothing to do writes nothing and returns what is in force."""
    store = make_store()
    view = initial(["a"])
    assert update(store, lambda v: view if v is None else None) == view
    assert update(store, joiner("a")) == view
    assert store.load() == view


def check_concurrent_updates_from_threads_lose_nothing(make_store: StoreFactory) -> None:
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
    assert not any(t.is_alive() for t in threads), "an update did not finish within 30s"
    assert not errors, errors
    view = make_store().load()
    assert view is not None
    assert set(view.target) == {"seed", *agents}
    assert view.current == ("seed",)
    assert view.epoch == 1 + len(agents)
    assert view.version == 1 + len(agents)


def check_clear_forgets_the_view(make_store: StoreFactory) -> None:
    """Deleting a hive deletes its view; a later start begins again at version 0."""
    store = make_store()
    assert store.swap(0, initial(["a"]))
    store.clear()
    assert store.load() is None
    store.clear()  # idempotent
    assert store.swap(0, initial(["b"]))


CHECKS: tuple[Callable[[StoreFactory], None], ...] = (
    check_stores_satisfy_the_protocol,
    check_load_is_none_before_the_first_swap,
    check_first_swap_wins_once,
    check_a_stale_version_loses,
    check_update_without_a_change_returns_the_stored_view,
    check_concurrent_updates_from_threads_lose_nothing,
    check_clear_forgets_the_view,
)
