"""A flood of forged messages on the real Redis does not flood the agent's log: one warning
per kind per interval, then one that says how many were held back; every refusal is still
counted exactly by the policy (hive_core.transports.notices, hive_core.transports.broker).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
from redis_helpers import REDIS_URL, delete_prefix, shared_redis, unique_prefix

from hive_core.auth import BROKER_WINDOW, new_key, with_key
from hive_core.messages import Envelope, MessageType, encode
from hive_core.transports.redis import RedisShardTransport
from hive_core.transports.redis_membership import RedisKeys

HIVE = "notices"
FLOOD = 150  # forged messages of each kind


@pytest.fixture
def prefix() -> Iterator[str]:
    value = unique_prefix()
    yield value
    client = shared_redis()
    delete_prefix(client, value)
    client.close()


def wait_for(check, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_forged_flood_on_redis_logs_one_line_per_kind_and_counts_them_all(
        prefix: str, caplog: pytest.LogCaptureFixture) -> None:
    key = new_key()
    agent = RedisShardTransport(REDIS_URL, HIVE, key_prefix=prefix,
                                auth=with_key(key, BROKER_WINDOW))
    agent.notices.interval = 1.5  # short, so the held-back count shows within the test
    admin = shared_redis()
    names = RedisKeys(prefix, HIVE)
    body = encode(Envelope(MessageType.SHARD_QUERY, HIVE, "mallory", "a", {"op": "records"}))
    forgeries = {"unsigned": body, "bad_mac": with_key(new_key()).sign(body)}

    def inject(data: bytes, count: int) -> None:
        pipe = admin.pipeline()
        for i in range(count):
            pipe.xadd(names.inbox("a"), {"env": data, "id": f"forged-{i}",
                                         "reply": names.reply("mallory")})
        pipe.execute()

    def dropped() -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.name == "hive_core.transports.broker" and "dropped a message" in
                r.getMessage()]

    caplog.set_level(logging.INFO)
    try:
        agent.bind("a", lambda env: env.reply({"answered": True}))
        for data in forgeries.values():
            inject(data, FLOOD)
        wait_for(lambda: sum(agent.auth.rejected().values()) == 2 * FLOOD)
        assert agent.auth.rejected() == {"bad_mac": FLOOD, "stale": 0, "replayed": 0,
                                         "unsigned": FLOOD}
        lines = dropped()
        assert sorted(line.split("(")[1].split(")")[0] for line in lines) == \
            ["bad_mac", "unsigned"], lines  # one line per kind, not 300
        time.sleep(agent.notices.interval + 0.1)
        inject(forgeries["unsigned"], 1)
        wait_for(lambda: len(dropped()) == 3)
        assert dropped()[-1].endswith(f"({FLOOD - 1} more since the last such warning)")
        assert not admin.exists(names.reply("mallory"))  # none of them was answered
    finally:
        agent.close()
        admin.close()
