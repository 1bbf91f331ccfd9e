"""The real model in tests: the [semantic] extra is part of ``.[dev]`` (``make install``, CI),
so a test that needs it fails when it is missing -- it is never skipped out of sight."""

from __future__ import annotations

import importlib.util


def require_model() -> None:
    assert importlib.util.find_spec("wordllama") is not None, (
        "the [semantic] extra is not installed: run `make install` (pip install -e '.[dev]')")
