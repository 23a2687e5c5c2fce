"""Peer-to-peer transport between validators: TLS 1.3, mutually authenticated by validator key, framed, bounded."""

from ledger.net.frames import FrameError, OversizedFrame, TransportError
from ledger.net.handshake import HandshakeError
from ledger.net.transport import METRICS, Transport

__all__ = ["METRICS", "FrameError", "HandshakeError", "OversizedFrame", "Transport", "TransportError"]
