"""The older blocks of a node that joined by state sync: checked, written, and replayed from genesis.

`ChainDB` (ledger/chaindb.py) owns these writes; this mixin holds them apart from the live chain's. The
fetching and the threads are ledger/snapshot/history.py's: it asks `check_history` (reads only, on a
thread), `add_history` (one synced batch per checked batch, with the new oldest block), `finish_history`
(block 0 and the history accumulator, once block 1 is in) and `replay_older` (blocks 0..base-1 executed
again over the content-addressed state tree, a slice at a time; the last slice makes the node an archive).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ledger import merkle
from ledger.chain import (
    Block,
    CommitCertificate,
    InvalidBlock,
    check_certificate,
    compute_block_hash,
    compute_tx_root,
)
from ledger.codec import decode, encode
from ledger.smt import RootView, SparseMerkleTree
from ledger.state import Overlay, StateMachine
from ledger.store import NS, Store, height_key
from ledger.tree_store import node_key
from ledger.tx import compute_tx_id

# A store filled by state sync holds blocks from this height on only (ledger/snapshot/statesync.py).
BASE_KEY = NS.META + b"base"
# Of such a store, while older blocks are fetched (ledger/snapshot/history.py): the oldest block held.
BLOCKS_FROM_KEY = NS.META + b"blocks-from"
# Of such a store holding every block: the height up to which the state below the base was replayed so far.
REPLAYED_KEY = NS.META + b"replayed"
# The outcome recorded in the tx index for a transaction of a fetched older block, which this node did not run.
NOT_EXECUTED = "not_executed"
HISTORY_TX_MESSAGE = "committed in a block this node fetched after joining by state sync; it did not execute it"


@dataclass(frozen=True)
class TxLocation:
    height: int
    index: int
    ok: bool
    reason: str
    message: str


@dataclass(frozen=True)
class CheckedHistory:
    """Older blocks that passed `ChainHistory.check_history` below the oldest block held then (`below`)."""

    below: int
    entries: tuple[tuple[Block, CommitCertificate], ...]  # ascending heights, the last at `below` - 1
    hashes: tuple[bytes, ...]  # their block hashes


class _Block0(Protocol):
    """What the history needs of block 0 as the chain makes it from the genesis file."""

    @property
    def block(self) -> Block: ...
    @property
    def block_hash(self) -> bytes: ...
    @property
    def new_nodes(self) -> dict[bytes, bytes]: ...
    @property
    def history_after(self) -> merkle.HistoryAccumulator: ...


class _Chain(Protocol):
    """The chain these methods belong to (ChainDB): its store, heights held and reads."""

    store: Store
    chain_id: str
    base: int
    blocks_from: int

    def get_block(self, height: int) -> Block | None: ...
    def validator_keys_at(self, height: int) -> dict[str, bytes]: ...
    def state_root_at(self, height: int) -> bytes | None: ...
    def get_tx_location(self, tx_id: bytes) -> TxLocation | None: ...
    def replayed_height(self) -> int: ...
    def _get_node(self, birth: int, node_hash: bytes) -> bytes | None: ...
    def _genesis_block(self, smt: SparseMerkleTree | None = None) -> _Block0: ...
    def _replay_state_machine(self) -> StateMachine: ...


class ChainHistory:
    """ChainDB's older-block methods (mixed into it; they write only these keys and `blocks_from`/`base`)."""

    def check_history(self: _Chain, entries: Sequence[tuple[Block, CommitCertificate]]) -> CheckedHistory:
        """Check blocks offered as the ones right below the oldest block held, in ascending order: each block's
        hash is the parent hash of the block above it (down from a block held, hence certified: a hash chain
        needs no signatures), its transactions make its tx root, and its certificate names it and carries a
        quorum of the validators of its height (so the certificates stored and served again are genuine).
        Reads only: may run on a thread. InvalidBlock says what failed."""
        below = self.blocks_from
        if not entries:
            raise InvalidBlock("no blocks")
        above = self.get_block(below)
        if above is None:
            raise InvalidBlock(f"block {below} is not held")
        expected, hashes = above.header.prev_hash, []
        first = below - len(entries)
        if first < 1:
            raise InvalidBlock(f"{len(entries)} blocks below {below} reach under block 1")
        for offset in range(len(entries) - 1, -1, -1):
            block, cert = entries[offset]
            header, height = block.header, first + offset
            if header.height != height:
                raise InvalidBlock(f"block {header.height} where block {height} belongs (out of order or a gap)")
            block_hash = compute_block_hash(header)
            if block_hash != expected:
                raise InvalidBlock(f"block {height}: its hash is not the parent hash block {height + 1} names")
            if compute_tx_root(block.txs) != header.tx_root:
                raise InvalidBlock(f"block {height}: its transactions do not match its tx root")
            check_certificate(cert, self.chain_id, header, self.validator_keys_at(height))
            hashes.append(block_hash)
            expected = header.prev_hash
        return CheckedHistory(below, tuple(entries), tuple(reversed(hashes)))

    def add_history(self: _Chain, checked: CheckedHistory) -> None:
        """Write checked older blocks in one synced batch: blocks, certificates, hash index, tx index (their
        outcome recorded as NOT_EXECUTED: this node did not run them), history leaves, and the new oldest block."""
        if checked.below != self.blocks_from:
            raise InvalidBlock(f"checked below block {checked.below}, but the oldest held is {self.blocks_from}")
        first = checked.below - len(checked.entries)
        puts: list[tuple[bytes, bytes]] = []
        first_seen: dict[bytes, TxLocation] = {}
        for (block, cert), block_hash in zip(checked.entries, checked.hashes, strict=True):
            height = block.header.height
            hk = height_key(height)
            puts += [(NS.BLOCK + hk, encode(block)), (NS.CERT + hk, encode(cert)), (NS.BLOCK_BY_HASH + block_hash, hk),
                     (NS.HISTORY_NODE + b"\x00" + height.to_bytes(8, "big"), merkle.leaf_hash(block_hash))]
            for index, raw in enumerate(block.txs):
                tx_id = compute_tx_id(raw)
                if tx_id not in first_seen:  # its first occurrence; one indexed above it is a later copy
                    first_seen[tx_id] = TxLocation(height, index, False, NOT_EXECUTED, HISTORY_TX_MESSAGE)
        puts += [(NS.TX + tx_id, encode(loc)) for tx_id, loc in first_seen.items()]
        puts.append((BLOCKS_FROM_KEY, height_key(first)))
        self.store.write_batch(puts, sync=True)
        self.blocks_from = first

    def finish_history(self: _Chain) -> None:
        """Once block 1 is held: write block 0 (the genesis file makes it; block 1 must name it) and the history
        accumulator's nodes over blocks 0..base-1 from their leaves, which must end in the certified peaks the
        base was written with; then every block is held (`blocks_from` 0). Killed halfway, it runs again whole."""
        if self.blocks_from != 1:
            raise ValueError(f"blocks are held from {self.blocks_from}, not from 1")
        genesis = self._genesis_block(SparseMerkleTree(self._get_node, cache_size=1000))  # (may run on a thread)
        one = self.get_block(1)
        assert one is not None
        if one.header.prev_hash != genesis.block_hash:
            raise InvalidBlock("block 1 does not name the block 0 this genesis file makes")
        leaf = merkle.leaf_hash(genesis.block_hash)
        self.store.write_batch([(NS.HISTORY_NODE + b"\x00" + height_key(0), leaf)], sync=False)
        stack: list[tuple[int, bytes]] = []  # (level, hash) of the perfect subtrees completed so far
        puts: list[tuple[bytes, bytes]] = []
        leaves = self.store.iterate(NS.HISTORY_NODE + b"\x00")
        for index in range(self.base):
            key, node = next(leaves)
            if key != NS.HISTORY_NODE + b"\x00" + index.to_bytes(8, "big"):
                raise InvalidBlock(f"the history leaf of block {index} is missing")
            level, i = 0, index
            while i & 1:
                _, left = stack.pop()
                node, i, level = merkle.node_hash(left, node), i >> 1, level + 1
                puts.append((NS.HISTORY_NODE + bytes([level]) + i.to_bytes(8, "big"), node))
            stack.append((level, node))
            if len(puts) >= 10_000:
                self.store.write_batch(puts, sync=False)
                puts = []
        certified = decode(tuple[bytes, ...], self.store.get(NS.HISTORY_PEAKS + height_key(self.base)) or b"")
        history = merkle.HistoryAccumulator(self.base, [node for _, node in stack])
        base_block = self.get_block(self.base)
        assert base_block is not None  # state sync wrote it
        history.append(compute_block_hash(base_block.header))
        if tuple(history.peaks) != certified:
            raise InvalidBlock("the history rebuilt from the fetched blocks does not end in the certified peaks")
        hk = height_key(0)
        puts += [(NS.BLOCK + hk, encode(genesis.block)), (NS.CERT + hk, encode(CommitCertificate(0, 0,
                 genesis.block_hash, ()))), (NS.BLOCK_BY_HASH + genesis.block_hash, hk), (BLOCKS_FROM_KEY, hk)]
        self.store.write_batch(puts, sync=True)
        self.blocks_from = 0

    def replayed_height(self: _Chain) -> int:
        """The height up to which the state below the base was replayed (-1: none yet)."""
        raw = self.store.get(REPLAYED_KEY)
        return -1 if raw is None else int.from_bytes(raw, "big")

    def replay_older(self: _Chain, max_blocks: int) -> int:
        """Execute up to `max_blocks` more blocks below the base from the last one replayed (block 0: the genesis
        state), each over the state its parent left, and write in one synced batch their state roots, history
        peaks, new state nodes and the outcomes of the transactions first committed there; the last slice sets
        the base to 0. Returns the height replayed up to. InvalidBlock if a block's state root or history root is
        not what its header says (the replay then stops: a bug, never a peer's doing, as the blocks are linked
        to a certified one). Writes no key of the live head: may run on a thread beside commits."""
        if self.blocks_from != 0 or self.base == 0:
            raise ValueError("nothing to replay: the node must hold every block, and the state from a base above 0")
        machine = self._replay_state_machine()
        pending: dict[bytes, bytes] = {}  # this slice's new nodes, read before they are written
        # Every node it writes is born at 0 (stored by hash, as state sync stored the base's): the states below
        # the base are written beside the live tree's, not after it.
        smt = SparseMerkleTree(lambda birth, h: pending.get(h) if birth == 0 and h in pending
                               else self._get_node(birth, h), cache_size=50_000)
        puts: list[tuple[bytes, bytes]] = []
        done = self.replayed_height()
        if done < 0:
            genesis = self._genesis_block(smt)
            pending.update(genesis.new_nodes)
            root, history, done = genesis.block.header.state_root, genesis.history_after, 0
            puts += [(NS.STATE_ROOT + height_key(0), root), (NS.HISTORY_PEAKS + height_key(0),
                                                               encode(tuple(history.peaks)))]
        else:
            root = self.state_root_at(done) or b""
            peaks = decode(tuple[bytes, ...], self.store.get(NS.HISTORY_PEAKS + height_key(done)) or b"")
            history = merkle.HistoryAccumulator(done + 1, list(peaks))
        last = min(done + max_blocks, self.base - 1)
        for height in range(done + 1, last + 1):
            block = self.get_block(height)
            assert block is not None  # every block is held
            header = block.header
            if header.history_root != history.root():
                raise InvalidBlock(f"replaying block {height}: its history root is not that of the blocks before it")
            overlay = Overlay(RootView(smt, root))
            results = machine.execute_block(overlay, block.txs, height, header.timestamp, None, header.prev_hash)
            root, nodes = smt.update(root, dict(sorted(overlay.changes.items())))
            if root != header.state_root:
                raise InvalidBlock(f"replaying block {height} gives state root {root.hex()[:16]}..., its header "
                                   f"says {header.state_root.hex()[:16]}...")
            pending.update(nodes)
            history.append(compute_block_hash(header))
            hk = height_key(height)
            puts += [(NS.STATE_ROOT + hk, root), (NS.HISTORY_PEAKS + hk, encode(tuple(history.peaks)))]
            for index, r in enumerate(results):
                loc = self.get_tx_location(r.tx_id)
                if loc is not None and (loc.height, loc.index) == (height, index):  # its first occurrence
                    puts.append((NS.TX + r.tx_id, encode(TxLocation(height, index, r.ok, r.reason, r.message))))
        puts += [(node_key(0, h), node) for h, node in pending.items()]
        puts.append((REPLAYED_KEY, height_key(last)))
        if last == self.base - 1:
            puts.append((BASE_KEY, height_key(0)))
        self.store.write_batch(puts, sync=True)
        if last == self.base - 1:
            self.base = 0
        return last
