"""Securing a new connection between two validators: TLS 1.3, then each end checks who the other is.

Theory of operation
-------------------
Both ends run a TLS 1.3 handshake (Python's `ssl`, OpenSSL; no other protocol version, no session
resumption) in which each presents the certificate of `ledger.net.certs`: its validator key,
issued by the chain's public link issuer. TLS 1.3 makes each end sign the transcript of this
handshake (both ends' fresh randoms and key shares included) with its certificate's key, so when
the handshake completes each end knows the other holds the private key of the certificate it
presented, on this connection and no other. `identify` then checks what TLS cannot: that this key
is the key the validator set lists for a validator (the dialer: for the validator it meant to
dial), and that it is not this node's own.

So a man in the middle without a validator key can complete no handshake as a validator: a
certificate with a validator's key is of no use without that key's signature over the transcript,
and one with its own key names no validator. Once the handshake is done, everything travels in TLS
records (AES-GCM or ChaCha20-Poly1305, keys from an ephemeral X25519 exchange, so recorded traffic
stays secret even if a validator key leaks later): bytes altered, injected, replayed or reordered
on the path fail the record's authentication, and TLS closes the connection. Nothing of the
ledger's own travels in the clear; a plaintext connection never gets past the first record.

In TLS 1.3 the dialer's handshake completes before the listener has checked the dialer's
certificate. So the listener, once `identify` accepted the dialer, sends a READY frame, and the
dialer counts its link as up only when READY arrived: a dialer that the listener refuses sees a
failed handshake, not a link that swallows messages. The caller bounds the whole exchange (TLS and
READY) with one timeout.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import tempfile
from collections.abc import Awaitable, Mapping
from pathlib import Path
from typing import TypeVar

from ledger.crypto import PUBLIC_KEY_LEN, SigningKey, derive_id
from ledger.net.certs import certificate_key, issuer, node_certificate, pem
from ledger.net.frames import FrameError, FrameType, OversizedFrame, encode_frame, read_frame

log = logging.getLogger("ledger.net")
T = TypeVar("T")

ALPN = "ledger-p2p/2"  # the link protocol (and its version) both ends must speak
MAX_HANDSHAKE_FRAME = 64  # READY is empty: an unaccepted connection can make this node allocate no more
DIALER = "dialer"
LISTENER = "listener"
READY = encode_frame(FrameType.READY, b"")


class HandshakeError(FrameError):
    """The other end did not prove it is a validator (or the one we dialed), or spoke another protocol."""


class LinkTls:
    """The TLS contexts of one validator's links: both present its certificate, both demand the peer's."""

    def __init__(self, key: SigningKey, chain_id: str) -> None:
        self.server = _context(key, chain_id, ssl.PROTOCOL_TLS_SERVER)
        self.client = _context(key, chain_id, ssl.PROTOCOL_TLS_CLIENT)


def _context(key: SigningKey, chain_id: str, protocol: int) -> ssl.SSLContext:
    ctx = ssl.SSLContext(protocol)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False  # peers are named by validator key, not host name: `identify` checks that
    ctx.verify_mode = ssl.CERT_REQUIRED  # a peer must present a certificate, and a verifiable one
    ctx.load_verify_locations(cadata=pem(issuer(chain_id)[1]).decode())
    ctx.options |= ssl.OP_NO_TICKET  # no resumption: every link proves its keys afresh
    if protocol == ssl.PROTOCOL_TLS_SERVER:
        ctx.num_tickets = 0
    ctx.set_alpn_protocols([ALPN])
    _load_identity(ctx, key, chain_id)
    return ctx


def _load_identity(ctx: ssl.SSLContext, key: SigningKey, chain_id: str) -> None:
    """Give `ctx` this validator's certificate and private key.

    `ssl` loads them only from a file. The key goes into a private temporary directory encrypted
    under a random one-time password that never leaves this process, and the file is gone once
    OpenSSL has read it. (OpenSSL also checks that the key matches the certificate.)
    """
    password = os.urandom(32).hex().encode()
    with tempfile.TemporaryDirectory(prefix="ledger-tls-") as tmp:
        path = Path(tmp) / "identity.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem(node_certificate(key, chain_id)) + key.to_pem(password))
        ctx.load_cert_chain(path, password=password)


def validators_by_key(validator_keys: Mapping[str, bytes]) -> dict[bytes, str]:
    """Validator id by public key, for ids that are derived from their keys (a misconfigured set is caught here)."""
    by_key = {}
    for vid, public_key in validator_keys.items():
        if len(public_key) != PUBLIC_KEY_LEN or derive_id(public_key) != vid:
            raise ValueError(f"validator id {vid} is not derived from its public key")
        by_key[public_key] = vid
    return by_key


def identify(
    ssl_object: ssl.SSLObject | None, by_key: Mapping[bytes, str], own_id: str, expected_peer: str | None
) -> str:
    """The id of the validator at the other end of a completed TLS handshake; HandshakeError if none."""
    # check: the connection is TLS at all
    if ssl_object is None:
        raise HandshakeError("not a TLS connection")
    # check: TLS 1.3 (the context allows nothing else; everything here rests on it)
    if ssl_object.version() != "TLSv1.3":
        raise HandshakeError(f"TLS version {ssl_object.version()}, expected TLSv1.3")
    # check: both ends speak this link protocol
    if ssl_object.selected_alpn_protocol() != ALPN:
        raise HandshakeError(f"peer does not speak {ALPN} (ALPN {ssl_object.selected_alpn_protocol()!r})")
    der = ssl_object.getpeercert(binary_form=True)
    public_key = certificate_key(der) if der else None
    # check: the certificate's key (which TLS made the peer prove it holds) is a validator's key
    peer_id = by_key.get(public_key) if public_key is not None else None
    if peer_id is None:
        raise HandshakeError("the peer's certificate does not carry a validator key")
    # check: not a connection to ourselves
    if peer_id == own_id:
        raise HandshakeError("connected to itself")
    # check: the dialer reached the validator it meant to dial
    if expected_peer is not None and peer_id != expected_peer:
        raise HandshakeError(f"dialed {expected_peer} but reached {peer_id}")
    return peer_id


async def dial_handshake(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tls: LinkTls,
    by_key: Mapping[bytes, str], own_id: str, expected_peer: str,
) -> str:
    """TLS over a fresh outgoing TCP connection, the listener's identity, then its READY; the peer's id."""
    await writer.start_tls(tls.client)
    peer_id = identify(writer.get_extra_info("ssl_object"), by_key, own_id, expected_peer)
    ftype, _ = await read_frame(reader, MAX_HANDSHAKE_FRAME)
    # check: the listener accepted us (it sends READY only then)
    if ftype != FrameType.READY:
        raise HandshakeError(f"expected READY, got frame type {ftype:#04x}")
    return peer_id


async def accept_handshake(
    writer: asyncio.StreamWriter, by_key: Mapping[bytes, str], own_id: str
) -> str:
    """After TLS on an accepted connection: the dialer's identity, then READY; the dialer's id."""
    peer_id = identify(writer.get_extra_info("ssl_object"), by_key, own_id, None)
    writer.write(READY)
    await writer.drain()
    return peer_id


async def run_handshake(
    handshake: Awaitable[T], timeout: float, metrics: dict[str, int], role: str, address: str
) -> T | None:
    """Run a handshake (either role) under `timeout`; its result, or None after counting in `metrics`
    and logging why it failed (the caller closes the connection). TLS errors are OSErrors."""
    try:
        async with asyncio.timeout(timeout):
            return await handshake
    except (FrameError, TimeoutError, asyncio.IncompleteReadError, OSError) as exc:
        metrics["handshake_failures"] += 1
        if isinstance(exc, OversizedFrame):
            metrics["oversized_frames"] += 1
        reason = "timed out" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
        level = logging.WARNING if isinstance(exc, HandshakeError) else logging.INFO
        log.log(level, "%s handshake with %s failed: %s", role, address, reason)
    except Exception:  # a bug must not end a dial loop or the listener
        metrics["handshake_failures"] += 1
        log.exception("%s handshake failed unexpectedly", role)
    return None
