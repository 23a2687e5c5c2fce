"""This validator's own anchor transaction, from sending to enough confirmations.

One at a time. `Outgoing.follow` looks at it once per step:

- mined with enough confirmations: done (the service's event reading takes over from there);
- mined, fewer confirmations: wait; if its receipt then disappears, a reorg took it out: it is followed
  as unmined again, and sent again if the RPC no longer knows it (reorged transactions usually return
  to the pool and are mined again on their own);
- unmined and unknown to the RPC (dropped from the pool): sent again;
- unmined for `fee_bump_after_s`: replaced (same nonce) with fees at least 12.5% higher, up to the
  configured cap; at the cap it waits for the base fee to fall. Every version's hash is kept, since
  any of them may be the one that is mined.

A version the contract refuses as already anchored by this address means an earlier version got in:
done as well. All calls are blocking (the service runs them on its Ethereum thread).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from ledger.anchor.ethclient import GWEI, AnchorConflict, ChainClient, Fees, bumped, capped

log = logging.getLogger("ledger.anchor")


@dataclass
class InFlight:
    height: int
    root: bytes
    nonce: int
    fees: Fees
    sent_at: float  # when the newest version was sent (monotonic clock)
    hashes: list[bytes] = field(default_factory=list)  # every version sent, newest last
    mined_in: int | None = None  # the block of the receipt seen while it gathers confirmations

    def to_json(self) -> dict[str, object]:
        return {"height": self.height, "tx_hash": "0x" + self.hashes[-1].hex(), "nonce": self.nonce,
                "max_fee_gwei": self.fees.max_fee / GWEI, "versions": len(self.hashes), "mined_in": self.mined_in}


class Outgoing:
    def __init__(self, confirmations: int, fee_bump_after_s: float, max_fee_gwei: float,
                 clock: Callable[[], float]) -> None:
        self.confirmations = confirmations
        self.fee_bump_after_s = fee_bump_after_s
        self.cap = int(max_fee_gwei * GWEI)
        self.clock = clock
        self.current: InFlight | None = None
        self.sent = 0  # anchors sent (first versions)
        self.resent = 0  # sent again after a reorg or a drop
        self.bumps = 0  # replaced with higher fees
        self.at_cap = False  # the newest version is at the fee cap and still unmined

    def send(self, client: ChainClient, height: int, root: bytes) -> InFlight | None:
        """Send anchor(height, root) with the next nonce; None if this address anchored that height already."""
        _, pending = client.nonces()
        fees = capped(client.suggested_fees(), self.cap)
        try:
            tx_hash = client.send_anchor(height, root, pending, fees)
        except AnchorConflict:
            return None
        self.current = InFlight(height, root, pending, fees, self.clock(), [tx_hash])
        self.sent += 1
        self.at_cap = False
        return self.current

    def follow(self, client: ChainClient, tip: int) -> str:
        """One look at the transaction in flight: 'idle', 'confirmed', 'mined', 'pending', 'resent', 'bumped',
        'capped' or 'reverted'."""
        tx = self.current
        if tx is None:
            return "idle"
        for tx_hash in reversed(tx.hashes):
            receipt = client.receipt(tx_hash)
            if receipt is None:
                continue
            if not receipt.ok:
                log.warning("anchor of height %d (tx 0x%s) reverted in block %d", tx.height, tx_hash.hex(),
                            receipt.block)
                self.current = None
                return "reverted"
            if tip - receipt.block + 1 >= self.confirmations:
                self.current = None
                return "confirmed"
            tx.mined_in = receipt.block
            return "mined"
        if tx.mined_in is not None:
            log.warning("anchor of height %d left Ethereum block %d in a reorg", tx.height, tx.mined_in)
            tx.mined_in = None
        if not any(client.is_known(h) for h in tx.hashes):
            return self._resend(client)
        if self.clock() - tx.sent_at < self.fee_bump_after_s:
            return "pending"
        return self._bump(client)

    def _resend(self, client: ChainClient) -> str:
        tx = self.current
        assert tx is not None
        if client.root_at(client.address, tx.height) == tx.root:
            self.current = None  # it is in after all (mined again between our reads)
            return "confirmed"
        log.warning("anchor of height %d is unknown to the RPC (dropped, or lost in a reorg): sending it again",
                    tx.height)
        sent = self.send(client, tx.height, tx.root)
        if sent is None:
            return "confirmed"
        self.resent += 1
        self.sent -= 1  # the same anchor, sent again
        return "resent"

    def _bump(self, client: ChainClient) -> str:
        tx = self.current
        assert tx is not None
        fees = bumped(tx.fees, client.suggested_fees(), self.cap)
        if fees is None:
            if not self.at_cap:
                log.warning("anchor of height %d waits at the fee cap (%.2f gwei)", tx.height, self.cap / GWEI)
            self.at_cap = True
            return "capped"
        try:
            tx_hash = client.send_anchor(tx.height, tx.root, tx.nonce, fees)
        except AnchorConflict:
            self.current = None  # an earlier version is in
            return "confirmed"
        log.info("anchor of height %d not mined after %.0fs: replaced with max fee %.2f gwei", tx.height,
                 self.clock() - tx.sent_at, fees.max_fee / GWEI)
        tx.hashes.append(tx_hash)
        tx.fees = fees
        tx.sent_at = self.clock()
        self.bumps += 1
        return "bumped"
