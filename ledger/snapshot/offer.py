"""What a peer offers a joining node (`GET /v1/sync/snapshot`), and the checks that make it believable.

A `SnapshotOffer` is the peer's head block with its commit certificate, the history accumulator's peaks
over the blocks before it, and every validator-set change committed up to it (`SetLink`: the block that
committed it, certified, and the proof of the set record in its state). `check_offer` believes none of
it: starting from the genesis validators, each change's block must carry a quorum of the set in force at
its height and prove the new set in its state root; the head's certificate must carry a quorum of the
set in force at its height; the block's transactions must match its tx root, and the peaks its history
root. What passes names a state root certified as the validators' own, against which every chunk of
the state tree is then checked (`ledger.snapshot.treewalk`).

`check_state_agrees` runs once the whole tree is in: the sets the links claimed are exactly those the
certified state holds (a peer that left a change out is caught here, if not by a certificate before).
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger import merkle
from ledger.chain import (
    Block,
    BlockHeader,
    CommitCertificate,
    InvalidBlock,
    check_certificate,
    compute_block_hash,
    compute_tx_root,
)
from ledger.chaindb import ChainDB, SetLink
from ledger.codec import CodecError, decode
from ledger.genesis import Genesis
from ledger.smt import verify_proof
from ledger.state import StateView
from ledger.store import NS, height_key
from ledger.validators import (
    ACTIVATION_DELAY,
    ValidatorSet,
    change_count,
    genesis_set,
    get_set,
    keys_of,
    set_key,
    sets_from,
)


class OfferRefused(ValueError):
    """A snapshot offer failed a check against the genesis; the message says which."""


@dataclass(frozen=True)
class SnapshotOffer:
    block: Block  # the snapshot's block, whole
    certificate: CommitCertificate
    peaks: tuple[bytes, ...]  # history accumulator peaks over blocks 0 .. height-1
    links: tuple[SetLink, ...]  # every validator-set change committed up to the block, in order


@dataclass(frozen=True)
class StateChunk:
    nodes: tuple[bytes, ...]  # state-tree node encodings in pre-order (ledger/snapshot/treewalk.py)


@dataclass(frozen=True)
class CheckedOffer:
    offer: SnapshotOffer
    header: BlockHeader
    block_hash: bytes
    sets: tuple[ValidatorSet, ...]  # genesis's, then each change

    @property
    def height(self) -> int:
        return self.header.height

    @property
    def state_root(self) -> bytes:
        return self.header.state_root


def make_offer(chain: ChainDB, height: int | None = None) -> SnapshotOffer:
    """Block `height` (default: the head) as a snapshot offer, with the set changes committed up to it."""
    height = chain.height if height is None else height
    block, cert = chain.get_block(height), chain.get_certificate(height)
    if block is None or cert is None:
        raise LookupError(f"block {height} is missing")
    raw_peaks = chain.store.get(NS.HISTORY_PEAKS + height_key(height - 1))
    peaks = decode(tuple[bytes, ...], raw_peaks) if raw_peaks is not None else ()
    links = []
    for change in sets_from(chain.latest, 1, chain.genesis)[1:]:
        if change.committed_height > height:
            break  # committed after the offered block: its state does not hold it yet
        header, link_cert, value, proof = chain.set_change(change.seq, change.committed_height)
        assert value is not None  # the state of the block that made a change holds it
        leaf = () if proof.leaf is None else proof.leaf
        links.append(SetLink(change.seq, header, link_cert, value, proof.siblings, leaf))
    return SnapshotOffer(block, cert, peaks, tuple(links))


def check_offer(offer: SnapshotOffer, genesis: Genesis) -> CheckedOffer:
    """Check `offer` against `genesis` (see the module docstring); raises OfferRefused."""
    header = offer.block.header
    if header.height < 1:
        raise OfferRefused("the offer is block 0: nothing to sync (the genesis file makes it)")
    sets = [genesis_set(genesis)]
    for seq, link in enumerate(offer.links, 1):
        sets.append(_check_link(link, seq, tuple(sets), genesis, header.height))
    block_hash = compute_block_hash(header)
    try:
        check_certificate(offer.certificate, genesis.chain_id, header, keys_of(_set_at(sets, header.height).validators))
    except InvalidBlock as exc:
        raise OfferRefused(f"block {header.height}: {exc}") from None
    if compute_tx_root(offer.block.txs) != header.tx_root:
        raise OfferRefused(f"block {header.height}: its transactions do not match its tx root")
    try:
        history = merkle.HistoryAccumulator(header.height, offer.peaks)
    except ValueError as exc:
        raise OfferRefused(f"history peaks: {exc}") from None
    if history.root() != header.history_root:
        raise OfferRefused(f"history peaks: they do not make block {header.height}'s history root")
    return CheckedOffer(offer, header, block_hash, tuple(sets))


def _set_at(sets: list[ValidatorSet] | tuple[ValidatorSet, ...], height: int) -> ValidatorSet:
    return next(s for s in reversed(sets) if s.active_from <= height or s.seq == 0)


def _check_link(link: SetLink, seq: int, before: tuple[ValidatorSet, ...], genesis: Genesis,
                height: int) -> ValidatorSet:
    what = f"validator-set change {seq}"
    h = link.header
    if link.seq != seq:
        raise OfferRefused(f"{what}: the offer numbers it {link.seq}")
    # Committed while the set before it governed (one change at a time), at or below the offered block.
    if not before[-1].active_from <= h.height <= height:
        raise OfferRefused(f"{what}: block {h.height} is not between set {seq - 1}'s activation "
                           f"({before[-1].active_from}) and the offered block ({height})")
    try:
        check_certificate(link.certificate, genesis.chain_id, h, keys_of(_set_at(before, h.height).validators))
    except InvalidBlock as exc:
        raise OfferRefused(f"{what}: block {h.height}: {exc}") from None
    if not verify_proof(h.state_root, set_key(seq), link.value, link.proof()):
        raise OfferRefused(f"{what}: the set record is not in block {h.height}'s certified state")
    try:
        record = decode(ValidatorSet, link.value)
    except CodecError as exc:
        raise OfferRefused(f"{what}: the set record does not decode: {exc}") from None
    if (record.seq, record.committed_height, record.active_from) != (seq, h.height, h.height + ACTIVATION_DELAY):
        raise OfferRefused(f"{what}: the record is set {record.seq} of block {record.committed_height}")
    return record


def check_state_agrees(checked: CheckedOffer, state: StateView, genesis: Genesis) -> None:
    """The certified state at the offer's block holds exactly the set changes the offer's links proved."""
    count = change_count(state)
    if count != len(checked.sets) - 1:
        raise OfferRefused(f"the state holds {count} validator-set changes, the offer proved "
                           f"{len(checked.sets) - 1}")
    for s in checked.sets[1:]:
        if get_set(state, s.seq, genesis) != s:
            raise OfferRefused(f"validator set {s.seq} in the state differs from the one the offer proved")


__all__ = ["CheckedOffer", "OfferRefused", "SnapshotOffer", "StateChunk", "check_offer", "check_state_agrees",
           "make_offer"]
