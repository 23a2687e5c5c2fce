"""Consensus messages: one signed envelope, a kind tag, a typed body, an optional attachment.

Theory of operation
-------------------
Every consensus message travels as an `Envelope(kind, sender, body, signature, attachment)`
encoded with the canonical codec. `body` is the canonical encoding of the record registered for
`kind` (see `BODY_TYPES`); `attachment` carries bulky content that the signature does not need to
cover because the signed body already commits to it by hash:

- a pre-prepare's body names `(view, height, block_hash, prev_hash)` and its attachment is the
  encoded `Block`, checked against `block_hash` (the header hash commits to the tx root, which
  commits to the transactions);
- a view change's attachment is the tuple of blocks its prepared proofs name, so the new primary
  can re-propose them; a new view carries the view changes with their attachments stripped.

Signatures are domain separated per kind (`DOMAINS`). For every kind but `vote` the signature
covers `SignedEnvelope(chain_id, kind, sender, sha256(body))`, a record of type
(str, str, str, bytes) that can never encode like a `chain.CommitVote` (str, int, int, bytes).
A `vote` is the commit-certificate vote itself: its signature is the validator's signature over
`chain.CommitVote(chain_id, height, view, block_hash)` under `DOMAIN_COMMIT`, so the 2f+1 votes
for one block assemble directly into a `chain.CommitCertificate`.

Decoding is strict and never raises anything but `MalformedMessage`: unknown kinds, bodies that do
not decode canonically, attachments on kinds that take none, or oversized records are rejected.
`SignatureChecker` verifies signatures against the validator set and caches positive results, so a
signature seen again (inside a new-view, a retransmission, a duplicate) costs one hash.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from ledger.chain import Block, CommitCertificate, CommitVote, ValidatorSignature
from ledger.codec import CodecError, decode, encode
from ledger.crypto import (
    DOMAIN_CHECKPOINT,
    DOMAIN_COMMIT,
    DOMAIN_NEWVIEW,
    DOMAIN_PREPARE,
    DOMAIN_PREPREPARE,
    DOMAIN_VIEWCHANGE,
    SigningKey,
    sha256,
    signing_digest,
    verify_digest,
)

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
MAX_ID_LEN = 128
HASH_LEN = 32

KIND_PREPREPARE = "preprepare"
KIND_PREPARE = "prepare"
KIND_COMMIT = "commit"
KIND_VOTE = "vote"
KIND_CHECKPOINT = "checkpoint"
KIND_VIEWCHANGE = "viewchange"
KIND_NEWVIEW = "newview"
KIND_SUSPECT = "suspect"


class MalformedMessage(ValueError):
    """Bytes that are not a well-formed consensus message; the text says which check failed."""


# --- bodies ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrePrepare:
    """The primary of `view` orders the block `block_hash` (child of `prev_hash`) at `height`."""

    view: int
    height: int
    block_hash: bytes
    prev_hash: bytes


@dataclass(frozen=True)
class Prepare:
    view: int
    height: int
    block_hash: bytes


@dataclass(frozen=True)
class Commit:
    """PBFT commit: the sender is prepared on the block in `view` (not yet a certificate vote)."""

    view: int
    height: int
    block_hash: bytes


@dataclass(frozen=True)
class Vote:
    """A commit-certificate vote, sent only for a block the sender knows to be decided.

    `view` is the block header's view (what `chain.check_certificate` checks), not the view the
    vote was sent in.
    """

    height: int
    view: int
    block_hash: bytes


@dataclass(frozen=True)
class Checkpoint:
    """The sender has delivered `block_hash` at `height` (a multiple of the checkpoint interval)."""

    height: int
    block_hash: bytes


@dataclass(frozen=True)
class CheckpointProof:
    """2f+1 checkpoint signatures over one (height, block_hash): a stable checkpoint."""

    height: int
    block_hash: bytes
    signatures: tuple[ValidatorSignature, ...]  # sorted by validator, one each


@dataclass(frozen=True)
class PreparedProof:
    """A pre-prepare plus 2f matching prepares of one view, in compact (signature-only) form."""

    view: int
    height: int
    block_hash: bytes
    prev_hash: bytes
    preprepare_signature: bytes  # the primary of `view` signed PrePrepare(view, height, hash, prev)
    prepares: tuple[ValidatorSignature, ...]  # backups' signatures over Prepare(view, height, hash)


@dataclass(frozen=True)
class ViewChange:
    """The sender moves to `view`; it carries what the new primary needs to keep every decision.

    `checkpoint` is its stable checkpoint, `certificate` the commit certificate of the last block it
    delivered, `prepared` its highest-view prepared proof for each height above both.
    """

    view: int
    checkpoint: CheckpointProof | None
    certificate: CommitCertificate | None
    prepared: tuple[PreparedProof, ...]
    # When the sender left installed view `view - 1` on suspicion: f+1 validators' signatures over
    # Suspect(view - 1), so that every replica that sees this leaves that view too. Empty when it
    # followed others (the join rule) or gave up waiting for a new view.
    suspicion: tuple[ValidatorSignature, ...] = ()


@dataclass(frozen=True)
class Suspect:
    """The sender suspects the primary of `view`. It stays in the view until f+1 validators suspect it
    (one of them honest), so that no replica leaves alone a view in which the others make progress."""

    view: int


@dataclass(frozen=True)
class NewView:
    """The primary of `view` starts it: 2f+1 view changes and the chain they force.

    `chosen` lists the block hashes re-proposed at heights base_height+1, base_height+2, ...
    `base_hash` is empty when no view change named a certified block (the chain starts at the
    committed genesis).
    """

    view: int
    viewchanges: tuple[bytes, ...]  # encoded Envelopes of kind viewchange, attachments stripped
    base_height: int
    base_hash: bytes
    chosen: tuple[bytes, ...]


Body = PrePrepare | Prepare | Commit | Vote | Checkpoint | ViewChange | NewView | Suspect

BODY_TYPES: dict[str, type] = {
    KIND_PREPREPARE: PrePrepare,
    KIND_PREPARE: Prepare,
    KIND_COMMIT: Commit,
    KIND_VOTE: Vote,
    KIND_CHECKPOINT: Checkpoint,
    KIND_VIEWCHANGE: ViewChange,
    KIND_NEWVIEW: NewView,
    KIND_SUSPECT: Suspect,
}
KIND_OF: dict[type, str] = {cls: kind for kind, cls in BODY_TYPES.items()}
DOMAINS: dict[str, bytes] = {
    KIND_PREPREPARE: DOMAIN_PREPREPARE,
    KIND_PREPARE: DOMAIN_PREPARE,
    KIND_COMMIT: DOMAIN_COMMIT,
    KIND_VOTE: DOMAIN_COMMIT,
    KIND_CHECKPOINT: DOMAIN_CHECKPOINT,
    KIND_VIEWCHANGE: DOMAIN_VIEWCHANGE,
    KIND_NEWVIEW: DOMAIN_NEWVIEW,
    KIND_SUSPECT: DOMAIN_VIEWCHANGE,  # the kind inside the signed envelope keeps the two apart
}
_ATTACHMENT_KINDS = (KIND_PREPREPARE, KIND_VIEWCHANGE)


@dataclass(frozen=True)
class Envelope:
    kind: str
    sender: str
    body: bytes
    signature: bytes
    attachment: bytes  # unsigned bulk content committed to by the body (see the module comment)


@dataclass(frozen=True)
class SignedEnvelope:
    """What an envelope's signature covers (every kind but `vote`)."""

    chain_id: str
    kind: str
    sender: str
    body_hash: bytes


# --- encoding and decoding ------------------------------------------------------------------


def encode_envelope(env: Envelope) -> bytes:
    return encode(env)


def decode_envelope(data: bytes) -> Envelope:
    """Strictly decode an envelope; raise MalformedMessage for anything else."""
    # Input is bytes of bounded size.
    if not isinstance(data, bytes | bytearray | memoryview) or len(data) > MAX_MESSAGE_BYTES:
        raise MalformedMessage("not bytes or too large")
    try:
        env = decode(Envelope, bytes(data))
    except CodecError as exc:
        raise MalformedMessage(f"bad envelope: {exc}") from exc
    # The kind is one we know.
    if env.kind not in BODY_TYPES:
        raise MalformedMessage(f"unknown kind {env.kind[:32]!r}")
    # The sender id is plausible.
    if not 0 < len(env.sender) <= MAX_ID_LEN:
        raise MalformedMessage("bad sender id")
    # Only kinds with bulk content carry an attachment.
    if env.attachment and env.kind not in _ATTACHMENT_KINDS:
        raise MalformedMessage(f"{env.kind} carries no attachment")
    return env


def decode_body(env: Envelope) -> Any:
    """The typed body of an envelope whose kind is known; raise MalformedMessage otherwise."""
    cls = BODY_TYPES.get(env.kind)
    if cls is None:
        raise MalformedMessage(f"unknown kind {env.kind[:32]!r}")
    try:
        body: Any = decode(cls, env.body)
    except (CodecError, RecursionError) as exc:
        raise MalformedMessage(f"bad {env.kind} body: {exc}") from exc
    check_body_shape(body)
    return body


def _check_hash(value: bytes, what: str, allow_empty: bool = False) -> None:
    if len(value) != HASH_LEN and not (allow_empty and not value):
        raise MalformedMessage(f"{what} is not a 32-byte hash")


def check_body_shape(body: Any) -> None:
    """Field-level sanity that needs no state: non-negative numbers, 32-byte hashes."""
    for name in ("view", "height", "base_height"):
        value = getattr(body, name, 0)
        # Views and heights are non-negative 64-bit numbers.
        if not 0 <= value < 2**63:
            raise MalformedMessage(f"{name} out of range")
    for name in ("block_hash", "prev_hash"):
        if hasattr(body, name):
            _check_hash(getattr(body, name), name)
    if isinstance(body, NewView):
        _check_hash(body.base_hash, "base_hash", allow_empty=True)
        for h in body.chosen:
            _check_hash(h, "chosen hash")
    if isinstance(body, ViewChange):
        for p in body.prepared:
            check_body_shape(p)


def decode_blocks(attachment: bytes) -> tuple[Block, ...]:
    try:
        return decode(tuple[Block, ...], attachment) if attachment else ()
    except (CodecError, RecursionError) as exc:
        raise MalformedMessage(f"bad block attachment: {exc}") from exc


def decode_block(attachment: bytes) -> Block:
    try:
        return decode(Block, attachment)
    except (CodecError, RecursionError) as exc:
        raise MalformedMessage(f"bad block attachment: {exc}") from exc


def strip(env: Envelope) -> Envelope:
    """The envelope without its attachment (the signature stays valid)."""
    return replace(env, attachment=b"") if env.attachment else env


# --- signing and verifying ------------------------------------------------------------------


def compute_signing_digest(chain_id: str, kind: str, sender: str, body: Any, body_bytes: bytes) -> bytes:
    """The 32 bytes the signature of a message covers."""
    if kind == KIND_VOTE:
        vote = CommitVote(chain_id, body.height, body.view, body.block_hash)
        return signing_digest(DOMAIN_COMMIT, vote)
    return signing_digest(DOMAINS[kind], SignedEnvelope(chain_id, kind, sender, sha256(body_bytes)))


def sign_message(key: SigningKey, chain_id: str, body: Any, attachment: bytes = b"") -> Envelope:
    kind = KIND_OF[type(body)]
    body_bytes = encode(body)
    digest = compute_signing_digest(chain_id, kind, key.id, body, body_bytes)
    return Envelope(kind, key.id, body_bytes, key.sign_digest(digest), attachment)


@dataclass(frozen=True)
class Signer:
    """A validator's key bound to its chain: signs consensus messages as that validator."""

    key: SigningKey
    chain_id: str

    @property
    def id(self) -> str:
        return self.key.id

    def sign(self, body: Any, attachment: bytes = b"") -> Envelope:
        return sign_message(self.key, self.chain_id, body, attachment)


def compute_body_signature_digest(chain_id: str, sender: str, body: Any) -> bytes:
    """Digest of the signature `sender` would have made over `body` (to check compact proofs)."""
    kind = KIND_OF[type(body)]
    return compute_signing_digest(chain_id, kind, sender, body, encode(body))


class SignatureChecker:
    """Verifies validators' signatures, caching the ones that verified (bounded)."""

    MAX_CACHE = 50_000

    def __init__(self, chain_id: str, keys: Mapping[str, bytes]) -> None:
        self.chain_id = chain_id
        self.keys = dict(keys)
        self._ok: set[tuple[str, bytes, bytes]] = set()

    def digest(self, signer: str, digest: bytes, signature: bytes) -> bool:
        public_key = self.keys.get(signer)
        if public_key is None:
            return False
        entry = (signer, digest, signature)
        if entry in self._ok:
            return True
        if not verify_digest(public_key, digest, signature):
            return False
        if len(self._ok) >= self.MAX_CACHE:
            self._ok.clear()
        self._ok.add(entry)
        return True

    def envelope(self, env: Envelope, body: Any) -> bool:
        digest = compute_signing_digest(self.chain_id, env.kind, env.sender, body, env.body)
        return self.digest(env.sender, digest, env.signature)

    def body(self, signer: str, body: Any, signature: bytes) -> bool:
        return self.digest(signer, compute_body_signature_digest(self.chain_id, signer, body), signature)

    def commit_vote(self, signer: str, vote: CommitVote, signature: bytes) -> bool:
        return self.digest(signer, signing_digest(DOMAIN_COMMIT, vote), signature)
