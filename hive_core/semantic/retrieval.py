"""Semantic retrieval fused with BM25, within the same shard budget (optional, off by default).

Lexical search misses paraphrases: "What is Lars Eriksen's job?" shares no term with "... works
as a site reliability engineer", "pets" none with "adopted a cat". A :class:`SemanticIndex` on
the graph does one of two things:

* by default (``relation``, :mod:`.rerank`), it re-ranks a larger lexical pool by the cosine
  of the question and each fact *with their names taken out*, for the facts that hold the
  question's names. No vector is placed and no extra shard is asked. On the long-horizon
  eval this is what wins (retrieval@10 +8 to +11 points on seeds 7, 11 and 23; the bucket
  search below was +0 to -1: whole-sentence vectors are dominated by names and pull up
  same-shaped sentences about other people);
* with ``relation=None``, the bucket search below: vectors placed with the facts and asked
  by bucket.

The bucket search:

* **Learning.** The placing agent embeds each fact once (:meth:`SemanticIndex.embed_facts`)
  and writes the int8 vector and its bucket keys (:mod:`.lsh`) into the fact's metadata; the
  bucket keys become posting keys like terms (``hive_core.context.fact_keys``), so placement,
  hand-off, anti-entropy, retraction and the Kuzu log carry them with no change.
* **Budget.** The lexical search is searched by ``query_fanout - tables`` terms (all terms
  still weigh in every score) and the question's bucket in each of the ``tables`` tables
  takes the remaining slots: at most ``query_fanout`` shards score, as before.
* **Score.** Every fact's score is ``bm25 + scale * cosine`` where ``scale = weight * (sum of
  the question's term weights)`` -- the cosine is worth ``weight`` of a perfect lexical
  match, whatever the question's idf scale. The lexical pool's facts get their cosine from
  the vector in their metadata (here, at the asker); each bucket's owner scores its whole
  bucket the same way (one shard per bucket, :func:`answer`) and returns its top ``pool``.
  Both use the same weights, average length, integer cosine and float expression, so a fact
  has one score whoever computed it.
* **Merge.** Union by fact id, sorted by (-score, fact_id), cut to the pool size. The lexical
  pool is the exact top of the routed search and each bucket owner returns its bucket's
  exact top, so the cut pool is the top of (lexical pool U buckets) on every hive size: N=1
  and N=100 rank identically. The context phase and answer shaping follow as before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from hive_core import context
from hive_core.aggregate import wanted
from hive_core.errors import ConfigError
from hive_core.facts import HiveFact
from hive_core.messages import MessageType
from hive_core.query import ParsedQuery, parse
from hive_core.search import SearchResult, group_by_shard, route_terms
from hive_core.search import pool_size as search_pool_size
from hive_core.semantic.embedder import Embedder, Vector, cosine, decode, encode, quantize
from hive_core.semantic.lsh import KEYS_FIELD, VECTOR_FIELD, Lsh
from hive_core.semantic.rerank import RelationRerank, VectorCache, rerank
from hive_core.store.base import ScoredFact, ShardStore
from hive_core.store.index import IndexedStore

DEFAULT_WEIGHT = 0.4
BUCKET_HITS = 10  # facts each bucket adds to the pool
RELATION = RelationRerank()  # the default: re-rank the lexical pool (hive_core.semantic.rerank)


class Gatherer(Protocol):
    """What :meth:`SemanticIndex.fuse` asks shards through (ShardClient.gather)."""

    def gather(self, calls: Mapping[str, tuple[MessageType, dict[str, Any]]]
               ) -> tuple[dict[str, dict[str, Any]], dict[str, str]]: ...


def vector_of(fact: HiveFact | Mapping[str, Any]) -> Vector | None:
    """The vector a fact was placed with, if any."""
    metadata = fact.metadata if isinstance(fact, HiveFact) else fact.get("metadata") or {}
    return decode(metadata.get(VECTOR_FIELD))


class SemanticIndex:
    """What a graph needs to place and search by meaning: an embedder, the hive's bucketing
    and the fusion weight. Every agent of a hive must use the same ones."""

    def __init__(self, embedder: Embedder, lsh: Lsh | None = None,
                 weight: float = DEFAULT_WEIGHT, bucket_hits: int = BUCKET_HITS,
                 relation: RelationRerank | None = RELATION) -> None:
        lsh = lsh or Lsh()
        if lsh.tables < 1 or lsh.bits < 1 or not 0 <= lsh.spread <= lsh.bits:
            raise ConfigError(f"semantic buckets need tables >= 1, bits >= 1 and 0 <= spread "
                              f"<= bits (got {lsh})")
        if not weight >= 0:
            raise ConfigError(f"semantic weight must be >= 0 (got {weight!r})")
        if bucket_hits < 1:
            raise ConfigError(f"semantic bucket_hits must be >= 1 (got {bucket_hits!r})")
        self.embedder, self.lsh, self.weight = embedder, lsh, float(weight)
        self.bucket_hits = bucket_hits
        self.relation = relation  # None: the bucket search below
        self._relation_vectors = VectorCache(embedder)

    # -- learning -------------------------------------------------------------------------
    def embed_facts(self, facts: Sequence[HiveFact]) -> list[HiveFact]:
        """``facts`` with a vector and bucket keys in their metadata (a fact that has a
        vector keeps it: one placed by another hive of a federation, or said again). The
        relation re-rank needs neither: its facts are placed as they are."""
        if self.relation is not None:
            return list(facts)
        todo = [i for i, f in enumerate(facts) if vector_of(f) is None]
        if not todo:
            return list(facts)
        vectors = self.embedder.embed([facts[i].content for i in todo])
        out = list(facts)
        for i, raw in zip(todo, vectors, strict=True):
            vec = quantize(raw)
            metadata = {**facts[i].metadata, VECTOR_FIELD: encode(vec),
                        KEYS_FIELD: self.lsh.fact_keys(vec)}
            out[i] = replace(facts[i], metadata=metadata)
        return out

    # -- searching ------------------------------------------------------------------------
    def lexical_fanout(self, fanout: int) -> int:
        """Terms the lexical search is searched by: the rest of the budget is the buckets'
        (all of it when the relation re-rank replaces the buckets)."""
        return fanout if self.relation is not None else max(1, fanout - self.lsh.tables)

    def pool_size(self, parsed: ParsedQuery, limit: int) -> int:
        """Facts the lexical search gathers: the relation re-rank needs more than ``limit``
        to have something to pull up."""
        size = search_pool_size(parsed, limit)
        if self.relation is None:
            return size
        return max(size, self.relation.gather_pool if wanted(parsed) else self.relation.pool)

    def question_vector(self, question: str) -> Vector:
        return quantize(self.embedder.embed([question])[0])

    def scale(self, weights: Mapping[str, float]) -> float:
        return self.weight * (sum(weights.values()) or 1.0)

    def fuse(
        self, result: SearchResult, question: str, client: Gatherer,
        owners_of: Callable[[str], Sequence[str]], prefer: str | None,
        avoid: frozenset[str], fetch: context.Fetch,
    ) -> context.Fetch:
        """Re-score ``result`` (the lexical pool) in place: by the relation re-rank
        (:func:`.rerank.rerank`), or with the bucket search, adding the best
        ``bucket_hits`` facts of each of the question's buckets, each bucket asked of one of
        its owners (the asker first, as terms are routed) through ``client`` (a
        :class:`~hive_core.shard_client.ShardClient`), in one round.

        Returns ``fetch`` (the context phase's, :mod:`hive_core.context`) wrapped so that
        the neighbour facts it brings are scored the same way: a neighbour's bonus is then
        on the scale of the candidates it is added to."""
        if self.relation is not None:
            return self.relation_rerank(question)(result, fetch)
        vec = self.question_vector(question)
        scale = self.scale(result.weights)

        def rescore(hit: ScoredFact) -> ScoredFact:
            return ScoredFact(hit.fact, fused(hit.score, scale, vec, vector_of(hit.fact)))

        best = {hit.fact.fact_id: rescore(hit) for hit in result.scored()}
        keys = self.lsh.query_keys(vec)
        by_shard = group_by_shard(route_terms(keys, owners_of, prefer=prefer,
                                              avoid=avoid | frozenset(result.shards_failed)))
        payload = {"vector": encode(vec), "weights": dict(result.weights),
                   "avgdl": result.avgdl or None, "limit": self.bucket_hits, "scale": scale}
        calls = {shard: (MessageType.SHARD_QUERY, {"op": "semantic", "keys": list(k), **payload})
                 for shard, k in by_shard.items()}
        replies, failed = client.gather(calls)
        for reply in replies.values():
            for found in reply["hits"].values():
                for f, score in found:
                    hit = ScoredFact(HiveFact.from_dict(f), float(score))
                    best.setdefault(hit.fact.fact_id, hit)
        ordered = sorted(best.values(), key=lambda sf: (-sf.score, sf.fact.fact_id))
        result.facts = [sf.fact for sf in ordered]
        result.scores = [sf.score for sf in ordered]
        result.terms += keys
        result.shards_queried += [s for s in by_shard if s not in result.shards_queried]
        result.shards_searched += [s for s in by_shard if s not in result.shards_searched]
        if failed:
            result.shards_failed = sorted(set(result.shards_failed) | set(failed))
        def fused_fetch(keys: Sequence[str]
                        ) -> tuple[dict[str, list[ScoredFact]], dict[str, str], list[str]]:
            found, failed, asked = fetch(keys)
            return {k: [rescore(h) for h in hits] for k, hits in found.items()}, failed, asked
        return fused_fetch

    def relation_rerank(self, question: str
                        ) -> Callable[[SearchResult, context.Fetch], context.Fetch]:
        """:meth:`fuse` by the relation re-rank for ``question``, which needs no shard: only
        the pool's texts. So a federated question's asker applies it once, on the pool of
        every hive merged (hive_core.federated_search.merge), exactly as one hive holding
        every fact would. The bucket search asks each bucket's owners, which a merged pool
        has none of: a ConfigError here, before any hive is asked (it would rank
        differently from one hive)."""
        relation = self.relation
        if relation is None:
            raise ConfigError("the semantic bucket search (relation=None) cannot re-rank a "
                              "federated question's merged pool; use the relation re-rank")
        parsed = parse(question)

        def apply(result: SearchResult, fetch: context.Fetch) -> context.Fetch:
            return rerank(relation, result, parsed, self._relation_vectors, fetch)
        return apply


def pool_for(semantic: SemanticIndex | None, parsed: ParsedQuery, limit: int) -> int:
    """The lexical pool a search gathers: larger when the semantic re-rank (``semantic``,
    None: off) follows. A federated question's asker decides it for every hive."""
    return search_pool_size(parsed, limit) if semantic is None else \
        semantic.pool_size(parsed, limit)


def fused(bm25: float, scale: float, question: Vector, vec: Vector | None) -> float:
    """The one score expression, at the asker and on every shard."""
    return bm25 + scale * (cosine(question, vec) if vec is not None else 0.0)


def answer(store: ShardStore, p: Mapping[str, Any]) -> dict[str, Any]:
    """A shard's reply to a ``semantic`` query: the top ``limit`` facts of each of the
    buckets ``keys`` by fused score (per bucket, so what the asker gets does not depend on
    which buckets share a shard)."""
    if not isinstance(store, IndexedStore):
        raise ConfigError(f"shard store {type(store).__name__} cannot score by vector")
    vec = decode(p["vector"])
    if vec is None:
        raise ValueError("semantic query without a valid vector")
    avgdl = p.get("avgdl")
    scale = float(p["scale"])
    hits = {key: store.fused_score([key], p["weights"], int(p["limit"]),
                                   None if avgdl is None else float(avgdl),
                                   lambda bm25, stored: fused(bm25, scale, vec, stored),
                                   vector_of)
            for key in p["keys"]}
    return {"hits": {key: [[h.fact.to_dict(), h.score] for h in found]
                     for key, found in hits.items()}}
