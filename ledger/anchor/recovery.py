"""Recovering lost receipts: anchors the contract holds that the ledger has no `anchor.record` for.

A validator can crash after its anchor transaction is sent and before it records the receipt; two
validators can also anchor at nearly the same time (a backup taking over from a slow designated
one), and the slower recorder may die. The receipts are not lost: the contract's `Anchored` events
carry each one (height, root, tx hash, Ethereum block, submitter), and any validator may record
them through the ordinary `anchor.record` transaction. The state machine checks only the record's
form and that its height is recorded once, so a receipt recorded by another validator than its
sender is accepted by every node alike (the first record of a height wins).

Where to look. The contract's heights only increase, so every anchor above the ledger's latest
recorded height L was mined at or after the Ethereum block of L's record: scanning the events from
that block finds them all. Receipts are recorded only from such a scan (a sender's own included),
so no record above an unrecorded anchor can appear first, and no gap is left below L.

Pure functions: the service calls them with what it read from the ledger and the contract.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ledger.anchor.records import AnchorRecord


@dataclass(frozen=True)
class AnchorReceipt:
    height: int
    root: bytes
    tx_hash: bytes
    eth_block: int
    submitter: str


@dataclass(frozen=True)
class RecoveryPlan:
    record: list[AnchorReceipt]  # receipts to record, lowest height first
    foreign: list[AnchorReceipt]  # roots that are not this ledger's blocks: reported, never recorded
    ahead: bool  # some anchor lies above this node's head: look again once it has caught up


def scan_start(latest_record: AnchorRecord | None, chain_id: int, contract: str, deploy_block: int = 0) -> int:
    """The first Ethereum block to scan: that of the ledger's latest record on this very contract, else the
    contract's deployment block."""
    if latest_record is None or latest_record.eth_chain_id != chain_id:
        return deploy_block
    if latest_record.contract.lower() != contract.lower():
        return deploy_block
    return max(deploy_block, latest_record.eth_block)


def plan_recovery(
    found: Iterable[AnchorReceipt],
    recorded: Callable[[int], bool],
    head: int,
    block_hash: Callable[[int], bytes | None],
) -> RecoveryPlan:
    """Sort the receipts found on the contract into what to record and what to report.

    `recorded(h)` says whether the ledger has a record for height h; `block_hash(h)` is this
    ledger's block hash at h (None above the head).
    """
    record: list[AnchorReceipt] = []
    foreign: list[AnchorReceipt] = []
    ahead = False
    seen: set[int] = set()
    for receipt in sorted(found, key=lambda r: r.height):
        if receipt.height < 1 or receipt.height in seen or recorded(receipt.height):
            continue  # (height 0 is the genesis block: never anchored by a validator, never recorded)
        seen.add(receipt.height)
        if receipt.height > head:
            ahead = True  # this node has not committed that block yet (it is catching up)
        elif block_hash(receipt.height) != receipt.root:
            foreign.append(receipt)  # someone anchored a root that is not ours: never vouch for it
        else:
            record.append(receipt)
    return RecoveryPlan(record, foreign, ahead)
