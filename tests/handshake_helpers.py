"""The Unix connection handshake (hive_core.transports.conn_auth) written out independently,
for tests that speak to a listener on a raw socket or play a listener themselves.

Why not the module's own classes: a test of the wire format must be able to fail, so these
build every frame from the documented layout with the standard library's ``hmac`` and the
keys' bytes, not with the code under test.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import socket

from hive_core.auth import key_id
from hive_core.transports.framing import frame, read_frame

MAGIC = b"AHC1"


def mac(key: bytes, role: bytes, transcript: bytes) -> bytes:
    return hmac.new(key, role + transcript, hashlib.sha256).digest()


def hello(key: bytes, nonce: bytes | None = None) -> tuple[bytes, bytes]:
    """(the HELLO frame's body, its nonce) of a client holding ``key``."""
    nonce = os.urandom(16) if nonce is None else nonce
    return MAGIC + key_id(key) + nonce, nonce


def proof(key: bytes, hello_body: bytes, challenge: bytes) -> bytes:
    """The PROOF answering ``challenge`` (the listener's mac is not checked here)."""
    transcript = MAGIC + hello_body[4:24] + challenge[4:24]
    return MAGIC + mac(key, b"C", transcript)


def listener_mac_ok(key: bytes, hello_body: bytes, challenge: bytes) -> bool:
    transcript = MAGIC + hello_body[4:24] + challenge[4:24]
    return len(challenge) == 56 and challenge[24:] == mac(key, b"L", transcript)


def handshake(sock: socket.socket, key: bytes) -> list[bytes]:
    """Authenticate a blocking ``sock`` as a client holding ``key``; returns the bytes this
    side sent (a recording, to replay). Fails the test if the listener's proof is wrong."""
    body, _nonce = hello(key)
    sent = [frame(body)]
    sock.sendall(sent[0])
    challenge = read_frame(sock, 1 << 16, 5.0)
    assert challenge is not None and listener_mac_ok(key, body, challenge), challenge
    sent.append(frame(proof(key, body, challenge)))
    sock.sendall(sent[1])
    return sent


def serve_handshake(conn: socket.socket, key: bytes) -> bool:
    """Play the listener's side on ``conn``; whether the client's PROOF matched."""
    body = read_frame(conn, 1 << 16, 5.0)
    assert body is not None and body[:4] == MAGIC and len(body) == 24, body
    challenge_head = MAGIC + key_id(key) + os.urandom(16)
    transcript = MAGIC + body[4:24] + challenge_head[4:24]
    conn.sendall(frame(challenge_head + mac(key, b"L", transcript)))
    answer = read_frame(conn, 1 << 16, 5.0)
    return answer == MAGIC + mac(key, b"C", transcript)
