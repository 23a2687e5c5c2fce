"""An in-memory Ethereum with the LedgerAnchor contract's rules, for the anchoring service's tests.

Each submitter's roots are its own (one per height, once); events carry the block and log index; the
pool holds transactions whose max fee is below the base fee; a test can reorg blocks away (their
transactions go back to the pool, or are dropped) and move the base fee. `FakeChain.client(address)`
gives a `ChainClient` for one submitter.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ledger.anchor.ethclient import GWEI, AnchorConflict, Fees, Receipt
from ledger.anchor.observe import Observed

CONTRACT = "0x" + "5f" * 20
CHAIN_ID = 31337


@dataclass
class Tx:
    hash: bytes
    sender: str
    nonce: int
    height: int
    root: bytes
    fees: Fees


class FakeChain:
    def __init__(self) -> None:
        self.tip = 10
        self.base_fee = GWEI
        self.blocks_per_look = 1  # block_number() advances the chain this much (time passes between looks)
        self.down = False
        self.pool: dict[bytes, Tx] = {}
        self.mined: dict[bytes, tuple[Tx, int, int]] = {}  # hash -> (tx, block, log index)
        self.sent: list[Tx] = []

    # --- the chain ------------------------------------------------------------------------------

    def roots(self) -> dict[tuple[str, int], bytes]:
        return {(tx.sender, tx.height): tx.root for tx, _, _ in self.mined.values()}

    def events(self) -> list[Observed]:
        return [Observed(tx.height, tx.root, tx.hash, block, index, tx.sender)
                for tx, block, index in sorted(self.mined.values(), key=lambda m: (m[1], m[2]))]

    def nonce(self, sender: str) -> int:
        return sum(1 for tx, _, _ in self.mined.values() if tx.sender == sender)

    def mine(self, blocks: int = 1) -> None:
        """New blocks; the first holds every pool transaction whose fees cover the base fee, in nonce order."""
        for _ in range(blocks):
            self.tip += 1
            ready = sorted((t for t in self.pool.values() if t.fees.max_fee >= self.base_fee),
                           key=lambda t: (t.sender, t.nonce))
            index = 0
            for tx in ready:
                if tx.nonce != self.nonce(tx.sender):
                    continue  # a replaced version, or a gap
                del self.pool[tx.hash]
                self.pool = {h: t for h, t in self.pool.items() if (t.sender, t.nonce) != (tx.sender, tx.nonce)}
                if (tx.sender, tx.height) not in self.roots():
                    self.mined[tx.hash] = (tx, self.tip, index)
                    index += 1

    def reorg(self, depth: int, drop: bool = False) -> None:
        """The last `depth` blocks are replaced by empty ones; their transactions go back to the pool (or away)."""
        for h, (tx, block, _) in list(self.mined.items()):
            if block > self.tip - depth:
                del self.mined[h]
                if not drop:
                    self.pool[h] = tx

    def anchor_directly(self, sender: str, height: int, root: bytes) -> Tx:
        """Someone anchors, mined at once in a new block (a lying submitter, say)."""
        tx = Tx(_hash(sender, self.nonce(sender), height, root, 0), sender, self.nonce(sender), height, root,
                Fees(10**18, GWEI))
        self.pool[tx.hash] = tx
        self.mine()
        return tx

    def client(self, address: str) -> FakeClient:
        if self.down:
            raise ConnectionError("fake RPC is down")
        return FakeClient(self, address)


def _hash(*parts: object) -> bytes:
    return hashlib.sha256(repr(parts).encode()).digest()


class FakeClient:
    chain_id = CHAIN_ID
    contract = CONTRACT

    def __init__(self, chain: FakeChain, address: str) -> None:
        self.chain = chain
        self.address = address

    def _up(self) -> FakeChain:
        if self.chain.down:
            raise ConnectionError("fake RPC is down")
        return self.chain

    def block_number(self) -> int:
        c = self._up()
        c.mine(c.blocks_per_look)
        return c.tip

    def anchors(self, from_block: int, to_block: int, submitters: tuple[str, ...]) -> list[Observed]:
        return [e for e in self._up().events() if from_block <= e.eth_block <= to_block and e.submitter in submitters]

    def suggested_fees(self) -> Fees:
        c = self._up()
        return Fees(2 * c.base_fee + GWEI, GWEI)

    def nonces(self) -> tuple[int, int]:
        c = self._up()
        mined = c.nonce(self.address)
        pending = {t.nonce for t in c.pool.values() if t.sender == self.address}
        return mined, max([mined - 1, *pending]) + 1

    def send_anchor(self, height: int, root: bytes, nonce: int, fees: Fees) -> bytes:
        c = self._up()
        if (self.address, height) in c.roots():
            raise AnchorConflict(f"AlreadyAnchored({self.address}, {height})")
        tx = Tx(_hash(self.address, nonce, height, root, fees), self.address, nonce, height, root, fees)
        c.pool[tx.hash] = tx
        c.sent.append(tx)
        return tx.hash

    def receipt(self, tx_hash: bytes) -> Receipt | None:
        mined = self._up().mined.get(tx_hash)
        return None if mined is None else Receipt(mined[1], True)

    def is_known(self, tx_hash: bytes) -> bool:
        c = self._up()
        return tx_hash in c.pool or tx_hash in c.mined

    def root_at(self, submitter: str, height: int) -> bytes:
        return self._up().roots().get((submitter, height), b"\0" * 32)
