"""Sentence embedders: what turns a fact or a question into a vector, and the vector's int8 form.

Two implementations of one small protocol:

* :class:`WordLlamaEmbedder` -- the real one. The ``wordllama`` package ships its 256-dim
  weights and its tokenizer inside the wheel, so ``pip install 'amplihack-hive[semantic]'``
  is all it needs: nothing is fetched from a model hub, ever. Its own loader
  (``WordLlama.load``) looks for the tokenizer in a folder the wheel does not have and then
  falls back to a download, so the model is built here from the two packaged files with the
  package's public ``WordLlamaInference`` instead; there is no code path that can reach the
  network.
* :class:`HashingEmbedder` -- a deterministic bag of hashed words, for unit tests of the
  re-rank logic (no model, no numpy).

A vector leaves the embedder as int8 integers (:func:`quantize`), scaled per vector so its
largest component is 127: 256 bytes for 256 dimensions (small to cache), and every cosine
computed from them is integer arithmetic plus one square root, so an asker computes the same
number for the same pair whatever its hive size or platform, with or without numpy
(:func:`cosine`).
"""

from __future__ import annotations

import importlib.util
import logging
import math
import threading
from array import array
from collections.abc import Sequence
from functools import cache
from operator import mul
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

from hive_core.errors import ConfigError
from hive_core.ring import stable_hash
from hive_core.text import term_counts

INSTALL_HINT = "pip install 'amplihack-hive[semantic]'"
Vector = bytes  # int8 components, as bytes


@runtime_checkable
class Embedder(Protocol):
    """Texts in, one float vector per text out (any scale: :func:`quantize` normalises)."""

    name: str

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


def quantize(vector: Sequence[float]) -> Vector:
    """int8 bytes, the largest magnitude mapped to 127 (cosine is scale-free, so no scale is
    kept). An all-zero vector stays zero (its cosine with anything is 0)."""
    top = max((abs(x) for x in vector), default=0.0)
    if not top or not math.isfinite(top):
        return bytes(len(vector))
    return array("b", (round(127.0 * x / top) for x in vector)).tobytes()


@cache
def _numpy() -> ModuleType | None:
    """numpy, imported on first use only: only for speed (cosine() gives the same result
    without it), and importing it starts threads, which the CLI must not have (a SIGINT can
    land on a thread that does not block it; hive_cli.supervisor.spawn)."""
    try:
        import numpy
    except ImportError:  # pragma: no cover - numpy comes with the [semantic] extra
        return None
    return numpy


def cosine(a: Vector, b: Vector) -> float:
    """Cosine of two int8 vectors: exact integer sums, one correctly rounded square root --
    the same float wherever it is computed, with numpy (~10x faster; the [semantic] extra
    brings it) or without."""
    if len(a) != len(b):
        return 0.0
    _np = _numpy()
    if _np is not None:
        x = _np.frombuffer(a, dtype=_np.int8).astype(_np.int64)
        y = _np.frombuffer(b, dtype=_np.int8).astype(_np.int64)
        dot, norms = int(x @ y), int(x @ x) * int(y @ y)
    else:
        p, q = array("b", a), array("b", b)
        dot, norms = sum(map(mul, p, q)), sum(map(mul, p, p)) * sum(map(mul, q, q))
    return dot / math.sqrt(norms) if norms else 0.0


class HashingEmbedder:
    """Each term of the text hashed to one of ``dim`` components with a +-1 sign (the
    hashing trick): texts that share terms have a positive cosine. Deterministic, model-free;
    for tests of the retrieval logic, not for quality."""

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim
        self.name = f"hashing-{dim}"

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        out = []
        for text in texts:
            vec = [0.0] * self.dim
            for term, count in term_counts(text).items():
                h = stable_hash(term)
                vec[h % self.dim] += count if (h >> 32) & 1 else -count
            out.append(vec)
        return out


class WordLlamaEmbedder:
    """WordLlama ``l2_supercat`` (256 dims), from the files its wheel ships.

    The model is loaded at the first :meth:`embed`, not here: it costs ~75 MB (weights,
    numpy, tokenizers), and only an agent that answers a question by meaning needs it (the
    CLI asks the first live agent). What can be checked without loading it -- the packages
    and the files -- is checked here, so a missing extra fails at start, in one line."""

    WEIGHTS = ("weights", "l2_supercat_256.safetensors")
    TOKENIZER = ("tokenizers", "l2_supercat_tokenizer_config.json")

    def __init__(self) -> None:
        self.name = "wordllama-l2_supercat-256"
        _check_installed(self.WEIGHTS, self.TOKENIZER)
        self._model: Any = None
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        with self._lock:
            if self._model is None:
                self._model = _load_wordllama(self.WEIGHTS, self.TOKENIZER)
        return self._model.embed(list(texts), norm=True).tolist()


def _check_installed(*files: tuple[str, str]) -> None:
    """ConfigError naming the extra unless wordllama, its dependencies and its files are
    installed (found, not imported)."""
    for module in ("wordllama", "safetensors", "tokenizers", "numpy"):
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"semantic retrieval needs the wordllama model ({module} is not "
                              f"installed): {INSTALL_HINT}")
    spec = importlib.util.find_spec("wordllama")
    roots = list(spec.submodule_search_locations or ()) if spec else []
    for parts in files:
        if not any(Path(root, *parts).is_file() for root in roots):
            raise ConfigError(f"the installed wordllama has no {'/'.join(parts)}: "
                              f"{INSTALL_HINT}")


def _load_wordllama(weights: tuple[str, str], tokenizer: tuple[str, str]):  # -> inference
    """The packaged model, or a ConfigError naming the extra to install."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        from importlib.resources import files

        from safetensors import safe_open
        from tokenizers import Tokenizer
        from wordllama import WordLlamaInference
    except ImportError as exc:
        raise ConfigError(f"semantic retrieval needs the wordllama model ({exc.name} is not "
                          f"installed): {INSTALL_HINT}") from None
    finally:
        # Importing wordllama calls logging.basicConfig(level=INFO) on the root logger; an
        # agent's logging is its own, so the root logger is put back as it was.
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
    base = files("wordllama")
    weights_path, tokenizer_path = base.joinpath(*weights), base.joinpath(*tokenizer)
    for path in (weights_path, tokenizer_path):
        if not path.is_file():
            raise ConfigError(f"the installed wordllama has no {path}: {INSTALL_HINT}")
    with safe_open(str(weights_path), framework="np", device="cpu") as f:
        matrix = f.get_tensor("embedding.weight")
    return WordLlamaInference(matrix, Tokenizer.from_file(str(tokenizer_path)))


EMBEDDERS = {"wordllama": WordLlamaEmbedder, "hashing": HashingEmbedder}


def open_embedder(name: str = "wordllama") -> Embedder:
    """An embedder by name (``wordllama``, the default, or ``hashing`` for tests)."""
    make = EMBEDDERS.get(name)
    if make is None:
        raise ConfigError(f"unknown embedder {name!r}: choose one of {', '.join(EMBEDDERS)}")
    return make()
