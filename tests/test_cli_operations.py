"""``logs`` (tail and follow) and ``learn`` input parsing, without agent processes."""

from __future__ import annotations

import json
import threading
import time

import pytest
from cli_helpers import cli

from hive_cli import inputs, operations
from hive_cli import logs as hive_logs
from hive_core.hive_config import HiveConfig


def test_round_robin_sends_turn_i_to_agent_i_mod_n():
    turns = [f"t{i}" for i in range(7)]
    assert inputs.round_robin(turns, ["a", "b", "c"]) == {
        "a": ["t0", "t3", "t6"], "b": ["t1", "t4"], "c": ["t2", "t5"]}


def contents(turns):
    return [t["content"] for t in turns]


def placed(turns):
    """The turns without their time (checked on its own below)."""
    return [{k: v for k, v in t.items() if k != "time"} for t in turns]


def test_plain_and_jsonl_turns(tmp_path):
    plain = tmp_path / "t.txt"
    plain.write_text("first turn\n\n  second turn  \n")
    assert placed(inputs.read_turns(plain, None)) == [
        {"content": "first turn", "session": "t.txt", "turn": 1},
        {"content": "second turn", "session": "t.txt", "turn": 2}]  # a blank line parts nothing
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text('{"content": "one", "speaker": "x"}\n\n{"content": "two"}\n')
    assert contents(inputs.read_turns(jsonl, None)) == ["one", "two"]
    sniffed = tmp_path / "t.log"
    sniffed.write_text('{"content": "json by its first line"}\n')
    assert contents(inputs.read_turns(sniffed, None)) == ["json by its first line"]
    assert placed(inputs.read_turns(None, "a\nb")) == [
        {"content": "a", "session": "text", "turn": 1},
        {"content": "b", "session": "text", "turn": 2}]


def test_jsonl_session_and_turn_fields(tmp_path):
    jsonl = tmp_path / "chat.jsonl"
    jsonl.write_text('{"content": "hi", "session": "s-9", "turn": 41}\n\n{"content": "yo"}\n')
    assert placed(inputs.read_turns(jsonl, None)) == [
        {"content": "hi", "session": "s-9", "turn": 41},
        {"content": "yo", "session": "chat.jsonl", "turn": 2}]
    for bad, why in (('{"content": "x", "turn": -1}', "'turn'"),
                     ('{"content": "x", "turn": "3"}', "'turn'"),
                     ('{"content": "x", "session": 5}', "'session'")):
        jsonl.write_text(bad + "\n")
        with pytest.raises(inputs.BadInput, match=why):
            inputs.read_turns(jsonl, None)


def test_turn_time_from_jsonl_or_the_moment_learn_began(tmp_path):
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text('{"content": "a", "time": "2026-03-14"}\n'
                     '{"content": "b", "time": "2026-03-14T09:30:00+01:00"}\n'
                     '{"content": "c", "time": 1700000000}\n{"content": "d"}\n{"content": "e"}\n')
    before = time.time()
    turns = inputs.read_turns(jsonl, None)
    assert [t["time"] for t in turns[:3]] == [1773446400.0, 1773477000.0, 1700000000.0]
    # No time given: the moment learn began, one value for the whole input (order = turn).
    assert turns[3]["time"] == turns[4]["time"]
    assert before - 1 <= turns[3]["time"] <= time.time() + 1
    for bad in ('"yesterday"', "-5", "true", '"2026-13-01"'):
        jsonl.write_text('{"content": "x", "time": ' + bad + '}\n')
        with pytest.raises(inputs.BadInput, match="line 1: 'time' must be an ISO 8601"):
            inputs.read_turns(jsonl, None)


def test_oversized_line_is_named_before_anything_is_read_further(tmp_path):
    big = tmp_path / "big.txt"
    big.write_text("ok\n" * 3 + "y" * (inputs.MAX_TURN_BYTES + 1) + "\n")
    with pytest.raises(inputs.BadInput, match="line 4 is"):
        inputs.read_turns(big, None)


@pytest.fixture
def hive_with_logs(amplihack_home, capsys):
    assert cli(capsys, "create", "--name", "lg", "--agents", "2").code == 0
    cfg = HiveConfig.load("lg")
    cfg.logs_dir.mkdir()
    for agent in cfg.agent_names():
        (cfg.logs_dir / f"{agent}.log").write_text("".join(f"{agent} line {i}\n"
                                                           for i in range(100)))
    return cfg


def test_logs_tail_one_and_all(hive_with_logs, capsys):
    one = cli(capsys, "logs", "--hive", "lg", "--agent", "agent_1", "--lines", "3")
    assert one.code == 0
    assert one.out.splitlines() == ["agent_1 line 97", "agent_1 line 98", "agent_1 line 99"]
    both = cli(capsys, "logs", "--hive", "lg", "--lines", "2")
    assert both.out.splitlines() == ["agent_0 | agent_0 line 98", "agent_0 | agent_0 line 99",
                                     "agent_1 | agent_1 line 98", "agent_1 | agent_1 line 99"]
    default = cli(capsys, "logs", "--hive", "lg", "--agent", "agent_0")
    assert len(default.out.splitlines()) == 50


def test_follow_prints_appended_lines_and_survives_truncation(hive_with_logs, capsys):
    path = hive_with_logs.logs_dir / "agent_0.log"
    done = threading.Event()
    worker = threading.Thread(
        target=hive_logs.follow, args=({"agent_0": path}, False, done.is_set))
    capsys.readouterr()
    worker.start()
    seen: list[str] = []

    def wait_for(line: str) -> None:
        deadline = time.monotonic() + 10
        while line not in seen:
            assert time.monotonic() < deadline, seen
            time.sleep(0.05)
            seen.extend(capsys.readouterr().out.splitlines())

    time.sleep(3 * hive_logs.FOLLOW_POLL_S)  # let follow take the starting offsets
    with path.open("a") as fh:
        fh.write("appended one\nappended two\npartial")
    wait_for("appended two")
    path.write_text("after truncation\n")
    wait_for("after truncation")
    done.set()
    worker.join(5)
    seen.extend(capsys.readouterr().out.splitlines())
    assert seen == ["appended one", "appended two", "after truncation"]


def test_learn_batches_round_robin_turns_with_bounded_parallelism():
    from hive_cli.agent_link import AgentLink
    from hive_core.messages import Envelope
    from hive_core.transports.local import LocalEventBus

    agents = [f"a{i}" for i in range(5)]
    received: dict[str, list[list[str]]] = {a: [] for a in agents}
    active: set[str] = set()
    peak = 0
    lock = threading.Lock()

    def handle(env: Envelope) -> Envelope:
        nonlocal peak
        with lock:
            assert env.target not in active  # never two batches to one agent at once
            active.add(env.target)
            peak = max(peak, len(active))
        time.sleep(0.01)
        turns = env.payload["turns"]
        received[env.target].append(turns)
        with lock:
            active.discard(env.target)
        return env.reply({"turns": len(turns), "facts": len(turns),
                          "fact_ids": [f"f{t[1:]}" for t in turns], "failed_shards": []})

    bus = LocalEventBus()
    for a in agents:
        bus.bind(a, handle)
    turns = [f"t{i}" for i in range(103)]
    ticks: list[int] = []
    doc = operations.learn(AgentLink("h", bus), inputs.round_robin(turns, agents), 5,
                           ticks.append, batch=4, parallel=2)
    bus.close()
    assert peak <= 2 and sum(ticks) == 103
    for i, agent in enumerate(agents):
        flat = [t for b in received[agent] for t in b]
        assert flat == turns[i::5] and all(len(b) <= 4 for b in received[agent])
    assert (doc["turns"], doc["facts"], doc["unique_facts"]) == (103, 103, 103)


def test_learn_resends_a_batch_after_a_transport_failure_but_not_a_rejection():
    from hive_cli.agent_link import AgentLink
    from hive_cli.errors import CliFailure
    from hive_core.messages import Envelope
    from hive_core.transports.local import LocalEventBus

    received: list[list[str]] = []

    def agent(env: Envelope) -> Envelope:
        turns = env.payload["turns"]
        received.append(turns)
        return env.reply({"turns": len(turns), "facts": len(turns), "fact_ids": turns,
                          "failed_shards": []})

    bus = LocalEventBus()
    # a0 is unreachable at first (its broker restarting): ConnectionLost, then it is back.
    threading.Timer(0.15, bus.bind, args=("a0", agent)).start()
    bus.bind("a1", lambda env: env.error("ValueError: LEARN needs turns"))
    link = AgentLink("h", bus)
    doc = operations.learn(link, {"a0": ["x", "y"]}, 5, lambda n: None)
    assert doc["facts"] == 2 and received == [["x", "y"]]
    try:
        operations.learn(link, {"a1": ["z"]}, 5, lambda n: None)
    except CliFailure as exc:
        assert "LEARN needs turns" in str(exc)
    else:
        raise AssertionError("a rejected batch must fail the learn")
    bus.close()


def test_logs_merge_by_time_and_json_lines(amplihack_home, capsys):
    assert cli(capsys, "create", "--name", "mg", "--agents", "2").code == 0
    cfg = HiveConfig.load("mg")
    cfg.logs_dir.mkdir()
    (cfg.logs_dir / "agent_0.log").write_text(
        "--- amplihack-hive: starting agent_0 at 2026-12-02T10:00:00+0000\n"
        "2026-12-02 10:00:01,000 INFO mg/agent_0 a: ready\n"
        "2026-12-02 10:00:05,000 ERROR mg/agent_0 a: boom\n"
        "Traceback (most recent call last):\n")
    (cfg.logs_dir / "agent_1.log").write_text(
        "2026-12-02 10:00:00,500 INFO mg/agent_1 a: ready\n"
        "2026-12-02 10:00:03,000 INFO mg/agent_1 a: learned\n")
    res = cli(capsys, "logs", "--hive", "mg", "--merge", "--lines", "5")
    assert res.code == 0
    rows = [(line.split(" | ")[0], line.split()[-1]) for line in res.out.splitlines()]
    assert rows == [("agent_1", "ready"), ("agent_0", "ready"), ("agent_1", "learned"),
                    ("agent_0", "boom"), ("agent_0", "last):")]
    res = cli(capsys, "logs", "--hive", "mg", "--agent", "agent_0", "--json", "--lines", "2")
    rows = [json.loads(line) for line in res.out.splitlines()]
    assert rows == [
        {"agent": "agent_0", "time": "2026-12-02 10:00:05,000",
         "line": "2026-12-02 10:00:05,000 ERROR mg/agent_0 a: boom"},
        # A traceback line belongs to the line before it.
        {"agent": "agent_0", "time": "2026-12-02 10:00:05,000",
         "line": "Traceback (most recent call last):"}]
