"""Is an agent process alive? For agents on one machine, an ``flock`` answers exactly.

Each agent process holds an exclusive lock on ``run/AGENT.live`` for as long as it runs;
the kernel drops the lock when the process dies (even while it lingers as a zombie), so a
peer that can take the lock knows the agent is gone, at once and without a message. A probe
costs three system calls, cheap enough to ask about every peer every poll.

Redis transports answer the same question from their heartbeat keys
(:meth:`hive_core.transports.redis.RedisShardTransport.live_members`); the agent's ring
keeper takes either through the :class:`Liveness` protocol.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol, runtime_checkable

from hive_core.errors import AgentError


@runtime_checkable
class Liveness(Protocol):
    def live_members(self, candidates: Iterable[str]) -> set[str]:
        """Those of ``candidates`` whose agent process is running."""
        ...


class FileLiveness:
    """Liveness of the agents of one machine's hive (see module docstring)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._held: dict[str, int] = {}

    def _path(self, agent: str) -> Path:
        return self.run_dir / f"{agent}.live"

    def hold(self, agent: str) -> None:
        """Mark this process as ``agent`` until :meth:`release` or exit (AgentError if
        another live process already is that agent)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path(agent), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AgentError(f"agent {agent!r} is already running (another process holds "
                             f"{self._path(agent)})") from None
        self._held[agent] = fd

    def release(self, agent: str) -> None:
        fd = self._held.pop(agent, None)
        if fd is not None:
            os.close(fd)

    def is_live(self, agent: str) -> bool:
        if agent in self._held:
            return True
        try:
            fd = os.open(self._path(agent), os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing drops the shared lock we may have taken
        return False

    def live_members(self, candidates: Iterable[str]) -> set[str]:
        return {a for a in candidates if self.is_live(a)}

    def close(self) -> None:
        for agent in list(self._held):
            self.release(agent)
