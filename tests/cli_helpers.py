"""Running the real CLI in tests: in-process (fast) or as the installed console script.

Every run is audited for leaked secrets (:func:`audit`): its stdout and stderr, and the
agents' logs of its home, must not contain a secret known to that run -- the secret parts
of each connection string in its environment, on its command line or in a hive config of
its home, plus whatever a test :func:`register_secret`-ed. A leak fails the test that ran
the command, whichever command it was.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hive_cli.app import run
from hive_core.hive_config import HiveConfig
from hive_core.redact import secrets_in

# Secrets shorter than this are not searched for (a 1-character fake key would match
# everywhere); every secret a test means to audit is longer.
MIN_AUDITED = 6
_registered: set[str] = set()
_touched: dict[Path, set[str]] = {}  # home -> secrets known there, until audit_touched_logs


class SecretLeak(AssertionError):
    """A command printed (or an agent logged) a secret."""


def register_secret(secret: str) -> None:
    """Also audit every later CLI run for ``secret`` (e.g. a password only Redis knows)."""
    _registered.add(secret)


def known_secrets(home: Path | None, argv: tuple[str, ...] | list[str],
                  env: dict[str, str]) -> set[str]:
    """What must never appear in the output of one run."""
    found = set(_registered)
    strings = [v for k, v in env.items() if k.endswith("CONNECTION_STRING") and v]
    strings += [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--connection-string"]
    strings += [a.split("=", 1)[1] for a in argv if a.startswith("--connection-string=")]
    for config in sorted((home / "hives").glob("*/config.yaml")) if home else ():
        try:
            data = yaml.safe_load(config.read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue  # a test's deliberately broken config holds no secret
        if isinstance(data, dict) and isinstance(data.get("connection_string"), str):
            strings.append(data["connection_string"])
    for conn in strings:
        found |= secrets_in(conn)
    for path in sorted((home / "hives").glob("*/secret.json")) if home else ():
        found |= message_keys(path)
    return {s for s in found if len(s) >= MIN_AUDITED}


def message_keys(path: Path) -> set[str]:
    """The keys of a hive's secret file (hive_core.secret_store), as hex and as base64."""
    import base64

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return set()
    keys = [data.get(k) for k in ("current", "next", "previous")] if isinstance(data, dict) \
        else []
    hexed = {k for k in keys if isinstance(k, str) and k}
    return hexed | {base64.b64encode(bytes.fromhex(k)).decode() for k in hexed}


def audit(what: str, texts: dict[str, str], secrets: set[str]) -> None:
    """Raise :class:`SecretLeak` naming where a secret appeared (never the secret)."""
    for where, text in texts.items():
        for secret in secrets:
            if secret in text:
                raise SecretLeak(f"a secret ({len(secret)} chars) appears in {where} of {what}")


def agent_logs(home: Path) -> dict[str, str]:
    """Every agent and keeper log under ``home`` (rotated ones too), by path."""
    logs = sorted((home / "hives").glob("*/logs/*.log*")) if (home / "hives").exists() else []
    out: dict[str, str] = {}
    for path in logs:
        try:
            out[str(path)] = path.read_bytes().decode("utf-8", errors="replace")
        except OSError:
            continue  # rotated away between the listing and the read
    return out


def audit_run(home: Path | None, argv: tuple[str, ...] | list[str], env: dict[str, str],
              result: Result) -> None:
    secrets = known_secrets(home, argv, env)
    if not secrets:
        return
    what = "`amplihack-hive " + " ".join(argv[:3]) + " ...`"
    audit(what, {"stdout": result.out, "stderr": result.err}, secrets)
    if home is not None:
        audit(what, agent_logs(home), secrets)
        _touched.setdefault(home, set()).update(secrets)


def audit_touched_logs() -> None:
    """Audit the logs of every home a CLI run used since the last call: agents keep
    writing after the command that started them returned (conftest calls this after
    every test)."""
    touched = dict(_touched)
    _touched.clear()
    for home, secrets in touched.items():
        audit(f"the agents of {home}", agent_logs(home), secrets | _registered_long())


def _registered_long() -> set[str]:
    return {s for s in _registered if len(s) >= MIN_AUDITED}


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
    result = Result(code, captured.out, captured.err)
    home = os.environ.get("AMPLIHACK_HOME")
    audit_run(Path(home) if home else None, argv, dict(os.environ), result)
    return result


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
    result = Result(proc.returncode, proc.stdout.decode(errors="replace"),
                    proc.stderr.decode(errors="replace"))
    audit_run(home, argv, full_env, result)
    return result


def config_snapshot(home: Path) -> dict[str, bytes]:
    """Bytes of every hive config under ``home`` (to prove a failed command changed none)."""
    root = home / "hives"
    if not root.exists():
        return {}
    return {str(p): p.read_bytes() for p in sorted(root.glob("*/config.yaml"))}


class CliHive:
    """A hive in a private AMPLIHACK_HOME driven through the real CLI as a separate process;
    every run's output is kept in ``outputs`` (for audits a test adds)."""

    def __init__(self, home: Path, name: str, env: dict[str, str] | None = None) -> None:
        self.home, self.name = home, name
        self.env = dict(env or {})
        self.outputs: list[str] = []

    def cli(self, *argv: str, timeout: float = 300) -> Result:
        res = cli_process(self.home, *argv, env=self.env, timeout=timeout)
        self.outputs += [res.out, res.err]
        return res

    def ok(self, *argv: str, timeout: float = 300) -> str:
        res = self.cli(*argv, timeout=timeout)
        assert res.code == 0, f"{argv}: {res.err}"
        return res.out

    @property
    def config(self) -> HiveConfig:
        """The hive's config as the CLI writes it (read with this hive's home)."""
        os.environ["AMPLIHACK_HOME"] = str(self.home)
        return HiveConfig.load(self.name)
