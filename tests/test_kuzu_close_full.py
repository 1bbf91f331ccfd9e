"""Closing a Kuzu shard on a full disk: reported, a clean non-zero exit, nothing lost.

Kuzu folds its write-ahead log into the database file (a checkpoint) when a database
closes, and swallows a full disk while doing so: the process used to exit 0 with the WAL
left behind and no line saying why. Now the close reports ``disk full at PATH`` (one line),
an agent stopped on a full disk exits 1 cleanly (no native abort, no traceback), and every
fact acknowledged before is there when the shard opens again with space (counted against
the learn's own tally of acknowledged fact ids, and against the records put).

The shards live on a small tmpfs (root can mount one; else these tests are skipped). Each
close runs in a child process, so a native abort would show as a signal exit, not kill pytest.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from cli_helpers import cli_process
from disk_helpers import small_tmpfs

from hive_cli import supervisor
from hive_core.disk_space import MB, free_bytes
from hive_core.hive_config import HiveConfig
from hive_core.scoring import DEFAULT_BM25
from hive_core.store.kuzu import KuzuShardStore

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def small_disk() -> Iterator[Path]:
    with small_tmpfs("ahclose") as where:
        yield where


def fill_up(disk: Path) -> Path:
    """A filler file that leaves not one page free on ``disk``."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (MB, 4096):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)
    assert free_bytes(disk) < 4096
    return filler


def open_store(path: Path) -> KuzuShardStore:
    return KuzuShardStore(path, agent_id="s", bm25=DEFAULT_BM25, buffer_pool_size=64 * MB,
                          max_db_size=1 << 30, disk_reserve=0)


CHILD = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    sys.path[:0] = [{root!r}, {tests!r}]
    from test_kuzu_close_full import fill_up, open_store
    from test_store_conformance import generated_corpus, put, rec
    from hive_core.errors import DiskFull
    disk, n = Path(sys.argv[1]), int(sys.argv[2])
    store = open_store(disk / "shard")
    records = [rec(f) for f in generated_corpus(n)]
    put(store, records)  # acknowledged: committed to the WAL
    print(json.dumps(sorted(r.fact_id for r in records)), flush=True)
    fill_up(disk)
    try:
        store.close()
    except DiskFull as exc:
        print("DiskFull:", exc, flush=True)
        sys.exit(3)
    print("closed without an error", flush=True)
""")


def test_a_close_on_a_full_disk_is_reported_and_loses_nothing(small_disk: Path) -> None:
    child = subprocess.run(
        [sys.executable, "-c", CHILD.format(root=str(ROOT), tests=str(ROOT / "tests")),
         str(small_disk), "20000"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    lines = child.stdout.splitlines()
    assert child.returncode == 3, (child.returncode, lines[1:], child.stderr[-2000:])
    put_ids = json.loads(lines[0])
    shard = small_disk / "shard"
    assert lines[1].startswith(f"DiskFull: disk full at {shard}: 0 MB free"), lines[1]
    assert "write-ahead log" in lines[1] and len(lines) == 2
    assert (shard / "shard.kuzu.wal").stat().st_size > 0  # the checkpoint was not written

    (small_disk / "filler").unlink()
    store = open_store(shard)
    try:
        assert store.count() == len(put_ids) == 20000
        assert sorted(r.fact_id for r in store.records() if r.primary) == put_ids
    finally:
        store.close()  # with room: the checkpoint is written, no error
    assert not (shard / "shard.kuzu.wal").exists() or \
        (shard / "shard.kuzu.wal").stat().st_size == 0


def learn_text(n: int) -> str:
    return "\n".join(f"Project P{i} is led by Person{i} Surname{i} in region r{i % 7}."
                     for i in range(n))


@pytest.mark.slow
def test_an_agent_stopped_on_a_full_disk_exits_1_with_one_line_and_keeps_its_facts(
        small_disk: Path, tmp_path: Path, monkeypatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("AMPLIHACK_HOME", str(home))
    env = {"AMPLIHACK_DISK_RESERVE_BYTES": str(MB)}
    storage = small_disk / "shards"
    created = cli_process(home, "create", "--name", "cf", "--agents", "1", "--storage-path",
                          str(storage), env=env)
    assert created.code == 0, created.err
    config = HiveConfig.load("cf")
    log_file = tmp_path / "agent_0.log"
    with log_file.open("wb") as log:
        agent = subprocess.Popen(supervisor.agent_command("cf", "agent_0"), cwd=ROOT,
                                 env={**os.environ, **env, "AMPLIHACK_HOME": str(home)},
                                 stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        supervisor.write_pid(config, "agent_0", supervisor.PidRecord(
            agent.pid, psutil.Process(agent.pid).create_time(), time.time()))
        deadline = time.monotonic() + 120
        while "ready: pid" not in log_file.read_text(errors="replace"):
            assert agent.poll() is None and time.monotonic() < deadline, log_file.read_text()
            time.sleep(0.2)
        learned = cli_process(home, "learn", "--hive", "cf", "--json", "--text",
                              learn_text(300), env=env)
        assert learned.code == 0, learned.err
        acknowledged = learned.json()["unique_facts"]
        assert acknowledged >= 300

        filler = fill_up(small_disk)
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=120) == 1
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(30)
    text = log_file.read_text(errors="replace")
    full = [line for line in text.splitlines() if "disk full at" in line]
    assert len(full) == 1 and f"disk full at {storage}/agent_0" in full[0], text[-3000:]
    assert "Traceback" not in text and "stopped cleanly" not in text, text[-3000:]

    filler.unlink()  # space again: every acknowledged fact is there
    store = open_store(storage / "agent_0")
    try:
        assert store.count() == acknowledged
    finally:
        store.close()
