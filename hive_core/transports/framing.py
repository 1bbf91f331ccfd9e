"""Length-prefixed frames for stream transports (Unix sockets today, TCP later).

A frame is a 4-byte big-endian length followed by that many bytes of
:func:`hive_core.messages.encode` JSON. The length is checked *before* the body is read, so a
peer that announces a huge message is refused without the receiver ever buffering it.
"""

from __future__ import annotations

import socket
import struct

from hive_core.errors import MessageRejected

HEADER = struct.Struct(">I")
HEADER_SIZE = HEADER.size
MAX_FRAME_BYTES = 2**32 - 1


class FrameTooLarge(MessageRejected):
    """A peer announced a frame above the receiver's limit (the body was not read)."""


def frame(*parts: bytes) -> bytes:
    """The frame whose body is ``parts`` joined: built with one copy, so a signature and a
    large body (hive_core.auth.MessageAuth.signature) are not joined twice."""
    size = sum(map(len, parts))
    if size > MAX_FRAME_BYTES:
        raise MessageRejected(f"a frame cannot carry {size} bytes")
    return b"".join((HEADER.pack(size), *parts))


def send_frame(sock: socket.socket, data: bytes) -> None:
    """Write ``data`` as one frame on a blocking socket (or one with a timeout), without
    copying it behind its length prefix: one ``sendmsg`` of both buffers, then the rest."""
    if len(data) > MAX_FRAME_BYTES:
        raise MessageRejected(f"a frame cannot carry {len(data)} bytes")
    header = HEADER.pack(len(data))
    sent = sock.sendmsg((header, data))
    if sent < HEADER_SIZE:
        sock.sendall(header[sent:])
        sent = HEADER_SIZE
    if sent < HEADER_SIZE + len(data):
        sock.sendall(memoryview(data)[sent - HEADER_SIZE:])


def check_length(length: int, max_bytes: int) -> int:
    if length > max_bytes:
        raise FrameTooLarge(
            f"message of {length} bytes exceeds the {max_bytes}-byte limit (not read)"
        )
    return length


def _read_exact(sock: socket.socket, size: int) -> bytes | None:
    """Exactly ``size`` bytes, or None when the peer closes before sending any of them."""
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:], size - got)
        if n == 0:
            if got == 0:
                return None
            raise ConnectionError(f"peer closed the connection mid-frame ({got}/{size} bytes)")
        got += n
    return bytes(buf)


def read_frame(
    sock: socket.socket, max_bytes: int, body_timeout: float | None = None
) -> bytes | None:
    """The next frame's body from a blocking socket; None on a clean end of stream.

    Waiting for a frame to start is unbounded (an idle pooled connection), but once its
    header arrived the rest must follow within ``body_timeout`` seconds. Raises
    :class:`FrameTooLarge` (without reading the body) when the announced length is above
    ``max_bytes``, and ``ConnectionError`` when the stream ends inside a frame.
    """
    sock.settimeout(None)
    header = _read_exact(sock, HEADER_SIZE)
    if header is None:
        return None
    (length,) = HEADER.unpack(header)
    check_length(length, max_bytes)
    if length == 0:
        return b""
    sock.settimeout(body_timeout)
    body = _read_exact(sock, length)
    if body is None:
        raise ConnectionError("peer closed the connection after a frame header")
    return body


class FrameReader:
    """Incremental frame parser for non-blocking sockets: feed chunks, get one body."""

    __slots__ = ("_buf", "_length", "max_bytes")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._buf = bytearray()
        self._length: int | None = None

    def wanted(self) -> int:
        """How many more bytes complete the current header or body."""
        if self._length is None:
            return HEADER_SIZE - len(self._buf)
        return self._length - len(self._buf)

    def feed(self, chunk: bytes) -> bytes | None:
        """Add bytes (at most :meth:`wanted`); returns the body once it is complete.

        A body that arrives in one chunk (the usual case: callers ask for :meth:`wanted`)
        is returned as it came, not copied into the buffer and out again."""
        if self._length is not None and not self._buf and len(chunk) == self._length:
            self._length = None
            return chunk
        self._buf += chunk
        if self._length is None:
            if len(self._buf) < HEADER_SIZE:
                return None
            (length,) = HEADER.unpack(self._buf[:HEADER_SIZE])
            self._length = check_length(length, self.max_bytes)
            del self._buf[:HEADER_SIZE]
        if len(self._buf) < self._length:
            return None
        body = bytes(self._buf)
        self._buf.clear()
        self._length = None
        return body
