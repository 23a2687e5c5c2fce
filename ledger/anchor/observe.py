"""What a validator makes of the anchors it reads on Ethereum: which one to attest, which to report.

The contract's `Anchored` events come from anyone; only the certified submitters' count (the service
asks the RPC for theirs alone). Of those, an event is **genuine** when its root is this validator's own
block hash at that height, and **foreign** otherwise (a lying submitter's, or another ledger's): foreign
ones are reported, never attested. An event counts once its block has the configured confirmations.

A validator attests at most one claim at a time: the highest confirmed genuine anchor above the latest
effective one (it covers every lower block, so lower ones would add nothing), and, of several anchors
of that height, the earliest on Ethereum (lowest block, then log index), so that honest validators that
read the same chain vote alike and the anchor takes effect with the first f+1 of them.

Pure functions: the service calls them with what it read from the ledger and the contract.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ledger.anchor.records import AnchorRecord


@dataclass(frozen=True)
class Observed:
    """One `Anchored` event as read from the RPC."""

    height: int
    root: bytes
    tx_hash: bytes
    eth_block: int
    log_index: int
    submitter: str  # lowercase 0x address


@dataclass(frozen=True)
class Reading:
    attest: AnchorRecord | None  # the claim to attest now (None: nothing, or this validator voted it already)
    genuine_above: int  # the highest genuine anchor above the latest effective one, confirmed or not (0: none)
    foreign: list[Observed]  # anchors of certified submitters whose root is not this ledger's block


def claim_of(event: Observed, eth_chain_id: int, contract: str) -> AnchorRecord:
    return AnchorRecord(event.height, event.root, eth_chain_id, contract, event.tx_hash, event.eth_block,
                        event.submitter)


def read_anchors(
    events: Iterable[Observed],
    *,
    confirmed_through: int,
    latest_effective: int,
    head: int,
    own_hash: Callable[[int], bytes | None],
    my_vote: Callable[[int], AnchorRecord | None],
    eth_chain_id: int,
    contract: str,
) -> Reading:
    """Sort the events (any order) into the claim to attest, the genuine anchors in flight, and foreign ones.

    `confirmed_through` is the highest Ethereum block with enough confirmations; `own_hash(h)` is this
    validator's block hash at h (None above its head); `my_vote(h)` its current vote for h in the ledger.
    """
    genuine: dict[int, list[Observed]] = {}
    foreign: list[Observed] = []
    for e in events:
        if e.height <= latest_effective or e.height > head:
            continue  # covered already, or a block this node has not committed (yet, or ever)
        if own_hash(e.height) != e.root:
            foreign.append(e)
        else:
            genuine.setdefault(e.height, []).append(e)
    genuine_above = max(genuine, default=0)
    confirmed = sorted(h for h, es in genuine.items() if any(e.eth_block <= confirmed_through for e in es))
    attest = None
    if confirmed:
        height = confirmed[-1]
        first = min((e for e in genuine[height] if e.eth_block <= confirmed_through),
                    key=lambda e: (e.eth_block, e.log_index))
        claim = claim_of(first, eth_chain_id, contract)
        if my_vote(height) != claim:
            attest = claim
    return Reading(attest, genuine_above, sorted(foreign, key=lambda e: (e.eth_block, e.log_index)))
