"""Ed25519 keys, key files and domain-separated signatures.

Every signature covers sha256(domain || canonical(obj)). Each message type has its own domain,
so a signature made for one purpose (say, a prepare vote) can never be replayed as another
(a transaction). Domains all have the form b"ledger/<name>/v1", so none is a prefix of another.

Member and node ids are derived from public keys: the first 20 bytes of
sha256(b"ledger/id/v1" || public_key), as 40 lowercase hex characters.

Key files are PEM, mode 0600, and refused at load when group or others may read or write them. A
key file is either plain PKCS#8 or, encrypted with a passphrase, the OpenSSH private-key format
(aes256-ctr under a key stretched by bcrypt-pbkdf, `KDF_ROUNDS` rounds): `cryptography` writes
PKCS#8 only with 2,048 rounds of PBKDF2, too cheap to slow a guesser. Encrypted PKCS#8 written by
OpenSSL (`openssl pkcs8 -topk8 -scrypt`) loads too. The passphrase comes from a callable, asked
only when the file is encrypted (`ledger.keyfiles` supplies it from the environment, a file or a
terminal).

Keys, key files and signing use `cryptography` (OpenSSL). Verification, which every validator does
for every transaction and message and which bounds throughput, uses libsodium (PyNaCl): twice as
fast here, and stricter (it also refuses small-order keys and non-canonical points). Every node
runs the same check, so all agree on which signatures are valid; signatures made by any RFC 8032
signer with an honest key verify.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError, CryptoError

from ledger.codec import encode

DOMAIN_TX = b"ledger/tx/v1"
DOMAIN_COMMIT = b"ledger/commit/v1"
DOMAIN_PREPREPARE = b"ledger/preprepare/v1"
DOMAIN_PREPARE = b"ledger/prepare/v1"
DOMAIN_CHECKPOINT = b"ledger/checkpoint/v1"
DOMAIN_VIEWCHANGE = b"ledger/viewchange/v1"
DOMAIN_NEWVIEW = b"ledger/newview/v1"
DOMAIN_HANDSHAKE = b"ledger/handshake/v1"
DOMAIN_CONSENSUS = b"ledger/consensus/v1"
ALL_DOMAINS = (
    DOMAIN_TX, DOMAIN_COMMIT, DOMAIN_PREPREPARE, DOMAIN_PREPARE, DOMAIN_CHECKPOINT,
    DOMAIN_VIEWCHANGE, DOMAIN_NEWVIEW, DOMAIN_HANDSHAKE, DOMAIN_CONSENSUS,
)

PUBLIC_KEY_LEN = 32
SIGNATURE_LEN = 64
KDF_ROUNDS = 64  # bcrypt-pbkdf rounds of an encrypted key file: about 0.6 s to open one (`ssh-keygen -a 64`)
OPENSSH_PEM = b"-----BEGIN OPENSSH PRIVATE KEY-----"

# Asked for the passphrase of an encrypted key file (the file's path in hand); raises KeyFileError
# with advice when it has none.
Passphrase = Callable[[Path], bytes]


class KeyFileError(ValueError):
    """A key file is missing, unreadable, open to others, or not the kind of key asked for: an
    Ed25519 node or member key here, a secp256k1 Ethereum key in ledger.anchor.contract. The
    message names the file, never its contents."""


def signing_digest(domain: bytes, obj: Any) -> bytes:
    """The 32 bytes a signature covers: sha256(domain || canonical(obj))."""
    payload = obj if isinstance(obj, bytes) else encode(obj)
    return hashlib.sha256(domain + payload).digest()


def derive_id(public_key: bytes) -> str:
    """Member / node id of a public key."""
    return hashlib.sha256(b"ledger/id/v1" + public_key).digest()[:20].hex()


class SigningKey:
    """An Ed25519 private key with its public key and derived id."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public_key: bytes = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.id: str = derive_id(self.public_key)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        """Deterministic key from a 32-byte seed (tests and simulations only)."""
        return cls(Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed).digest()))

    def sign(self, domain: bytes, obj: Any) -> bytes:
        return self._private.sign(signing_digest(domain, obj))

    def sign_digest(self, digest: bytes) -> bytes:
        return self._private.sign(digest)

    def sign_certificate(self, builder: x509.CertificateBuilder) -> x509.Certificate:
        """`builder`'s certificate signed with this key (the peer links' TLS, ledger.net.certs)."""
        return builder.sign(self._private, None)

    def to_pem(self, password: bytes | None = None) -> bytes:
        """PKCS#8 PEM; encrypted with `password` when given. That encryption's KDF is cheap: use it only
        with a random machine-made password (handing the key to OpenSSL), never a person's passphrase."""
        encryption: serialization.KeySerializationEncryption = (
            serialization.NoEncryption() if password is None else serialization.BestAvailableEncryption(password)
        )
        return self._private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)

    def to_file_bytes(self, passphrase: bytes | None = None) -> bytes:
        """What `save` writes: plain PKCS#8, or with a passphrase the OpenSSH format under bcrypt-pbkdf."""
        if passphrase is None:
            return self.to_pem()
        if not passphrase:
            raise ValueError("an empty passphrase protects nothing")
        fmt = serialization.PrivateFormat.OpenSSH
        return self._private.private_bytes(
            serialization.Encoding.PEM, fmt, fmt.encryption_builder().kdf_rounds(KDF_ROUNDS).build(passphrase)
        )

    def save(self, path: str | Path, passphrase: bytes | None = None) -> None:
        """Write the key file with mode 0600 (created that way, never briefly world-readable),
        encrypted when a passphrase is given."""
        data = self.to_file_bytes(passphrase)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    @classmethod
    def load(cls, path: str | Path, passphrase: Passphrase | None = None) -> SigningKey:
        """The key in `path`. Refuses a file that group or others may read or write (with the
        `chmod` that fixes it); asks `passphrase` only if the file is encrypted."""
        path = Path(path)
        data = read_private_file(path, "key file")
        try:
            key = _parse_key_file(data, None)
        except TypeError:  # encrypted: cryptography refuses a missing password with TypeError
            if passphrase is None:
                raise KeyFileError(f"key file {path} is encrypted, and no passphrase was given") from None
            secret = passphrase(path)
            try:
                key = _parse_key_file(data, secret)
            except (ValueError, TypeError):
                raise KeyFileError(f"wrong passphrase for key file {path} (or the file is damaged)") from None
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise KeyFileError(f"{path} is not a PEM private key this ledger can use") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"{path} is not an Ed25519 key")
        return cls(key)


def read_private_file(path: Path, what: str) -> bytes:
    """The contents of a secret file (a key, a passphrase); KeyFileError if it cannot be read, is
    not a regular file, or group or others may read or write it. Mode and contents come from one
    open file, so the file checked is the file read."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise KeyFileError(f"{what} {path} is not a regular file")
            mode = stat.S_IMODE(st.st_mode)
            if mode & 0o077:
                raise KeyFileError(
                    f"{what} {path} has mode {mode:04o}: others may read it. Restrict it with `chmod 600 {path}`"
                )
            return f.read()
    except OSError as exc:
        raise KeyFileError(f"cannot read {what} {path}: {exc.strerror}") from exc


def _parse_key_file(data: bytes, password: bytes | None) -> Any:
    """The private key in a PEM key file; TypeError if it is encrypted and `password` is None."""
    if data.lstrip().startswith(OPENSSH_PEM):
        return serialization.load_ssh_private_key(data, password)
    return serialization.load_pem_private_key(data, password)


def verify_digest(public_key: bytes, digest: bytes, signature: bytes) -> bool:
    """True only if `signature` is `public_key`'s Ed25519 signature of `digest` (libsodium; releases the GIL)."""
    if len(public_key) != PUBLIC_KEY_LEN or len(signature) != SIGNATURE_LEN:
        return False
    try:
        crypto_sign_open(signature + digest, public_key)
    except (BadSignatureError, CryptoError, ValueError, TypeError):
        return False
    return True


def verify_many(items: Sequence[tuple[bytes, bytes, bytes]]) -> list[bool]:
    """`verify_digest` over (public_key, digest, signature) triples; one pool task per call."""
    return [verify_digest(pk, digest, sig) for pk, digest, sig in items]


PARALLEL_VERIFY_MIN = 64  # below this, handing work to threads costs more than it saves


def verify_parallel(items: Sequence[tuple[bytes, bytes, bytes]], pool: Executor | None, workers: int) -> list[bool]:
    """`verify_many`, split into one chunk per worker of `pool`; verdicts in input order.

    libsodium releases the GIL while verifying, so the chunks run on all cores at once. The caller
    blocks until every chunk is done. Without a pool, or for a few items, it verifies inline.
    """
    if pool is None or workers < 2 or len(items) < PARALLEL_VERIFY_MIN:
        return verify_many(items)
    size = -(-len(items) // workers)
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    return [ok for oks in pool.map(verify_many, chunks) for ok in oks]


def verify(public_key: bytes, domain: bytes, obj: Any, signature: bytes) -> bool:
    """True only if `signature` is `public_key`'s signature of `obj` under `domain`."""
    return verify_digest(public_key, signing_digest(domain, obj), signature)


def sign_stamped(key: SigningKey, domain: bytes, signed: Callable[[int], object], now_ms: int) -> str:
    """A request token `<time ms>.<signature hex>`: `key`'s signature of `signed(now_ms)` under `domain`."""
    return f"{now_ms}.{key.sign(domain, signed(now_ms)).hex()}"


def stamped_problem(token: str, public_key: bytes, domain: bytes, signed: Callable[[int], object], now_ms: int,
                    max_skew_ms: int, what: str, whose: str) -> str | None:
    """Why `token` (see `sign_stamped`) is not `public_key`'s signature of `signed(its time)` within
    `max_skew_ms` of `now_ms` (None: it is); `what` names the token and `whose` the key in the answer."""
    stamp, _, signature = token.partition(".")
    try:
        when, sig = int(stamp), bytes.fromhex(signature)
    except ValueError:
        return f"{what} is malformed"
    if abs(now_ms - when) > max_skew_ms:
        return f"{what}'s time is more than {max_skew_ms // 1000} s from the node's clock"
    if not verify(public_key, domain, signed(when), sig):
        return f"{what} is not signed by {whose}"
    return None


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()
