"""Peer-to-peer transport between validators: authenticated, framed, bounded asyncio TCP links."""

from ledger.net.frames import FrameError, OversizedFrame, TransportError
from ledger.net.handshake import HandshakeError
from ledger.net.transport import METRICS, Transport

__all__ = ["METRICS", "FrameError", "HandshakeError", "OversizedFrame", "Transport", "TransportError"]
