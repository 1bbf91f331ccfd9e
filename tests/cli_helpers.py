"""Running the real CLI in tests: in-process (fast) or as the installed console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hive_cli.app import run


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def cli(capsys, *argv: str) -> Result:
    """The CLI in this process (same code path as the console script's ``main``)."""
    capsys.readouterr()
    code = run(list(argv))
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def console_script() -> list[str]:
    """``amplihack-hive`` next to this interpreter (installed by ``pip install -e``)."""
    script = Path(sys.executable).with_name("amplihack-hive")
    if script.exists():
        return [str(script)]
    found = shutil.which("amplihack-hive")
    return [found] if found else [sys.executable, "-m", "hive_cli"]


def cli_process(home: Path, *argv: str, stdin: bytes | None = None, timeout: float = 120,
                env: dict[str, str] | None = None) -> Result:
    """The CLI as a separate process, as a user runs it."""
    full_env = {**os.environ, "AMPLIHACK_HOME": str(home), **(env or {})}
    proc = subprocess.run([*console_script(), *argv], input=stdin, capture_output=True,
                          timeout=timeout, env=full_env)
    return Result(proc.returncode, proc.stdout.decode(errors="replace"),
                  proc.stderr.decode(errors="replace"))


def config_snapshot(home: Path) -> dict[str, bytes]:
    """Bytes of every hive config under ``home`` (to prove a failed command changed none)."""
    root = home / "hives"
    if not root.exists():
        return {}
    return {str(p): p.read_bytes() for p in sorted(root.glob("*/config.yaml"))}
