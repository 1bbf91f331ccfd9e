"""FileLiveness: an agent process is live exactly while it holds its ``run/AGENT.live`` lock.

The ring keeper marks a peer down (and re-replicates its ranges) on this answer, so it must
be exact in both directions: a running agent is never reported dead, and a killed one (no
chance to clean up) is reported dead at once, from another process. Real child processes
are used because flock semantics only show across processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hive_core.errors import AgentError
from hive_core.membership.liveness import FileLiveness, Liveness

_HOLDER = """
import sys, time
from pathlib import Path
from hive_core.membership.liveness import FileLiveness
FileLiveness(Path(sys.argv[1])).hold(sys.argv[2])
print("held", flush=True)
time.sleep(120)
"""


def start_holder(run_dir: Path, agent: str) -> subprocess.Popen[str]:
    """A child process that holds ``agent`` and sleeps; returns once it holds the lock."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(run_dir), agent],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "held":
        proc.kill()
        _, err = proc.communicate(timeout=10)
        raise AssertionError(f"holder did not start: {err}")
    return proc


@pytest.fixture
def holders() -> Iterator[list[subprocess.Popen[str]]]:
    """Child processes started by a test; each is killed (by its own pid) and reaped."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def test_a_running_holder_is_live(tmp_path: Path, holders: list[subprocess.Popen[str]]) -> None:
    """Another process sees the agent as live, and probing does not disturb the holder."""
    run_dir = tmp_path / "run"
    holders.append(start_holder(run_dir, "a"))
    probe = FileLiveness(run_dir)
    assert isinstance(probe, Liveness)
    assert probe.is_live("a")
    assert probe.is_live("a")  # a probe's shared lock is dropped again at once
    assert probe.live_members(["a", "b"]) == {"a"}


def test_a_killed_holder_is_not_live(tmp_path: Path,
                                     holders: list[subprocess.Popen[str]]) -> None:
    """kill -9 leaves no chance to clean up; the kernel still drops the lock."""
    run_dir = tmp_path / "run"
    proc = start_holder(run_dir, "a")
    holders.append(proc)
    probe = FileLiveness(run_dir)
    assert probe.is_live("a")
    proc.kill()
    proc.wait(timeout=10)
    assert not probe.is_live("a")
    assert probe.live_members(["a"]) == set()
    assert (run_dir / "a.live").exists()  # the file stays; only the lock tells


def test_a_killed_holder_is_not_live_while_still_a_zombie(
    tmp_path: Path, holders: list[subprocess.Popen[str]]
) -> None:
    """The lock goes with the process's exit, not with its reaping by the parent."""
    run_dir = tmp_path / "run"
    proc = start_holder(run_dir, "a")
    holders.append(proc)
    proc.kill()
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped
    assert not FileLiveness(run_dir).is_live("a")
    proc.wait(timeout=10)


def test_a_second_hold_of_a_live_agent_is_refused(
    tmp_path: Path, holders: list[subprocess.Popen[str]]
) -> None:
    """Two processes can never serve one agent; once the first dies the name is free."""
    run_dir = tmp_path / "run"
    proc = start_holder(run_dir, "a")
    holders.append(proc)
    second = FileLiveness(run_dir)
    with pytest.raises(AgentError, match="already running"):
        second.hold("a")
    second.hold("b")  # other names are unaffected
    assert second.is_live("b")
    proc.kill()
    proc.wait(timeout=10)
    second.hold("a")
    try:
        assert FileLiveness(run_dir).is_live("a")
    finally:
        second.close()
    assert not FileLiveness(run_dir).is_live("a")
    assert not FileLiveness(run_dir).is_live("b")


def test_a_second_hold_in_another_child_process_is_refused(
    tmp_path: Path, holders: list[subprocess.Popen[str]]
) -> None:
    """The refusal holds between two agent processes, not only against the test process."""
    run_dir = tmp_path / "run"
    holders.append(start_holder(run_dir, "a"))
    code = ("import sys\nfrom pathlib import Path\nfrom hive_core.errors import AgentError\n"
            "from hive_core.membership.liveness import FileLiveness\n"
            "try:\n    FileLiveness(Path(sys.argv[1])).hold('a')\n"
            "except AgentError:\n    sys.exit(3)\n")
    res = subprocess.run([sys.executable, "-c", code, str(run_dir)], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 3, res.stderr


def test_release_makes_the_agent_not_live(tmp_path: Path) -> None:
    """A clean stop releases the lock; the holder itself reports live while it holds."""
    live = FileLiveness(tmp_path / "run")
    live.hold("a")
    assert live.is_live("a")
    live.release("a")
    live.release("a")  # idempotent
    assert not live.is_live("a")
    assert not FileLiveness(tmp_path / "run").is_live("a")


def test_a_never_started_agent_is_not_live(tmp_path: Path) -> None:
    """No lock file at all (or no run folder yet) means not live, without error."""
    assert not FileLiveness(tmp_path / "missing").is_live("a")
    run_dir = tmp_path / "run"
    other = FileLiveness(run_dir)
    other.hold("other")
    try:
        assert not FileLiveness(run_dir).is_live("a")
        assert FileLiveness(run_dir).live_members([]) == set()
    finally:
        other.close()
