"""The one asyncio driver: admit transactions, drive the replica, persist, send, apply, serve.

Theory of operation: the node owns the store, the chain database, the mempool and the replica.
Client transactions, and those a backup forwards to this primary, are admitted by the mempool
(`ledger.mempool`: decoded, checked, signatures verified) and the accepted ones handed to the
replica. A ticker calls `replica.tick()` every `tick_ms`. Every action list the replica returns
is performed in order: `Persist` writes are flushed (synced) before any following message leaves,
`Deliver` writes the block with its certificate in one atomic batch and only then wakes the
clients waiting on its transactions. An acknowledged (committed) transaction is therefore on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import msgpack

from ledger.anchor.records import disabled_status
from ledger.app import LedgerApp
from ledger.chain import InvalidBlock
from ledger.chaindb import ChainDB, ExecutedBlock
from ledger.codec import CodecError, decode, encode, unpack_strict
from ledger.config import NodeConfig, ticks
from ledger.consensus.actions import Action, Broadcast, Deliver, FetchBlocks, ForwardTxs, Persist, Send
from ledger.consensus.replica import Replica, ReplicaConfig
from ledger.crypto import SigningKey
from ledger.genesis import load_genesis
from ledger.mempool import MAX_FORWARDED_PER_MESSAGE, MAX_VERIFIED, Admission, Mempool, Outcome
from ledger.metrics import NodeMetrics
from ledger.net.peers import PeerTracker
from ledger.net.sync import BlockBatch, BlockRequest, serve_blocks
from ledger.net.transport import Transport, TransportError
from ledger.state import VerifiedCache
from ledger.store import NS, LevelDBStore, Store

log = logging.getLogger("ledger.node")

MAX_TICKS_PER_WAKEUP = 20  # after a long stall (e.g. SIGSTOP) do not fire every missed tick at once

# First byte of every peer message: what the rest is.
MSG_CONSENSUS = 0x01  # a signed consensus message for the replica
MSG_FORWARD = 0x02  # client transactions a backup forwards to the primary (msgpack array of tx bytes)


class Service(Protocol):
    """A service that runs beside the node (anchoring): started after it, stopped before it,
    its status shown in the node's."""

    def start(self) -> None: ...

    async def stop(self) -> None: ...

    def status(self) -> dict[str, Any]: ...


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class Node:
    def __init__(self, config: NodeConfig, store: Store | None = None) -> None:
        self.config = config
        self.key = SigningKey.load(config.node_key)
        self.genesis = load_genesis(config.genesis)
        self.store: Store = store if store is not None else LevelDBStore(config.data_dir / "ledger.db")
        self.chain = ChainDB(self.store, self.genesis, verified=VerifiedCache(MAX_VERIFIED))
        self.mempool = Mempool(self.chain, config.verify_threads)
        self.app = LedgerApp(self.chain, wall_clock_ms, preverify=self.mempool.preverify)
        validators = self.genesis.validator_ids()
        if self.key.id not in validators:
            raise ValueError(f"node key {self.key.id} is not a validator of this genesis")
        persisted = {k[len(NS.CONSENSUS):]: v for k, v in self.store.iterate(NS.CONSENSUS)}
        self.replica = Replica(
            ReplicaConfig(
                self.genesis.chain_id, tuple(validators), batch_size=config.batch_size,
                batch_ticks=ticks(config.batch_wait_ms, config.tick_ms),
                view_change_ticks=ticks(config.view_change_timeout_ms, config.tick_ms),
                request_timeout_ticks=ticks(config.request_timeout_ms, config.tick_ms),
                retransmit_ticks=ticks(config.retransmit_ms, config.tick_ms),
                fetch_retry_ticks=ticks(1000, config.tick_ms),
                max_pending_txs=self.mempool.limit,
            ),
            self.key,
            self.app,
            self.genesis.validator_keys(),
            persisted,
        )
        # What each peer has shown lately (last message, view, height), for GET /v1/network only.
        self.peer_info = PeerTracker()
        self.transport: Transport | None = None
        if len(validators) > 1:
            self.transport = Transport(
                self.key, self.genesis.chain_id, config.p2p, config.peers, self.genesis.validator_keys(),
                on_message=self._on_peer_message, on_request=self._on_peer_request,
            )
        self.metrics = NodeMetrics()
        self.metrics.height.set(self.chain.height)
        # Consensus counters include dropped messages by reason (bad signature, non-validator, ...).
        self.metrics.expose_counters("ledger_consensus", "Consensus replica events", lambda: self.replica.metrics)
        if self.transport is not None:
            transport = self.transport
            self.metrics.expose_counters("ledger_transport", "Peer transport events", lambda: transport.metrics)
        self._waiters: dict[bytes, list[asyncio.Future[Outcome]]] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._catch_up_task: asyncio.Task[None] | None = None
        self._commit_listeners: list[Callable[[ExecutedBlock], None]] = []
        self.started_at = time.time()
        # Anchoring to Ethereum, when configured: attached by `ledger.assembly.build_node`.
        self.anchoring: Service | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.transport is not None:
            await self.transport.start()
        self._ticker = asyncio.create_task(self._tick_loop(), name="ticker")
        if self.anchoring is not None:
            self.anchoring.start()
        log.info("node %s started at height %d", self.key.id, self.chain.height)

    async def stop(self) -> None:
        if self.anchoring is not None:
            await self.anchoring.stop()
        if self._catch_up_task is not None:
            self._catch_up_task.cancel()
        if self.transport is not None:
            await self.transport.stop()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        self.mempool.close()
        self.store.close()

    async def _tick_loop(self) -> None:
        """One replica tick per elapsed `tick_ms` of wall time, so timeouts keep their meaning in
        seconds even when a busy event loop wakes the ticker late (at most a few ticks at once)."""
        interval = self.config.tick_ms / 1000
        last = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            due = min(int((now - last) / interval), MAX_TICKS_PER_WAKEUP)
            last = now if due == MAX_TICKS_PER_WAKEUP else last + due * interval
            try:
                for _ in range(due):
                    self._perform(self.replica.tick())
                self.metrics.view.set(self.replica.view)
            except Exception:  # a bug here must not stop the ticker; it is logged loudly
                log.exception("tick failed")

    # --- admission -------------------------------------------------------------------------------

    def submit(self, raws: Sequence[bytes]) -> list[Admission]:
        """Admit transactions (`Mempool.admit`); accepted ones go to the replica. Results are in input order."""
        results = self.mempool.admit(raws)
        for r in results:
            if r.accepted:
                self.metrics.tx_admitted.inc()
            else:
                self.metrics.tx_rejected.labels(r.reason).inc()
        accepted = [raw for raw, r in zip(raws, results, strict=True) if r.accepted]
        if accepted:
            self._perform(self.replica.submit(accepted))
        self.metrics.mempool.set(len(self.mempool))
        return results

    async def wait_committed(self, tx_ids: Iterable[bytes], timeout: float) -> list[Outcome | None]:
        """Wait until each tx commits (None for those still pending at the timeout)."""
        futures: list[asyncio.Future[Outcome] | Outcome | None] = []
        loop = asyncio.get_running_loop()
        for tx_id in tx_ids:
            loc = self.chain.get_tx_location(tx_id)
            if loc is not None:
                futures.append(Outcome(tx_id, loc.height, loc.index, loc.ok, loc.reason, loc.message))
            elif self.mempool.is_pending(tx_id):
                fut: asyncio.Future[Outcome] = loop.create_future()
                self._waiters.setdefault(tx_id, []).append(fut)
                futures.append(fut)
            else:
                futures.append(None)
        pending = [f for f in futures if isinstance(f, asyncio.Future)]
        if pending:
            await asyncio.wait(pending, timeout=timeout)
        out: list[Outcome | None] = []
        for f in futures:
            if isinstance(f, asyncio.Future):
                out.append(f.result() if f.done() else None)
                if not f.done():
                    f.cancel()
            else:
                out.append(f)
        return out

    # --- performing actions ----------------------------------------------------------------------

    def _perform(self, actions: list[Action]) -> None:
        persist: list[Persist] = []
        for action in actions:
            if isinstance(action, Persist):
                persist.append(action)
                continue
            if persist:  # persist before send
                self._flush(persist)
                persist = []
            if isinstance(action, Deliver):
                self._deliver(action)
            elif self.transport is None:
                log.warning("no peers for %s in a single-validator network", type(action).__name__)
            elif isinstance(action, Send):
                self.transport.send(action.to, bytes([MSG_CONSENSUS]) + action.message)
            elif isinstance(action, Broadcast):
                self.transport.broadcast(bytes([MSG_CONSENSUS]) + action.message)
            elif isinstance(action, ForwardTxs):
                body = msgpack.packb(list(action.txs), use_bin_type=True)
                self.transport.send(action.to, bytes([MSG_FORWARD]) + body)
            elif isinstance(action, FetchBlocks) and (self._catch_up_task is None or self._catch_up_task.done()):
                self._catch_up_task = asyncio.create_task(self._catch_up(), name="catch-up")
        if persist:
            self._flush(persist)

    def _flush(self, persist: list[Persist]) -> None:
        puts = [(NS.CONSENSUS + p.key, p.value) for p in persist if p.value]
        deletes = [NS.CONSENSUS + p.key for p in persist if not p.value]
        self.store.write_batch(puts, deletes, sync=True)

    def _deliver(self, action: Deliver) -> None:
        if action.block.header.height <= self.chain.height:
            return  # already applied through catch-up
        started = time.perf_counter()
        executed = self.app.commit(action.block, action.certificate)
        self.metrics.block_commit_seconds.observe(time.perf_counter() - started)
        self._on_committed(executed)

    def add_commit_listener(self, listener: Callable[[ExecutedBlock], None]) -> None:
        """Call `listener` with every block once it is on disk, before any of its txs is acknowledged.

        For consumers of committed blocks (response caches, the anchoring service). A listener must
        be quick and must not raise; a failing listener is logged and does not stop the node.
        """
        self._commit_listeners.append(listener)

    def _on_committed(self, executed: ExecutedBlock) -> None:
        """Bookkeeping after a block is on disk: listeners, metrics, mempool, clients waiting on its txs."""
        for listener in self._commit_listeners:
            try:
                listener(executed)
            except Exception:  # one consumer's bug must not stop commits
                log.exception("commit listener %r failed", listener)
        height = executed.block.header.height
        self.metrics.height.set(height)
        self.metrics.blocks_committed.inc()
        ok = sum(1 for r in executed.results if r.ok)
        self.metrics.tx_committed.inc(ok)
        self.metrics.tx_failed.inc(len(executed.results) - ok)
        self.mempool.remove_committed(r.tx_id for r in executed.results)
        for index, r in enumerate(executed.results):
            for fut in self._waiters.pop(r.tx_id, ()):
                if not fut.done():
                    fut.set_result(Outcome(r.tx_id, height, index, r.ok, r.reason, r.message))
        self.metrics.mempool.set(len(self.mempool))

    # --- peers -----------------------------------------------------------------------------------

    def _on_peer_message(self, peer: str, payload: bytes) -> None:
        if not payload:
            return
        kind, body = payload[0], payload[1:]
        self.peer_info.heard(peer, body if kind == MSG_CONSENSUS else None)
        if kind == MSG_CONSENSUS:
            self._perform(self.replica.step(peer, body))
        elif kind == MSG_FORWARD:
            try:
                raws = unpack_strict(body)
            except CodecError:
                return
            if not isinstance(raws, list) or len(raws) > MAX_FORWARDED_PER_MESSAGE:
                return
            self.submit([r for r in raws if isinstance(r, bytes)])

    async def _on_peer_request(self, peer: str, payload: bytes) -> bytes:
        request = decode(BlockRequest, payload)
        return encode(serve_blocks(self.chain, request))

    async def _catch_up(self) -> None:
        """Fetch certified blocks from peers until none has more; verify and apply each in order."""
        if self.transport is None:
            return
        peers = self.transport.connected_peers()
        random.shuffle(peers)
        for peer in peers:
            while True:
                request = BlockRequest(self.chain.height + 1, 64)
                try:
                    reply = decode(BlockBatch, await self.transport.request(peer, encode(request), timeout=10.0))
                except (TransportError, CodecError) as exc:
                    log.info("catch-up from %s failed: %s", peer, exc)
                    break
                applied = 0
                for entry in reply.blocks:
                    header = entry.block.header
                    if header.height != self.chain.height + 1:
                        continue  # applied meanwhile by normal ordering
                    try:
                        executed = self.app.apply_certified(entry.block, entry.certificate)
                    except InvalidBlock as exc:
                        log.warning("peer %s served an invalid block %d: %s", peer, header.height, exc)
                        break
                    applied += 1
                    self._on_committed(executed)
                    self._perform(self.replica.notify_committed(
                        header.height, executed.block_hash, entry.certificate, entry.block.txs))
                    await asyncio.sleep(0)  # let the node serve while it catches up
                if applied == 0 or self.chain.height >= reply.head_height:
                    break
        log.info("catch-up done at height %d", self.chain.height)

    # --- status ----------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        head = self.chain.head
        return {
            "node_id": self.key.id,
            "chain_id": self.chain.chain_id,
            "height": head.height,
            "view": self.replica.view,
            "primary": self.replica.primary,
            "block_hash": self.chain.head_hash.hex(),
            "state_root": head.state_root.hex(),
            "timestamp": head.timestamp,
            "validators": self.genesis.validator_ids(),
            "peers": self.transport.connected_peers() if self.transport is not None else [],
            "mempool": len(self.mempool),
            "uptime_s": round(time.time() - self.started_at, 1),
            "anchoring": self.anchoring.status() if self.anchoring is not None else disabled_status(),
        }
