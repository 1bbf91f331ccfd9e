"""Serving LEARN: a bounded request, done once per batch id, honest about retractions.

Three rules an agent enforces on every LEARN, whoever sent it:

* **A budget per request** (:class:`LearnBudget`): at most ``MAX_LEARN_TURNS`` turns and
  ``MAX_LEARN_BYTES`` of text, and no turn over the hive's ``max_turn_bytes``. One legal
  request used to tie an agent up for minutes (a 1 MiB turn, a batch of them); now the
  worst request costs a known, small amount, and a bigger one is refused with a line that
  says what to change -- before any work is done, so nothing is half-learned.
* **Once per batch id** (:class:`LearnJournal`): the CLI gives every batch an id and sends
  the same id again when a reply did not come in time. The agent answers a repeat with the
  first result, or waits (up to the request's deadline) for the work in progress, instead
  of extracting and storing everything again -- a timed-out batch used to be done 4 times.
* **Retracted facts are reported** (:mod:`agent_runtime.forgetting`): facts whose sentence
  was retracted are not stored (the tombstone wins) and come back as ``retracted``, so the
  CLI can say so; with ``restore`` their tombstones are lifted hive-wide and they are stored.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agent_runtime import forgetting
from agent_runtime.learning import LEARN_USAGE, Extractor, facts_of_turns
from agent_runtime.turn_context import item_texts
from hive_core.distributed import DistributedHiveGraph

MAX_LEARN_TURNS = 1000  # the CLI's --batch maximum
MAX_LEARN_BYTES = 8 * 1024 * 1024  # half the wire limit: room for the envelope and JSON
BATCH_ID_MAX = 128
JOURNAL_SIZE = 512  # batch results kept for repeats (a few KB each)
JOURNAL_TTL = 900.0  # seconds a result is kept: longer than any CLI's retry window
IN_PROGRESS_WAIT = 30.0  # a repeat without a deadline waits at most this for the first


@dataclass(frozen=True, slots=True)
class LearnBudget:
    """The most one LEARN may ask of an agent."""

    max_turn_bytes: int
    max_turns: int = MAX_LEARN_TURNS
    max_bytes: int = MAX_LEARN_BYTES

    def check(self, turns: list[Any]) -> None:
        """Raise ValueError (the sender's error reply) when ``turns`` is over budget."""
        if len(turns) > self.max_turns:
            raise ValueError(f"LEARN of {len(turns):,} turns is over the budget of "
                             f"{self.max_turns:,} turns per request; send smaller batches")
        total = 0
        for i, item in enumerate(turns):
            for text in item_texts(item):  # the turn before is held to the same limits
                size = len(text.encode("utf-8", "surrogatepass"))
                if size > self.max_turn_bytes:
                    raise ValueError(f"LEARN turn {i} is {size:,} bytes; the limit per turn "
                                     f"is {self.max_turn_bytes:,} bytes (max_turn_bytes in "
                                     "the hive config)")
                total += size
        if total > self.max_bytes:
            raise ValueError(f"LEARN of {total:,} bytes is over the budget of "
                             f"{self.max_bytes:,} bytes per request; send smaller batches")


def learn_payload(payload: Mapping[str, Any]) -> tuple[list[Any], str | None, bool, float | None]:
    """(turns, batch id, restore, seconds the sender waits) of a LEARN, checked."""
    turns = payload.get("turns")
    if not isinstance(turns, list):
        raise ValueError(LEARN_USAGE)
    batch_id = payload.get("batch_id")
    if batch_id is not None and (not isinstance(batch_id, str) or not batch_id
                                 or len(batch_id) > BATCH_ID_MAX):
        raise ValueError(f"LEARN 'batch_id' must be a string of 1 to {BATCH_ID_MAX} chars")
    restore = payload.get("restore", False)
    if not isinstance(restore, bool):
        raise ValueError("LEARN 'restore' must be true or false")
    wait = payload.get("timeout")
    if wait is not None and (isinstance(wait, bool) or not isinstance(wait, int | float)
                             or not wait > 0):
        raise ValueError("LEARN 'timeout' must be a number of seconds > 0")
    return turns, batch_id, restore, None if wait is None else float(wait)


class _Entry:
    __slots__ = ("done", "expires", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: dict[str, Any] | None = None
        self.expires = time.monotonic() + JOURNAL_TTL


class LearnJournal:
    """Results of recent LEARN batches by batch id: a repeat is answered, not redone.

    Bounded (``JOURNAL_SIZE`` entries, ``JOURNAL_TTL`` seconds). A batch that failed is
    forgotten, so its repeat is a real retry. A repeat of a batch still in progress waits
    for it until the repeat's own deadline and then answers ``in_progress`` (the sender
    asks again or gives up; either way the work is done once).
    """

    def __init__(self, size: int = JOURNAL_SIZE) -> None:
        self._size = size
        self._items: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.done = 0  # batches learned
        self.repeats = 0  # repeats answered from the journal (no work done)

    def run(self, batch_id: str | None, wait: float | None,
            work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        if batch_id is None:
            return self._count(work())
        with self._lock:
            now = time.monotonic()
            for key in [k for k, e in self._items.items() if e.expires < now and e.done.is_set()]:
                del self._items[key]
            entry = self._items.get(batch_id)
            first = entry is None
            if entry is None:
                entry = self._items[batch_id] = _Entry()
                while len(self._items) > self._size:
                    self._items.popitem(last=False)
        if not first:
            with self._lock:
                self.repeats += 1
            if not entry.done.wait(IN_PROGRESS_WAIT if wait is None else wait):
                return {"in_progress": True, "batch_id": batch_id}
            if entry.result is None:  # the first attempt failed: this repeat is a retry
                return self.run(batch_id, wait, work)
            return {**entry.result, "repeat": True}
        try:
            entry.result = self._count(work())
        except BaseException:
            with self._lock:
                if self._items.get(batch_id) is entry:
                    del self._items[batch_id]
            raise
        finally:
            entry.done.set()
        return entry.result

    def _count(self, result: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.done += 1
        return result

    def status(self) -> dict[str, int]:
        with self._lock:
            return {"batches": self.done, "repeats": self.repeats, "kept": len(self._items)}


def learn_turns(extractor: Extractor, graph: DistributedHiveGraph, name: str,
                turns: list[Any], restore: bool, sender: str = "") -> dict[str, Any]:
    """Extract, set aside what is retracted (or restore it), place the rest on the ring.
    ``sender``: who sent the LEARN (authenticated), kept in each fact as ``learned_from``."""
    facts = facts_of_turns(extractor, turns)
    for fact in facts if sender else ():
        fact.metadata["learned_from"] = sender
    retracted = forgetting.retracted_among(graph, name, [f.fact_id for f in facts]) \
        if facts else set()
    restored: list[str] = []
    if retracted and restore:
        restored = sorted(retracted)
        forgetting.restore(graph, name, restored)
        retracted = set()
    keep = [f for f in facts if f.fact_id not in retracted]
    ids, failed = graph.promote_facts_report(name, keep) if keep else ([], [])
    return {"turns": len(turns), "facts": len(ids), "fact_ids": ids, "failed_shards": failed,
            "retracted": sorted(retracted), "restored": restored}
