"""Semantic retrieval (``pip install 'amplihack-hive[semantic]'``): on in the hives ``create``
makes where the extra is installed (:func:`installed`), off with ``--no-semantic``.

:mod:`.embedder` (sentence vectors, int8), :mod:`.relation` and :mod:`.rerank` (the lexical
pool re-ranked by what a fact says of the question's subject, names left out) and
:mod:`.retrieval` (:class:`~.retrieval.SemanticIndex`, what a graph searches with). The model
is imported only when a hive has it on (``semantic: true``), at its first question; without it
the lexical path is unchanged.
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


def installed() -> bool:
    """Whether the [semantic] extra (the model and its files) is installed -- found, not
    imported, so asking costs no model load. ``create`` and ``eval`` turn meaning on by
    default when it is: on the project's eval it answers ~10 points more questions than
    the lexical ranking alone (README, "Answer quality")."""
    from hive_core.errors import ConfigError
    from hive_core.semantic.embedder import open_embedder

    try:
        open_embedder()
    except ConfigError:
        return False
    return True
