"""Facts on their way to another hive, kept on disk until that hive has them.

An escalation (up to the parent) or a broadcast (down to a group) must not be lost when the
other hive is down, nor when this agent stops before it is delivered: each one is a file in
the agent's outbox folder (``DATA/federation/AGENT/TO_HIVE/``), written atomically and durably
(hive_core.atomic, mode 0600) *before* the learn or store that caused it is acknowledged,
and deleted only once the other hive acknowledged storing every fact in it. A retried
delivery stores facts again, which is harmless: a fact's id is its content hash, so the
receiving hive keeps one fact. Files are delivered oldest first per destination.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hive_core.atomic import write_private
from hive_core.facts import HiveFact

UP, DOWN = "up", "down"
CHUNK_FACTS = 500  # facts in one delivery at most (a receiver takes up to 2,000)
CHUNK_BYTES = 4 * 1024 * 1024  # and this much of their JSON (messages may be 16 MiB)


def _chunks(facts: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    out: list[list[dict[str, Any]]] = [[]]
    size = 0
    for fact in facts:
        cost = len(json.dumps(fact, separators=(",", ":")))
        if out[-1] and (len(out[-1]) >= CHUNK_FACTS or size + cost > CHUNK_BYTES):
            out.append([])
            size = 0
        out[-1].append(fact)
        size += cost
    return out


@dataclass(frozen=True, slots=True)
class Entry:
    """One delivery: ``facts`` to hive ``to``, going ``up`` or ``down`` the tree.
    ``origin`` is the hive the facts were first learned in (a broadcast skips it)."""

    path: Path
    to: str
    direction: str
    origin: str
    facts: tuple[dict[str, Any], ...]

    def payload(self, sender_hive: str) -> dict[str, Any]:
        return {"facts": list(self.facts), "direction": self.direction, "origin": self.origin,
                "from_hive": sender_hive}


class Outbox:
    """The outbox folder of one agent. Thread-safe; many writers, one deliverer."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self.wake = threading.Event()  # set when something was put: deliver soon

    def put(self, to: str, direction: str, origin: str, facts: Sequence[HiveFact]) -> None:
        """Keep ``facts`` for ``to``, durably, before returning: one file per delivery of
        at most ``CHUNK_FACTS`` facts and ``CHUNK_BYTES`` of them (a learn of many rated
        turns must not become one message over the transports' size limit)."""
        if not facts:
            return
        where = self.folder / to
        where.mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        os.chmod(where, 0o700)
        for chunk in _chunks([f.to_dict() for f in facts]):
            with self._lock:
                name = f"{time.time_ns():020d}-{os.getpid()}-{next(self._seq):06d}.json"
            body = {"to": to, "direction": direction, "origin": origin, "facts": chunk}
            write_private(where / name, json.dumps(body, separators=(",", ":")))
        self.wake.set()

    def pending(self) -> tuple[list[Entry], list[Path]]:
        """Every delivery not yet acknowledged, oldest first, and the files that could not
        be read as one: those are moved aside (``NAME.bad``, returned for the caller to
        report), never retried forever."""
        if not self.folder.is_dir():
            return [], []
        out: list[Entry] = []
        bad: list[Path] = []
        for path in sorted(self.folder.glob("*/*.json"), key=lambda p: p.name):
            try:
                body = json.loads(path.read_text())
                out.append(Entry(path, str(body["to"]), str(body["direction"]),
                                 str(body["origin"]), tuple(body["facts"])))
            except FileNotFoundError:
                continue
            except (ValueError, KeyError, TypeError):
                aside = path.with_suffix(".bad")
                path.rename(aside)
                bad.append(aside)
        return out, bad

    def done(self, entry: Entry) -> None:
        entry.path.unlink(missing_ok=True)

    def counts(self) -> dict[str, int]:
        """Deliveries waiting per destination hive (for ``status --json``): a count of
        files, cheap enough for every status request."""
        if not self.folder.is_dir():
            return {}
        out = {d.name: sum(1 for _ in d.glob("*.json")) for d in self.folder.iterdir()
               if d.is_dir()}
        return {hive: n for hive, n in sorted(out.items()) if n}
