"""Anchor receipts in the ledger: the `anchor.record` system transaction.

When a validator's anchor transaction is mined, it records the receipt (ledger height and block
hash, Ethereum tx hash and block, chain id, contract) in the ledger, so every node and every proof
knows where the ledger's roots are on Ethereum. Only genesis validators may send `anchor.record`
(and it is the only kind a validator that is not also a member may send: see
`ledger.members.validator_sender_lookup`). One record per ledger height; the first wins.

This module imports no web3: it is part of the deterministic state machine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ledger.state import Handler, StateView, TxContext, get_record
from ledger.tx import Reject, TxRejected, register_kind

KIND = "anchor.record"
VALIDATOR_ROLE = "validator"
LATEST_KEY = b"anchor/latest"


@dataclass(frozen=True)
class AnchorRecord:
    height: int  # ledger height anchored
    block_hash: bytes  # that block's hash: the bytes32 root stored by the contract
    eth_chain_id: int
    contract: str  # checksummed address of the LedgerAnchor contract
    tx_hash: bytes  # the anchor transaction (32 bytes)
    eth_block: int  # the Ethereum block that holds it
    submitter: str  # the Ethereum address that sent it


def record_key(height: int) -> bytes:
    return b"anchor/h/" + height.to_bytes(8, "big")


def get_anchor_record(view: StateView, height: int) -> AnchorRecord | None:
    return get_record(view, AnchorRecord, record_key(height))


def latest_recorded_height(view: StateView) -> int:
    """The highest ledger height with an anchor record, 0 if none."""
    latest = get_record(view, int, LATEST_KEY)
    return 0 if latest is None else latest


def _is_address(text: str) -> bool:
    return len(text) == 42 and text.startswith("0x") and all(c in "0123456789abcdefABCDEF" for c in text[2:])


def process_anchor_record(ctx: TxContext, p: AnchorRecord) -> None:
    # Only a genesis validator records anchors.
    ctx.require_role(VALIDATOR_ROLE)
    # The anchored block is committed before the block recording it.
    if not 1 <= p.height < ctx.height:
        raise TxRejected(Reject.INVALID_VALUE, f"anchored height {p.height} is not below {ctx.height}")
    # Hashes are 32 bytes, addresses 20, numbers non-negative.
    if len(p.block_hash) != 32 or len(p.tx_hash) != 32:
        raise TxRejected(Reject.INVALID_VALUE, "block_hash and tx_hash must be 32 bytes")
    if not _is_address(p.contract) or not _is_address(p.submitter):
        raise TxRejected(Reject.INVALID_VALUE, "contract and submitter must be 0x-prefixed 20-byte addresses")
    if p.eth_chain_id <= 0 or p.eth_block < 0:
        raise TxRejected(Reject.INVALID_VALUE, "eth_chain_id must be positive and eth_block non-negative")
    # A height is recorded once (the contract anchors it once, too).
    if ctx.get(AnchorRecord, record_key(p.height)) is not None:
        raise TxRejected(Reject.ALREADY_EXISTS, f"height {p.height} already has an anchor record")
    ctx.put(record_key(p.height), p)
    if p.height > latest_recorded_height(ctx.state):
        ctx.put(LATEST_KEY, p.height)


def disabled_status() -> dict[str, Any]:
    """`/v1/status` anchoring object of a node without an `ethereum` section."""
    return {
        "enabled": False, "last_anchored_height": None, "tx_hash": None, "eth_block": None, "pending": None,
        "last_error": None, "contract": None, "chain_id": None,
    }


def record_to_json(record: AnchorRecord) -> dict[str, Any]:
    return {
        "height": record.height,
        "block_hash": record.block_hash.hex(),
        "eth_chain_id": record.eth_chain_id,
        "contract": record.contract,
        "tx_hash": "0x" + record.tx_hash.hex(),
        "eth_block": record.eth_block,
        "submitter": record.submitter,
    }


class AnchorModule:
    handlers: Mapping[str, Handler] = {KIND: process_anchor_record}


register_kind(KIND, AnchorRecord)
