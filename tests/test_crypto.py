"""Keys, key files, ids and domain-separated signatures."""

from __future__ import annotations

import itertools
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PrivateKey

from ledger import crypto
from ledger.crypto import ALL_DOMAINS, DOMAIN_COMMIT, DOMAIN_TX, KeyFileError, SigningKey, derive_id, verify


@dataclass(frozen=True)
class Msg:
    text: str
    n: int


# An EC key on secp112r1, a curve OpenSSL parses but `cryptography` does not support.
UNSUPPORTED_CURVE_PEM = b"""-----BEGIN PRIVATE KEY-----
ME4CAQAwEAYHKoZIzj0CAQYFK4EEAAYENzA1AgEBBA4qGO5lNq+Juv9tG0avb6Eg
Ax4ABBrtNndSjAYEUFRnmjflp4/82lZs802g5Wj3wmU=
-----END PRIVATE KEY-----
"""


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_key_file_is_private_and_loads_back(tmp_path: Path) -> None:
    key = SigningKey.generate()
    path = tmp_path / "sub" / "node.key"
    old_umask = os.umask(0)  # even a permissive umask must not widen the file's mode
    try:
        key.save(path)
    finally:
        os.umask(old_umask)
    assert _mode(path) == 0o600
    loaded = SigningKey.load(path)
    assert loaded.id == key.id
    assert loaded.public_key == key.public_key
    # The loaded key signs like the original: its signatures verify under the original public key.
    assert verify(key.public_key, DOMAIN_TX, Msg("x", 1), loaded.sign(DOMAIN_TX, Msg("x", 1)))


def test_saving_over_a_world_readable_file_makes_it_private(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    path.write_text("old contents, much longer than nothing at all " * 10)
    path.chmod(0o644)
    key = SigningKey.from_seed(b"overwrite")
    key.save(path)
    assert _mode(path) == 0o600
    assert SigningKey.load(path).id == key.id


def _pem(private_key: object) -> bytes:
    return private_key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _bad_key_files() -> dict[str, bytes | None]:
    ed = SigningKey.from_seed(b"ed")
    encrypted = ed._private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    public_pem = ed._private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "missing": None,
        "empty": b"",
        "garbage": os.urandom(200),
        "text": b"hello, I am not a key\n",
        "truncated pem": ed.to_pem()[:60],
        "public key pem": public_pem,
        "encrypted pem": encrypted,
        "raw seed bytes": b"\x01" * 32,
        "rsa": _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        "ec p256": _pem(ec.generate_private_key(ec.SECP256R1())),
        "ed448": _pem(Ed448PrivateKey.generate()),
    }


BAD_KEY_FILES = _bad_key_files()


@pytest.mark.parametrize("name", list(BAD_KEY_FILES))
def test_loading_something_else_raises_key_file_error(tmp_path: Path, name: str) -> None:
    path = tmp_path / "key.pem"
    content = BAD_KEY_FILES[name]
    if content is not None:
        path.write_bytes(content)
        path.chmod(0o600)  # private, so each is refused for what it holds
    with pytest.raises(KeyFileError) as info:
        SigningKey.load(path)
    assert "chmod" not in str(info.value)


def test_loading_a_directory_raises_key_file_error(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError):
        SigningKey.load(tmp_path)


def test_loading_a_key_on_an_unsupported_curve_raises_key_file_error(tmp_path: Path) -> None:
    path = tmp_path / "ec112.pem"
    path.write_bytes(UNSUPPORTED_CURVE_PEM)
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match="not a PEM private key"):
        SigningKey.load(path)


# --- ids ---------------------------------------------------------------------------------------


def test_ids_are_40_lowercase_hex_deterministic_and_distinct() -> None:
    keys = [SigningKey.from_seed(f"seed-{i}".encode()) for i in range(64)]
    for k in keys:
        assert re.fullmatch(r"[0-9a-f]{40}", k.id)
        assert k.id == derive_id(k.public_key)
    assert len({k.id for k in keys}) == len(keys)
    assert len({k.public_key for k in keys}) == len(keys)
    again = SigningKey.from_seed(b"seed-0")
    assert again.id == keys[0].id and again.public_key == keys[0].public_key
    assert SigningKey.generate().id != SigningKey.generate().id


# --- signatures --------------------------------------------------------------------------------


def test_signature_verifies_only_for_its_domain_object_and_key() -> None:
    key = SigningKey.from_seed(b"signer")
    other = SigningKey.from_seed(b"other")
    obj = Msg("block", 7)
    for domain in ALL_DOMAINS:
        sig = key.sign(domain, obj)
        assert verify(key.public_key, domain, obj, sig)
        for other_domain in ALL_DOMAINS:
            if other_domain != domain:
                assert not verify(key.public_key, other_domain, obj, sig)
        assert not verify(key.public_key, domain, Msg("block", 8), sig)
        assert not verify(key.public_key, domain, Msg("blocK", 7), sig)
        assert not verify(other.public_key, domain, obj, sig)


def test_tampered_or_malformed_signatures_do_not_verify() -> None:
    key = SigningKey.from_seed(b"signer")
    obj = Msg("x", 1)
    sig = key.sign(DOMAIN_COMMIT, obj)
    for i in (0, 31, 32, 63):
        bad = bytearray(sig)
        bad[i] ^= 0x01
        assert not verify(key.public_key, DOMAIN_COMMIT, obj, bytes(bad))
    assert not verify(key.public_key, DOMAIN_COMMIT, obj, sig[:-1])
    assert not verify(key.public_key, DOMAIN_COMMIT, obj, sig + b"\x00")
    assert not verify(key.public_key, DOMAIN_COMMIT, obj, b"")
    assert not verify(key.public_key[:31], DOMAIN_COMMIT, obj, sig)


def test_signing_bytes_is_domain_separated_like_records() -> None:
    key = SigningKey.from_seed(b"signer")
    sig = key.sign(DOMAIN_TX, b"payload")
    assert verify(key.public_key, DOMAIN_TX, b"payload", sig)
    assert not verify(key.public_key, DOMAIN_COMMIT, b"payload", sig)
    assert crypto.signing_digest(DOMAIN_TX, b"payload") != crypto.signing_digest(DOMAIN_COMMIT, b"payload")


def test_no_domain_is_a_prefix_of_another() -> None:
    assert len(set(ALL_DOMAINS)) == len(ALL_DOMAINS)
    for a, b in itertools.permutations(ALL_DOMAINS, 2):
        assert not b.startswith(a), (a, b)
    # The id derivation tag is separated from the signing domains too.
    for d in ALL_DOMAINS:
        assert not d.startswith(b"ledger/id/v1") and not b"ledger/id/v1".startswith(d)
