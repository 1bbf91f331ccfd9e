"""A fake Azure messaging namespace served to agent processes (see
hive_core.transports.azurefake): started by tests on a free port, stopped by its PID."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from pathlib import Path

from redis_helpers import free_port

REPO = Path(__file__).resolve().parents[1]


class ServedNamespace:
    """``python -m hive_core.transports.azurefake.server`` on a free port with a random key."""

    def __init__(self, partitions: int = 4) -> None:
        self.port = free_port()
        self.key = secrets.token_hex(12)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hive_core.transports.azurefake.server", "--port",
             str(self.port), "--key", self.key, "--partitions", str(partitions)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("serving"), (line, self.proc.stderr.read() if
                                            self.proc.stderr else "")

    @property
    def connection_string(self) -> str:
        return (f"Endpoint=fake://127.0.0.1:{self.port}/;SharedAccessKeyName=test;"
                f"SharedAccessKey={self.key}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            deadline = time.monotonic() + 10
            while self.proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            if self.proc.poll() is None:
                self.proc.kill()
        self.proc.wait(timeout=10)
