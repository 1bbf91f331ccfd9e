"""The hive's message secret: ``$AMPLIHACK_HOME/hives/NAME/secret.json`` (mode 0600).

Why a file of its own: config.yaml is shown (redacted) by ``show`` and copied into containers
(hive_cli.azure_deploy); the secret must be neither. It is written with
:func:`hive_core.atomic.write_private` and holds, as hex::

    {"generation": 4, "current": KEY, "next": KEY | null, "previous": KEY | null}

``current`` signs; ``current``, ``next`` and ``previous`` verify. A rotation
(``amplihack-hive rotate-secret``) is three steps, each a new generation that every running
agent must report before the next one is written, so a running hive keeps answering:

1. *introduce*: ``next`` = a new key (everyone accepts it; nobody signs with it yet);
2. *switch*: ``current`` = the new key, ``previous`` = the old one (everyone signs new and
   still accepts old, which messages in flight may carry);
3. *retire*: ``previous`` dropped -- from here on the old key is refused.

Processes pick a changed file up by themselves (:class:`FileKeys` checks it at most once per
:data:`RELOAD_INTERVAL`, on the next message). In a container the secret comes from
``AMPLIHACK_HIVE_SECRET`` instead (hex or base64, ``KEY[,PREVIOUS]``), which wins over the
file; the in-process hive without a hive folder uses an ephemeral key (hive_core.auth).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from hive_core.atomic import write_private
from hive_core.auth import KeySet, KeySource, MessageAuth, StaticKeys, new_key, parse_keys
from hive_core.errors import ConfigError

log = logging.getLogger("hive_core.secret_store")

SECRET_FILE = "secret.json"
ENV_SECRET = "AMPLIHACK_HIVE_SECRET"
RELOAD_INTERVAL = 1.0  # seconds between checks of the file for a rotation
STEPS = ("introduce", "switch", "retire")


def secret_path(directory: Path) -> Path:
    return directory / SECRET_FILE


@dataclass(frozen=True, slots=True)
class Secret:
    """The file's content (see the module docstring)."""

    generation: int
    current: bytes
    next: bytes | None = None
    previous: bytes | None = None

    def __repr__(self) -> str:
        return f"Secret(generation={self.generation}, step={self.step!r})"

    @property
    def step(self) -> str:
        """The rotation step this file is at ("retire" = no rotation under way)."""
        if self.next is not None:
            return "introduce"
        return "switch" if self.previous is not None else "retire"

    def keyset(self) -> KeySet:
        accepted = tuple(k for k in (self.current, self.next, self.previous) if k is not None)
        return KeySet(self.current, accepted, self.generation, "file")

    def advanced(self) -> Secret:
        """The next rotation step's content."""
        gen = self.generation + 1
        if self.next is not None:
            return Secret(gen, current=self.next, previous=self.current)
        if self.previous is not None:
            return Secret(gen, current=self.current)
        return replace(self, generation=gen, next=new_key())

    def to_json(self) -> str:
        def hexed(key: bytes | None) -> str | None:
            return None if key is None else key.hex()

        return json.dumps({"generation": self.generation, "current": hexed(self.current),
                           "next": hexed(self.next), "previous": hexed(self.previous)})

    @classmethod
    def parse(cls, text: str, where: str) -> Secret:
        """From the file's text; ConfigError names the file, never a value."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or not isinstance(data.get("generation"), int):
                raise ValueError("not an object with an integer generation")

            def key(name: str) -> bytes | None:
                value = data.get(name)
                if value is None:
                    return None
                if not isinstance(value, str):
                    raise ValueError(f"{name} is not a string")
                got = bytes.fromhex(value)
                if len(got) < 16:
                    raise ValueError(f"{name} is shorter than 16 bytes")
                return got

            current = key("current")
            if current is None:
                raise ValueError("it has no current key")
            return cls(data["generation"], current, key("next"), key("previous"))
        except ValueError as exc:  # json.JSONDecodeError is one
            raise ConfigError(f"{where} is not a valid hive secret file: "
                              f"{str(exc).splitlines()[0][:80]}") from None


def env_value(secret: Secret) -> str:
    """The ``AMPLIHACK_HIVE_SECRET`` value of ``secret``'s step: its keys, current first
    (current signs; next or previous is accepted too) -- what deploy/azure/deploy.sh
    computes from the file. A secret: never logged or printed unasked."""
    return ",".join(k.hex() for k in (secret.current, secret.next, secret.previous) if k)


def probe_keys(secret: Secret) -> KeySet:
    """Keys that only agents which took ``secret``'s step answer to.

    An agent keyed from the environment cannot follow the file, so ``rotate-secret --env``
    checks each running agent with these before it writes the next step: at *introduce* the
    probe signs with the new key (the agent must accept it) and takes replies under either;
    at *switch* and *retire* it signs with the current key and takes replies under it alone
    (the agent must sign with it)."""
    signing = secret.next or secret.current
    accepted = (signing,) if signing == secret.current else (signing, secret.current)
    return KeySet(signing, accepted, secret.generation, "probe")


def read(path: Path) -> Secret:
    try:
        return Secret.parse(path.read_text(), str(path))
    except FileNotFoundError:
        raise ConfigError(f"no hive secret at {path}") from None


def write(path: Path, secret: Secret) -> None:
    write_private(path, secret.to_json())


def ensure(directory: Path) -> bool:
    """Create the hive's secret unless it exists; True if this call created it.

    Exclusive: the new file is written privately under a temporary name and hard-linked into
    place, so two commands racing both end up with the one that won."""
    path = secret_path(directory)
    if path.exists():
        return False
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{SECRET_FILE}.{os.getpid()}.{threading.get_ident()}.new"
    write_private(tmp, Secret(1, new_key()).to_json())
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def rotate_step(path: Path) -> Secret:
    """Write the next rotation step; returns what was written."""
    secret = read(path).advanced()
    write(path, secret)
    return secret


class FileKeys:
    """A KeySource over the secret file, re-read when it changed (checked at most once per
    ``interval`` seconds, by stat). A file that turns unreadable keeps the last keys and
    logs an error: the hive goes on answering while someone fixes it."""

    def __init__(self, path: Path, interval: float = RELOAD_INTERVAL) -> None:
        self.path = path
        self.interval = interval
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._keyset = read(path).keyset()
        self._checked = time.monotonic()

    def _stat(self) -> tuple[int, int, int]:
        st = os.stat(self.path)
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def keys(self) -> KeySet:
        if time.monotonic() - self._checked >= self.interval:
            self.refresh()
        return self._keyset

    def refresh(self) -> None:
        """Check the file now (``rotate-secret`` does, after each step it writes)."""
        with self._lock:
            self._checked = time.monotonic()
            try:
                stamp = self._stat()
                if stamp == self._stamp:
                    return
                keyset = read(self.path).keyset()
            except (OSError, ConfigError) as exc:
                log.error("cannot re-read the hive secret %s (%s); keeping generation %d",
                          self.path, exc, self._keyset.generation)
                return
            self._stamp, self._keyset = stamp, keyset
            log.info("hive secret reloaded: generation %d", keyset.generation)


def hive_keys(directory: Path, environ: Mapping[str, str] | None = None) -> KeySource:
    """The keys of the hive whose folder is ``directory``: ``AMPLIHACK_HIVE_SECRET`` if set,
    else its secret file (ConfigError when there is none)."""
    env = os.environ if environ is None else environ
    if env.get(ENV_SECRET):
        try:
            keys = parse_keys(env[ENV_SECRET], ENV_SECRET)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        return StaticKeys(KeySet(keys[0], tuple(keys), 0, "env"))
    path = secret_path(directory)
    if not path.exists():
        raise ConfigError(f"hive {directory.name!r} has no message secret at {path} "
                          f"(`amplihack-hive start` creates it; in a container set "
                          f"{ENV_SECRET})")
    return FileKeys(path)


def hive_auth(directory: Path, window: float) -> MessageAuth:
    """The policy a transport of this hive signs and verifies with."""
    return MessageAuth(hive_keys(directory), window=window)
