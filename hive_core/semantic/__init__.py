"""Optional semantic retrieval (``pip install 'amplihack-hive[semantic]'``), off by default.

:mod:`.embedder` (sentence vectors, int8 on the wire), :mod:`.relation` and :mod:`.rerank`
(the default: the lexical pool re-ranked by what a fact says of the question's subject,
names left out), :mod:`.lsh` (random-hyperplane buckets placed on the ring like terms, the
earlier design, kept behind ``relation=None``) and :mod:`.retrieval` (the fused search). The
model is imported only when a hive turns it on (``semantic: true``, ``create --semantic``);
without it the lexical path is unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hive_core.semantic.retrieval import SemanticIndex


def semantic_index() -> SemanticIndex:
    """The index a hive with ``semantic: true`` uses: the packaged model and the default
    re-rank (ConfigError naming the extra when it is not installed). Agents, ``create`` and
    the eval's n1 baseline all take it from here, so they rank alike."""
    from hive_core.semantic.embedder import open_embedder
    from hive_core.semantic.retrieval import SemanticIndex

    return SemanticIndex(open_embedder())
