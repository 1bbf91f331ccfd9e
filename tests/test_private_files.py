"""Everything that holds a hive's facts is owner-only, wherever it lives, whatever the umask.

Shards under ``--storage-path`` were once 0644 files in 0755 folders. Agents now run with
umask 077, and the Kuzu store itself makes its folders 0700 and its files 0600, so a shard
opened by a library caller with a permissive umask (the in-process hive) is private too.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import cli_process

from hive_core.distributed import DistributedHiveGraph
from hive_core.facts import HiveFact


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def loose(root: Path) -> list[str]:
    """Paths under ``root`` (itself included) that another user could read or enter."""
    out = []
    for path in [root, *root.rglob("*")]:
        mode = path.lstat().st_mode
        if stat.S_ISSOCK(mode) or stat.S_ISLNK(mode):
            want = 0o600 if stat.S_ISSOCK(mode) else None
            if want is not None and stat.S_IMODE(mode) != want:
                out.append(f"{path} {oct(stat.S_IMODE(mode))}")
            continue
        want = 0o700 if stat.S_ISDIR(mode) else 0o600
        if stat.S_IMODE(mode) & ~want & 0o777 or stat.S_IMODE(mode) & 0o077:
            out.append(f"{path} {oct(stat.S_IMODE(mode))}")
    return out


def exposed(hive_folder: Path) -> list[str]:
    """In a hive's folder: the folder must be 0700 (nobody else can enter it, so folders
    inside it need not be: the CLI makes ``logs/`` with its own umask), every file 0600."""
    out = [] if stat.S_IMODE(hive_folder.stat().st_mode) == 0o700 else [str(hive_folder)]
    return out + [p for p in loose(hive_folder) if not Path(p.rsplit(" ", 1)[0]).is_dir()]


def test_in_process_kuzu_shards_are_private_under_a_permissive_umask(
        tmp_path: Path, permissive_umask: None) -> None:
    root = tmp_path / "lib" / "shards"  # neither folder exists yet
    hive = DistributedHiveGraph("lib", shard_backend="kuzu", storage_path=root,
                                replication_factor=2)
    try:
        for name in ("a0", "a1", "a2"):
            hive.register_agent(name)
        hive.promote_facts("a0", [HiveFact("Project Wren is led by Ada Okafor."),
                                  HiveFact("Project Heron is led by Bruno Diaz.")])
        open_files = loose(tmp_path / "lib")
    finally:
        hive.close()
    assert open_files == []  # while open: folders 0700, the engine's files 0600
    assert loose(tmp_path / "lib") == []  # and after close (the engine rewrote its files)
    assert len(list(root.glob("*/shard.kuzu"))) == 3


def test_an_existing_shared_parent_is_left_alone(tmp_path: Path, permissive_umask) -> None:
    """A storage path inside a shared folder: the shard folders are private, the shared
    folder keeps its mode (chmod-ing someone's /srv would be a surprise)."""
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    hive = DistributedHiveGraph("lib", shard_backend="kuzu", storage_path=shared / "hive")
    try:
        hive.register_agent("a0")
        hive.promote_facts("a0", [HiveFact("Project Wren is led by Ada Okafor.")])
    finally:
        hive.close()
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755
    assert loose(shared / "hive") == []


@pytest.mark.slow
def test_agent_processes_keep_the_whole_hive_private(monkeypatch) -> None:
    """Shards under a --storage-path outside the hive's folder: every folder 0700 (the
    ones agents created; the shared /tmp parent is left alone), every file 0600. In the
    hive's folder (0700): config, logs, sockets, PID files, ring view all 0600. After start,
    learn and stop, with the CLI run under umask 022."""
    home = Path(tempfile.mkdtemp(prefix="ahperm", dir="/tmp"))
    monkeypatch.setenv("AMPLIHACK_HOME", str(home))
    outside = Path(tempfile.mkdtemp(prefix="ahstore", dir="/tmp"))
    os.chmod(outside, 0o755)
    storage = outside / "deep" / "shards"
    old = os.umask(0o022)
    try:
        def cli(*argv: str):
            return cli_process(home, *argv, timeout=120)

        assert cli("create", "--name", "perm", "--agents", "2", "--storage-path",
                   str(storage)).code == 0
        started = cli("start", "--hive", "perm", "--timeout", "120")
        assert started.code == 0, started.err
        assert cli("learn", "--hive", "perm", "--text", "Project Wren is led by Ada.").code == 0
        running = exposed(home / "hives" / "perm") + loose(outside / "deep")
        assert cli("stop", "--hive", "perm").code == 0
        stopped = exposed(home / "hives" / "perm") + loose(outside / "deep")
    finally:
        os.umask(old)
        cli_process(home, "stop", "--hive", "perm", timeout=60)
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(outside, ignore_errors=True)
    assert running == [] and stopped == [], (running, stopped)
