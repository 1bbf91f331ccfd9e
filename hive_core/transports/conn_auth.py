"""Per-connection authentication for stream transports: one mutual handshake, then plain frames.

Why: signing and verifying every envelope cost 11-17% of a Unix-socket round trip (four
HMACs per request and reply, each mostly interpreter and OpenSSL-context work). On a Unix
stream connection nobody can inject bytes into another process's connection, so a
connection whose peer proved once that it holds the hive's key carries only that peer's
frames: it is authenticated once, when it opens, and its frames after that are the plain
envelopes (hive_core.messages.encode). Connections are pooled, so the handshake is paid once
per connection, not per request.

The handshake (three frames of the stream framing, hive_core.transports.framing)::

    client -> listener  HELLO      "AHC1" | kid_c (4) | nonce_c (16)                  24 bytes
    listener -> client  CHALLENGE  "AHC1" | kid_l (4) | nonce_l (16) | mac_l (32)     56 bytes
    client -> listener  PROOF      "AHC1" | mac_c (32)                                36 bytes

    transcript = "AHC1" | kid_c | nonce_c | kid_l | nonce_l
    mac_l = HMAC-SHA256(key kid_l, "L" | transcript)
    mac_c = HMAC-SHA256(key kid_c, "C" | transcript)

Each side signs with its own signing key and accepts any key of its KeySet (``kid`` is
hive_core.auth.key_id), so a rotation keeps working as it does for signed messages. The
client sends its first request right behind its PROOF, so a new connection costs one round
trip more than a pooled one. Why it is sound:

* Fresh: each side's nonce is 16 random bytes of its own, and each MAC covers both. A
  recorded handshake replayed on a new connection answers the old challenge, not the new
  one: its PROOF does not match (``bad_mac``). No nonce memory is needed, so a replay right
  after a restart is refused too.
* Mutual: the client checks the listener's MAC before it sends anything but its HELLO, so a
  rogue process bound at the socket path can neither read a request nor feed an answer.
* No reflection: the role byte differs, so one side's MAC is never a valid MAC of the other.
* Bound to the stream: a relay (someone in the middle who forwards both handshakes, then
  injects frames) would have to own the socket path, in the hive's 0700 run folder, i.e. be
  the hive's own user, who can read the secret anyway.

A listener refuses a connection whose handshake fails, counts it under the policy's reason
(``unsigned``: the first frame is not a HELLO or no PROOF follows; ``bad_mac``: an unknown
key id, or a MAC that does not match), answers with one signed ERROR frame and closes it:
nothing on it is decoded. A key that a rotation retires stops a connection that proved it:
the listener closes it before reading its next frame (the client sends that request again
on a new connection, hive_core.transports.unix).
"""

from __future__ import annotations

import hmac
import secrets
import struct

from hive_core.auth import BadMac, Hmac, KeySet, MessageAuth, Unsigned

MAGIC = b"AHC1"
NONCE_BYTES = 16
HELLO = struct.Struct(">4s4s16s")
CHALLENGE = struct.Struct(">4s4s16s32s")
PROOF = struct.Struct(">4s32s")
MAX_FRAME = 256  # a handshake frame is never longer: a larger one is refused unread


def _transcript(kid_c: bytes, nonce_c: bytes, kid_l: bytes, nonce_l: bytes) -> bytes:
    return b"".join((MAGIC, kid_c, nonce_c, kid_l, nonce_l))


def is_handshake(data: bytes) -> bool:
    """Whether ``data`` is a handshake frame (an envelope starts with "{", a signed
    message with hive_core.auth.MAGIC)."""
    return data[:4] == MAGIC


class ClientHandshake:
    """The client's half: :attr:`hello`, then :meth:`answer` to the listener's CHALLENGE."""

    __slots__ = ("hello", "keys", "nonce", "peer_kid")

    def __init__(self, keys: KeySet) -> None:
        self.keys = keys
        self.nonce = secrets.token_bytes(NONCE_BYTES)
        self.hello = HELLO.pack(MAGIC, keys.signing_id, self.nonce)
        self.peer_kid: bytes | None = None  # the listener's key id, once it proved it

    def answer(self, data: bytes) -> bytes:
        """The PROOF for the listener's CHALLENGE; raises Unsigned or BadMac when the
        listener did not prove that it holds one of our keys."""
        if len(data) != CHALLENGE.size or not is_handshake(data):
            raise Unsigned("the listener's handshake is malformed")
        _magic, kid_l, nonce_l, mac_l = CHALLENGE.unpack(data)
        mac = self.keys.lookup(kid_l)
        if mac is None:
            raise BadMac("the listener proved an unknown key (another hive's secret, or one "
                         "rotated out)")
        transcript = _transcript(self.keys.signing_id, self.nonce, kid_l, nonce_l)
        if not hmac.compare_digest(mac.digest(b"L", transcript), mac_l):
            raise BadMac("the listener's handshake proof does not match")
        self.peer_kid = kid_l
        return PROOF.pack(MAGIC, self.keys.signing_mac.digest(b"C", transcript))


class ListenerHandshake:
    """The listener's half: :meth:`step` on each handshake frame until it returns None."""

    __slots__ = ("_client_mac", "_transcript", "peer_kid")

    def __init__(self) -> None:
        self._transcript: bytes | None = None  # set once the HELLO was answered
        self._client_mac: Hmac | None = None
        self.peer_kid: bytes | None = None  # the client's key id, once it proved it

    def step(self, data: bytes, keys: KeySet) -> bytes | None:
        """The CHALLENGE answering a HELLO, or None once the PROOF matched; raises Unsigned
        or BadMac (the connection must then be refused and closed)."""
        if self._transcript is None:
            return self._hello(data, keys)
        if len(data) != PROOF.size or not is_handshake(data):
            raise Unsigned("the connection sent no handshake proof")
        assert self._client_mac is not None
        expected = self._client_mac.digest(b"C", self._transcript)
        if not hmac.compare_digest(expected, PROOF.unpack(data)[1]):
            raise BadMac("the connection's handshake proof does not match (forged or replayed)")
        self.peer_kid = self._transcript[4:8]
        return None

    def _hello(self, data: bytes, keys: KeySet) -> bytes:
        if len(data) != HELLO.size or not is_handshake(data):
            raise Unsigned("the connection did not start with the hive's handshake")
        _magic, kid_c, nonce_c = HELLO.unpack(data)
        self._client_mac = keys.lookup(kid_c)
        if self._client_mac is None:
            raise BadMac("the connection named an unknown key (another hive's secret, or one "
                         "rotated out)")
        nonce_l = secrets.token_bytes(NONCE_BYTES)
        self._transcript = _transcript(kid_c, nonce_c, keys.signing_id, nonce_l)
        mac_l = keys.signing_mac.digest(b"L", self._transcript)
        return CHALLENGE.pack(MAGIC, keys.signing_id, nonce_l, mac_l)


class ConnectionAuth:
    """How one transport authenticates its connections: handshakes under ``auth``'s keys,
    refusals counted by ``auth`` (so an agent's status shows them with the others)."""

    def __init__(self, auth: MessageAuth) -> None:
        self.auth = auth

    def client(self) -> ClientHandshake | None:
        """The handshake of a new outgoing connection (None: it needs none)."""
        return ClientHandshake(self.auth.source.keys())

    def listener(self) -> ListenerHandshake | None:
        """The handshake of a newly accepted connection (None: it needs none)."""
        return ListenerHandshake()

    def keys(self) -> KeySet:
        return self.auth.source.keys()

    def accepts(self, kid: bytes | None) -> bool:
        """Whether a connection whose peer proved key ``kid`` may still be used (False once
        a rotation retired that key; None: a connection that needed no handshake)."""
        return kid is None or kid in self.auth.source.keys().by_id
