"""Proofs of state that anyone can check offline against the genesis validator set.

A state proof is a chain: value -> sparse-Merkle proof -> header (state_root) -> commit
certificate (2f+1 validator signatures over the header hash). Checking it needs only the genesis
file: no trust in the node that served it. A proof with `value: null` proves the key was absent
at that height.

JSON form:
```
{"type": "ledger-state-proof/v1", "chain_id": ..., "height": H, "key": hex, "value": hex | null,
 "smt": {"siblings": [...], "leaf": ...}, "header": {...}, "certificate": {...}}
```
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ledger import merkle
from ledger.chain import BlockHeader, CommitCertificate, InvalidBlock, check_certificate, compute_block_hash
from ledger.chaindb import ChainDB
from ledger.codec import CodecError, from_plain, to_plain
from ledger.genesis import Genesis
from ledger.smt import SMTProof, verify_proof
from ledger.store import MemoryStore

PROOF_TYPE = "ledger-state-proof/v1"


class InvalidProof(ValueError):
    """The proof does not check out; the message says which link failed."""


@dataclass(frozen=True)
class AnchorClaim:
    """What the proof says is on Ethereum: `contract` on chain `eth_chain_id` stores `root` for `height`."""

    height: int
    root: bytes
    eth_chain_id: int
    contract: str
    tx_hash: str


@dataclass(frozen=True)
class VerifiedState:
    height: int
    key: bytes
    value: bytes | None
    header: BlockHeader
    anchor: AnchorClaim | None = None


def build_anchor_section(chain: ChainDB, height: int) -> dict[str, Any] | None:
    """The path from block `height` to the latest Ethereum anchor at or above it (None if none yet).

    The anchored header hashes to the root the contract stores for its height; its history_root
    covers every earlier block, so an RFC 6962 inclusion proof links block `height` to it.
    """
    from ledger.anchor.records import get_anchor_record, latest_recorded_height

    view = chain.latest
    record = get_anchor_record(view, latest_recorded_height(view))
    if record is None or record.height < height:
        return None
    anchored = chain.get_block(record.height)
    if anchored is None:
        return None
    path = [] if record.height == height else chain.history_proof(height, record.height)
    return {
        "height": record.height,
        "header": to_plain(anchored.header),
        "history_proof": [h.hex() for h in path],
        "eth_chain_id": record.eth_chain_id,
        "contract": record.contract,
        "tx_hash": record.tx_hash.hex(),
        "eth_block": record.eth_block,
    }


def build_state_proof(
    chain: ChainDB, key: bytes, height: int | None = None, anchor: bool = False
) -> dict[str, Any]:
    """The proof of `key` at `height` (default: head); `anchor=True` adds the Ethereum anchor path."""
    h, value, smt = chain.prove(key, height)
    certified = chain.certified_header(h)
    if certified is None:
        raise KeyError(f"no committed block at height {h}")
    header, cert = certified
    extra: dict[str, Any] = {}
    if anchor:
        extra["anchor"] = build_anchor_section(chain, h)
    return {
        "type": PROOF_TYPE,
        "chain_id": chain.chain_id,
        "height": h,
        "key": key.hex(),
        "value": None if value is None else value.hex(),
        "smt": smt.to_dict(),
        "header": to_plain(header),
        "certificate": to_plain(cert),
        **extra,
    }


def _genesis_header(genesis: Genesis) -> BlockHeader:
    return ChainDB(MemoryStore(), genesis).head


def verify_state_proof(proof: Any, genesis: Genesis) -> VerifiedState:
    """Check every link of `proof` against `genesis`; raise InvalidProof naming the broken one."""
    # The document is a state proof of this chain.
    if not isinstance(proof, dict) or proof.get("type") != PROOF_TYPE:
        raise InvalidProof(f"not a {PROOF_TYPE} document")
    if proof.get("chain_id") != genesis.chain_id:
        raise InvalidProof(f"proof is for chain {proof.get('chain_id')!r}, genesis is {genesis.chain_id!r}")
    try:
        header = from_plain(BlockHeader, proof["header"])
        cert = from_plain(CommitCertificate, proof["certificate"])
        key = bytes.fromhex(proof["key"])
        value = None if proof["value"] is None else bytes.fromhex(proof["value"])
        smt = SMTProof.from_dict(proof["smt"])
    except (KeyError, TypeError, ValueError, CodecError) as exc:
        raise InvalidProof(f"malformed proof: {exc}") from exc
    # The proof's height is its header's.
    if proof.get("height") != header.height:
        raise InvalidProof("height does not match the header")
    if header.height == 0:
        # Block 0 is fixed by the genesis file itself.
        if header != _genesis_header(genesis):
            raise InvalidProof("header 0 is not this genesis block")
    else:
        # A quorum of genesis validators committed this header.
        try:
            check_certificate(cert, genesis.chain_id, header, genesis.validator_keys())
        except InvalidBlock as exc:
            raise InvalidProof(f"certificate: {exc}") from exc
    # The certificate names this exact header.
    if cert.block_hash != compute_block_hash(header):
        raise InvalidProof("certificate is for another header")
    # The value (or its absence) is what the header's state root commits to.
    if not verify_proof(header.state_root, key, value, smt):
        raise InvalidProof("state proof does not match the header's state_root")
    section = proof.get("anchor")
    claim = None if section is None else check_anchor_section(section, header)
    return VerifiedState(header.height, key, value, header, claim)


def check_anchor_section(section: Any, header: BlockHeader) -> AnchorClaim:
    """Check the offline part of an anchor: block `header` is covered by the anchored header."""
    try:
        anchored = from_plain(BlockHeader, section["header"])
        path = [bytes.fromhex(h) for h in section["history_proof"]]
        claim = AnchorClaim(int(section["height"]), compute_block_hash(anchored), int(section["eth_chain_id"]),
                            str(section["contract"]), str(section["tx_hash"]))
    except (KeyError, TypeError, ValueError, CodecError) as exc:
        raise InvalidProof(f"malformed anchor section: {exc}") from exc
    # The anchor section names its header's height.
    if claim.height != anchored.height or claim.height < header.height:
        raise InvalidProof("anchor height does not match its header, or lies below the proven block")
    if claim.height == header.height:
        # The proven block is the anchored block itself.
        if anchored != header:
            raise InvalidProof("anchored header differs from the proven block's header")
    # Otherwise the anchored header's history_root (blocks 0..A-1) includes the proven block.
    elif not merkle.verify_inclusion(merkle.leaf_hash(compute_block_hash(header)), header.height, claim.height,
                                     path, anchored.history_root):
        raise InvalidProof("history proof does not link the block to the anchored header")
    return claim


def check_anchor_on_chain(claim: AnchorClaim, rpc: str) -> None:
    """Ask the Ethereum chain at `rpc` whether the contract stores the claimed root; raise InvalidProof if not."""
    from ledger.anchor import contract as ac

    try:
        w3 = ac.connect(rpc)
        chain_id = int(w3.eth.chain_id)
        # The chain is the one the anchor names.
        if chain_id != claim.eth_chain_id:
            raise InvalidProof(f"the RPC serves chain {chain_id}, the anchor is on chain {claim.eth_chain_id}")
        # There is a contract at the address.
        if not w3.eth.get_code(ac.to_checksum_address(claim.contract)):
            raise InvalidProof(f"no contract at {claim.contract} on chain {chain_id}")
        root = bytes(ac.anchor_contract(w3, claim.contract).functions.rootAt(claim.height).call())
    except InvalidProof:
        raise
    except Exception as exc:  # web3 raises many types for a bad address, a wrong contract or a dead RPC
        raise InvalidProof(f"cannot read the anchor from {rpc}: {exc}") from exc
    # The contract stores exactly the anchored header's hash for that height.
    if root != claim.root:
        raise InvalidProof(f"contract {claim.contract} does not hold this block's hash for height {claim.height}")
