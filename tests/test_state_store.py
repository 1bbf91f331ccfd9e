"""Hive state on blobs: the Blobs primitives, and the view, liveness and checkpoints on them.

Every Blobs implementation runs one conformance suite: MemoryBlobs, DirBlobs (several
processes of one machine) and AzureBlobs against Azurite, Microsoft's Azure Storage
emulator, started by this module on a free port. Azurite runs in CI (``.ci/run`` installs it
and sets CI); a missing Azurite fails the Azure tests when ``CI`` is set and skips them, with
the reason, only on a developer machine without it.

Checks made inside worker threads are collected and asserted in the main thread, so a
failure there fails the test.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from state_helpers import DEV_KEY, Azurite, increment, increment_in_process
from view_store_checks import CHECKS, StoreFactory

from hive_core.errors import AgentError, ConfigError, ConnectionLost, HiveError, TransportError
from hive_core.membership.store import ViewStore
from hive_core.membership.view import initial, join
from hive_core.redact import redact_secret as redact
from hive_core.state import (
    BlobCheckpoints,
    BlobInfo,
    BlobLiveness,
    Blobs,
    BlobViewStore,
    CheckpointStore,
    DirBlobs,
    MemoryBlobs,
    MemoryCheckpoints,
    PreconditionFailed,
    open_state,
)
from hive_core.state.azure_blobs import AzureBlobs
from hive_core.state.blobs import escape_segment, unescape_segment

BlobsFactory = Callable[[], Blobs]
KINDS = ["memory", "dir", "azure"]


def _container() -> str:
    return f"t{uuid.uuid4().hex[:20]}"


@pytest.fixture(params=KINDS)
def make_blobs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobsFactory]:
    """A factory of handles on one shared store (threads may each open their own)."""
    opened: list[Blobs] = []
    kind = request.param
    if kind == "memory":
        shared = MemoryBlobs()

        def make() -> Blobs:
            return shared
    elif kind == "dir":
        def make() -> Blobs:
            return DirBlobs(tmp_path / "state")
    else:
        server: Azurite = request.getfixturevalue("azurite")
        container = _container()

        def make() -> Blobs:
            return AzureBlobs(server.connection_string, container, read_timeout=5.0)

    def factory() -> Blobs:
        blobs = make()
        opened.append(blobs)
        return blobs

    yield factory
    for blobs in opened:
        blobs.close()


def run_threads(count: int, work: Callable[[int], None], timeout: float = 120.0) -> None:
    """Run ``work(i)`` in ``count`` threads started together; re-raise their failures here."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            work(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    assert not any(t.is_alive() for t in threads), f"a worker ran over {timeout:g}s"
    assert not errors, errors


# -- Blobs primitives ------------------------------------------------------------------------------
def test_blobs_satisfy_the_protocol(make_blobs: BlobsFactory) -> None:
    assert isinstance(make_blobs(), Blobs)


def test_missing_blobs(make_blobs: BlobsFactory) -> None:
    """Nothing written yet (Azure: not even the container): reads are empty, not errors."""
    blobs = make_blobs()
    assert blobs.read("a") is None
    assert blobs.list("") == []
    assert blobs.delete("a") is False
    with pytest.raises(PreconditionFailed):
        blobs.delete("a", if_match='"x"')  # as HTTP If-Match: no blob fails the condition
    with pytest.raises(PreconditionFailed):
        blobs.write("a", b"1", if_match='"x"')
    assert blobs.read("a") is None


def test_write_then_read(make_blobs: BlobsFactory) -> None:
    blobs = make_blobs()
    before = time.time()
    etag = blobs.write("dir/a", b"\x00bytes\n\xff")
    blob = make_blobs().read("dir/a")
    assert blob is not None
    assert blob.data == b"\x00bytes\n\xff"
    assert blob.etag == etag
    assert before - 2 <= blob.last_modified <= time.time() + 2  # Azure: whole seconds


def test_etag_changes_on_every_write_even_of_the_same_bytes(make_blobs: BlobsFactory) -> None:
    """Else a CAS could not tell "unchanged" from "rewritten with equal content"."""
    blobs = make_blobs()
    tags = [blobs.write("a", b"same") for _ in range(5)]
    assert len(set(tags)) == 5
    blobs.delete("a")
    assert blobs.write("a", b"same") not in tags  # not even after a delete


def test_if_none_match_creates_only_once(make_blobs: BlobsFactory) -> None:
    blobs = make_blobs()
    etag = blobs.write("a", b"first", if_none_match=True)
    with pytest.raises(PreconditionFailed):
        make_blobs().write("a", b"second", if_none_match=True)
    blob = blobs.read("a")
    assert blob is not None and (blob.data, blob.etag) == (b"first", etag)


def test_if_match_needs_the_current_etag(make_blobs: BlobsFactory) -> None:
    blobs = make_blobs()
    old = blobs.write("a", b"1")
    new = blobs.write("a", b"2", if_match=old)
    with pytest.raises(PreconditionFailed):
        blobs.write("a", b"3", if_match=old)
    blob = blobs.read("a")
    assert blob is not None and (blob.data, blob.etag) == (b"2", new)
    with pytest.raises(ValueError):
        blobs.write("a", b"4", if_match=new, if_none_match=True)


def test_list_by_prefix(make_blobs: BlobsFactory) -> None:
    blobs = make_blobs()
    tags = {name: blobs.write(name, name.encode()) for name in ("a/2", "a/1", "ab", "b/1")}
    listed = make_blobs().list("a/")
    assert [i.name for i in listed] == ["a/1", "a/2"]
    assert all(isinstance(i, BlobInfo) and i.etag == tags[i.name] for i in listed)
    assert [i.name for i in blobs.list("")] == ["a/1", "a/2", "ab", "b/1"]
    assert [i.name for i in blobs.list("a")] == ["a/1", "a/2", "ab"]
    assert blobs.list("c/") == []


def test_delete_if_match(make_blobs: BlobsFactory) -> None:
    blobs = make_blobs()
    old = blobs.write("a", b"1")
    new = blobs.write("a", b"2")
    with pytest.raises(PreconditionFailed):
        blobs.delete("a", if_match=old)
    assert blobs.read("a") is not None
    assert blobs.delete("a", if_match=new) is True
    assert blobs.read("a") is None
    assert blobs.delete("a") is False


@pytest.mark.parametrize("bad", ["", "/a", "a/", "a//b", "a/../b", ".", "a\nb", "a\\b"])
def test_invalid_names_are_refused(make_blobs: BlobsFactory, bad: str) -> None:
    with pytest.raises(ValueError):
        make_blobs().write(bad, b"x")


def test_concurrent_cas_from_threads_loses_no_update(make_blobs: BlobsFactory) -> None:
    threads, times = 4, 8
    run_threads(threads, lambda _i: increment(make_blobs(), "counter", times))
    blob = make_blobs().read("counter")
    assert blob is not None and int(blob.data) == threads * times


def test_dir_cas_from_processes_loses_no_update(tmp_path: Path) -> None:
    """DirBlobs is shared by the processes of one machine: the flock makes CAS atomic."""
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    procs, times = 3, 25
    workers = [ctx.Process(target=increment_in_process,
                           args=(str(tmp_path / "state"), "counter", times, go))
               for _ in range(procs)]
    for w in workers:
        w.start()
    try:
        go.set()  # together, so the increments really race
        for w in workers:
            w.join(timeout=120)
            assert w.exitcode == 0, f"worker pid {w.pid} exit code {w.exitcode}"
    finally:
        for w in workers:
            if w.is_alive():
                w.kill()
                w.join(timeout=10)
    blob = DirBlobs(tmp_path / "state").read("counter")
    assert blob is not None and int(blob.data) == procs * times


def test_dir_blobs_are_private_and_leave_no_temp_files(tmp_path: Path) -> None:
    blobs = DirBlobs(tmp_path / "state")
    blobs.write("live/a", b"x")
    blobs.write("live/a", b"y")
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    files = sorted((tmp_path / "state").iterdir())
    assert [f.name for f in files] == [".lock", "live%2Fa.blob"]
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)


def test_dir_blobs_report_a_foreign_file(tmp_path: Path) -> None:
    """A file without the etag header is reported, not read as an empty blob."""
    blobs = DirBlobs(tmp_path / "state")
    blobs.write("a", b"x")
    (tmp_path / "state" / "a.blob").write_bytes(b"hand-written")
    with pytest.raises(ConfigError, match="not a state blob"):
        blobs.read("a")


def test_segments_escape_reversibly() -> None:
    for text in ["a", "a/b", ".", "..", "%2F", "ä b", "x.y"]:
        seg = escape_segment(text)
        assert "/" not in seg and seg not in (".", "..")
        assert unescape_segment(seg) == text
    with pytest.raises(ValueError):
        escape_segment("")


# -- view store --------------------------------------------------------------------------------
@pytest.fixture
def make_view_store(make_blobs: BlobsFactory) -> StoreFactory:
    def factory() -> ViewStore:
        return BlobViewStore(make_blobs())
    return factory


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_blob_view_store_contract(make_view_store: StoreFactory,
                                  check: Callable[[StoreFactory], None]) -> None:
    """The checks FileViewStore and RedisViewStore pass (tests/view_store_checks.py)."""
    check(make_view_store)


def test_view_swap_after_a_recreate_of_the_same_version(make_blobs: BlobsFactory) -> None:
    """A cached etag gone stale does not make swap refuse a version that is stored."""
    mine, other = BlobViewStore(make_blobs()), BlobViewStore(make_blobs())
    v1 = initial(["a"])
    assert mine.swap(0, v1)
    other.clear()
    assert other.swap(0, v1)  # same version, new blob, new etag
    v2 = join(v1, "b")
    assert v2 is not None and mine.swap(1, v2)
    assert other.load() == v2


def test_view_document_is_the_ring_view_encoding(make_blobs: BlobsFactory) -> None:
    blobs = make_blobs()
    view = initial(["a", "b"])
    assert BlobViewStore(blobs, name="hive/ring.json").swap(0, view)
    blob = blobs.read("hive/ring.json")
    assert blob is not None and blob.data == view.encode().encode()


# -- liveness --------------------------------------------------------------------------------------
def _timing(blobs: Blobs) -> tuple[float, float]:
    """(ttl, interval): Azure stamps whole seconds, so its ttl must be longer."""
    return (3.0, 0.5) if isinstance(blobs, AzureBlobs) else (1.0, 0.2)


@pytest.fixture
def make_liveness(make_blobs: BlobsFactory) -> Iterator[Callable[..., BlobLiveness]]:
    made: list[BlobLiveness] = []

    def factory(**kwargs: object) -> BlobLiveness:
        blobs = make_blobs()
        ttl, interval = _timing(blobs)
        live = BlobLiveness(blobs, ttl=ttl, interval=interval, join_timeout=10.0,
                            **kwargs)  # type: ignore[arg-type]
        made.append(live)
        return live

    yield factory
    for live in made:
        live.close()


def _crash(live: BlobLiveness) -> None:
    """The holder's heartbeat stops without a release, as when its process dies."""
    live._stop.set()
    assert live._thread is not None
    live._thread.join(timeout=10)
    assert not live._thread.is_alive()


def test_hold_is_live_and_stays_live_past_the_ttl(make_liveness) -> None:
    holder, probe = make_liveness(), make_liveness()
    holder.hold("a")
    holder.hold("a")  # idempotent for the holder itself
    assert probe.live_members(["a", "b"]) == {"a"}
    time.sleep(holder.ttl * 1.5)  # only the heartbeat can keep it fresh this long
    assert probe.live_members(["a", "b"]) == {"a"}
    assert probe.is_live("a") and not probe.is_live("b")
    assert holder.held() == {"a"}


def test_release_makes_the_agent_not_live(make_liveness, make_blobs: BlobsFactory) -> None:
    holder, probe = make_liveness(), make_liveness()
    holder.hold("a")
    holder.hold("b")
    holder.release("a")
    holder.release("a")  # idempotent
    assert probe.live_members(["a", "b"]) == {"b"}
    assert [i.name for i in make_blobs().list("live/")] == ["live/b"]
    holder.close()
    assert probe.live_members(["a", "b"]) == set()
    assert make_blobs().list("live/") == []


def test_a_second_holder_is_refused_while_the_first_is_live(make_liveness) -> None:
    first, second = make_liveness(), make_liveness()
    first.hold("a")
    with pytest.raises(AgentError, match="already running"):
        second.hold("a")
    second.hold("b")  # other names are unaffected
    assert second.held() == {"b"}


def test_a_crashed_holder_expires_and_its_name_is_taken_over(make_liveness) -> None:
    lost: list[str] = []
    first, second, probe = make_liveness(on_lost=lost.append), make_liveness(), make_liveness()
    first.hold("a")
    _crash(first)
    assert probe.live_members(["a"]) == {"a"}  # not at once: only after the ttl
    deadline = time.monotonic() + first.ttl + 5
    while probe.live_members(["a"]):
        assert time.monotonic() < deadline, "a crashed holder stayed live past its ttl"
        time.sleep(0.1)
    second.hold("a")
    assert probe.live_members(["a"]) == {"a"}
    first._beat("a")  # a paused (not dead) holder wakes up: it learns it lost the name
    assert lost == ["a"]
    assert first.held() == set()
    first.release("a")  # no longer ours: the new holder's heartbeat stays
    assert probe.live_members(["a"]) == {"a"}


def test_live_members_is_one_list_call(make_liveness, make_blobs: BlobsFactory) -> None:
    calls: list[str] = []
    inner = make_blobs()

    class Counting:
        def __getattr__(self, op: str) -> object:
            calls.append(op)
            return getattr(inner, op)

    holder = make_liveness()
    for agent in ("a", "b", "c"):
        holder.hold(agent)
    ttl, interval = _timing(inner)
    probe = BlobLiveness(Counting(), ttl=ttl, interval=interval)  # type: ignore[arg-type]
    assert probe.live_members(["a", "b", "c", "d"]) == {"a", "b", "c"}
    assert calls == ["list"]
    assert probe.live_members([]) == set()
    assert calls == ["list"]


def test_agent_names_with_odd_characters(make_liveness) -> None:
    holder, probe = make_liveness(), make_liveness()
    names = ["x/y", "..", "a.b", "50%"]
    for name in names:
        holder.hold(name)
    assert probe.live_members([*names, "x"]) == set(names)


def test_heartbeat_failures_are_logged_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    """A storage hiccup costs warnings and retries (with backoff), not the hold."""
    inner = MemoryBlobs()
    failures = [3]

    class Flaky:
        def __getattr__(self, op: str) -> object:
            return getattr(inner, op)

        def write(self, name: str, data: bytes, **kwargs: object) -> str:
            if kwargs.get("if_match") and failures[0]:  # heartbeats only, not the first hold
                failures[0] -= 1
                raise ConnectionLost("storage unreachable (test)")
            return inner.write(name, data, **kwargs)  # type: ignore[arg-type]

    live = BlobLiveness(Flaky(), ttl=1.0, interval=0.1)  # type: ignore[arg-type]
    try:
        with caplog.at_level(logging.WARNING, logger="hive_core.state.liveness"):
            live.hold("a")
            deadline = time.monotonic() + 10
            while json.loads(inner.read("live/a").data)["beat"] < 5:  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "the heartbeat did not recover"
                time.sleep(0.05)
        warnings = [r for r in caplog.records if "heartbeat failed" in r.getMessage()]
        assert len(warnings) == 3 and all(r.levelno == logging.WARNING for r in warnings)
        assert live.held() == {"a"}
        assert live.live_members(["a"]) == {"a"}
    finally:
        live.close()


def test_liveness_needs_a_ttl_of_several_intervals() -> None:
    with pytest.raises(ConfigError, match="at least two"):
        BlobLiveness(MemoryBlobs(), ttl=1.0, interval=1.0)


# -- checkpoints -----------------------------------------------------------------------------------
@pytest.fixture(params=["memory-checkpoints", "blob"])
def make_checkpoints(request: pytest.FixtureRequest,
                     make_blobs: BlobsFactory) -> Callable[[], CheckpointStore]:
    if request.param == "memory-checkpoints":
        shared = MemoryCheckpoints()
        return lambda: shared
    return lambda: BlobCheckpoints(make_blobs())


def test_checkpoints_are_monotonic(make_checkpoints) -> None:
    store = make_checkpoints()
    assert isinstance(store, CheckpointStore)
    assert store.load("hub", "$Default", "0") is None
    store.save("hub", "$Default", "0", 5)
    store.save("hub", "$Default", "0", 3)  # a slower consumer: ignored, not moved back
    assert make_checkpoints().load("hub", "$Default", "0") == 5
    store.save("hub", "$Default", "0", 9)
    assert store.load("hub", "$Default", "0") == 9
    assert store.load("hub", "$Default", "1") is None


def test_checkpoint_names_do_not_collide(make_checkpoints) -> None:
    store = make_checkpoints()
    store.save("a/b", "c", "0", 1)
    store.save("a", "b/c", "0", 2)
    store.save("..", ".", "0", 3)
    assert [store.load("a/b", "c", "0"), store.load("a", "b/c", "0"),
            store.load("..", ".", "0")] == [1, 2, 3]


def test_checkpoints_refuse_bad_input(make_checkpoints) -> None:
    store = make_checkpoints()
    for bad in (-2, True, 1.5, "3"):
        with pytest.raises(ValueError):
            store.save("hub", "g", "0", bad)  # type: ignore[arg-type]
    store.save("hub", "g", "1", -1)  # before the first event of an empty partition
    assert store.load("hub", "g", "1") == -1
    with pytest.raises(ValueError):
        store.save("", "g", "0", 1)


def test_concurrent_checkpoint_saves_keep_the_highest(make_checkpoints) -> None:
    """Two owners of one partition during a rebalance: the checkpoint never goes back."""
    def work(i: int) -> None:
        store = make_checkpoints()
        for seq in range(i, 40, 4):
            store.save("hub", "g", "0", seq)
    run_threads(4, work)
    assert make_checkpoints().load("hub", "g", "0") == 39


# -- factory and Azure specifics -------------------------------------------------------------------
def test_open_state(tmp_path: Path) -> None:
    assert isinstance(open_state("memory"), MemoryBlobs)
    blobs = open_state("dir", folder=tmp_path / "s")
    assert isinstance(blobs, DirBlobs) and blobs.folder == tmp_path / "s"
    with pytest.raises(ConfigError, match="needs a folder"):
        open_state("dir")
    with pytest.raises(ConfigError, match="connection string"):
        open_state("blob")
    with pytest.raises(ConfigError, match="unknown hive state kind"):
        open_state("s3")


def test_open_state_blob_uses_azurite(azurite: Azurite) -> None:
    container = _container()
    blobs = open_state("blob", connection_string=azurite.connection_string,
                       container=container)
    try:
        assert isinstance(blobs, AzureBlobs)
        blobs.write("a", b"1")  # creates the container on first use
        assert [i.name for i in blobs.list("")] == ["a"]
    finally:
        blobs.close()


def test_azure_errors_never_show_the_key() -> None:
    """An unreachable account is ConnectionLost (a TransportError), its text redacted."""
    from redis_helpers import free_port
    from state_helpers import dev_connection_string

    blobs = AzureBlobs(dev_connection_string(free_port()), "hive-state",
                       connection_timeout=1.0, read_timeout=1.0, retries=0)
    try:
        for call in (lambda: blobs.read("a"), lambda: blobs.write("a", b"1"),
                     lambda: blobs.list(""), lambda: blobs.delete("a")):
            with pytest.raises(ConnectionLost) as err:
                call()
            assert isinstance(err.value, TransportError)
            assert DEV_KEY not in str(err.value) and DEV_KEY[:20] not in str(err.value)
            assert err.value.__cause__ is None
    finally:
        blobs.close()
    with pytest.raises(ConfigError) as bad:
        AzureBlobs("AccountKey=c2VjcmV0;nonsense", "hive-state")
    assert "c2VjcmV0" not in str(bad.value)
    with pytest.raises(ConfigError, match="container name"):
        AzureBlobs(dev_connection_string(1), "Bad_Name")


def test_redact_hides_sas_tokens() -> None:
    text = ("BlobEndpoint=https://x.blob.core.windows.net/;SharedAccessSignature=sv=2022&sig=abc"
            " https://x/c/b?sv=1&sig=zzz&se=2 AccountKey=k3y;")
    out = redact(text)
    assert "abc" not in out and "zzz" not in out and "k3y" not in out


def test_precondition_failed_is_not_a_transport_error() -> None:
    """A lost CAS race is an answer, not an outage: handlers of TransportError must not
    back off on it."""
    assert issubclass(PreconditionFailed, HiveError)
    assert not issubclass(PreconditionFailed, TransportError)
