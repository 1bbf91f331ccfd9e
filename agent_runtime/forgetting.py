"""What a FORGET request asks for, checked before anything is retracted.

``{"fact_ids": [...]}`` or ``{"match": text}`` (exactly one), and ``dry_run``. A match is
a plain substring of the fact's text (case-insensitive) among the best ``FORGET_LIMIT``
facts the hive's search finds for it, so a forget never scans every shard and never
removes what the text does not literally contain.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

FORGET_LIMIT = 100
MAX_IDS = 1000
USAGE = ("FORGET needs {'fact_ids': [str, ...]} or {'match': str} (one of them), and "
         "optionally 'dry_run': bool")


@dataclass(frozen=True, slots=True)
class ForgetRequest:
    fact_ids: tuple[str, ...]
    match: str | None
    dry_run: bool


def forget_request(payload: Mapping[str, Any]) -> ForgetRequest:
    ids, match = payload.get("fact_ids"), payload.get("match")
    dry_run = payload.get("dry_run", False)
    if (ids is None) == (match is None) or not isinstance(dry_run, bool):
        raise ValueError(USAGE)
    if match is not None:
        if not isinstance(match, str) or not match.strip() or len(match) > 1000:
            raise ValueError("FORGET 'match' must be non-empty text of at most 1000 chars")
        return ForgetRequest((), match.strip(), dry_run)
    if not isinstance(ids, list) or not ids or len(ids) > MAX_IDS or not all(
            isinstance(i, str) and i.startswith("f_") for i in ids):
        raise ValueError(f"FORGET 'fact_ids' must be 1 to {MAX_IDS} fact ids (f_...)")
    return ForgetRequest(tuple(dict.fromkeys(ids)), None, dry_run)
