"""The ring view of a hive on Redis: one JSON value at ``{prefix}:{hive}:ring``.

The swap is one Lua script (atomic on the server): it compares the stored document's
``version`` with the caller's and replaces the document only if they match, so agents on
different machines change the view in one order. The connection string is never put into
an error unredacted.
"""

from __future__ import annotations

import redis

from hive_core.errors import ConnectionLost
from hive_core.membership.view import RingView
from hive_core.redact import redact_secret
from hive_core.transports.redis import DEFAULT_KEY_PREFIX, connect
from hive_core.transports.redis_membership import RedisKeys

# KEYS: ring. ARGV: expected version, new document. 1 = swapped, 0 = someone was faster.
_SWAP = """
local cur = redis.call('GET', KEYS[1])
local version = 0
if cur then version = tonumber(cjson.decode(cur)['version']) end
if version ~= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""


class RedisViewStore:
    """ViewStore on the hive's Redis (see module docstring)."""

    def __init__(self, url: str, hive: str, key_prefix: str = DEFAULT_KEY_PREFIX) -> None:
        self.where = redact_secret(url)
        self.key = RedisKeys(key_prefix, hive).ring
        self.client = connect(url, socket_timeout=5.0)
        self._swap = self.client.register_script(_SWAP)

    def _lost(self, exc: Exception) -> ConnectionLost:
        return ConnectionLost(f"Redis at {self.where} is unreachable: {type(exc).__name__}: "
                              f"{redact_secret(str(exc))}")

    def load(self) -> RingView | None:
        try:
            raw = self.client.get(self.key)
        except redis.RedisError as exc:
            raise self._lost(exc) from exc
        return None if raw is None else RingView.decode(raw)

    def swap(self, expected_version: int, view: RingView) -> bool:
        try:
            return bool(self._swap(keys=[self.key], args=[expected_version, view.encode()]))
        except redis.RedisError as exc:
            raise self._lost(exc) from exc

    def clear(self) -> None:
        try:
            self.client.delete(self.key)
        except redis.RedisError as exc:
            raise self._lost(exc) from exc

    def close(self) -> None:
        self.client.close()
