"""Mutual authentication of a new connection between two validators.

Theory of operation: both ends send a `Hello` (protocol version, chain id, node id, public key and
a fresh 32-byte random nonce) as soon as the TCP connection is up. Each end checks the other's
Hello (same chain, a validator of that chain, the public key the validator set lists for that id,
an id derived from that key, not itself, and for the dialer: the node it meant to dial). Each
end then proves itself by signing a `HandshakeStatement` under `crypto.DOMAIN_HANDSHAKE`

    (chain id, own id, peer id, own role, own nonce, peer's nonce)

and sending the signature in an `Auth` frame; each end verifies the other's signature over the
statement the *other* end must have signed. The dialer sends its Auth first; the listener verifies
it before answering with its own. So the listener never signs for an unproven dialer, and when the
dialer's handshake succeeds the listener has already accepted it (a dialer whose own proof is
rejected sees a failed handshake, not a link that flaps and swallows messages).

The peer's fresh nonce makes every signature unique to this connection (no replay), the role
(dialer/listener) keeps an end from reflecting the other's signature back to it, and the peer id
binds the signature to the intended counterpart.

What this does not give: confidentiality or per-frame integrity. An attacker on the network path
could take over the TCP stream after the handshake; consensus messages are signed by their
authors, so such an attacker can drop or replay but not forge them. TLS or a Noise handshake
would close that gap.

Handshake frames are small (under a few hundred bytes), so they are read with a tight size limit;
an unauthenticated connection can never make this node allocate more than `MAX_HANDSHAKE_FRAME`.
The caller bounds the whole exchange with a timeout.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar

from ledger.codec import CodecError, decode, encode
from ledger.crypto import DOMAIN_HANDSHAKE, PUBLIC_KEY_LEN, derive_id, verify
from ledger.net.frames import FrameError, FrameType, encode_frame, read_frame

PROTOCOL_VERSION = 1
NONCE_LEN = 32
MAX_HANDSHAKE_FRAME = 4096
MAX_CHAIN_ID_LEN = 256
T = TypeVar("T")
DIALER = "dialer"
LISTENER = "listener"


class HandshakeError(FrameError):
    """The other end did not prove it is the validator it claims to be (or the one we dialed)."""


class HandshakeKey(Protocol):
    """What the handshake needs of a key (`crypto.SigningKey` has it)."""

    id: str
    public_key: bytes

    def sign(self, domain: bytes, obj: object) -> bytes: ...


@dataclass(frozen=True)
class Hello:
    version: int
    chain_id: str
    node_id: str
    public_key: bytes
    nonce: bytes


@dataclass(frozen=True)
class HandshakeStatement:
    """What each end signs (under DOMAIN_HANDSHAKE) to prove it holds its validator key."""

    chain_id: str
    signer: str
    peer: str
    role: str
    signer_nonce: bytes
    peer_nonce: bytes


@dataclass(frozen=True)
class Auth:
    signature: bytes


async def _read_record(reader: asyncio.StreamReader, kind: FrameType, cls: type[T]) -> T:
    ftype, body = await read_frame(reader, MAX_HANDSHAKE_FRAME)
    # check: the handshake goes Hello, then Auth, nothing else
    if ftype != kind:
        raise HandshakeError(f"expected a {kind.name} frame, got type {ftype:#04x}")
    try:
        return decode(cls, body[1:])
    except CodecError as exc:
        raise HandshakeError(f"malformed {cls.__name__}: {exc}") from exc


def check_hello(
    hello: Hello,
    chain_id: str,
    own_id: str,
    own_nonce: bytes,
    validator_keys: Mapping[str, bytes],
    expected_peer: str | None,
) -> None:
    """Raise HandshakeError unless `hello` is an acceptable Hello from another validator."""
    # check: both ends speak the same protocol version
    if hello.version != PROTOCOL_VERSION:
        raise HandshakeError(f"protocol version {hello.version}, expected {PROTOCOL_VERSION}")
    # check: both ends are on the same chain
    if hello.chain_id != chain_id:
        raise HandshakeError(f"chain id {hello.chain_id[:MAX_CHAIN_ID_LEN]!r}, expected {chain_id!r}")
    # check: the claimed id is a validator of this chain
    if hello.node_id not in validator_keys:
        raise HandshakeError(f"{hello.node_id[:64]!r} is not a validator")
    # check: the public key is the one the validator set lists for that id
    if hello.public_key != validator_keys[hello.node_id]:
        raise HandshakeError(f"public key does not match validator {hello.node_id}")
    # check: the id is derived from the key (guards a misconfigured validator set)
    if len(hello.public_key) != PUBLIC_KEY_LEN or derive_id(hello.public_key) != hello.node_id:
        raise HandshakeError(f"id {hello.node_id} is not derived from its public key")
    # check: not a connection to ourselves
    if hello.node_id == own_id:
        raise HandshakeError("connected to itself")
    # check: the dialer reached the validator it meant to dial
    if expected_peer is not None and hello.node_id != expected_peer:
        raise HandshakeError(f"dialed {expected_peer} but reached {hello.node_id}")
    # check: the nonce is fresh-sized and not an echo of ours
    if len(hello.nonce) != NONCE_LEN or hello.nonce == own_nonce:
        raise HandshakeError("bad nonce")


async def perform_handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    key: HandshakeKey,
    chain_id: str,
    validator_keys: Mapping[str, bytes],
    role: str,
    expected_peer: str | None = None,
) -> str:
    """Run the handshake on a fresh connection; return the authenticated id of the other end.

    Raises HandshakeError (or FrameError, asyncio.IncompleteReadError, OSError) on failure; the
    caller closes the connection and applies the timeout.
    """
    if role not in (DIALER, LISTENER):
        raise ValueError(f"unknown role {role!r}")
    other_role = LISTENER if role == DIALER else DIALER
    nonce = secrets.token_bytes(NONCE_LEN)
    hello = Hello(PROTOCOL_VERSION, chain_id, key.id, key.public_key, nonce)
    writer.write(encode_frame(FrameType.HELLO, encode(hello)))
    await writer.drain()

    theirs = await _read_record(reader, FrameType.HELLO, Hello)
    check_hello(theirs, chain_id, key.id, nonce, validator_keys, expected_peer)

    mine = HandshakeStatement(chain_id, key.id, theirs.node_id, role, nonce, theirs.nonce)
    expected = HandshakeStatement(chain_id, theirs.node_id, key.id, other_role, theirs.nonce, nonce)
    if role == DIALER:
        await _send_auth(writer, key, mine)
        await _receive_auth(reader, theirs, expected)
    else:  # the listener signs only for a dialer that has proved itself
        await _receive_auth(reader, theirs, expected)
        await _send_auth(writer, key, mine)
    return theirs.node_id


async def _send_auth(writer: asyncio.StreamWriter, key: HandshakeKey, statement: HandshakeStatement) -> None:
    writer.write(encode_frame(FrameType.AUTH, encode(Auth(key.sign(DOMAIN_HANDSHAKE, statement)))))
    await writer.drain()


async def _receive_auth(reader: asyncio.StreamReader, theirs: Hello, expected: HandshakeStatement) -> None:
    auth = await _read_record(reader, FrameType.AUTH, Auth)
    # check: the other end signed this connection's statement with the validator's key
    if not verify(theirs.public_key, DOMAIN_HANDSHAKE, expected, auth.signature):
        raise HandshakeError(f"bad handshake signature from {theirs.node_id}")
