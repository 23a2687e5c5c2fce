"""Anchors in the ledger: validators attest what they read on Ethereum; f+1 alike make an anchor effective.

A validator with an Ethereum RPC reads the LedgerAnchor contract's `Anchored` events, waits for the
configured confirmations, checks that the anchored root is its own block hash at that height, and sends
an `anchor.attest` system transaction with what it read (the claim: ledger height and block hash, chain
id, contract, the Ethereum transaction and block, the submitter). The state machine keeps one vote per
validator per height (a later vote replaces an earlier one, e.g. after a reorg moved the transaction to
another block). When f+1 validators' votes name the same claim, at least one of them honest, the claim
becomes the **effective** anchor of its height: the record under `anchor/h/<height>`, the only one
`/v1/anchors` and proofs ever cite, and `anchor/latest` moves up to it.

An attestation is refused unless it names the certified chain, contract and a certified submitter
(`ledger.anchor.settings`), and its block hash is this ledger's own block hash at that height. The
state machine knows those hashes deterministically: while anchoring is configured, each block records
its parent's hash under `block-hash/<height>` before its transactions run (`begin_block`). That costs
one small state entry per block; the alternative, an inclusion proof in the attestation against the
history root, needs a root the attestation cannot know when it is signed (the block that will hold it).

So one lying validator can neither make an anchor effective (its vote is one of f+1), nor name a
contract of its own, nor move `anchor/latest`: honest anchoring goes on beside it. Heights at or below
the latest effective anchor take no more votes (that anchor covers them).

This module imports no web3: it is part of the deterministic state machine.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from ledger.anchor.settings import SETTINGS_KIND, get_settings, process_settings
from ledger.state import Handler, Overlay, StateView, TxContext, get_record
from ledger.tx import Reject, TxRejected, register_kind

KIND = "anchor.attest"
VALIDATOR_ROLE = "validator"
LATEST_KEY = b"anchor/latest"


@dataclass(frozen=True)
class AnchorRecord:
    """One anchor on Ethereum, as a validator read it (an attestation's claim, and the effective record)."""

    height: int  # ledger height anchored
    block_hash: bytes  # that block's hash: the bytes32 root stored by the contract
    eth_chain_id: int
    contract: str  # the LedgerAnchor contract, lowercase 0x address
    tx_hash: bytes  # the anchor transaction (32 bytes)
    eth_block: int  # the Ethereum block that holds it
    submitter: str  # the Ethereum address that sent it, lowercase


@dataclass(frozen=True)
class AnchorVote:
    validator: str  # validator id
    claim: AnchorRecord


def record_key(height: int) -> bytes:
    return b"anchor/h/" + height.to_bytes(8, "big")


def votes_key(height: int) -> bytes:
    return b"anchor/v/" + height.to_bytes(8, "big")


def block_hash_key(height: int) -> bytes:
    return b"block-hash/" + height.to_bytes(8, "big")


def get_anchor_record(view: StateView, height: int) -> AnchorRecord | None:
    """The effective anchor of `height`, if any."""
    return get_record(view, AnchorRecord, record_key(height))


def latest_effective_height(view: StateView) -> int:
    """The highest ledger height with an effective anchor, 0 if none."""
    latest = get_record(view, int, LATEST_KEY)
    return 0 if latest is None else latest


def get_votes(view: StateView, height: int) -> tuple[AnchorVote, ...]:
    """The votes for `height` that have not made an anchor effective yet, by validator id."""
    return get_record(view, tuple[AnchorVote, ...], votes_key(height)) or ()


def recorded_block_hash(view: StateView, height: int) -> bytes | None:
    """This ledger's block hash at `height`, as the state machine knows it (None before anchoring was set up)."""
    return view.get(block_hash_key(height))


def quorum_of_attesters(n_validators: int) -> int:
    """f+1: attesters enough that one of them is honest."""
    return (n_validators - 1) // 3 + 1


# The validator ids in force in a state: the one place the anchoring module learns the validator set
# (`ledger.validators.validators_at`, handed in by `ledger.chaindb`).
ValidatorsAt = Callable[[StateView, int], Collection[str]]  # (state, height) -> the validator ids at that height


class AnchorModule:
    """The `anchor.attest` votes, effective anchors, the block hashes they are checked against, and the
    `anchor.settings` admin action (`ledger.anchor.settings`)."""

    def __init__(self, validators_at: ValidatorsAt) -> None:
        self.validators_at = validators_at
        self.handlers: Mapping[str, Handler] = {KIND: self.process_attest, SETTINGS_KIND: process_settings}

    def begin_block(self, state: Overlay, height: int, prev_hash: bytes) -> None:
        """Before block `height`'s transactions: record its parent's hash, while anchoring is configured."""
        if height >= 1 and get_settings(state) is not None:
            state.put(block_hash_key(height - 1), prev_hash)

    def process_attest(self, ctx: TxContext, p: AnchorRecord) -> None:
        # Only a validator attests.
        ctx.require_role(VALIDATOR_ROLE)
        settings = get_settings(ctx.state)
        # This ledger anchors at all.
        if settings is None:
            raise TxRejected(Reject.INACTIVE, "this ledger has no anchoring settings (genesis or anchor.settings)")
        # The claim names the certified chain and contract, and a certified submitter.
        if p.eth_chain_id != settings.eth_chain_id or p.contract != settings.contract:
            raise TxRejected(Reject.INVALID_VALUE, f"the claim names contract {p.contract} on chain {p.eth_chain_id}; "
                             f"the certified one is {settings.contract} on chain {settings.eth_chain_id}")
        if p.submitter not in settings.submitters:
            raise TxRejected(Reject.INVALID_VALUE, f"{p.submitter} is not a certified submitter")
        # Hashes are 32 bytes, the Ethereum block a number.
        if len(p.block_hash) != 32 or len(p.tx_hash) != 32 or p.eth_block < 0:
            raise TxRejected(Reject.INVALID_VALUE, "block_hash and tx_hash must be 32 bytes, eth_block non-negative")
        # The anchored block is committed before the block holding the attestation.
        if not 1 <= p.height < ctx.height:
            raise TxRejected(Reject.INVALID_VALUE, f"anchored height {p.height} is not below {ctx.height}")
        # A height the latest effective anchor covers needs no other anchor.
        latest = latest_effective_height(ctx.state)
        if p.height <= latest:
            raise TxRejected(Reject.ALREADY_EXISTS, f"height {p.height} is covered by the effective anchor at {latest}")
        ours = recorded_block_hash(ctx.state, p.height)
        # The anchored root is this ledger's own block hash at that height.
        if ours is None:
            raise TxRejected(Reject.NOT_FOUND, f"no block hash is kept for height {p.height} (before anchoring was "
                             "configured)")
        if ours != p.block_hash:
            raise TxRejected(Reject.INVALID_VALUE, f"the claim's root is not this ledger's block hash at {p.height}")
        # One vote per validator and height: this one replaces the sender's earlier vote. Votes count against
        # the validator set in force now: a validator that left the set no longer counts.
        validators = self.validators_at(ctx.state, ctx.height)
        votes = {v.validator: v for v in get_votes(ctx.state, p.height) if v.validator in validators}
        votes[ctx.sender] = AnchorVote(ctx.sender, p)
        if sum(1 for v in votes.values() if v.claim == p) >= quorum_of_attesters(len(validators)):
            # f+1 alike: the anchor takes effect.
            ctx.put(record_key(p.height), p)
            ctx.put(LATEST_KEY, p.height)
            ctx.delete(votes_key(p.height))
        else:
            ctx.put(votes_key(p.height), tuple(votes[v] for v in sorted(votes)))


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


register_kind(KIND, AnchorRecord)
