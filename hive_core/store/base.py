"""The ShardStore seam: one agent's slice of the hive, in memory or on disk.

A shard holds *documents* (facts) in two roles, because placement has two keys:

* **primary** replicas: the fact's own ring owners (key = ``fact_id``) keep it as part of the
  hive's authoritative fact set. ``count()`` counts these, so a hive's counts sum to
  facts x RF.
* **index** entries: for every term ``t`` of a fact, the ring owners of ``t`` keep the fact in
  ``t``'s postings. This is a term-partitioned inverted index (Reynolds and Vahdat 2003): all
  postings of a term live on the term's owners, so a question needs only the owners of its
  few terms, and the term's document frequency there is exact.

A record carries the fact as plain data plus its term counts, computed once by the placer,
so a store never re-tokenises and the same record crosses any transport unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, runtime_checkable

from hive_core.facts import HiveEdge, HiveFact
from hive_core.scoring import Bm25, CorpusStats

# Posting keys that are not terms start with this (a term never does: tokens begin with a
# letter, a digit or a currency sign). hive_core.context posts facts under their position.
KEY_PREFIX = "\u00a7"


class StoreRecord(NamedTuple):
    """A fact as placed on one shard, with the roles that shard holds it in.

    A NamedTuple rather than a dataclass: ingest creates one per (fact, shard) pair, about
    25 per fact at RF=3, and this is the cheapest immutable record Python has. Its wire form
    is the plain list ``[fact, tf, terms, primary]``; being a tuple, a record is itself plain
    data, so the in-process bus passes it as is and JSON encodes it as that list.
    """

    fact: Mapping[str, Any]  # HiveFact.to_dict()
    tf: Mapping[str, int]  # term -> count over the fact's content
    terms: tuple[str, ...]  # index roles: terms whose postings on this shard include the fact
    primary: bool  # primary role: this shard is a ring owner of the fact itself

    @property
    def fact_id(self) -> str:
        return str(self.fact["fact_id"])

    def to_wire(self) -> list[Any]:
        return [self.fact, self.tf, list(self.terms), self.primary]


class HeldRoles(NamedTuple):
    """A fact's roles on one shard, without its body or term counts: all that anti-entropy
    digests (hive_core.gossip) and the ring-move cleanup read. Those run every few tens of
    seconds over every fact held; built from :meth:`ShardStore.records` they materialized a
    body per fact each time, hundreds of MB at a few hundred thousand facts."""

    fact_id: str
    terms: tuple[str, ...]
    primary: bool


@dataclass(frozen=True, slots=True)
class StoreBatch:
    """Many facts for one shard, column-wise: what a SHARD_STORE message carries.

    Each fact (and its term counts) appears once, and each term's postings are a list of
    fact ids, so storing a batch is mostly C-level ``set.update`` and ``dict`` work instead of
    one Python object per (fact, term, replica). Row-wise :class:`StoreRecord` views exist
    for hand-off and for stores that prefer rows.
    """

    facts: Mapping[str, Mapping[str, Any]]  # fact_id -> HiveFact.to_dict()
    tf: Mapping[str, Mapping[str, int]]  # fact_id -> term counts
    postings: Mapping[str, Sequence[str]]  # term -> fact ids indexed under it here
    primary: Sequence[str]  # fact ids held here in the primary role

    def to_wire(self) -> dict[str, Any]:
        return {"facts": self.facts, "tf": self.tf, "postings": self.postings,
                "primary": self.primary}

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> StoreBatch:
        return cls(data["facts"], data["tf"], data["postings"], data["primary"])

    @classmethod
    def from_records(cls, records: Iterable[StoreRecord]) -> StoreBatch:
        facts: dict[str, Mapping[str, Any]] = {}
        tf: dict[str, Mapping[str, int]] = {}
        postings: dict[str, list[str]] = {}
        primary: list[str] = []
        for rec in records:
            fid = rec.fact_id
            facts[fid] = rec.fact
            tf[fid] = rec.tf
            for term in rec.terms:
                postings.setdefault(term, []).append(fid)
            if rec.primary:
                primary.append(fid)
        return cls(facts, tf, postings, primary)

    def records(self) -> list[StoreRecord]:
        terms: dict[str, list[str]] = {fid: [] for fid in self.facts}
        for term, fids in self.postings.items():
            for fid in fids:
                terms[fid].append(term)
        primary = set(self.primary)
        return [StoreRecord(fact, self.tf[fid], tuple(terms[fid]), fid in primary)
                for fid, fact in self.facts.items()]

    def __len__(self) -> int:
        return len(self.facts)


@dataclass(frozen=True, slots=True)
class TermStats:
    """What a term's owner knows about it: exact df, and the largest term count and the
    shortest length among the facts in its postings -- with them the asker bounds what the
    term can add to any score, for the collection's average length of this query."""

    df: int
    max_tf: int
    min_dl: int

    def bound(self, bm25: Bm25) -> float:
        """An upper bound of the term's tf-part in any of its facts (tf-part grows with tf
        and shrinks with length, so this pair bounds every fact, even from two facts)."""
        return bm25.tf_part(self.max_tf, self.min_dl)


@dataclass(frozen=True, slots=True)
class ScoredFact:
    fact: HiveFact
    score: float


@runtime_checkable
class ShardStore(Protocol):
    """One shard. Implementations: :mod:`.memory` (tests, small hives) and :mod:`.kuzu`."""

    def put(self, batch: StoreBatch) -> int:
        """Merge a batch (idempotent); returns how many new primary facts were added.

        A fact that is retracted (tombstoned) here is ignored: a late, redelivered store must
        not resurrect what was retracted.
        """
        ...

    def put_record(self, record: StoreRecord) -> int:
        """``put(StoreBatch.from_records([record]))``: one fact's roles on this shard. The
        in-process write path stores a promoted fact this way on each of its ~27 shards,
        where building a batch per shard cost more than storing."""
        ...

    def get(self, fact_id: str) -> HiveFact | None: ...

    def retract(self, fact_id: str) -> bool:
        """Tombstone the fact and drop it from every posting; True if it was known here."""
        ...

    def restore(self, fact_id: str) -> bool:
        """Lift the fact's tombstone (a retraction undone on purpose, ``learn --restore``),
        so a later put stores it again; True if it was tombstoned here."""
        ...

    def retracted_among(self, fact_ids: Iterable[str]) -> list[str]:
        """Those of ``fact_ids`` that are tombstoned here."""
        ...

    def drop(self, fact_id: str, terms: Iterable[str], primary: bool) -> None:
        """Give up roles (after a ring change); forget the fact when no role is left."""
        ...

    def term_stats(self, terms: Iterable[str]) -> dict[str, TermStats]:
        """Stats of those ``terms`` that this shard indexes and that have postings."""
        ...

    def score(
        self, terms: Iterable[str], weights: Mapping[str, float], limit: int,
        avgdl: float | None = None,
    ) -> list[ScoredFact]:
        """Top ``limit`` facts in the postings of ``terms``, scored over all ``weights``
        with the hive's average fact length ``avgdl`` (the store's own constant if None).

        Sorted by (-score, fact_id). Only facts that contain a weighted term are returned;
        a shard never pads results with facts that do not match.
        """
        ...

    def search(self, query: str, limit: int = 10) -> list[ScoredFact]:
        """Ranked search over this shard alone (df and ranking as in the hive engine)."""
        ...

    def count(self) -> int:
        """Live (not retracted) facts held in the primary role."""
        ...

    def collection(self, keep: Callable[[str], bool] | None = None) -> CorpusStats:
        """The live facts held in the primary role (those whose id passes ``keep``) and
        their total length: what the hive's collection statistics are summed from."""
        ...

    def changes(self) -> int:
        """A counter that moves with every write (readers cache what they derive)."""
        ...

    def index_size(self) -> int:
        """Number of (term, fact) postings held."""
        ...

    def primary_ids(self) -> list[str]:
        """Ids of the live facts held in the primary role (for replica accounting)."""
        ...

    def select_roles(self, keep: Callable[[str], bool]) -> list[StoreRecord]:
        """Live records cut down to the roles whose ring key (term, or fact id for the
        primary role) passes ``keep``; facts with no such role are left out."""
        ...

    def records(self) -> Iterator[StoreRecord]:
        """Every live record with its roles (for hand-off and the ``records`` dump)."""
        ...

    def select_held_roles(self, keep: Callable[[str], bool]) -> list[HeldRoles]:
        """:meth:`select_roles` without bodies (anti-entropy filters read only roles)."""
        ...

    def records_of(self, roles: Iterable[HeldRoles]) -> list[StoreRecord]:
        """Records of the facts in ``roles`` (with those roles) that are still live."""
        ...

    def held_roles(self) -> Iterator[HeldRoles]:
        """The roles of every live fact, streamed in chunks (for digests and cleanup): its
        memory does not grow with the facts held, beyond one reference per fact id."""
        ...

    def tombstones(self) -> Iterator[str]: ...

    def add_edge(self, edge: HiveEdge) -> None: ...

    def get_edges(self, fact_id: str) -> list[HiveEdge]:
        """Edges with ``fact_id`` as source or target."""
        ...

    def close(self) -> None: ...
