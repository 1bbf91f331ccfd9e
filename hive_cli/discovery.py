"""Every process of a hive, whether or not a PID record names it.

PID records are how commands know agents, but a record can be missing (an overlapping
``start`` from before the lifecycle lock, a PID file removed or corrupt, a config deleted
while the hive ran). An agent that no record names must still be reported by ``status`` and
reached by ``stop`` and ``delete``, so we look for processes the way an operator would:

* the process table: a process running ``-m agent_runtime --hive NAME --agent A`` (or the
  hive's keeper) whose ``AMPLIHACK_HOME`` is ours: two homes may hold hives of one name;
* the agent's socket: the peer credentials (``SO_PEERCRED``) of its listening socket name
  the process that listens on it, whatever its command line says.

Zombies and processes of other users (unreadable environment) are never counted.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from collections.abc import Iterable
from pathlib import Path

import psutil

from hive_cli import supervisor
from hive_core.hive_config import amplihack_home, hive_dir

KEEPER_MODULE = "hive_cli.keeper"
AGENT_MODULE = "agent_runtime"
_PEERCRED = struct.Struct("3i")  # pid, uid, gid


def _flag(cmdline: list[str], name: str) -> str | None:
    for i, arg in enumerate(cmdline[:-1]):
        if arg == name:
            return cmdline[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _home_of(proc: psutil.Process) -> Path | None:
    """The AMPLIHACK_HOME a process runs under (None: unreadable, so not ours to touch)."""
    try:
        env = proc.environ()
    except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess, OSError):
        return None
    raw = env.get("AMPLIHACK_HOME")
    return Path(raw).resolve() if raw else (Path(env.get("HOME", "~")).expanduser()
                                            / ".amplihack").resolve()


def member_of(cmdline: list[str], hive: str) -> str | None:
    """The agent name (or "keeper") if ``cmdline`` runs a process of ``hive``."""
    if "-m" not in cmdline or _flag(cmdline, "--hive") != hive:
        return None
    module = _flag(cmdline, "-m")
    if module == AGENT_MODULE:
        return _flag(cmdline, "--agent")
    if module == KEEPER_MODULE:
        return "keeper"
    return None


def scan(hive: str) -> dict[str, list[psutil.Process]]:
    """Processes of ``hive`` under this AMPLIHACK_HOME, by agent name ("keeper" included),
    found in the process table."""
    home = amplihack_home().resolve()
    found: dict[str, list[psutil.Process]] = {}
    me = os.getpid()
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmdline = proc.info["cmdline"] or []
            name = member_of(cmdline, hive) if proc.pid != me else None
            if name is None or supervisor.is_gone(proc) or _home_of(proc) != home:
                continue
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        found.setdefault(name, []).append(proc)
    return found


def socket_holder(path: Path) -> psutil.Process | None:
    """The process listening on the Unix socket at ``path``, from its peer credentials."""
    if not path.exists():
        return None
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
        raw = probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
        pid = _PEERCRED.unpack(raw)[0]
        proc = psutil.Process(pid)
        return None if supervisor.is_gone(proc) else proc
    except (OSError, psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    finally:
        probe.close()


def hive_processes(hive: str, agents: Iterable[str] = ()) -> dict[str, list[psutil.Process]]:
    """Every live process of ``hive``: the process-table scan plus the holders of the
    sockets of ``agents`` (and of any socket left in the hive's run folder)."""
    found = scan(hive)
    run = hive_dir(hive) / "run"
    names = set(agents)
    with contextlib.suppress(OSError):
        names.update(p.stem for p in run.glob("*.sock"))
    for name in sorted(names):
        proc = socket_holder(run / f"{name}.sock")
        if proc is not None and all(p.pid != proc.pid for p in found.get(name, [])):
            found.setdefault(name, []).append(proc)
    return found


def unrecorded(found: dict[str, list[psutil.Process]],
               recorded: dict[str, int | None]) -> dict[str, list[psutil.Process]]:
    """The processes in ``found`` that no PID record names (``recorded``: agent -> PID)."""
    out: dict[str, list[psutil.Process]] = {}
    for name, procs in found.items():
        extra = [p for p in procs if p.pid != recorded.get(name)]
        if extra:
            out[name] = extra
    return out
