"""The TLS certificates of the peer links: each validator's certificate carries its validator key.

A validator's certificate holds its Ed25519 validator key, the key genesis lists for it. In TLS 1.3
each end signs the handshake transcript with the key of the certificate it presents
(CertificateVerify), so a peer that completes the handshake holds that key's private half on this
very connection; `ledger.net.handshake` then checks that the key is a validator's. The
certificate's other fields carry no authority.

Why an issuer at all: OpenSSL asks the dialer for a certificate, and accepts the one it gets, only
if it can verify a chain to a trust anchor, and Python's `ssl` module has no verification callback
to replace that with a check against genesis. So every certificate is issued by a *link issuer*
whose key is derived from the chain id alone: anyone can compute it, and anyone can issue a
certificate with it, for any key. It vouches for nothing; it is only there for OpenSSL to check a
chain. A certificate issued for a validator's key is worthless without that validator's private
key, which TLS makes the peer use in the handshake. (The chain id in the issuer's key keeps
certificates of another ledger's links from even verifying here.)

The validity period is fixed and long (2000 to 9999): whether a key may link is decided by the
validator set, not by dates, and fixed fields make every certificate deterministic.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ledger.crypto import SigningKey

ISSUER_DOMAIN = b"ledger/p2p-link-issuer/v1\x00"  # the issuer's key: sha256 of this || chain id (public)
NOT_BEFORE = datetime(2000, 1, 1, tzinfo=UTC)
NOT_AFTER = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


def _key_usage(*, sign: bool, certify: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign, content_commitment=False, key_encipherment=False, data_encipherment=False,
        key_agreement=False, key_cert_sign=certify, crl_sign=False, encipher_only=False, decipher_only=False,
    )


def _serial(public_key: bytes) -> int:
    return int.from_bytes(hashlib.sha256(b"serial" + public_key).digest()[:16], "big") >> 1 | 1


def issuer(chain_id: str) -> tuple[SigningKey, x509.Certificate]:
    """The link issuer of `chain_id`: its (public by design) key and self-signed certificate."""
    key = SigningKey.from_seed(ISSUER_DOMAIN + chain_id.encode())
    public = Ed25519PublicKey.from_public_bytes(key.public_key)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ledger peer-link issuer (vouches for nothing)"),
                      x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, chain_id[:64] or "-")])
    builder = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(public)
        .serial_number(_serial(key.public_key)).not_valid_before(NOT_BEFORE).not_valid_after(NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(sign=False, certify=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    return key, key.sign_certificate(builder)


def node_certificate(key: SigningKey, chain_id: str) -> x509.Certificate:
    """The certificate this validator presents on its links: its validator key, issued by the link issuer."""
    issuer_key, issuer_cert = issuer(chain_id)
    public = Ed25519PublicKey.from_public_bytes(key.public_key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, key.id)]))
        .issuer_name(issuer_cert.subject).public_key(public)
        .serial_number(_serial(key.public_key)).not_valid_before(NOT_BEFORE).not_valid_after(NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(sign=True, certify=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            Ed25519PublicKey.from_public_bytes(issuer_key.public_key)), critical=False)
    )
    return issuer_key.sign_certificate(builder)


def pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def certificate_key(der: bytes) -> bytes | None:
    """The raw Ed25519 public key a DER certificate carries; None if it carries another kind or is malformed."""
    try:
        public = x509.load_der_x509_certificate(der).public_key()
    except ValueError:
        return None
    if not isinstance(public, Ed25519PublicKey):
        return None
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
