"""The replica's driver: performs the actions a replica returns and feeds it what arrives.

Theory of operation
-------------------
The replica (ledger/consensus/) is sans-I/O; this module is the one piece of code that does its
I/O, for the real node (ledger/node.py runs it on the asyncio event loop) and for the consensus
simulation (tests/sim/ runs it on an in-memory network), so the simulation tests what runs. It
has no event loop, clock or randomness of its own: what differs between the two is behind
`PeerLinks` (the peer transport), the `Store` (LevelDB or memory) and the application.

Performing one call's actions, in order (the rules of ledger/consensus/actions.py):
- `Persist`: collected, and written in one synced batch before the next action that leaves the
  node, so nothing signed is sent before its record is durable; records collected before a `Deliver`
  go into the block's own synced write instead (one `fsync` where there were two: the certificate
  record the replica persists just before each delivery);
- `Send`/`Broadcast`/`ForwardTxs`: framed (first byte: what the rest is) and handed to the links;
- `Deliver`: the application commits the block with its certificate (one atomic write) and the
  commit hook runs (acknowledging its transactions) before the replica is called again;
- `FetchBlocks`: the links start a catch-up round unless one is running (`catch_up`);
- `DropTxs` and `Evidence` go to the host (`DriverHost`): the node records dropped transactions as
  refused, so none stays pending, and has an equivocation recorded in the ledger.

Catch-up is a generator, so both drivers of I/O run the same steps: it yields a request for a
peer (the links send it and send the answer back in, or None when it failed) or `PAUSE` (the node
lets other work run; the simulation continues at once). It asks peers in turn for certified
blocks above the committed height, checks and applies each in order, and tells the replica.

An `ApplicationError` (the application failed: disk, bug) propagates out of every entry point:
the caller stops the node. A peer's message can never raise here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Generic, Protocol, TypeVar

import msgpack

from ledger.chain import Block, CommitCertificate, InvalidBlock
from ledger.codec import CodecError, decode, encode, unpack_strict
from ledger.consensus.actions import (
    Action,
    Broadcast,
    Deliver,
    DropTxs,
    Evidence,
    FetchBlocks,
    ForwardTxs,
    Persist,
    Send,
)
from ledger.consensus.application import Application, ApplicationError
from ledger.consensus.membership import DecidedSet
from ledger.consensus.replica import Replica
from ledger.mempool import MAX_FORWARDED_PER_MESSAGE
from ledger.net.sync import MAX_BLOCKS_PER_REPLY, BlockBatch, BlockRequest
from ledger.store import NS, Store

log = logging.getLogger("ledger.driver")

# First byte of every peer message: what the rest is.
MSG_CONSENSUS = 0x01  # a signed consensus message for the replica
MSG_FORWARD = 0x02  # client transactions a backup forwards to the primary (msgpack array of tx bytes)
MAX_FORWARD_BYTES = 4 * 1024 * 1024  # of transactions per forward message: well inside a peer frame

C = TypeVar("C")
C_co = TypeVar("C_co", covariant=True)
C_contra = TypeVar("C_contra", contravariant=True)


class ChainApplication(Application, Protocol[C_co]):
    """The application as the driver uses it: the replica's Application, plus writing blocks."""

    def commit(
        self, block: Block, certificate: CommitCertificate,
        records: Sequence[tuple[bytes, bytes]] = (), deleted: Sequence[bytes] = (),
    ) -> C_co:
        """Write a block the replica delivered, with its certificate and the replica's `records` (puts) and
        `deleted` keys, in one atomic synced batch."""
        ...

    def apply_certified(self, block: Block, certificate: CommitCertificate) -> C_co:
        """Catch-up: check the certificate against the validator set, execute, write; InvalidBlock if not."""
        ...

    def serve_blocks(self, request: BlockRequest) -> BlockBatch:
        """Certified blocks for a peer that is behind."""
        ...

    def validator_set_decided(self, height: int) -> DecidedSet | None:
        """The validator set that committed block `height` decided, if it decided one."""
        ...


class PeerLinks(Protocol):
    """What the driver needs of the links to the other validators."""

    def send(self, peer: str, payload: bytes) -> object: ...

    def broadcast(self, payload: bytes) -> object: ...

    def start_catch_up(self) -> None:
        """Run a `Driver.catch_up` round over the peers, unless one is running."""
        ...


class DriverHost(Protocol[C_contra]):
    """The node (or the simulation) around a driver: what it is told, and the one thing it is asked."""

    def admit(self, txs: Sequence[bytes]) -> Sequence[bytes]:
        """Forwarded transactions: those that pass admission (the mempool's one path)."""
        ...

    def on_committed(self, result: C_contra) -> None:
        """A block was written (delivered or caught up); runs before the replica is called again."""
        ...

    def on_dropped(self, txs: Sequence[bytes], reason: str) -> None:
        """Admitted transactions the replica gave up ordering, and why."""
        ...

    def on_evidence(self, first: bytes, second: bytes) -> None:
        """A validator equivocated: two signed messages that prove it, to be recorded in the ledger."""
        ...


class CatchUpPause:
    """Yielded by `catch_up` between blocks: let other work run."""


PAUSE = CatchUpPause()
CatchUpRound = Generator[tuple[str, bytes] | CatchUpPause, bytes | None, None]


class Driver(Generic[C]):
    def __init__(
        self,
        replica: Replica,
        app: ChainApplication[C],
        store: Store,
        links: PeerLinks,
        host: DriverHost[C],
    ) -> None:
        self.replica = replica
        self.app = app
        self._store = store
        self._links = links
        self._host = host

    @staticmethod
    def persisted(store: Store) -> dict[bytes, bytes]:
        """What a replica persisted in `store` before a restart (to build it again)."""
        return {k[len(NS.CONSENSUS):]: v for k, v in store.iterate(NS.CONSENSUS)}

    # --- inputs ------------------------------------------------------------------------------------

    def tick(self) -> None:
        self.perform(self.replica.tick())

    def submit(self, txs: Sequence[bytes]) -> None:
        """Client transactions that passed admission."""
        if txs:
            self.perform(self.replica.submit(txs))

    def withdraw(self, txs: Sequence[bytes]) -> None:
        """Admitted transactions the host refused for good since: the replica stops queueing them."""
        if txs:
            self.replica.withdraw(txs)

    def on_peer_message(self, peer: str, payload: bytes) -> None:
        """A one-way message from an authenticated validator."""
        if not payload:
            return
        kind, body = payload[0], payload[1:]
        if kind == MSG_CONSENSUS:
            self.perform(self.replica.step(peer, body))
        elif kind == MSG_FORWARD:
            txs = decode_forwarded(body)
            if txs:
                self.submit(self._host.admit(txs))

    def serve(self, payload: bytes) -> bytes:
        """Answer a peer's block request (CodecError for a malformed one)."""
        return encode(self.app.serve_blocks(decode(BlockRequest, payload)))

    # --- performing actions ------------------------------------------------------------------------

    def perform(self, actions: Sequence[Action]) -> None:
        persist: list[Persist] = []
        for action in actions:
            if isinstance(action, Persist):
                persist.append(action)
                continue
            if isinstance(action, Deliver):
                self._deliver(action, persist)  # the records ride in the block's synced write
                persist = []
                continue
            if persist:  # persist before send
                self._flush(persist)
                persist = []
            if isinstance(action, Send):
                self._links.send(action.to, bytes([MSG_CONSENSUS]) + action.message)
            elif isinstance(action, Broadcast):
                self._links.broadcast(bytes([MSG_CONSENSUS]) + action.message)
            elif isinstance(action, ForwardTxs):
                for message in encode_forwards(action.txs):
                    self._links.send(action.to, message)
            elif isinstance(action, FetchBlocks):
                self._links.start_catch_up()
            elif isinstance(action, DropTxs):
                self._host.on_dropped(action.txs, action.reason)
            elif isinstance(action, Evidence):
                self._host.on_evidence(action.first, action.second)
        if persist:
            self._flush(persist)

    @staticmethod
    def _records(persist: list[Persist]) -> tuple[list[tuple[bytes, bytes]], list[bytes]]:
        puts = [(NS.CONSENSUS + p.key, p.value) for p in persist if p.value]
        deletes = [NS.CONSENSUS + p.key for p in persist if not p.value]
        return puts, deletes

    def _flush(self, persist: list[Persist]) -> None:
        puts, deletes = self._records(persist)
        self._store.write_batch(puts, deletes, sync=True)

    def _deliver(self, action: Deliver, persist: list[Persist]) -> None:
        block = action.block
        if block.header.height <= self.app.committed_height():
            if persist:
                self._flush(persist)
            return  # applied already by catch-up
        puts, deletes = self._records(persist)
        try:
            committed = self.app.commit(block, action.certificate, puts, deletes)
        except Exception as exc:
            raise ApplicationError(f"writing decided block {block.header.height} failed: {exc!r}") from exc
        self._learn_set(block.header.height)
        self._host.on_committed(committed)

    def _learn_set(self, height: int) -> None:
        """Tell the replica the validator set block `height` decided (before it is called again)."""
        decided = self.app.validator_set_decided(height)
        if decided is not None:
            self.replica.schedule_validators(*decided)

    # --- catch-up ----------------------------------------------------------------------------------

    def catch_up(self, peers: Sequence[str],
                 on_invalid: Callable[[str, int, str], None] | None = None) -> CatchUpRound:
        """Fetch certified blocks from `peers` in turn until none has more; apply each in order.
        `on_invalid(peer, height, why)` hears of a block that failed its checks (the peer is then left)."""
        start = self.app.committed_height()
        for peer in peers:
            while True:
                request = BlockRequest(self.app.committed_height() + 1, MAX_BLOCKS_PER_REPLY)
                raw = yield peer, encode(request)
                try:
                    reply = decode(BlockBatch, raw) if raw is not None else None
                except CodecError as exc:
                    log.info("catch-up from %s: malformed reply: %s", peer, exc)
                    reply = None
                if reply is None:
                    break
                applied = 0
                for entry in reply.blocks:
                    header = entry.block.header
                    if header.height != self.app.committed_height() + 1:
                        continue  # applied meanwhile by normal ordering
                    try:
                        committed = self.app.apply_certified(entry.block, entry.certificate)
                    except InvalidBlock as exc:
                        log.warning("peer %s served an invalid block %d: %s", peer, header.height, exc)
                        if on_invalid is not None:
                            on_invalid(peer, header.height, str(exc))
                        break
                    except Exception as exc:
                        raise ApplicationError(f"applying fetched block {header.height} failed: {exc!r}") from exc
                    applied += 1
                    self._learn_set(header.height)
                    self._host.on_committed(committed)
                    self.perform(self.replica.notify_committed(
                        header.height, entry.certificate.block_hash, entry.certificate, entry.block.txs))
                    yield PAUSE
                if applied == 0 or self.app.committed_height() >= reply.head_height:
                    break
        if self.app.committed_height() != start:  # (an observer's polls mostly find nothing new)
            log.info("catch-up done at height %d", self.app.committed_height())


def encode_forwards(txs: Sequence[bytes]) -> Iterator[bytes]:
    """Forward messages carrying `txs`, each within the count and size a receiver accepts (a view
    change forwards a whole queue, far more than one message may carry)."""
    start = 0
    while start < len(txs):
        end, size = start, 0
        while end < len(txs) and end - start < MAX_FORWARDED_PER_MESSAGE and (
            end == start or size + len(txs[end]) <= MAX_FORWARD_BYTES
        ):
            size += len(txs[end])
            end += 1
        yield bytes([MSG_FORWARD]) + msgpack.packb(list(txs[start:end]), use_bin_type=True)
        start = end


def decode_forwarded(body: bytes) -> list[bytes]:
    """The transactions in a forward message; nothing for a malformed or oversized one."""
    try:
        raws = unpack_strict(body)
    except CodecError:
        return []
    if not isinstance(raws, list) or len(raws) > MAX_FORWARDED_PER_MESSAGE:
        return []
    return [r for r in raws if isinstance(r, bytes)]
