"""One time budget shared by a row of agents tried in turn until one answers.

Why: the CLI's ``ask`` and a hive-to-hive link both hand a request to the next agent when
one cannot be reached, all within one deadline. A hung agent must not take all of it, so
each agent but the last gets half of what is left (at least ``minimum`` seconds), and the
last gets the rest. Written once so both callers split time the same way.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence


def tries(agents: Sequence[str], deadline: float, minimum: float, *,
          floor: float = 0.05) -> Iterator[tuple[str, float]]:
    """Yield ``(agent, seconds it may take)`` in order while more than ``floor`` seconds
    are left before ``deadline`` (a ``time.monotonic()`` value); the caller stops
    iterating at the first answer."""
    for i, agent in enumerate(agents):
        left = deadline - time.monotonic()
        if left <= floor:
            return
        yield agent, left if i == len(agents) - 1 else min(left, max(minimum, left / 2))
