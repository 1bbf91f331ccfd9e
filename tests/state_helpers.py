"""Helpers for the hive-state tests: Azurite (the Azure Storage emulator) and a CAS counter.

Azurite is Microsoft's official emulator (an npm package, installed by ``.ci/run`` under
``.ci/azurite``). Each test session starts one on a free port, in memory, and stops it by
its PID; every test uses its own container. The account key below is the emulator's
published development key, not a secret.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from multiprocessing.synchronize import Event
from pathlib import Path

from redis_helpers import free_port

from hive_core.state.blobs import Blobs, DirBlobs, PreconditionFailed

ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = ROOT / ".ci" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
           "KBHBeksoGMGw==")


def dev_connection_string(port: int) -> str:
    return (f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{port}/{DEV_ACCOUNT};")


class Azurite:
    """One Azurite blob service on a free port of 127.0.0.1, data in memory only (it runs in
    ``workdir``, so anything it might write lands there)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def connection_string(self) -> str:
        return dev_connection_string(self.port)

    def start(self, deadline: float = 30.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log_path = self.workdir / "azurite.log"
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                ["node", str(AZURITE_BIN), "--blobHost", "127.0.0.1",
                 "--blobPort", str(self.port),
                 "--inMemoryPersistence", "--silent", "--skipApiVersionCheck", "--loose",
                 "--disableTelemetry"],
                stdout=log, stderr=log, cwd=self.workdir)
        end = time.monotonic() + deadline
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise AssertionError(
                        f"azurite exited at start: {log_path.read_text()}") from None
                if time.monotonic() >= end:
                    self.stop()
                    raise AssertionError(f"azurite did not listen within {deadline:g}s: "
                                         f"{log_path.read_text()}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()  # by its own PID
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def increment(blobs: Blobs, name: str, times: int, deadline: float = 60.0) -> int:
    """Add one to the counter in ``name`` ``times`` times by read + conditional write;
    returns how many CAS attempts were lost on the way."""
    lost = 0
    for _ in range(times):
        end = time.monotonic() + deadline
        while True:
            blob = blobs.read(name)
            try:
                if blob is None:
                    blobs.write(name, b"1", if_none_match=True)
                else:
                    blobs.write(name, str(int(blob.data) + 1).encode(), if_match=blob.etag)
                break
            except PreconditionFailed:
                lost += 1
                if time.monotonic() >= end:
                    raise AssertionError(f"no CAS on {name!r} won within {deadline:g}s") from None
    return lost


def increment_in_process(folder: str, name: str, times: int, go: Event) -> None:
    """A child process's work: wait for the start signal, then increment (exit 1 on error,
    which the parent asserts on)."""
    if not go.wait(timeout=60):
        raise SystemExit(f"pid {os.getpid()}: no start signal")
    increment(DirBlobs(Path(folder)), name, times)
