"""Wire frames of the peer-to-peer transport, carried inside TLS (`ledger.net.handshake`).

A frame is a 4-byte big-endian body length followed by the body. The first byte of the body is
the frame type; request, response and error frames then carry an 8-byte big-endian request id:

    READY     0x03                              the listener accepted the dialer (handshake only)
    MESSAGE   0x10 | payload                    one-way consensus message (dialer -> listener)
    REQUEST   0x11 | request id | payload       (dialer -> listener)
    RESPONSE  0x12 | request id | payload       (listener -> dialer, same connection)
    ERROR     0x13 | request id | utf-8 reason  the listener could not answer the request
    PING      0x14 | 8 bytes | 4 bytes          heartbeat: loop time; the sender's recent stall, ms
    PONG      0x15 | the PING's 8 bytes | 4 b.  its answer: the echo; the listener's recent stall
                                                (`ledger.net.heartbeat`; an older node's PING is the
                                                8 bytes, its PONG the PING's body echoed whole)

The length is checked against the reader's limit before anything is allocated for the body, so a
peer announcing a 4 GiB frame costs four bytes of memory and a closed connection.

Also here: the bounded queue of payloads waiting for a peer's link, and small socket helpers.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections import deque
from collections.abc import Callable
from enum import IntEnum

LENGTH = struct.Struct(">I")
REQUEST_ID = struct.Struct(">Q")
HEADER_LEN = LENGTH.size
MESSAGE_OVERHEAD = 1  # type byte
REQUEST_OVERHEAD = 1 + REQUEST_ID.size  # type byte + request id


READ_CHUNK = 64 * 1024  # a long frame is read in pieces, each a sign of life (`read_frame`'s `progress`)


class FrameType(IntEnum):
    READY = 0x03
    MESSAGE = 0x10
    REQUEST = 0x11
    RESPONSE = 0x12
    ERROR = 0x13
    PING = 0x14
    PONG = 0x15


class TransportError(Exception):
    """A transport operation failed: unknown or unreachable peer, timeout, lost link, bad input."""


class FrameError(TransportError):
    """The bytes on a connection are not a well-formed frame of the expected kind."""


class OversizedFrame(FrameError):
    """A frame announced a body longer than the reader accepts."""


def encode_frame(kind: FrameType, payload: bytes) -> bytes:
    """A MESSAGE, READY, PING or PONG frame: length, type byte, payload."""
    return LENGTH.pack(len(payload) + MESSAGE_OVERHEAD) + bytes((kind,)) + payload


def encode_request_frame(kind: FrameType, request_id: int, payload: bytes) -> bytes:
    """A REQUEST, RESPONSE or ERROR frame: length, type byte, request id, payload."""
    return LENGTH.pack(len(payload) + REQUEST_OVERHEAD) + bytes((kind,)) + REQUEST_ID.pack(request_id) + payload


def split_request_body(body: bytes) -> tuple[int, bytes]:
    """(request id, payload) of the body of a REQUEST, RESPONSE or ERROR frame."""
    if len(body) < REQUEST_OVERHEAD:
        raise FrameError("request frame shorter than its header")
    (request_id,) = REQUEST_ID.unpack_from(body, 1)
    return request_id, body[REQUEST_OVERHEAD:]


async def read_frame(
    reader: asyncio.StreamReader, max_body: int, progress: Callable[[], None] | None = None
) -> tuple[int, bytes]:
    """Read one frame; return (type byte, whole body including the type byte).

    Raises OversizedFrame before reading the body if it is longer than `max_body`, FrameError for
    an empty body, and asyncio.IncompleteReadError / ConnectionError if the connection ends.
    `progress` is called after every `READ_CHUNK` of a long body, so a frame that takes longer to
    arrive than a link may stay silent still shows the link is alive.
    """
    header = await reader.readexactly(HEADER_LEN)
    (length,) = LENGTH.unpack(header)
    # check: the announced length fits the limit, before anything is allocated for it
    if length > max_body:
        raise OversizedFrame(f"frame of {length} bytes exceeds the limit of {max_body}")
    # check: a body holds at least its type byte
    if length == 0:
        raise FrameError("empty frame")
    if progress is None or length <= READ_CHUNK:
        body = await reader.readexactly(length)
        return body[0], body
    chunks = []
    remaining = length
    while remaining:
        chunk = await reader.readexactly(min(READ_CHUNK, remaining))
        chunks.append(chunk)
        remaining -= len(chunk)
        progress()
    body = b"".join(chunks)
    return body[0], body


class Outbox:
    """A peer's bounded queue of outgoing message payloads."""

    def __init__(self, limit: int, byte_limit: int) -> None:
        self.limit = limit
        self.byte_limit = byte_limit
        self.items: deque[bytes] = deque()
        self.nbytes = 0
        self.ready = asyncio.Event()

    def offer(self, payload: bytes) -> bool:
        if len(self.items) >= self.limit or self.nbytes + len(payload) > self.byte_limit:
            return False
        self.items.append(payload)
        self.nbytes += len(payload)
        self.ready.set()
        return True

    def pop(self) -> bytes:
        payload = self.items.popleft()
        self.nbytes -= len(payload)
        return payload


def abort_writer(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.transport.abort()


def tune_socket(sock: socket.socket | None) -> None:
    """TCP keepalive: the heartbeats notice a silent link first; this also frees the sockets of a
    peer that vanished (power loss, partition) at the kernel level."""
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
            if hasattr(socket, name):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
