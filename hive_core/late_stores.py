"""SHARD_STORE replies that come late: asked again, with more time, before a shard is reported.

A store that is not answered within ``store_timeout`` used to count as a failed replica at
once, and a ``learn`` that met one exited 1 ("some facts are missing replicas"). A replica
that is slow is not a replica that is lost: on a 50 MB learn (5 agents, ~650k facts each on
a shared 2-core machine) every agent stalled for 15-25 s at times -- anti-entropy rounds
forced during the writes (hive_core.gossip back-off), machine load -- and the stores in
flight then timed out although the shard stored them a few seconds later. So a store that
timed out is sent again (stores are idempotent: a shard that took the first copy takes the
second harmlessly), with 2x and then 4x the time: a stall of up to ~7x ``store_timeout`` is
ridden out. Anything else (the shard is gone, refused, full) is final at once, and a shard
still late after the last re-send is reported as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hive_core.errors import DeadlineExceeded, TransportError
from hive_core.shard_client import ShardClient
from hive_core.store.base import StoreBatch

LATE_RETRIES = (2.0, 4.0)  # each re-send's wait, as a multiple of the store timeout


def store_patiently(client: ShardClient, per_shard: Mapping[str, StoreBatch], timeout: float
                    ) -> dict[str, dict[str, Any] | TransportError]:
    """``client.store_many(per_shard, timeout)``, re-sending what timed out (see above)."""
    results = client.store_many(per_shard, timeout=timeout)
    late = {a: per_shard[a] for a, r in results.items() if isinstance(r, DeadlineExceeded)}
    for factor in LATE_RETRIES:
        if not late:
            break
        again = client.store_many(late, timeout=factor * timeout)
        results.update(again)
        late = {a: late[a] for a, r in again.items() if isinstance(r, DeadlineExceeded)}
    return results
