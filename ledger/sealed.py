"""Sealed boxes: a message encrypted to one or more X25519 public keys (private terms, private data).

For each message a fresh AES-256-GCM content key encrypts the plaintext once; for each recipient an
ephemeral X25519 key agrees a secret with the recipient's key, HKDF-SHA256 turns it into a wrapping key
(bound to both public keys), and AES-GCM wraps the content key. A recipient tries the wraps addressed to
its public key. Any change to the ciphertext, a wrap or the associated data fails authentication
(`SealError`), never a wrong plaintext.

Nothing here is state: encryption is random by design, so sealed bytes travel beside transactions and
the state machine keeps only their hash.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ledger.codec import CodecError, decode, encode

KEY_LEN = 32
NONCE_LEN = 12
_WRAP_INFO = b"ledger/sealed/v1 wrap"


class SealError(ValueError):
    """The sealed box is malformed, not addressed to this key, or was altered."""


@dataclass(frozen=True)
class Wrap:
    recipient: bytes  # the recipient's X25519 public key
    ephemeral: bytes  # the sender's one-time X25519 public key for this recipient
    nonce: bytes
    wrapped_key: bytes  # the content key under AES-GCM (with its tag)


@dataclass(frozen=True)
class SealedBox:
    wraps: tuple[Wrap, ...]
    nonce: bytes
    ciphertext: bytes  # the plaintext under the content key (with its tag)


def raw_public(key: X25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def generate_key() -> tuple[bytes, bytes]:
    """(private, public) raw X25519 keys."""
    private = X25519PrivateKey.generate()
    return private.private_bytes_raw(), raw_public(private.public_key())


def public_of(private: bytes) -> bytes:
    return raw_public(X25519PrivateKey.from_private_bytes(private).public_key())


def _wrapping_key(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_LEN, salt=ephemeral + recipient, info=_WRAP_INFO)
    return hkdf.derive(shared)


def seal(plaintext: bytes, recipients: list[bytes], associated: bytes = b"") -> bytes:
    """`plaintext` encrypted to each raw X25519 public key in `recipients`; `associated` is authenticated too."""
    if not recipients:
        raise SealError("a sealed box needs at least one recipient")
    content_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(NONCE_LEN)
    ciphertext = AESGCM(content_key).encrypt(nonce, plaintext, associated)
    wraps = []
    for recipient in recipients:
        if len(recipient) != KEY_LEN:
            raise SealError("an X25519 public key is 32 bytes")
        ephemeral = X25519PrivateKey.generate()
        ephemeral_public = raw_public(ephemeral.public_key())
        shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient))
        wrap_nonce = os.urandom(NONCE_LEN)
        wrapped = AESGCM(_wrapping_key(shared, ephemeral_public, recipient)).encrypt(
            wrap_nonce, content_key, nonce + associated)
        wraps.append(Wrap(recipient, ephemeral_public, wrap_nonce, wrapped))
    return encode(SealedBox(tuple(wraps), nonce, ciphertext))


def open_sealed(sealed: bytes, private: bytes, associated: bytes = b"") -> bytes:
    """The plaintext of `sealed` for the raw X25519 private key `private` (SealError otherwise)."""
    try:
        box = decode(SealedBox, sealed)
    except CodecError as exc:
        raise SealError(f"not a sealed box: {exc}") from exc
    key = X25519PrivateKey.from_private_bytes(private)
    mine = raw_public(key.public_key())
    for wrap in box.wraps:
        if wrap.recipient != mine:
            continue
        try:
            shared = key.exchange(X25519PublicKey.from_public_bytes(wrap.ephemeral))
            content_key = AESGCM(_wrapping_key(shared, wrap.ephemeral, mine)).decrypt(
                wrap.nonce, wrap.wrapped_key, box.nonce + associated)
            return AESGCM(content_key).decrypt(box.nonce, box.ciphertext, associated)
        except (InvalidTag, ValueError) as exc:
            raise SealError("the sealed box was altered or its associated data differs") from exc
    raise SealError("the sealed box is not addressed to this key")
