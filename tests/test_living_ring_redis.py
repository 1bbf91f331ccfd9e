"""A living hive over the real Redis (never skipped): agents in two process groups with
different AMPLIHACK_HOMEs, two agents joining at the same moment, one on each "machine",
while a client keeps asking. Answers and final counts are checked against a fresh hive."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import yaml
from redis_helpers import REDIS_URL
from redis_hive import RedisHive, redis_config

from bench.cli_processes import synthetic_turns
from bench.ring_load import AskLoad, Reference, extract, settled_and_clean, wait_for
from hive_cli.agent_link import AgentLink
from hive_core.hive_config import AgentConfig
from hive_core.membership.redis_store import RedisViewStore
from hive_core.messages import MessageType

pytestmark = pytest.mark.slow

RF = 3
FAST = {"AMPLIHACK_HANDOFF_GRACE": "1", "AMPLIHACK_RING_POLL": "0.3"}


def test_concurrent_joins_across_two_process_groups(tmp_path: Path, prefix: str,
                                                   hives: list[RedisHive]) -> None:
    first = ["a0", "a1", "a2", "a3"]
    config = redis_config("living", first, REDIS_URL, prefix, RF)
    one = RedisHive(config, tmp_path / "one", tmp_path / "cwd-one")
    two = RedisHive(config, tmp_path / "two", tmp_path / "cwd-two")
    hives += [one, two]
    for hive in (one, two):
        hive.env.update(FAST)
    for name in ("a0", "a1"):
        one.spawn(name)
    for name in ("a2", "a3"):
        two.spawn(name)
    one.wait_ready(first, live_peers=3)
    turns = synthetic_turns(300)
    for i in range(0, len(turns), 50):
        assert one.send(MessageType.LEARN, first[i // 50 % 4],
                        {"turns": turns[i:i + 50]})["failed_shards"] == []
    facts = extract(turns, file_name=None)  # sent as bare strings above
    six = [*first, "a4", "a5"]
    reference = Reference(facts, six, RF)
    questions = [" ".join(t.split()[:6]) + "?" for t in turns[::10]]
    expected = {q: reference.top(q) for q in questions}

    # Both machines learn of the two new agents (their configs), then each starts one.
    grown = config.with_agent(AgentConfig("a4")).with_agent(AgentConfig("a5"))
    for hive in (one, two):
        path = hive.home / "hives" / "living" / "config.yaml"
        path.write_text(yaml.safe_dump(grown.to_dict(), sort_keys=False))
        hive.config = grown
    link = AgentLink("living", one.client)
    load = AskLoad(link, questions, expected, lambda: first, threads=2).start()
    try:
        starters = [threading.Thread(target=one.spawn, args=("a4",)),
                    threading.Thread(target=two.spawn, args=("a5",))]
        for t in starters:
            t.start()
        for t in starters:
            t.join()
        st = wait_for(lambda: settled_and_clean(link, six), 90, "both joins settled")
    finally:
        load.stop()
    assert not load.errors, load.errors[:5]
    assert not load.wrong, f"{len(load.wrong)} of {load.answers} wrong: {load.wrong[:5]}"
    assert load.answers > 10
    assert sum(s["facts"] for s in st.values()) == len(facts) * RF
    assert sum(s["index_size"] for s in st.values()) == reference.index_total()
    views = RedisViewStore(REDIS_URL, "living", prefix)
    view = views.load()
    views.close()
    assert view is not None and view.settled and list(view.current) == sorted(six)
    # Two joins and their flips in one order: no lost update, however they interleaved.
    assert view.epoch >= 3
    for question in questions[:5]:
        got = one.send(MessageType.ASK, "a5", {"question": question, "limit": 10})
        assert {f["fact_id"] for f in got["facts"]} == set(expected[question])
    reference.close()
