"""The committed chain on disk: blocks, certificates, authenticated versioned state and indexes.

Theory of operation: `ChainDB` executes blocks (to propose them, or to check a proposed or fetched
block) into an `ExecutedBlock` held in memory, and `commit` writes one executed block with its
certificate in a single atomic, synced batch: block, certificate, hash index, tx index, new
sparse-Merkle nodes, the flat latest-value index, the state root, the history accumulator nodes
and peaks, and finally the head pointer. Reopening after a crash therefore finds exactly the
blocks whose batch completed.

State reads at the head use the flat index (one LevelDB get). Reads and proofs at an older height
walk the sparse Merkle tree from that height's root, whose nodes are immutable.

A node that joined by state sync opens at a base height (`base`, the `m/base` key): it holds the
block, certificate, state tree and history peaks of the base and everything after, nothing older.
A question about an older height raises `NotHeld`, which names the oldest height held. With full
history (ledger/snapshot/history.py) it then takes the older blocks from peers, newest first:
`add_history` writes each checked batch (blocks, certificates, hash and tx index, history leaves) with
the new oldest block (`blocks_from`, the `m/blocks-from` key) in one synced batch, and
`finish_history` writes block 0 and the history accumulator's nodes once block 1 is in. Blocks are
then answerable from `blocks_from` on, state from `base` on. `replay_older` then executes blocks 0..base-1
again, a slice at a time, over the state tree (its nodes are content-addressed: the live tree's are
untouched), each block's state root checked against its header, writing each height's root and peaks and
the outcomes of its transactions; the slice that reaches the base sets it to 0: an archive node. A pruned node
(ledger/pruning.py) keeps the state of recent, anchored and validator-set heights only; a question about
another height's state raises `Pruned` (a `NotHeld`), which names what is kept.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ledger import merkle
from ledger.anchor.records import AnchorModule
from ledger.chain import (
    ZERO_HASH,
    Block,
    BlockHeader,
    CommitCertificate,
    InvalidBlock,
    check_block_links,
    compute_block_hash,
    compute_tx_root,
)
from ledger.chain_history import (
    BASE_KEY,
    BLOCKS_FROM_KEY,
    ChainHistory,
    TxLocation,
)
from ledger.codec import decode, encode
from ledger.evidence import EvidenceModule
from ledger.genesis import Genesis, genesis_state
from ledger.governance import GovernanceModule
from ledger.market.appraisals import AppraisalsModule
from ledger.market.credits import CreditsModule
from ledger.market.licences import LicenceMarketModule
from ledger.market.private_offers import PrivateLicenceModule
from ledger.market.trading import MarketModule, set_royalty
from ledger.members import MembersModule
from ledger.nft.assets import AssetsModule
from ledger.nft.rights import RightsModule
from ledger.private.module import PrivateModule
from ledger.resolver.registry import RegistryModule
from ledger.smt import EMPTY as EMPTY_ROOT
from ledger.smt import MissingNodeError, RootView, SMTProof, SparseMerkleTree
from ledger.state import Module, Overlay, StateMachine, StateView, TxResult, VerifiedCache
from ledger.store import NS, Store, height_key
from ledger.tree_store import HASH_BYTES, node_getter, node_puts, root_birth_getter
from ledger.validators import (
    ACTIVATION_DELAY,
    Validator,
    ValidatorsModule,
    keys_of,
    set_key,
    validator_sender_lookup,
    validators_at,
)

HEAD_KEY = NS.META + b"head"
GENESIS_KEY = NS.META + b"genesis"
# Of such a store: per validator-set change committed below the base, what a proof needs of its block.
SET_LINK_PREFIX = NS.META + b"set-link/"
STATE_SYNC_KEY = NS.META + b"state-sync"  # what that state sync met, as JSON text (status, metrics)
# A pruned store (ledger/pruning.py): the state of heights below `below` is gone, except those listed.
PRUNED_KEY = NS.META + b"pruned"


@dataclass(frozen=True)
class PrunedState:
    below: int  # the oldest height whose state is kept, every height from it on answerable
    kept: tuple[int, ...]  # heights below it whose state is kept (anchored, validator-set changes)


class NotHeld(LookupError):
    """A question about a height below the oldest this node holds (it joined by state sync, or pruned)."""

    def __init__(self, height: int, oldest: int, message: str | None = None) -> None:
        super().__init__(message or f"height {height} is not held by this node: it joined by state sync at height "
                         f"{oldest} and holds blocks and state from {oldest} on (ask an archive node)")
        self.height = height
        self.oldest = oldest


class HistoryNotHeld(NotHeld):
    """Of a state-synced node fetching older blocks: a question about a block below the oldest fetched so far,
    or about the state of a height below its base (it holds the blocks there, not their state)."""

    def __init__(self, height: int, oldest: int, base: int, what: str) -> None:
        held = "blocks" if what == "block" else "the state of heights"
        super().__init__(height, oldest, f"the {what} of height {height} is not held by this node: it joined by "
                         f"state sync at height {base} and holds {held} from {oldest} on (ask an archive node)")


class Pruned(NotHeld):
    """A question about the state of a height this node pruned."""

    def __init__(self, height: int, pruned: PrunedState) -> None:
        kept = f" and of the anchored and validator-set heights {_listing(pruned.kept)}" if pruned.kept else ""
        super().__init__(height, pruned.below, f"the state of height {height} is pruned on this node: it keeps "
                         f"the state of every height from {pruned.below} on{kept} (ask an archive node)")


def _listing(heights: tuple[int, ...]) -> str:
    return ", ".join(map(str, heights)) if len(heights) <= 8 else f"{heights[0]}, ..., {heights[-1]}"


@dataclass(frozen=True)
class SetLink:
    """Validator-set change `seq` as a proof carries it: the certified block that committed it, and the
    proof of the set record (`value`) in that block's state (`siblings`, `leaf`: an SMTProof)."""

    seq: int
    header: BlockHeader
    certificate: CommitCertificate
    value: bytes
    siblings: tuple[bytes, ...]
    leaf: tuple[bytes, ...]  # () or (key path, value hash)

    def proof(self) -> SMTProof:
        return SMTProof(self.siblings, (self.leaf[0], self.leaf[1]) if self.leaf else None)


def default_modules(genesis: Genesis) -> list[Module]:
    return [
        MembersModule(), RegistryModule(), AssetsModule(on_royalty=set_royalty), RightsModule(), CreditsModule(),
        MarketModule(),
        LicenceMarketModule(), AppraisalsModule(),
        AnchorModule(lambda view, height: [v.id for v in validators_at(view, height, genesis)]),
        EvidenceModule(genesis.chain_id, lambda view, height: keys_of(validators_at(view, height, genesis))),
        GovernanceModule(), ValidatorsModule(genesis), PrivateModule(), PrivateLicenceModule(),
    ]


@dataclass
class ExecutedBlock:
    """A block executed but not yet committed; children may be built on it (pipelining)."""

    block: Block
    block_hash: bytes
    results: list[TxResult]
    changes: dict[bytes, bytes | None]
    new_nodes: dict[bytes, bytes]  # written at the block's height (ledger/tree_store.py)
    root_birth: int  # the height its state root's node was written at
    state_after: StateView
    history_after: merkle.HistoryAccumulator  # includes this block's hash
    history_nodes: list[tuple[int, int, bytes]]  # accumulator nodes completed by this block


class _ChangesView:
    """A pending block's changes over the state it was built on."""

    def __init__(self, base: StateView, changes: dict[bytes, bytes | None]) -> None:
        self._base = base
        self._changes = changes

    def get(self, key: bytes) -> bytes | None:
        if key in self._changes:
            return self._changes[key]
        return self._base.get(key)


class GenesisMismatch(RuntimeError):
    pass


class _LatestView:
    def __init__(self, store: Store) -> None:
        self._store = store

    def get(self, key: bytes) -> bytes | None:
        return self._store.get(NS.STATE_LATEST + key)


class ChainDB(ChainHistory):
    def __init__(
        self, store: Store, genesis: Genesis, modules: Sequence[Module] | None = None,
        verified: VerifiedCache | None = None,
    ) -> None:
        self.store = store
        self.genesis = genesis
        self.chain_id = genesis.chain_id
        # Bounded: each cached node costs a few hundred bytes. The top 16 levels (65,535 nodes at most) stay in
        # memory whatever the generations drop: with 1,000,000 identifiers that took a quarter of the node reads
        # out of a block; 17 levels took a third but cost 50 MB more of heap at 100,000 transactions
        # (docs/performance.md, "A large state").
        self.smt = SparseMerkleTree(self._get_tree_node, cache_size=100_000, pin_depth=16,
                                    root_birth=self._root_birth)
        # Blocks executed and not yet committed, by height: a block built on a pending parent walks the parent's
        # new tree nodes, which reach the store only when the parent commits, and the cache may have dropped
        # them. A commit forgets its height and every lower one (blocks never committed).
        self._pending: dict[int, list[ExecutedBlock]] = {}
        self._stored_node = node_getter(store.get)
        self._stored_root_birth = root_birth_getter(store.get)
        self.machine = StateMachine(
            genesis.chain_id, modules if modules is not None else default_modules(genesis),
            validator_sender_lookup(genesis),
        )
        # Transactions this node verified already (the mempool fills it); None: execution verifies all.
        self.verified = verified
        self.latest = _LatestView(store)
        # Decoded (header, certificate) of recently proven heights: committed blocks never change, and a
        # proof would otherwise decode a whole block (all its transactions) for its header.
        self._certified: dict[int, tuple[BlockHeader, CommitCertificate]] = {}
        self._replay_machine: StateMachine | None = None  # executes old blocks (replay_older), apart from the live one
        self._fresh_nodes: set[bytes] | None = None  # while a pruning sweeps: state nodes written since its mark
        stored_genesis = store.get(GENESIS_KEY)
        if stored_genesis is None:
            self._write_genesis()
        elif stored_genesis != genesis.hash():
            raise GenesisMismatch("this data directory belongs to a different genesis")
        raw_base = store.get(BASE_KEY)
        # The oldest height held: 0 for a node that executed from genesis, the snapshot's for a state-synced one.
        self.base = 0 if raw_base is None else int.from_bytes(raw_base, "big")
        raw_from = store.get(BLOCKS_FROM_KEY)
        # The oldest block held: the base, lower while older blocks are fetched (ledger/snapshot/history.py).
        self.blocks_from = self.base if raw_from is None else int.from_bytes(raw_from, "big")
        raw_pruned = store.get(PRUNED_KEY)
        self.pruned: PrunedState | None = None if raw_pruned is None else decode(PrunedState, raw_pruned)
        self._load_head()

    # --- opening ---------------------------------------------------------------------------------

    def _get_node(self, birth: int, node_hash: bytes) -> bytes | None:
        return self._stored_node(birth, node_hash)

    def _get_tree_node(self, birth: int, node_hash: bytes) -> bytes | None:
        """The live tree's node: of a pending block of that height, else from the store."""
        for executed in self._pending.get(birth, ()):  # (the live tree runs on the event loop only, as do commits)
            stored = executed.new_nodes.get(node_hash)
            if stored is not None:
                return stored
        return self._stored_node(birth, node_hash)

    def _root_birth(self, root: bytes) -> int:
        """The birth of a state root's node: of a pending block's root, else as recorded at its commit."""
        for blocks in self._pending.values():
            for executed in blocks:
                if executed.block.header.state_root == root:
                    return executed.root_birth
        return self._stored_root_birth(root)

    def _write_genesis(self) -> None:
        executed = self._genesis_block()
        cert = CommitCertificate(0, 0, executed.block_hash, ())
        self._write(executed, cert, extra=[(GENESIS_KEY, self.genesis.hash())])

    def _genesis_block(self, smt: SparseMerkleTree | None = None) -> ExecutedBlock:
        """Block 0, which the genesis file makes (every node computes the same)."""
        changes: dict[bytes, bytes | None] = dict(genesis_state(self.genesis))
        root, nodes = (smt or self.smt).update(EMPTY_ROOT, changes)  # born at 0: stored by hash
        header = BlockHeader(
            height=0,
            prev_hash=self.genesis.hash(),
            view=0,
            timestamp=self.genesis.timestamp,
            tx_root=compute_tx_root(()),
            state_root=root,
            history_root=merkle.merkle_root(()),
            proposer="",
        )
        block = Block(header, ())
        block_hash = compute_block_hash(header)
        history = merkle.HistoryAccumulator(0, [])
        history_nodes = history.append(block_hash)
        return ExecutedBlock(block, block_hash, [], changes, nodes, 0, self.latest, history, history_nodes)

    def _load_head(self) -> None:
        raw = self.store.get(HEAD_KEY)
        if raw is None:
            raise RuntimeError("store has a genesis but no head")
        height = int.from_bytes(raw, "big")
        block = self.get_block(height)
        assert block is not None  # written in the same batch as the head pointer
        self.head = block.header
        self.head_hash = compute_block_hash(block.header)
        peaks = decode(tuple[bytes, ...], self.store.get(NS.HISTORY_PEAKS + height_key(height)) or b"")
        self.history = merkle.HistoryAccumulator(height + 1, list(peaks))

    def _replay_state_machine(self) -> StateMachine:
        """The state machine that executes blocks below the base (replay_older), apart from the live one."""
        if self._replay_machine is None:
            self._replay_machine = StateMachine(self.chain_id, default_modules(self.genesis),
                                                validator_sender_lookup(self.genesis))
        return self._replay_machine

    @property
    def height(self) -> int:
        return self.head.height

    def validators_at(self, height: int) -> tuple[Validator, ...]:
        """The validators that certify block `height`, from the committed state (known up to the head
        plus `ACTIVATION_DELAY`: see ledger/validators.py)."""
        if height > self.head.height + ACTIVATION_DELAY:
            raise ValueError(f"the validators of height {height} are not known at head {self.head.height}")
        return validators_at(self.latest, height, self.genesis)

    def validator_keys_at(self, height: int) -> dict[str, bytes]:
        return keys_of(self.validators_at(height))

    # --- executing -------------------------------------------------------------------------------

    def _tip(self, parent: ExecutedBlock | None) -> tuple[BlockHeader, bytes, StateView, merkle.HistoryAccumulator]:
        if parent is None:
            return self.head, self.head_hash, self.latest, self.history
        return parent.block.header, parent.block_hash, parent.state_after, parent.history_after

    def _execute(
        self, block: Block, parent: ExecutedBlock | None, base: StateView, history: merkle.HistoryAccumulator,
        parent_root: bytes,
    ) -> ExecutedBlock:
        header = block.header
        overlay = Overlay(base)
        results = self.machine.execute_block(overlay, block.txs, header.height, header.timestamp, self.verified,
                                             header.prev_hash)
        changes = dict(sorted(overlay.changes.items()))
        root, nodes = self.smt.update(parent_root, changes, header.height)
        root_birth = self.smt.new_root_birth
        if header.state_root != root:
            header = _with_state_root(header, root)
            block = Block(header, block.txs)
        block_hash = compute_block_hash(header)
        history_after = merkle.HistoryAccumulator(history.size, list(history.peaks))
        history_nodes = history_after.append(block_hash)
        return ExecutedBlock(
            block, block_hash, results, changes, nodes, root_birth, _ChangesView(base, changes), history_after,
            history_nodes,
        )

    def build_block(
        self, txs: Sequence[bytes], view: int, timestamp: int, proposer: str, parent: ExecutedBlock | None = None
    ) -> ExecutedBlock:
        """Execute `txs` on the head (or on a pending `parent`) and wrap the outcome in a header."""
        tip, tip_hash, base, history = self._tip(parent)
        header = BlockHeader(
            height=tip.height + 1,
            prev_hash=tip_hash,
            view=view,
            timestamp=max(timestamp, tip.timestamp),
            tx_root=compute_tx_root(txs),
            state_root=b"",  # filled in by execution
            history_root=history.root(),
            proposer=proposer,
        )
        return self._hold(self._execute(Block(header, tuple(txs)), parent, base, history, tip.state_root))

    def execute_block(self, block: Block, parent: ExecutedBlock | None = None) -> ExecutedBlock:
        """Check a block someone else proposed against its parent and re-execute it."""
        tip, _, base, history = self._tip(parent)
        check_block_links(block, tip, history.root())
        executed = self._execute(block, parent, base, history, tip.state_root)
        # Executing the transactions yields the state root the header claims.
        if executed.block.header != block.header:
            raise InvalidBlock("state_root does not match the executed transactions")
        return self._hold(executed)

    def _hold(self, executed: ExecutedBlock) -> ExecutedBlock:
        """Serve a valid pending block's new nodes to blocks built on it until it commits (or is passed)."""
        self._pending.setdefault(executed.block.header.height, []).append(executed)
        return executed

    # --- committing ------------------------------------------------------------------------------

    def commit(
        self, executed: ExecutedBlock, cert: CommitCertificate,
        extra: Iterable[tuple[bytes, bytes]] = (), deleted: Iterable[bytes] = (),
    ) -> None:
        """Write a block on the head, with its certificate (and `extra` records of other owners, and
        `deleted` keys of theirs: the replica's, in the same synced write)."""
        header = executed.block.header
        # Blocks commit in order, each on the current head.
        if header.height != self.head.height + 1 or header.prev_hash != self.head_hash:
            raise InvalidBlock(f"block {header.height} does not extend the head {self.head.height}")
        # The certificate is for this block.
        if cert.block_hash != executed.block_hash:
            raise InvalidBlock("certificate names another block")
        self._write(executed, cert, extra, deleted)
        if self.verified is not None:  # a committed tx is never executed again
            self.verified.discard(r.tx_id for r in executed.results)

    def _write(
        self, executed: ExecutedBlock, cert: CommitCertificate, extra: Iterable[tuple[bytes, bytes]] = (),
        deleted: Iterable[bytes] = (),
    ) -> None:
        header = executed.block.header
        hk = height_key(header.height)
        puts: list[tuple[bytes, bytes]] = [
            (NS.BLOCK + hk, encode(executed.block)),
            (NS.CERT + hk, encode(cert)),
            (NS.BLOCK_BY_HASH + executed.block_hash, hk),
            (NS.STATE_ROOT + hk, header.state_root),
        ]
        indexed: set[bytes] = set()
        for i, r in enumerate(executed.results):
            # Index the first occurrence of a tx id only; a replayed copy must not hide it.
            if r.tx_id in indexed or self.store.get(NS.TX + r.tx_id) is not None:
                continue
            indexed.add(r.tx_id)
            puts.append((NS.TX + r.tx_id, encode(TxLocation(header.height, i, r.ok, r.reason, r.message))))
        puts.extend(node_puts(header.height, executed.new_nodes, header.state_root, executed.root_birth))
        if self._fresh_nodes is not None:
            self._fresh_nodes.update(executed.new_nodes)
        deletes = list(deleted)
        for key, value in executed.changes.items():
            if value is None:
                deletes.append(NS.STATE_LATEST + key)
            else:
                puts.append((NS.STATE_LATEST + key, value))
        history = executed.history_after
        for level, index, node_hash in executed.history_nodes:
            puts.append((NS.HISTORY_NODE + bytes([level]) + index.to_bytes(8, "big"), node_hash))
        puts.append((NS.HISTORY_PEAKS + hk, encode(tuple(history.peaks))))
        puts.extend(extra)
        puts.append((HEAD_KEY, hk))
        self.store.write_batch(puts, deletes, sync=True)
        for height in [h for h in self._pending if h <= header.height]:
            del self._pending[height]
        self.history = history
        self.head = header
        self.head_hash = executed.block_hash

    # --- reading ---------------------------------------------------------------------------------

    def state_sync_report(self) -> dict[str, Any] | None:
        """What the state sync that filled this store met (None: this node executed from genesis)."""
        raw = self.store.get(STATE_SYNC_KEY)
        return None if raw is None else dict(json.loads(decode(str, raw)))

    def require_held(self, height: int) -> None:
        """Raise NotHeld for a height whose block this node does not hold (below the oldest block held)."""
        if height < self.blocks_from:
            if self.blocks_from == self.base:
                raise NotHeld(height, self.base)
            raise HistoryNotHeld(height, self.blocks_from, self.base, "block")

    def require_state(self, height: int) -> None:
        """Raise NotHeld (or Pruned) unless this node holds the state of `height`."""
        if height < self.base:
            if self.blocks_from == self.base:
                raise NotHeld(height, self.base)
            raise HistoryNotHeld(height, self.base, self.base, "state")
        pruned = self.pruned
        if pruned is not None and height < pruned.below and height not in pruned.kept:
            raise Pruned(height, pruned)

    # --- pruning (ledger/pruning.py decides what; the store's records change only here) ------------------

    def set_pruned(self, pruned: PrunedState) -> None:
        """From now on the state of heights below `pruned.below` (but `kept`) is refused, before it is deleted."""
        self.store.write_batch([(PRUNED_KEY, encode(pruned))], sync=True)
        self.pruned = pruned

    def track_new_nodes(self, on: bool) -> None:
        """While on, remember the state nodes commits write: a sweep must never delete one of them (a new block
        may make a node equal to one that was unreachable when the sweep's mark began)."""
        self._fresh_nodes = set() if on else None

    def delete_state_nodes(self, keys: Iterable[bytes]) -> int:
        """Delete these state-node records (ledger/tree_store.py), except any of a node with the content of one
        written since tracking began; how many were deleted."""
        fresh = self._fresh_nodes if self._fresh_nodes is not None else set()
        doomed = [key for key in keys if key[-HASH_BYTES:] not in fresh]
        self.store.write_batch([], doomed, sync=False)
        return len(doomed)

    def get_block(self, height: int) -> Block | None:
        raw = self.store.get(NS.BLOCK + height_key(height))
        return None if raw is None else decode(Block, raw)

    def get_certificate(self, height: int) -> CommitCertificate | None:
        raw = self.store.get(NS.CERT + height_key(height))
        return None if raw is None else decode(CommitCertificate, raw)

    def certified_header(self, height: int) -> tuple[BlockHeader, CommitCertificate] | None:
        """The header of committed block `height` and its commit certificate."""
        cached = self._certified.get(height)
        if cached is not None:
            return cached
        self.require_held(height)
        block, cert = self.get_block(height), self.get_certificate(height)
        if block is None or cert is None:
            return None
        if len(self._certified) >= 1024:
            self._certified.clear()
        self._certified[height] = (block.header, cert)
        return block.header, cert

    def get_tx_location(self, tx_id: bytes) -> TxLocation | None:
        raw = self.store.get(NS.TX + tx_id)
        return None if raw is None else decode(TxLocation, raw)

    def state_root_at(self, height: int) -> bytes | None:
        return self.store.get(NS.STATE_ROOT + height_key(height))

    def warm_state_tree(self) -> int:
        """Read the top levels of the head's state tree into memory, as a node starts: on a large state the
        first blocks would otherwise read them one at a time at random and take several times the usual
        (long enough for the validators to suspect each primary in turn). The nodes read; 0 when this
        store does not hold the head's tree."""
        try:
            return self.smt.warm(self.head.state_root)
        except MissingNodeError:
            return 0  # execution will say so, loudly, if it needs them

    def view_at(self, height: int | None = None) -> Any:
        """A read-only state view at `height` (the head when None)."""
        if height is None or height == self.head.height:
            return self.latest
        self.require_state(height)
        root = self.state_root_at(height)
        if root is None:
            raise KeyError(f"no committed block at height {height}")
        return RootView(self.smt, root)

    def prove(self, key: bytes, height: int | None = None) -> tuple[int, bytes | None, SMTProof]:
        """(height, value, proof) of `key` against that height's state root."""
        h = self.head.height if height is None else height
        self.require_state(h)
        root = self.state_root_at(h)
        if root is None:
            raise KeyError(f"no committed block at height {h}")
        return h, self.smt.get(root, key), self.smt.prove(root, key)

    def set_change(self, seq: int, committed_height: int) -> tuple[BlockHeader, CommitCertificate, bytes | None,
                                                                   SMTProof]:
        """Validator-set change `seq`, committed at `committed_height`: that block's certified header and the
        proof of the set record in its state. Below the base, the link state sync fetched and checked."""
        if committed_height < self.base:
            raw = self.store.get(SET_LINK_PREFIX + seq.to_bytes(8, "big"))
            if raw is None:
                raise NotHeld(committed_height, self.base)
            link = decode(SetLink, raw)
            return link.header, link.certificate, link.value, link.proof()
        certified = self.certified_header(committed_height)
        if certified is None:
            raise KeyError(f"no committed block at height {committed_height}")
        _, value, smt = self.prove(set_key(seq), committed_height)
        return certified[0], certified[1], value, smt

    def history_proof(self, index: int, size: int) -> list[bytes]:
        """Inclusion proof of block `index` in the history accumulator over blocks 0..size-1."""
        self.require_held(index)
        if index < self.base and self.blocks_from > 0:  # the nodes below the base are written by finish_history
            raise HistoryNotHeld(index, self.base, self.base, "block")

        def get_node(level: int, idx: int) -> bytes:
            raw = self.store.get(NS.HISTORY_NODE + bytes([level]) + idx.to_bytes(8, "big"))
            if raw is None:
                raise KeyError(f"history node {level}/{idx} missing")
            return raw

        return merkle.history_inclusion_proof(index, size, get_node)


def _with_state_root(header: BlockHeader, root: bytes) -> BlockHeader:
    return BlockHeader(
        header.height, header.prev_hash, header.view, header.timestamp, header.tx_root, root,
        header.history_root, header.proposer,
    )


__all__ = ["ChainDB", "ExecutedBlock", "GenesisMismatch", "HistoryNotHeld", "NotHeld", "Pruned", "PrunedState",
           "SetLink", "ZERO_HASH"]
