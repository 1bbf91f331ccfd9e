"""Helpers shared by the process and transport benchmarks."""

from __future__ import annotations

import argparse

from hive_core.evaluation.runner import percentile


def turn(i: int) -> str:
    """A synthetic incident turn with identifiers, numbers and dates (unique per ``i``)."""
    return (f"Incident INC-{1000 + i} was caused by CVE-2024-{3000 + i} on host h{i}.example. "
            f"It was patched on 2024-03-{1 + i % 28:02d}, and service S-{i % 50} was "
            f"restarted in rack R{i % 7}.")


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``: the one nearest-rank percentile of every
    number the benchmarks and ``eval`` print."""
    return percentile(values, q * 100.0)


def positive(text: str) -> int:
    """An argparse type: an integer >= 1, else one line saying what is wrong."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value
