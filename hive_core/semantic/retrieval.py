"""What a semantic hive searches with: the lexical pool re-ranked by meaning (the [semantic]
extra; on in the hives ``create`` makes where it is installed).

Lexical search misses paraphrases: "What is Lars Eriksen's job?" shares no term with "... works
as a site reliability engineer", "pets" none with "adopted a cat". A :class:`SemanticIndex` on
the graph makes the lexical search gather a larger pool (:meth:`SemanticIndex.pool_size`), and
the asker then re-ranks that pool by the cosine of the question and each fact *with their
names taken out* (:mod:`.rerank`), for the facts that hold the question's names. No vector is
placed with the facts and no extra shard is asked: the search keeps its ``query_fanout``
budget, and the re-rank reads only the pool's texts, which are the same on every hive size,
so N=1 and N=100 rank identically. A federated question's asker applies it once, to the
pools of every hive merged.

Why names out: whole-sentence vectors are dominated by names and pull up same-shaped
sentences about other people. On the long-horizon eval, vectors placed with the facts and
searched by locality-sensitive buckets gained +0 to -1 point of retrieval@10, this re-rank
+8 to +11 (seeds 7, 11, 23), so only the re-rank is kept.
"""

from __future__ import annotations

from collections.abc import Callable

from hive_core import context
from hive_core.aggregate import wanted
from hive_core.query import ParsedQuery, parse
from hive_core.search import SearchResult
from hive_core.search import pool_size as search_pool_size
from hive_core.semantic.embedder import Embedder
from hive_core.semantic.rerank import RelationRerank, VectorCache, rerank

RELATION = RelationRerank()  # the default settings of the re-rank


class SemanticIndex:
    """What a graph needs to search by meaning: an embedder and the re-rank's settings.
    Every agent of a hive must use the same ones (they decide the ranking)."""

    def __init__(self, embedder: Embedder, relation: RelationRerank = RELATION) -> None:
        self.embedder, self.relation = embedder, relation
        self._vectors = VectorCache(embedder)

    def pool_size(self, parsed: ParsedQuery, limit: int) -> int:
        """Facts the lexical search gathers: the re-rank needs more than ``limit`` to have
        something to pull up."""
        return max(search_pool_size(parsed, limit),
                   self.relation.gather_pool if wanted(parsed) else self.relation.pool)

    def relation_rerank(self, question: str
                        ) -> Callable[[SearchResult, context.Fetch], context.Fetch]:
        """The re-rank for ``question``: applied to a lexical pool (re-scored in place), it
        returns the context phase's ``fetch`` (:mod:`hive_core.context`) wrapped so that the
        neighbour facts it brings are scored the same way. It needs no shard, only the
        pool's texts, so a federated asker applies it to the merged pool
        (hive_core.federated_search.merge) exactly as one hive holding every fact would."""
        relation, parsed = self.relation, parse(question)

        def apply(result: SearchResult, fetch: context.Fetch) -> context.Fetch:
            return rerank(relation, result, parsed, self._vectors, fetch)
        return apply


def pool_for(semantic: SemanticIndex | None, parsed: ParsedQuery, limit: int) -> int:
    """The lexical pool a search gathers: larger when the semantic re-rank (``semantic``,
    None: off) follows. A federated question's asker decides it for every hive."""
    return search_pool_size(parsed, limit) if semantic is None else \
        semantic.pool_size(parsed, limit)
