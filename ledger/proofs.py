"""State proofs that anyone can check offline against the genesis validator set (docs/proofs.md).

A state proof is a chain: entries (state keys with their values, or their absence) -> sparse-Merkle
proofs -> one header (state_root) -> its commit certificate (a quorum of the validators in force at its
height signed the header hash) -> optionally an Ethereum anchor: a later header whose history covers the
proven block, and the anchor's effective record (attested by f+1 validators) proven in a certified later
state, so that the chain, contract, transaction and submitter the anchor names are the ones the ledger
certified, never the proof's own say. When the validator set changed at or before the highest block the
proof certifies (the proven block, or its anchor's record), the proof carries the changes
(`validator_sets`): each one's block, certified by the set before it, with the state proof of the new set.
Checking it needs only the genesis file: no trust in the node that served it.

Every failure raises `InvalidProof` with a stable `code` (the list and the order of the checks are in
docs/proofs.md), so independent verifiers can agree with this one on every known-answer vector.

An answer is built by running the query over a `RecordingView` and proving every key it read; a verifier
re-runs the same query over a `ProvenView` of the proven entries (`ledger.answers`), which refuses any
key the proof does not cover.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ledger import merkle
from ledger.chain import BlockHeader, CommitVote, compute_block_hash
from ledger.chaindb import ChainDB
from ledger.codec import CodecError, decode
from ledger.consensus.quorum import quorum_size
from ledger.crypto import DOMAIN_COMMIT, verify
from ledger.genesis import Genesis
from ledger.smt import SMTProof, verify_proof
from ledger.state import StateView
from ledger.store import MemoryStore
from ledger.validators import ACTIVATION_DELAY, ValidatorSet, keys_of, set_key, sets_from

PROOF_TYPE = "ledger-state-proof/v2"  # every block the proof certifies is genesis's set's
PROOF_TYPE_SETS = "ledger-state-proof/v3"  # the proof carries the set changes in force (`validator_sets`)
PROOF_TYPES = (PROOF_TYPE, PROOF_TYPE_SETS)
HASH_LEN = 32
SIGNATURE_LEN = 64
MAX_UINT64 = 2**64 - 1
MAX_ENTRIES = 1100  # an asset answer proves its record and up to 1,000 history events
PROOF_FIELDS = {"type", "chain_id", "height", "header", "certificate", "entries"}
SET_LINK_FIELDS = {"header", "certificate", "entry"}
MAX_SET_LINKS = 10_000
HEADER_FIELDS = ("height", "prev_hash", "view", "timestamp", "tx_root", "state_root", "history_root", "proposer")
ANCHOR_FIELDS = {"height", "header", "history_proof", "eth_chain_id", "contract", "tx_hash", "eth_block", "submitter",
                 "record"}
RECORD_FIELDS = {"header", "certificate", "smt"}


class InvalidProof(ValueError):
    """The proof (or the answer around it) does not check out: `code` names the check, the message says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class AnchorClaim:
    """What the proof says is on Ethereum: `contract` on chain `eth_chain_id` stores `root` for `height` under
    `submitter`, written by transaction `tx_hash` in block `eth_block`. Offline, a valid proof shows that the
    ledger certified exactly this anchor as effective (in block `record_height`); only an Ethereum node can
    show that Ethereum holds it."""

    height: int
    root: bytes
    eth_chain_id: int
    contract: str
    tx_hash: str
    eth_block: int
    submitter: str
    record_height: int


@dataclass(frozen=True)
class VerifiedState:
    """What a valid proof proves: the state under `keys` (None: absent) at `height`."""

    height: int
    header: BlockHeader
    block_hash: bytes
    keys: tuple[bytes, ...]  # in the proof's order; keys[0] is the key the answer is about
    values: Mapping[bytes, bytes | None]
    anchor: AnchorClaim | None
    anchor_asked: bool  # the proof has an `anchor` member (null when no anchor covered it yet)

    def view(self) -> ProvenView:
        return ProvenView(self.values)


class ProvenView:
    """A state view of the proven entries only: reading any other key fails the answer (`proof_incomplete`)."""

    def __init__(self, values: Mapping[bytes, bytes | None]) -> None:
        self._values = values

    def get(self, key: bytes) -> bytes | None:
        if key not in self._values:
            raise InvalidProof("proof_incomplete", f"the answer depends on {key.decode(errors='replace')!r}, "
                               "which the proof does not cover")
        return self._values[key]


class RecordingView:
    """A state view that remembers which keys were read, in order: the keys an answer's proof must cover."""

    def __init__(self, base: StateView) -> None:
        self._base = base
        self.keys: dict[bytes, None] = {}

    def get(self, key: bytes) -> bytes | None:
        self.keys.setdefault(key, None)
        return self._base.get(key)


# --- building --------------------------------------------------------------------------------------


def build_anchor_section(chain: ChainDB, height: int) -> dict[str, Any] | None:
    """The path from block `height` to the latest effective Ethereum anchor at or above it (None if none yet).

    The anchored header hashes to the root the contract stores for its height; its history_root covers
    every earlier block, so an RFC 6962 inclusion proof links block `height` to it. The anchor's effective
    record is proven against the head's certified header: the ledger, not the proof, names the anchor.
    """
    from ledger.anchor.records import get_anchor_record, latest_effective_height, record_key
    from ledger.codec import to_plain

    view = chain.latest
    head = chain.height
    record = get_anchor_record(view, latest_effective_height(view))
    if record is None or record.height < height:
        return None
    anchored = chain.get_block(record.height)
    certified = chain.certified_header(head)
    if anchored is None or certified is None:
        return None
    record_header, record_cert = certified
    _, _, smt = chain.prove(record_key(record.height), head)
    path = [] if record.height == height else chain.history_proof(height, record.height)
    return {
        "height": record.height,
        "header": to_plain(anchored.header),
        "history_proof": [h.hex() for h in path],
        "eth_chain_id": record.eth_chain_id,
        "contract": record.contract,
        "tx_hash": record.tx_hash.hex(),
        "eth_block": record.eth_block,
        "submitter": record.submitter,
        "record": {"header": to_plain(record_header), "certificate": to_plain(record_cert), "smt": smt.to_dict()},
    }


def build_state_proof(
    chain: ChainDB, keys: bytes | Iterable[bytes], height: int | None = None, anchor: bool = False
) -> dict[str, Any]:
    """The proof of `keys` (the first is the one the answer is about) at `height` (default: the head);
    `anchor=True` adds the Ethereum anchor path."""
    from ledger.codec import to_plain

    wanted = [keys] if isinstance(keys, bytes) else list(dict.fromkeys(keys))
    h = chain.height if height is None else height
    certified = chain.certified_header(h)
    if certified is None:
        raise KeyError(f"no committed block at height {h}")
    header, cert = certified
    entries = []
    for key in wanted:
        _, value, smt = chain.prove(key, h)
        entries.append({"key": key.hex(), "value": None if value is None else value.hex(), "smt": smt.to_dict()})
    anchor_section = build_anchor_section(chain, h) if anchor else None
    # The changes in force at the highest block the proof certifies: the anchor's record may lie beyond a
    # change after the proven block.
    last_certified = h if anchor_section is None else max(h, anchor_section["record"]["header"]["height"])
    links = build_validator_links(chain, last_certified)
    doc: dict[str, Any] = {
        "type": PROOF_TYPE_SETS if links else PROOF_TYPE,
        "chain_id": chain.chain_id,
        "height": h,
        "header": to_plain(header),
        "certificate": to_plain(cert),
        "entries": entries,
    }
    if links:  # only after a change (version 3): other proofs keep the version-2 form, byte for byte
        doc["validator_sets"] = links
    if anchor:
        doc["anchor"] = anchor_section
    return doc


def build_validator_links(chain: ChainDB, height: int) -> list[dict[str, Any]]:
    """Every validator-set change in force at `height`, in order: the block that committed it, its
    certificate (by the set before it), and the proof of the new set in that block's state."""
    from ledger.codec import to_plain

    links = []
    for change in sets_from(chain.latest, 1, chain.genesis)[1:]:
        if change.active_from > height:
            break
        header, cert, value, smt = chain.set_change(change.seq, change.committed_height)
        key = set_key(change.seq)
        links.append({"header": to_plain(header), "certificate": to_plain(cert),
                      "entry": {"key": key.hex(), "value": None if value is None else value.hex(),
                                "smt": smt.to_dict()}})
    return links


# --- parsing (every field typed exactly; anything else is `malformed_proof`) ------------------------


def _malformed(what: str) -> InvalidProof:
    return InvalidProof("malformed_proof", f"malformed proof: {what}")


def _object(value: Any, fields: set[str], what: str, optional: frozenset[str] = frozenset()) -> dict[str, Any]:
    if type(value) is not dict:
        raise _malformed(f"{what} is not an object")
    missing = sorted(fields - set(value))
    unknown = sorted(set(value) - fields - optional)
    if missing or unknown:
        raise _malformed(f"{what}: missing {missing}, unknown {unknown}")
    return value


def _uint(value: Any, what: str) -> int:
    if type(value) is not int or not 0 <= value <= MAX_UINT64:
        raise _malformed(f"{what} is not an unsigned 64-bit integer")
    return value


def _text(value: Any, what: str) -> str:
    if type(value) is not str:
        raise _malformed(f"{what} is not a string")
    try:
        value.encode()
    except UnicodeEncodeError as exc:
        raise _malformed(f"{what} is not valid Unicode text") from exc
    return value


def _hex(value: Any, what: str, length: int | None = None) -> bytes:
    if type(value) is not str:
        raise _malformed(f"{what} is not a hex string")
    try:
        out = bytes.fromhex(value)
    except ValueError:
        raise _malformed(f"{what} is not hex") from None
    if out.hex() != value:
        raise _malformed(f"{what} is not lowercase hex without separators")
    if length is not None and len(out) != length:
        raise _malformed(f"{what} is not {length} bytes")
    return out


def parse_header(value: Any, what: str = "header") -> BlockHeader:
    d = _object(value, set(HEADER_FIELDS), what)
    return BlockHeader(
        _uint(d["height"], f"{what}.height"), _hex(d["prev_hash"], f"{what}.prev_hash", HASH_LEN),
        _uint(d["view"], f"{what}.view"), _uint(d["timestamp"], f"{what}.timestamp"),
        _hex(d["tx_root"], f"{what}.tx_root", HASH_LEN), _hex(d["state_root"], f"{what}.state_root", HASH_LEN),
        _hex(d["history_root"], f"{what}.history_root", HASH_LEN), _text(d["proposer"], f"{what}.proposer"),
    )


def _parse_certificate(value: Any, what: str = "certificate") -> tuple[int, int, bytes, list[tuple[str, bytes]]]:
    d = _object(value, {"height", "view", "block_hash", "signatures"}, what)
    if type(d["signatures"]) is not list:
        raise _malformed(f"{what}.signatures is not a list")
    signatures = []
    for i, s in enumerate(d["signatures"]):
        s = _object(s, {"validator", "signature"}, f"{what}.signatures[{i}]")
        signatures.append((_text(s["validator"], "validator"), _hex(s["signature"], "signature", SIGNATURE_LEN)))
    return (_uint(d["height"], f"{what}.height"), _uint(d["view"], f"{what}.view"),
            _hex(d["block_hash"], f"{what}.block_hash", HASH_LEN), signatures)


def _parse_smt(value: Any, what: str) -> SMTProof:
    smt = _object(value, {"siblings", "leaf"}, what)
    siblings = smt["siblings"]
    if type(siblings) is not list or len(siblings) > 256:
        raise _malformed(f"{what}.siblings is not a list of at most 256 hashes")
    leaf = smt["leaf"]
    if leaf is not None and (type(leaf) is not list or len(leaf) != 2):
        raise _malformed(f"{what}.leaf is neither null nor [path, value_hash]")
    return SMTProof(
        tuple(_hex(s, f"{what}.siblings", HASH_LEN) for s in siblings),
        None if leaf is None else (_hex(leaf[0], "leaf path", HASH_LEN), _hex(leaf[1], "leaf hash", HASH_LEN)),
    )


def _parse_entries(value: Any) -> list[tuple[bytes, bytes | None, SMTProof]]:
    if type(value) is not list or not 1 <= len(value) <= MAX_ENTRIES:
        raise _malformed(f"entries is not a list of 1 to {MAX_ENTRIES} entries")
    out = []
    for i, e in enumerate(value):
        e = _object(e, {"key", "value", "smt"}, f"entries[{i}]")
        key = _hex(e["key"], f"entries[{i}].key")
        if not key:
            raise _malformed(f"entries[{i}].key is empty")
        val = None if e["value"] is None else _hex(e["value"], f"entries[{i}].value")
        out.append((key, val, _parse_smt(e["smt"], f"entries[{i}].smt")))
    if len({k for k, _, _ in out}) != len(out):
        raise _malformed("two entries have the same key")
    return out


@dataclass(frozen=True)
class _AnchorSection:
    header: BlockHeader  # the anchored header
    path: list[bytes]  # history proof
    claim: AnchorClaim
    tx_hash: bytes
    record_header: BlockHeader  # a certified later header whose state holds the effective record
    record_cert: tuple[int, int, bytes, list[tuple[str, bytes]]]
    record_smt: SMTProof


def _address(value: Any, what: str) -> str:
    text = _text(value, what)
    if len(text) != 42 or not text.startswith("0x") or any(c not in "0123456789abcdef" for c in text[2:]):
        raise _malformed(f"{what} is not 0x and 40 lowercase hex digits")
    return text


def _parse_anchor(value: Any) -> _AnchorSection:
    d = _object(value, ANCHOR_FIELDS, "anchor")
    anchored = parse_header(d["header"], "anchor.header")
    if type(d["history_proof"]) is not list:
        raise _malformed("anchor.history_proof is not a list")
    path = [_hex(h, "anchor.history_proof", HASH_LEN) for h in d["history_proof"]]
    contract = _address(d["contract"], "anchor.contract")
    submitter = _address(d["submitter"], "anchor.submitter")
    tx_hash = _hex(d["tx_hash"], "anchor.tx_hash", HASH_LEN)
    eth_chain_id = _uint(d["eth_chain_id"], "anchor.eth_chain_id")
    if eth_chain_id == 0:
        raise _malformed("anchor.eth_chain_id is 0")
    r = _object(d["record"], RECORD_FIELDS, "anchor.record")
    record_header = parse_header(r["header"], "anchor.record.header")
    record_cert = _parse_certificate(r["certificate"], "anchor.record.certificate")
    record_smt = _parse_smt(r["smt"], "anchor.record.smt")
    claim = AnchorClaim(_uint(d["height"], "anchor.height"), compute_block_hash(anchored), eth_chain_id, contract,
                        tx_hash.hex(), _uint(d["eth_block"], "anchor.eth_block"), submitter, record_header.height)
    return _AnchorSection(anchored, path, claim, tx_hash, record_header, record_cert, record_smt)


# --- checking ---------------------------------------------------------------------------------------


def genesis_header(genesis: Genesis) -> BlockHeader:
    """Header 0, computed from the genesis file alone (docs/proofs.md, "The genesis block")."""
    return ChainDB(MemoryStore(), genesis).head


def verify_state_proof(proof: Any, genesis: Genesis) -> VerifiedState:
    """Check every link of `proof` against `genesis`, in the order of docs/proofs.md; raise InvalidProof
    naming the first that fails."""
    # The document is a state proof of this version and of this chain.
    if type(proof) is not dict or proof.get("type") not in PROOF_TYPES:
        found = proof.get("type") if type(proof) is dict else None
        raise InvalidProof("unsupported_version", f"not a {' or '.join(PROOF_TYPES)} document (type {found!r})")
    if proof.get("chain_id") != genesis.chain_id:
        raise InvalidProof("wrong_chain", f"proof is for chain {proof.get('chain_id')!r}, genesis is "
                           f"{genesis.chain_id!r}")
    # Version 3 carries the validator-set changes, version 2 none.
    if proof["type"] == PROOF_TYPE_SETS:
        _object(proof, PROOF_FIELDS | {"validator_sets"}, "proof", frozenset({"anchor"}))
    else:
        _object(proof, PROOF_FIELDS, "proof", frozenset({"anchor"}))
    height = _uint(proof["height"], "height")
    header = parse_header(proof["header"])
    certificate = _parse_certificate(proof["certificate"])
    entries = _parse_entries(proof["entries"])
    anchor = None if proof.get("anchor") is None else _parse_anchor(proof["anchor"])
    # The proof's height is its header's.
    if height != header.height:
        raise InvalidProof("height_mismatch", f"the proof says height {height}, its header is block {header.height}")
    block_hash = compute_block_hash(header)
    if header.height == 0 and header != genesis_header(genesis):
        # Block 0 is fixed by the genesis file itself.
        raise InvalidProof("genesis_header", "header 0 is not this genesis file's block 0")
    # The certificate names this exact header (checked again below; first, as docs/proofs.md orders it).
    if certificate[:3] != (header.height, header.view, block_hash):
        raise InvalidProof("certificate_mismatch", "the certificate is for another block")
    # The sets in force up to the highest block the proof certifies (the anchor's record, if above).
    last_certified = header.height if anchor is None else max(header.height, anchor.record_header.height)
    sets = _sets_in_force(proof.get("validator_sets"), genesis, last_certified)
    _check_certificate(genesis.chain_id, _keys_at(sets, header.height), header, block_hash, certificate)
    # Each entry's value (or absence) is what the header's state root commits to.
    for key, value, smt in entries:
        if not verify_proof(header.state_root, key, value, smt):
            raise InvalidProof("state_proof", f"the entry for {key.decode(errors='replace')!r} does not match the "
                               "header's state_root")
    claim = None if anchor is None else check_anchor(anchor, header, block_hash, genesis.chain_id,
                                                     _keys_at(sets, anchor.record_header.height))
    return VerifiedState(header.height, header, block_hash, tuple(k for k, _, _ in entries),
                         {k: v for k, v, _ in entries}, claim, "anchor" in proof)


def _keys_at(sets: list[tuple[int, dict[str, bytes]]], height: int) -> dict[str, bytes]:
    """Of `sets` ((first height, validators), oldest first, genesis's first from 0), the one of `height`."""
    return next(keys for first, keys in reversed(sets) if first <= height)


def _sets_in_force(links: Any, genesis: Genesis, height: int) -> list[tuple[int, dict[str, bytes]]]:
    """The validator sets in force up to `height`, each as (first height it certifies, validators): genesis's,
    then each change the proof carries, each checked against the set before it (docs/proofs.md,
    "Validator-set changes")."""
    validators, governs_from = genesis.validator_keys(), 1
    sets = [(0, validators)]  # genesis's set answers for block 0 too (which carries no signatures)
    if links is None:
        return sets
    if type(links) is not list or not 1 <= len(links) <= MAX_SET_LINKS:
        raise _malformed(f"validator_sets is not a list of 1 to {MAX_SET_LINKS} changes")
    for seq, link in enumerate(links, 1):
        what = f"validator_sets[{seq - 1}]"
        d = _object(link, SET_LINK_FIELDS, what)
        header = parse_header(d["header"], f"{what}.header")
        certificate = _parse_certificate(d["certificate"])
        cert_height, cert_view, cert_hash, _ = certificate
        [(key, value, smt)] = _parse_entries([d["entry"]])
        block_hash = compute_block_hash(header)
        # The change was committed while the set before it governed, by a block that set certified.
        if header.height < governs_from or header.height == 0:
            raise InvalidProof("validator_set_link", f"{what}: block {header.height} precedes the set before it")
        if (cert_height, cert_view, cert_hash) != (header.height, header.view, block_hash):
            raise InvalidProof("validator_set_link", f"{what}: the certificate is for another block")
        _check_certificate(genesis.chain_id, validators, header, block_hash, certificate)
        # Its state holds set number `seq` (the changes come in order, none left out in between).
        if key != set_key(seq) or value is None or not verify_proof(header.state_root, key, value, smt):
            raise InvalidProof("validator_set_link", f"{what}: not a proof of validator set {seq} in that block")
        try:
            record = decode(ValidatorSet, value)
        except CodecError as exc:
            raise InvalidProof("validator_set_link", f"{what}: the set record does not decode: {exc}") from exc
        # The set is the one this block decided, governing from the activation height on, up to the proof.
        if (record.seq, record.committed_height, record.active_from) != (
                seq, header.height, header.height + ACTIVATION_DELAY) or record.active_from > height:
            raise InvalidProof("validator_set_link", f"{what}: set {record.seq} decided at {record.committed_height} "
                               f"for height {record.active_from} is not change {seq} in force at height {height}")
        validators, governs_from = keys_of(record.validators), record.active_from
        sets.append((governs_from, validators))
    return sets


def _check_certificate(chain_id: str, validators: Mapping[str, bytes], header: BlockHeader, block_hash: bytes,
                       certificate: tuple[int, int, bytes, list[tuple[str, bytes]]], code: str | None = None) -> None:
    """The certificate names `header` and carries a quorum of `validators`' signatures; the failure codes are
    the certificate_* ones, or `code` for all of them (an anchor record's certificate)."""

    def fail(own: str, message: str) -> InvalidProof:
        return InvalidProof(code or own, message if code is None else f"the anchor record's header: {message}")

    cert_height, cert_view, cert_hash, signatures = certificate
    # The certificate names this exact header.
    if (cert_height, cert_view, cert_hash) != (header.height, header.view, block_hash):
        raise fail("certificate_mismatch", "the certificate is for another block")
    signers = [v for v, _ in signatures]
    if header.height == 0:
        # Block 0 is committed by the genesis file, not by signatures.
        if signers:
            raise fail("certificate_signers", "block 0 carries no signatures")
        return
    # Each validator signs at most once, in ascending order of id, and only validators in force sign.
    if signers != sorted(set(signers)):
        raise fail("certificate_signers", "certificate signers are duplicated or unsorted")
    unknown = [v for v in signers if v not in validators]
    if unknown:
        raise fail("certificate_signers", f"certificate signed by {unknown[0]!r}, not a validator at height "
                   f"{header.height}")
    # A quorum signed.
    if len(signers) < quorum_size(len(validators)):
        raise fail("certificate_quorum", f"{len(signers)} signatures, a quorum of {len(validators)} validators is "
                   f"{quorum_size(len(validators))}")
    vote = CommitVote(chain_id, header.height, header.view, block_hash)
    for validator, signature in signatures:
        # Every signature verifies under the commit domain.
        if not verify(validators[validator], DOMAIN_COMMIT, vote, signature):
            raise fail("certificate_signature", f"bad commit signature from {validator}")


def check_anchor(anchor: _AnchorSection, header: BlockHeader, block_hash: bytes, chain_id: str,
                 validators: Mapping[str, bytes]) -> AnchorClaim:
    """The offline part of an anchor: block `header` is covered by the anchored header, and the ledger certified
    the anchor (chain, contract, transaction, submitter) as effective. The record's block is checked against
    `validators`, the set in force at the record's height (a set change between the proven block and the
    record is one of the proof's `validator_sets`: docs/proofs.md)."""
    from ledger.anchor.records import AnchorRecord, record_key
    from ledger.codec import encode

    anchored, path, claim = anchor.header, anchor.path, anchor.claim
    # The anchor section names its header's height, at or above the proven block.
    if claim.height != anchored.height or claim.height < header.height:
        raise InvalidProof("anchor_height", "the anchor's height does not match its header, or lies below the "
                           "proven block")
    if claim.height == header.height:
        # The proven block is the anchored block itself.
        if anchored != header or path:
            raise InvalidProof("anchor_header", "the anchored header differs from the proven block's header")
    # Otherwise the anchored header's history_root (blocks 0..A-1) includes the proven block.
    elif not merkle.verify_inclusion(merkle.leaf_hash(block_hash), header.height, claim.height, path,
                                     anchored.history_root):
        raise InvalidProof("anchor_history", "the history proof does not link the block to the anchored header")
    # The record lies in a later block than the one it anchors.
    if anchor.record_header.height <= claim.height:
        raise InvalidProof("anchor_record", "the anchor's record is not in a block above the anchored one")
    # That block is certified by a quorum of the validators in force at its height.
    _check_certificate(chain_id, validators, anchor.record_header, compute_block_hash(anchor.record_header),
                       anchor.record_cert, "anchor_certificate")
    # Its state holds exactly this anchor as the effective one of its height.
    record = AnchorRecord(claim.height, claim.root, claim.eth_chain_id, claim.contract, anchor.tx_hash,
                          claim.eth_block, claim.submitter)
    if not verify_proof(anchor.record_header.state_root, record_key(claim.height), encode(record), anchor.record_smt):
        raise InvalidProof("anchor_record", f"the ledger's effective anchor of height {claim.height} is not the one "
                           "this proof names (chain, contract, transaction, block or submitter)")
    return claim


def check_anchor_certified(claim: AnchorClaim, genesis: Genesis) -> None:
    """The anchor names the chain, the contract and a submitter that the genesis file certifies; raise
    InvalidProof (`anchor_not_certified`) if not. Before `--rpc` asks a contract anything, the contract is the
    trust root's choice, never the proof's: a contract of a liar's own would return whatever root it likes."""
    settings = genesis.anchoring
    if settings is None:
        raise InvalidProof("anchor_not_certified", "the genesis file certifies no anchoring settings")
    if (claim.eth_chain_id, claim.contract) != (settings.eth_chain_id, settings.contract):
        raise InvalidProof("anchor_not_certified", f"the anchor names contract {claim.contract} on chain "
                           f"{claim.eth_chain_id}; the genesis file certifies {settings.contract} on chain "
                           f"{settings.eth_chain_id}")
    if claim.submitter not in settings.submitters:
        raise InvalidProof("anchor_not_certified", f"the anchor's submitter {claim.submitter} is not certified "
                           "by the genesis file")


def check_anchor_on_chain(claim: AnchorClaim, rpc: str, genesis: Genesis) -> None:
    """Ask the Ethereum node at `rpc` whether the genesis file's contract stores the claimed root, written by
    the claimed transaction in the claimed block; raise InvalidProof (`anchor_not_certified` or
    `anchor_on_chain`) if not."""
    from eth_typing import HexStr

    from ledger.anchor import contract as ac

    def fail(message: str) -> InvalidProof:
        return InvalidProof("anchor_on_chain", message)

    check_anchor_certified(claim, genesis)
    try:
        w3 = ac.connect(rpc)
        chain_id = int(w3.eth.chain_id)
        # The chain is the one the anchor names.
        if chain_id != claim.eth_chain_id:
            raise fail(f"the RPC serves chain {chain_id}, the anchor is on chain {claim.eth_chain_id}")
        address = ac.to_checksum_address(claim.contract)
        # There is a contract at the address.
        if not w3.eth.get_code(address):
            raise fail(f"no contract at {claim.contract} on chain {chain_id}")
        contract = ac.anchor_contract(w3, address)
        root = ac.root_at(contract, claim.submitter, claim.height)
        # The contract stores exactly the anchored header's hash for that height, under the certified submitter.
        if root != claim.root:
            raise fail(f"contract {claim.contract} does not hold this block's hash for height {claim.height} "
                       f"from {claim.submitter}")
        # The named transaction, mined in the named block, wrote it.
        receipt = w3.eth.get_transaction_receipt(HexStr("0x" + claim.tx_hash))
        if receipt["blockNumber"] != claim.eth_block or receipt["status"] != 1:
            raise fail(f"transaction 0x{claim.tx_hash} is not a successful one in block {claim.eth_block}")
        logged = [e["args"] for e in contract.events.Anchored().process_receipt(receipt)
                  if e["address"] == address]
        if not any(a["height"] == claim.height and bytes(a["root"]) == claim.root
                   and str(a["submitter"]).lower() == claim.submitter for a in logged):
            raise fail(f"transaction 0x{claim.tx_hash} did not anchor height {claim.height} in {claim.contract}")
    except InvalidProof:
        raise
    except Exception as exc:  # web3 raises many types for a bad address, a wrong contract or a dead RPC
        raise fail(f"cannot read the anchor from {rpc}: {exc}") from exc

