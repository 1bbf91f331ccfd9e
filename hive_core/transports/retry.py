"""Backoff as a small policy object (as redis-py does), not loops sprinkled everywhere.

A networked transport retries in three places: a receive loop that lost its broker, a reply
that could not be written back, a request that could not be sent. Each asks one
:class:`Backoff` for "how long until the next attempt" and sleeps on an ``Event`` so that a
shutdown interrupts the wait at once. The delay doubles from ``base`` up to ``cap`` with
"equal jitter" (half fixed, half random), so a hive of agents reconnecting to a restarted
Redis does not hammer it in lockstep.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff: ``base * 2**attempt`` capped at ``cap``, with equal jitter."""

    base: float = 0.05
    cap: float = 2.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0 for the first retry)."""
        full = min(self.cap, self.base * (2 ** min(attempt, 30)))
        return full / 2 + random.uniform(0, full / 2)


@dataclass(slots=True)
class RetryState:
    """The failures of one retrying loop: call ``failed`` after an error, ``ok`` after success.

    ``failed`` sleeps the policy's delay (cut short by ``stop`` and by ``deadline``) and tells
    whether a further attempt is worth making.
    """

    policy: Backoff = field(default_factory=Backoff)
    stop: threading.Event | None = None
    attempts: int = 0

    def ok(self) -> None:
        self.attempts = 0

    def failed(self, deadline: float | None = None) -> bool:
        """Wait before the next attempt; False if stopping or the deadline leaves no time."""
        wait = self.policy.delay(self.attempts)
        self.attempts += 1
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            wait = min(wait, left)
        if self.stop is not None:
            return not self.stop.wait(wait)
        time.sleep(wait)
        return deadline is None or time.monotonic() < deadline
