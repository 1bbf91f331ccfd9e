"""The federation outbox (agent_runtime.outbox): durable, private, chunked, oldest first."""

from __future__ import annotations

import stat
from pathlib import Path

from agent_runtime.outbox import CHUNK_BYTES, CHUNK_FACTS, DOWN, UP, Outbox
from hive_core.facts import HiveFact


def _facts(n: int, size: int = 20) -> list[HiveFact]:
    return [HiveFact(f"Fact number {i} " + "x" * size) for i in range(n)]


def test_deliveries_are_private_files_oldest_first_until_done(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "federation" / "agent_0")
    box.put("root", UP, "g1", _facts(2))
    box.put("g2", DOWN, "g3", _facts(1))
    box.put("root", UP, "g1", _facts(3)[2:])
    entries, bad = box.pending()
    assert bad == [] and [(e.to, e.direction, len(e.facts)) for e in entries] == [
        ("root", UP, 2), ("g2", DOWN, 1), ("root", UP, 1)]
    assert box.counts() == {"g2": 1, "root": 2}
    for entry in entries:
        assert stat.S_IMODE(entry.path.stat().st_mode) == 0o600
        assert stat.S_IMODE(entry.path.parent.stat().st_mode) == 0o700
    assert entries[0].payload("g1") == {"facts": list(entries[0].facts), "direction": UP,
                                        "origin": "g1", "from_hive": "g1"}
    # A fresh Outbox on the same folder (the agent restarted) sees the same deliveries.
    again, _ = Outbox(box.folder).pending()
    assert [e.path for e in again] == [e.path for e in entries]
    box.done(entries[1])
    assert box.counts() == {"root": 2}
    assert [HiveFact.from_dict(d).content for d in box.pending()[0][0].facts] == [
        f.content for f in _facts(2)]


def test_a_big_learn_is_split_into_deliveries_a_receiver_takes(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    box.put("root", UP, "g1", _facts(CHUNK_FACTS * 2 + 7))
    assert [len(e.facts) for e in box.pending()[0]] == [CHUNK_FACTS, CHUNK_FACTS, 7]
    big = Outbox(tmp_path / "big")
    big.put("root", UP, "g1", _facts(100, size=CHUNK_BYTES // 40))
    sizes = [len(e.facts) for e in big.pending()[0]]
    assert sum(sizes) == 100 and len(sizes) > 1 and max(sizes) <= 40


def test_an_unreadable_delivery_is_moved_aside_and_reported(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    box.put("root", UP, "g1", _facts(1))
    broken = tmp_path / "root" / "00000000000000000000-1-000000.json"
    broken.write_text("{not json")
    entries, bad = box.pending()
    assert len(entries) == 1 and bad == [broken.with_suffix(".bad")]
    assert broken.with_suffix(".bad").exists() and not broken.exists()
    assert box.pending()[1] == []  # reported once, not on every pass
