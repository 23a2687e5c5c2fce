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
class VerifiedState:
    height: int
    key: bytes
    value: bytes | None
    header: BlockHeader


def build_state_proof(chain: ChainDB, key: bytes, height: int | None = None) -> dict[str, Any]:
    h, value, smt = chain.prove(key, height)
    block = chain.get_block(h)
    cert = chain.get_certificate(h)
    if block is None or cert is None:
        raise KeyError(f"no committed block at height {h}")
    return {
        "type": PROOF_TYPE,
        "chain_id": chain.chain_id,
        "height": h,
        "key": key.hex(),
        "value": None if value is None else value.hex(),
        "smt": smt.to_dict(),
        "header": to_plain(block.header),
        "certificate": to_plain(cert),
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
    return VerifiedState(header.height, key, value, header)
