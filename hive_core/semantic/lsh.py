"""Random-hyperplane buckets: where a fact's vector is posted on the ring.

Each of ``tables`` tables has ``bits`` fixed hyperplanes; a vector's bucket in a table is the
sign pattern of its dot products with them (Charikar's SimHash: two vectors fall on the same
side of a random hyperplane with probability 1 - angle/pi). A bucket is a posting key
(:func:`key`), placed on the ring exactly like a term or a position key
(:mod:`hive_core.context`): its RF owners hold every fact of the bucket, so a question asks
one shard per table and that shard scores the whole bucket locally.

Recall with one probe per table is poor for paraphrases (cosine ~0.5, angle ~60 degrees:
2/3 per bit), and probing more buckets at query time would ask more shards. So the extra
probes are paid at *index* time instead: a fact is also posted under the buckets that differ
in its ``spread`` least certain bits (smallest margin), one more posting each, and the
question still asks one bucket per table.

The hyperplanes are integers drawn from a seeded ``random.Random`` (Gaussian, x1000), so the
sign patterns are exact integer arithmetic: every agent computes the same keys.
"""

from __future__ import annotations

import math
import random
from array import array
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from operator import mul
from typing import Any

from hive_core.store.base import KEY_PREFIX

# A bucket key: KEY_PREFIX, "~", table, ".", bucket in hex. A position key is
# KEY_PREFIX + session + "#" + turn and always has a "#"; a bucket key never does.
BUCKET_PREFIX = KEY_PREFIX + "~"


def key(table: int, bucket: int) -> str:
    return f"{BUCKET_PREFIX}{table}.{bucket:x}"


def is_bucket(posting_key: str) -> bool:
    return posting_key.startswith(BUCKET_PREFIX)


@lru_cache(maxsize=8)
def _planes(seed: int, count: int, dim: int) -> tuple[tuple[array, int], ...]:
    """``count`` integer hyperplanes of ``dim`` components, with their squared norms."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        plane = array("q", (round(1000.0 * rng.gauss(0.0, 1.0)) for _ in range(dim)))
        out.append((plane, sum(map(mul, plane, plane))))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Lsh:
    """The bucketing of a hive: every agent must use the same one (it decides placement)."""

    tables: int = 1
    bits: int = 6
    spread: int = 1
    seed: int = 1302

    def _margins(self, vec: bytes, table: int) -> list[tuple[int, int]]:
        """(dot product, squared plane norm) of ``vec`` with each plane of ``table``."""
        planes = _planes(self.seed, self.tables * self.bits, len(vec))
        v = array("b", vec)
        return [(sum(map(mul, plane, v)), norm2)
                for plane, norm2 in planes[table * self.bits:(table + 1) * self.bits]]

    def bucket(self, vec: bytes, table: int) -> int:
        bucket = 0
        for i, (dot, _) in enumerate(self._margins(vec, table)):
            if dot >= 0:
                bucket |= 1 << i
        return bucket

    def fact_keys(self, vec: bytes) -> list[str]:
        """Where a fact is posted: its bucket in each table, and in each table the buckets
        one flip of its ``spread`` least certain bits away."""
        keys = []
        for table in range(self.tables):
            margins = self._margins(vec, table)
            bucket = sum(1 << i for i, (dot, _) in enumerate(margins) if dot >= 0)
            keys.append(key(table, bucket))
            unsure = sorted(range(self.bits),
                            key=lambda i: (abs(margins[i][0]) / math.sqrt(margins[i][1]), i))
            keys.extend(key(table, bucket ^ (1 << i)) for i in unsure[:self.spread])
        return keys

    def query_keys(self, vec: bytes) -> list[str]:
        """What a question asks: its own bucket in each table (one shard per table)."""
        return [key(table, self.bucket(vec, table)) for table in range(self.tables)]


# Where a fact carries its vector and its bucket keys (metadata is JSON and travels with the
# fact to every shard, through hand-off, anti-entropy and the Kuzu log unchanged).
VECTOR_FIELD = "embedding"
KEYS_FIELD = "embedding_keys"


def posting_keys(metadata: Mapping[str, Any]) -> list[str]:
    """The bucket keys a fact was placed under (chosen once, by the agent that placed it):
    read back so retraction and placement name the same keys whatever this agent's Lsh."""
    keys = metadata.get(KEYS_FIELD)
    if not isinstance(keys, list):
        return []
    return [k for k in keys if isinstance(k, str) and is_bucket(k)]
