"""Semantic retrieval's parts below the re-rank (hive_core.semantic): the int8 cosine, the
configuration key, the missing extra and the real model offline; the re-rank itself is tested
in tests/test_semantic_relation.py.

Reference: a float cosine for the int8 one; paraphrase pairs for the real model.
"""

from __future__ import annotations

import math
import random
import socket
import sys

import pytest
from semantic_helpers import require_model

from hive_core.errors import ConfigError
from hive_core.hive_config import HiveConfig
from hive_core.semantic.embedder import (
    WordLlamaEmbedder,
    cosine,
    open_embedder,
    quantize,
)


def _unit(rng: random.Random, dim: int) -> list[float]:
    v = [rng.gauss(0.0, 1.0) for _ in range(dim)]
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def _at_angle(rng: random.Random, a: list[float], theta: float) -> list[float]:
    """A unit vector at angle ``theta`` from unit vector ``a``."""
    r = _unit(rng, len(a))
    dot = sum(x * y for x, y in zip(a, r, strict=True))
    ortho = [y - dot * x for x, y in zip(a, r, strict=True)]
    n = math.sqrt(sum(x * x for x in ortho))
    return [math.cos(theta) * x + math.sin(theta) * y / n for x, y in zip(a, ortho, strict=True)]


def _float_cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(
        sum(x * x for x in a) * sum(y * y for y in b))


# -- vectors ---------------------------------------------------------------------------------
def test_int8_cosine_is_close_to_the_float_cosine() -> None:
    rng = random.Random(1)
    for _ in range(50):
        a = _unit(rng, 256)
        b = _at_angle(rng, a, rng.uniform(0.0, math.pi))
        assert abs(cosine(quantize(a), quantize(b)) - _float_cos(a, b)) < 0.02
    assert cosine(quantize([0.0] * 8), quantize([1.0] * 8)) == 0.0


# -- configuration and the real model ---------------------------------------------------------
def test_without_wordllama_the_error_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "wordllama", None)  # import wordllama -> ImportError
    with pytest.raises(ConfigError, match=r"pip install 'amplihack-hive\[semantic\]'"):
        open_embedder("wordllama")
    with pytest.raises(ConfigError, match="unknown embedder"):
        open_embedder("nope")


def test_the_hive_config_key_is_a_strict_boolean_off_by_default() -> None:
    assert HiveConfig.from_dict({"name": "h"}).semantic is False
    assert HiveConfig.from_dict({"name": "h", "semantic": True}).semantic is True
    with pytest.raises(ConfigError, match="semantic"):
        HiveConfig.from_dict({"name": "h", "semantic": "yes"})


def test_wordllama_loads_offline_and_ranks_paraphrases(monkeypatch) -> None:
    require_model()

    def no_network(*_a, **_k):
        raise AssertionError("the model tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    embedder = WordLlamaEmbedder()
    pairs = [("What is Lars Eriksen's job?", "Lars Eriksen works as a site reliability engineer"),
             ("Which languages is Ana learning?", "Ana started learning Polish"),
             ("Does Tom have any pets?", "Tom adopted a cat last week")]
    vecs = [quantize(v) for v in embedder.embed([x for pair in pairs for x in pair])]
    for i in range(len(pairs)):
        own = cosine(vecs[2 * i], vecs[2 * i + 1])
        others = [cosine(vecs[2 * i], vecs[2 * j + 1]) for j in range(len(pairs)) if j != i]
        assert own > max(others) + 0.2, (pairs[i], own, others)
