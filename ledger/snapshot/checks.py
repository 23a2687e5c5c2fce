"""Checks of a store filled from an untrusted source (a backup file), and the indexes rebuilt from what passed.

Theory of operation: nothing in the source is believed. What can be proven is checked against the genesis
file, the one trust root:

- every state-tree node is stored under its own hash (`check_state_node`, while loading), so a tree read
  from a certified root reads exactly what the validators committed; the births a node names for its
  children, and those recorded for roots (ledger/tree_store.py), name nodes the store holds
  (`check_births`: the hashes do not cover them, and a wrong one would make a height's reads fail);
- block 0 is the block this genesis makes; every later block links to its parent's hash and history root,
  its tx root covers its transactions, and its certificate holds a quorum of the validator set in force at
  its height, read (`validators_at`) from the state of the block before it, itself certified;
- the latest-value index is exactly the leaves of the head's certified state tree (walked in full);
- every tx-index entry names the first position of its transaction in a checked block.

The tables derived from blocks (hash index, state roots, history accumulator nodes and peaks, head and
genesis pointers) are written here, not copied. Not covered: a tx-index entry's outcome (ok, reason,
message) is the source's word, since no header commits to outcomes; and the state trees of heights before
the head are checked node by node but not walked for missing nodes (a missing one makes that height's
reads fail, never lie).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ledger import merkle
from ledger.chain import (
    Block,
    BlockHeader,
    CommitCertificate,
    InvalidBlock,
    check_block_links,
    check_certificate,
    compute_block_hash,
)
from ledger.chain_history import TxLocation
from ledger.chaindb import GENESIS_KEY, HEAD_KEY, ChainDB
from ledger.codec import CodecError, decode, encode
from ledger.genesis import Genesis
from ledger.smt import EMPTY, MissingNodeError, RootView, child_births, node_hash
from ledger.store import NS, MemoryStore, Store, height_key
from ledger.tree_store import BIRTH_BYTES, is_node_key, node_getter, node_records, tree_over
from ledger.tx import compute_tx_id
from ledger.validators import keys_of, validators_at

BATCH = 20_000  # derived records written per batch


class CheckFailed(ValueError):
    """The source failed a check; the message says which and where."""


@dataclass(frozen=True)
class CheckedHead:
    height: int
    block_hash: bytes
    state_root: bytes


def check_state_node(key: bytes, value: bytes) -> None:
    """A state-tree node record (ledger/tree_store.py: by hash, or by birth and hash) is stored under its own
    hash. (Its children's births are not checked: a wrong one makes a node missing, never a wrong node.)"""
    name = key[-32:].hex()[:16]
    if not is_node_key(key):
        raise CheckFailed(f"state node record {key[:40].hex()}... has no node key")
    try:
        actual = node_hash(value)
    except ValueError as exc:
        raise CheckFailed(f"state node {name}...: {exc}") from None
    if not key.endswith(actual):
        raise CheckFailed(f"state node {name}... is not stored under its hash")


def check_births(store: Store, on_record: Callable[[int], None] = lambda n: None) -> None:
    """Each child birth a stored node names, and each root's recorded birth, finds a node with that hash."""
    get_node = node_getter(store.get)
    done = 0
    for key, _, stored in node_records(store.iterate):
        if len(stored) != 65 and stored[0] == 1:  # an internal node stored with its children's births
            births = child_births(stored)
            for child, birth in zip((stored[1:33], stored[33:65]), births, strict=True):
                if (child == EMPTY and birth != 0) or (child != EMPTY and get_node(birth, child) is None):
                    raise CheckFailed(f"state node {key[-32:].hex()[:16]}... names a child at height {birth} that "
                                      f"the backup does not hold")
            if births == (0, 0):
                raise CheckFailed(f"state node {key[-32:].hex()[:16]}... is not stored in its canonical form")
        done += 1
        if done % 10_000 == 0:
            on_record(10_000)
    on_record(done % 10_000)
    for key, value in store.iterate(NS.ROOT_BIRTH):
        root = key[len(NS.ROOT_BIRTH):]
        if get_node(int.from_bytes(value, "big"), root) is None:
            raise CheckFailed(f"the record of state root {root.hex()[:16]}... names a height that does not hold it")


def check_root_birth(key: bytes, value: bytes) -> None:
    """A root's birth record names a root hash and a height."""
    if len(key) != len(NS.ROOT_BIRTH) + 32 or len(value) != BIRTH_BYTES:
        raise CheckFailed(f"root birth record {key[:40].hex()}... is malformed")


def _decode(cls: type, raw: bytes, what: str) -> object:
    try:
        return decode(cls, raw)
    except CodecError as exc:
        raise CheckFailed(f"{what} does not decode: {exc}") from None


class _Writer:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._puts: list[tuple[bytes, bytes]] = []

    def put(self, key: bytes, value: bytes) -> None:
        self._puts.append((key, value))
        if len(self._puts) >= BATCH:
            self.flush()

    def flush(self) -> None:
        if self._puts:
            self._store.write_batch(self._puts, sync=False)
            self._puts = []


def check_chain(store: Store, genesis: Genesis, block_count: int, cert_count: int, tx_count: int,
                on_block: Callable[[int], None] = lambda height: None) -> CheckedHead:
    """Check blocks 0..block_count-1 and their certificates in `store` (see the module docstring), write the
    indexes derived from them, and return the head they lead to. Raises CheckFailed."""
    if block_count < 1:
        raise CheckFailed("the backup holds no blocks")
    if cert_count != block_count:
        raise CheckFailed(f"the backup holds {block_count} blocks but {cert_count} certificates")
    reference = ChainDB(MemoryStore(), genesis)  # block 0 and its certificate, as this genesis makes them
    smt = tree_over(store.get, cache_size=100_000)
    writer = _Writer(store)
    history = merkle.HistoryAccumulator(0, [])
    parent: BlockHeader | None = None
    firsts = 0
    for height in range(block_count):
        hk = height_key(height)
        raw_block, raw_cert = store.get(NS.BLOCK + hk), store.get(NS.CERT + hk)
        if raw_block is None or raw_cert is None:
            raise CheckFailed(f"block {height}: {'block' if raw_block is None else 'certificate'} missing "
                              f"(blocks must run from 0 without a gap)")
        block = _decode(Block, raw_block, f"block {height}")
        cert = _decode(CommitCertificate, raw_cert, f"certificate {height}")
        assert isinstance(block, Block) and isinstance(cert, CommitCertificate)
        header = block.header
        if parent is None:
            # Block 0 is fixed by the genesis file.
            if block != reference.get_block(0) or cert != reference.get_certificate(0):
                raise CheckFailed("block 0 is not the genesis block of this chain")
        else:
            try:
                check_block_links(block, parent, history.root())
                validators = validators_at(RootView(smt, parent.state_root), height, genesis)
                check_certificate(cert, genesis.chain_id, header, keys_of(validators))
            except InvalidBlock as exc:
                raise CheckFailed(f"block {height}: {exc}") from None
            except MissingNodeError as exc:
                raise CheckFailed(f"block {height}: the state of block {height - 1} lacks node {exc}") from None
        block_hash = compute_block_hash(header)
        firsts += _check_tx_index(store, block, height)
        writer.put(NS.BLOCK_BY_HASH + block_hash, hk)
        writer.put(NS.STATE_ROOT + hk, header.state_root)
        for level, index, node in history.append(block_hash):
            writer.put(NS.HISTORY_NODE + bytes([level]) + index.to_bytes(8, "big"), node)
        writer.put(NS.HISTORY_PEAKS + hk, encode(tuple(history.peaks)))
        parent = header
        on_block(height)
    assert parent is not None
    if firsts != tx_count:
        raise CheckFailed(f"the tx index holds {tx_count} entries, but the blocks hold {firsts} distinct transactions")
    writer.flush()
    return CheckedHead(parent.height, compute_block_hash(parent), parent.state_root)


def _check_tx_index(store: Store, block: Block, height: int) -> int:
    """Each transaction's index entry names this position (its first) or an earlier one holding the same id;
    returns how many name this block."""
    firsts = 0
    for index, raw in enumerate(block.txs):
        tx_id = compute_tx_id(raw)
        entry = store.get(NS.TX + tx_id)
        if entry is None:
            raise CheckFailed(f"block {height}: transaction {index} ({tx_id.hex()[:16]}...) is not in the tx index")
        loc = _decode(TxLocation, entry, f"the tx index entry of {tx_id.hex()[:16]}...")
        assert isinstance(loc, TxLocation)
        if (loc.height, loc.index) == (height, index):
            firsts += 1
            continue
        earlier = store.get(NS.BLOCK + height_key(loc.height)) if (loc.height, loc.index) < (height, index) else None
        txs = decode(Block, earlier, trusted=True).txs if earlier is not None else ()
        if loc.index >= len(txs) or compute_tx_id(txs[loc.index]) != tx_id:
            raise CheckFailed(f"block {height}: the tx index places transaction {index} at "
                              f"{loc.height}/{loc.index}, which does not hold it")
    return firsts


def check_state(store: Store, head: CheckedHead, state_count: int,
                on_leaf: Callable[[int], None] = lambda n: None) -> None:
    """The latest-value index is exactly the leaves of the head's certified state tree."""
    smt = tree_over(store.get, cache_size=0)
    leaves = 0
    try:
        for key, value in smt.items(head.state_root):
            if store.get(NS.STATE_LATEST + key) != value:
                raise CheckFailed(f"state: key {key[:40]!r} differs from the certified state root of block "
                                  f"{head.height}")
            leaves += 1
            if leaves % 10_000 == 0:
                on_leaf(10_000)
    except MissingNodeError as exc:
        raise CheckFailed(f"state: the tree of block {head.height} lacks node {exc}") from None
    on_leaf(leaves % 10_000)
    if leaves != state_count:
        raise CheckFailed(f"state: {state_count} entries, but the certified state root of block {head.height} "
                          f"holds {leaves}")


def write_head(store: Store, genesis: Genesis, head: CheckedHead) -> None:
    """The pointers a ChainDB opens by, written last: a store without them is not a ledger."""
    store.write_batch([(GENESIS_KEY, genesis.hash()), (HEAD_KEY, height_key(head.height))], sync=True)
