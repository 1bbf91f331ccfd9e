"""A full disk under real agent processes: writes refused with one clear line, reads served.

Kuzu aborts the process natively when its disk fills (``munmap_chunk(): invalid pointer``),
which once killed every agent of a hive with no line naming the disk. The shards live on a
small tmpfs here (root can mount one; else the test is skipped, and the guard's unit test
below still runs), the free-space reserve is set to 8 MB, and a filler file leaves less:
``learn`` fails with "disk full at PATH: N MB free; free space and re-run", each agent's
log says so once, ``ask`` still answers, every agent stays alive, and learning works again
once the filler is gone.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import cli_process
from disk_helpers import small_tmpfs

from hive_core.atomic import write_private
from hive_core.disk_space import MB, DiskGuard, free_bytes
from hive_core.errors import DiskFull

RESERVE = 8 * MB
FIRST = "Project Wren is led by Ada Okafor."
SECOND = "Project Heron is led by Bruno Diaz."


@pytest.fixture
def small_disk() -> Iterator[Path]:
    with small_tmpfs("ahdisk") as where:
        yield where


def fill(disk: Path, leave: int) -> Path:
    """A filler file that leaves about ``leave`` bytes free on ``disk``."""
    filler = disk / "filler"
    with open(filler, "wb") as fh:
        chunk = b"\0" * MB
        while free_bytes(disk) - len(chunk) > leave:
            fh.write(chunk)
            fh.flush()
    return filler


@pytest.mark.slow
def test_a_full_disk_refuses_writes_names_the_disk_and_keeps_serving(small_disk: Path,
                                                                     monkeypatch) -> None:
    home = Path(tempfile.mkdtemp(prefix="ahfull", dir="/tmp"))
    env = {"AMPLIHACK_DISK_RESERVE_BYTES": str(RESERVE)}
    monkeypatch.setenv("AMPLIHACK_HOME", str(home))

    def cli(*argv: str):
        return cli_process(home, *argv, env=env, timeout=120)

    storage = small_disk / "shards"
    pids: dict[str, int] = {}
    try:
        assert cli("create", "--name", "full", "--agents", "3", "--storage-path",
                   str(storage)).code == 0
        started = cli("start", "--hive", "full", "--json", "--timeout", "120")
        assert started.code == 0, started.err
        pids = {a["agent"]: int(a["pid"]) for a in started.json()["agents"]}
        assert cli("learn", "--hive", "full", "--text", FIRST).code == 0

        filler = fill(small_disk, RESERVE // 2)
        refused = cli("learn", "--hive", "full", "--text", SECOND)
        assert refused.code == 1
        lines = refused.err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in refused.err, refused.err
        assert f"disk full at {storage}/agent_" in lines[0], lines[0]
        assert "MB free; free space and re-run" in lines[0], lines[0]

        # Reads are served, and every agent is alive and answering.
        answered = cli("ask", "--hive", "full", "--json", "Who leads Project Wren?")
        assert answered.code == 0, answered.err
        assert "Ada Okafor" in answered.json()["answer"]
        assert cli("status", "--hive", "full").code == 0
        assert all(psutil_alive(pid) for pid in pids.values())
        logs = {a: (home / "hives" / "full" / "logs" / f"{a}.log").read_text() for a in pids}
        full_lines = [line for text in logs.values() for line in text.splitlines()
                      if "disk full at" in line and "refusing writes" in line]
        assert full_lines and all(f"{storage}/agent_" in line and "MB free" in line
                                  for line in full_lines), full_lines
        assert not any("munmap_chunk" in text or "Aborted" in text for text in logs.values())

        filler.unlink()  # space is back: writes resume without a restart
        again = cli("learn", "--hive", "full", "--text", SECOND)
        assert again.code == 0, again.err
        answered = cli("ask", "--hive", "full", "--json", "Who leads Project Heron?")
        assert "Bruno Diaz" in answered.json()["answer"]
        assert any("accepting writes again" in
                   (home / "hives" / "full" / "logs" / f"{a}.log").read_text() for a in pids)
    finally:
        cli("stop", "--hive", "full")
        for pid in pids.values():
            if psutil_alive(pid):
                os.kill(pid, 9)
        shutil.rmtree(home, ignore_errors=True)


def psutil_alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_the_guard_refuses_below_the_reserve_and_recovers(tmp_path: Path) -> None:
    free = free_bytes(tmp_path)
    guard = DiskGuard(tmp_path, reserve=free + 1024 * MB)  # more than there is
    with pytest.raises(DiskFull, match=rf"^disk full at {tmp_path}: \d+ MB free; free space"):
        guard.check()
    assert guard.full
    guard.reserve = 0
    guard.check()
    assert not guard.full


def test_enospc_on_an_atomic_write_is_disk_full_naming_the_folder(tmp_path: Path,
                                                                  monkeypatch) -> None:
    """The project's own file writes turn ENOSPC into DiskFull (fault injected at the write:
    no disk needs filling for this one), and the old file stays as it was."""
    target = tmp_path / "ring.json"
    write_private(target, "old")

    def no_space(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(DiskFull, match=f"disk full at {tmp_path}: "):
        write_private(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["ring.json"]


def test_claiming_a_shard_on_a_full_disk_names_the_disk(small_disk: Path) -> None:
    """The shard lock is the first write an agent makes: on a disk with not one page free it
    used to fail with a bare "[Errno 28] No space left on device"."""
    from hive_core.store.shard_lock import LOCK_FILE, ShardLock

    shard = small_disk / "agent_0"
    shard.mkdir()
    (shard / LOCK_FILE).touch()  # as after an earlier run: only the PID write needs space
    filler = fill(small_disk, leave=0)
    fd = os.open(filler, os.O_WRONLY | os.O_APPEND)  # the last pages too, unbuffered
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    with pytest.raises(DiskFull, match=f"^disk full at {shard}: 0 MB free; free space"):
        ShardLock.acquire(shard)
    filler.unlink()
    ShardLock.acquire(shard).release()  # and it works again once there is room
