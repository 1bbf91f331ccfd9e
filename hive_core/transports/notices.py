"""Warnings that a peer can provoke at will, rate-limited: one line per kind per interval.

Why: a flood of forged messages (a socket or a shared Redis anyone on the machine or network
can write to) would otherwise write one warning per message and fill the agent's log and
disk. The first warning of a kind goes out at once; later ones within ``interval`` seconds
are only counted, and the next line that goes out says how many were held back, so nothing
is hidden, only summarised. The refusals themselves are counted separately (the auth
policy's counters in ``status --json``), exactly.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

NOTICE_INTERVAL = 10.0  # seconds between repeated warnings of one kind


class Notices:
    """Warnings of one kind at most every ``interval`` seconds, with the count between."""

    def __init__(self, logger: logging.Logger, interval: float = NOTICE_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self._last: dict[str, float] = {}
        self._missed: dict[str, int] = {}
        self._lock = threading.Lock()  # workers of several threads warn at once

    def warn(self, kind: str, message: str, *args: object) -> bool:
        """Log ``message % args`` unless a ``kind`` warning went out within the interval
        (then it is counted for the next one); True if it was logged."""
        now = self.clock()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self.interval:
                self._missed[kind] = self._missed.get(kind, 0) + 1
                return False
            missed = self._missed.pop(kind, 0)
            self._last[kind] = now
        suffix = f" ({missed} more since the last such warning)" if missed else ""
        self.logger.warning(message + suffix, *args)
        return True
