"""A validator node on the asyncio event loop: the store, the chain, the mempool and the replica's driver.

Theory of operation: the node owns the store, the chain database, the mempool and the driver
(ledger/driver.py), which owns the replica and performs its actions. Client transactions, and
those a backup forwards to this primary, are admitted by the mempool (`ledger.mempool`: decoded,
checked, signatures verified) and the accepted ones handed to the replica. A ticker ticks the
replica every `tick_ms` of wall time. The driver persists (synced) before anything signed leaves,
and writes each decided block with its certificate in one atomic batch; only then does the node
wake the clients waiting on its transactions, so an acknowledged transaction is on disk.

What is asynchronous lives here: the transport's links to the other validators, the ticker, and
the catch-up round (the driver's generator, whose block requests the node awaits). When the
application fails (`ApplicationError`: a disk or code error while building, checking or writing a
block) the node stops at once and loudly: nothing it acknowledged is lost (it is on disk), and a
node that cannot execute must not vote.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol

from ledger import memtrim
from ledger.anchor.records import disabled_status
from ledger.chaindb import ChainDB, ExecutedBlock
from ledger.config import NodeConfig, Peer, ticks
from ledger.consensus.application import ApplicationError
from ledger.consensus.replica import Replica
from ledger.consensus.settings import ReplicaConfig
from ledger.driver import MSG_CONSENSUS, CatchUpPause, Driver
from ledger.evidence import KIND as EVIDENCE_KIND
from ledger.evidence import EquivocationEvidence
from ledger.genesis import load_genesis
from ledger.health import MAX_LAG, Readiness, judge
from ledger.keyfiles import load_node_key
from ledger.ledger_app import LedgerApp
from ledger.mempool import MAX_VERIFIED, Admission, Mempool, Outcome, Refusal
from ledger.metrics import NodeMetrics
from ledger.net.peers import PeerTracker
from ledger.net.transport import Transport, TransportError
from ledger.observer import Follower
from ledger.pruning import prune
from ledger.snapshot.exports import StateExports
from ledger.state import VerifiedCache, nonce_key
from ledger.store import LevelDBStore, Store
from ledger.system_txs import SystemTxs
from ledger.tasks import cancel_and_wait
from ledger.tx import compute_tx_id
from ledger.validators import COUNT_KEY, ValidatorSet, sets_from

log = logging.getLogger("ledger.node")

READY_PEER_FRESH_S = 10.0  # a peer's height counts for readiness this long after it was heard
MAX_TICKS_PER_WAKEUP = 20  # after a long stall (e.g. SIGSTOP) do not fire every missed tick at once
CATCH_UP_REQUEST_TIMEOUT_S = 10.0
EXIT_APPLICATION_FAILED = 70  # EX_SOFTWARE


class Service(Protocol):
    """A service beside the node (anchoring): started after it, stopped before it, its status in the node's."""

    def start(self) -> None: ...

    async def stop(self) -> None: ...

    def status(self) -> dict[str, Any]: ...


NONCE_PREFIX = nonce_key("")  # state keys of the senders' used nonces


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def exit_process(exc: BaseException) -> None:
    """Stop the process at once: what it acknowledged is on disk, and it must not go on voting."""
    logging.shutdown()
    os._exit(EXIT_APPLICATION_FAILED)


class Node:
    def __init__(self, config: NodeConfig, store: Store | None = None,
                 on_fatal: Callable[[BaseException], None] = exit_process) -> None:
        """`on_fatal` runs once the application failed (after the error is logged); by default it
        ends the process (tests running nodes in-process pass another)."""
        self.config = config
        self.key = load_node_key(config)  # decrypted with its configured passphrase if encrypted
        self.genesis = load_genesis(config.genesis)
        if store is None:
            store = LevelDBStore(config.data_dir / "ledger.db", max_open_files=config.leveldb_open_files,
                                 max_file_mb=config.leveldb_table_mb)
        self.store: Store = store
        self.chain = ChainDB(self.store, self.genesis, verified=VerifiedCache(MAX_VERIFIED))
        started = time.perf_counter()
        warmed = self.chain.warm_state_tree()
        if warmed > 1_000:
            log.info("read the top of the state tree (%d nodes) in %.1f s", warmed, time.perf_counter() - started)
        self.mempool = Mempool(self.chain, config.verify_threads)
        self.metrics = NodeMetrics()
        self.metrics.height.set(self.chain.height)
        self.app = LedgerApp(self.chain, wall_clock_ms, preverify=self.mempool.preverify,
                             observe_commit_seconds=self.metrics.block_commit_seconds.observe)
        validators = self.genesis.validator_ids()
        # Every set decided since genesis (the replica answers quorums per height from them), and their keys.
        later = sets_from(self.chain.latest, 1, self.genesis)[1:]
        all_keys = {**self.genesis.validator_keys(), **{v.id: v.public_key for s in later for v in s.validators}}
        # An observer follows certified blocks over the validators' HTTP (ledger/observer.py): no peer
        # links, no ticks, so its replica never speaks; it only hears of the blocks applied.
        self.observer = config.role == "observer"
        if self.observer and self.key.id in all_keys:
            raise ValueError(f"node key {self.key.id} is a validator's: an observer needs a key of its own")
        if self.key.id not in all_keys and not self.observer:
            log.warning("node key %s is in no validator set this chain decided yet: following it (catch-up) "
                        "until a change adds it", self.key.id)
        replica = Replica(
            ReplicaConfig(
                self.genesis.chain_id, tuple(validators), batch_size=config.batch_size,
                batch_ticks=ticks(config.batch_wait_ms, config.tick_ms), eager_inflight=config.batch_eager_inflight,
                view_change_ticks=ticks(config.view_change_timeout_ms, config.tick_ms),
                request_timeout_ticks=ticks(config.request_timeout_ms, config.tick_ms),
                retransmit_ticks=ticks(config.retransmit_ms, config.tick_ms),
                fetch_retry_ticks=ticks(1000, config.tick_ms),
                max_pending_txs=self.mempool.limit,
            ),
            self.key,
            self.app,
            all_keys,
            Driver.persisted(self.store),
            [(s.active_from, tuple(v.id for v in s.validators)) for s in later],
        )
        # What each peer has shown lately (last message, view, height), for GET /v1/network only.
        self.peer_info = PeerTracker()
        self._next_activation = 0  # a height from which a decided set governs (0: none pending)
        self.transport: Transport | None = None
        if not self.observer and (len(all_keys) > 1 or self.key.id not in all_keys):
            links = config.peer_links
            self.transport = Transport(
                self.key, self.genesis.chain_id, config.p2p, self._peers_known(config.peers), self._pinned_keys(),
                on_message=self._on_peer_message, on_request=self._on_peer_request,
                heartbeat_interval=links.heartbeat_ms / 1000, dead_after=links.dead_after_ms / 1000,
                handshake_timeout=links.handshake_timeout_ms / 1000, connect_timeout=links.connect_timeout_ms / 1000,
                backoff_max=links.reconnect_max_ms / 1000, max_pending_handshakes=links.max_pending_handshakes,
                max_pending_per_address=links.max_pending_per_address,
            )
        self.system_txs = SystemTxs(self.key, self.genesis.chain_id, self.mempool)
        self.driver = Driver(replica, self.app, self.store, self, self)
        # Consensus counters include dropped messages by reason (bad signature, non-validator, ...).
        self.metrics.expose_counters("ledger_consensus", "Consensus replica events", lambda: self.replica.metrics)
        self.metrics.expose_gauges("ledger_consensus_pace", "How long deliveries have been taking, and the "
                                   "timeouts that watch the primary allowing for it (ms)", self._pace)
        # What the state sync that filled this home met (ledger/snapshot/statesync.py), if it joined that way.
        self.state_sync = self.chain.state_sync_report()
        if self.state_sync is not None:
            synced = {k: int(v) for k, v in self.state_sync.items() if k in ("height", "chunks", "nodes", "bytes",
                                                                            "refused")}
            self.metrics.expose_gauges("ledger_state_sync", "The state sync this node joined by (refused: chunks "
                                       "and offers that failed their checks)", lambda: synced)
        if self.transport is not None:
            transport = self.transport
            self.metrics.expose_counters("ledger_transport", "Peer transport events", lambda: transport.metrics)
        self._on_fatal = on_fatal
        self.failed: ApplicationError | None = None
        self._waiters: dict[bytes, list[asyncio.Future[Outcome | Refusal]]] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._trimmer: asyncio.Task[None] | None = None
        self._catch_up_task: asyncio.Task[None] | None = None
        self._commit_listeners: list[Callable[[ExecutedBlock], None]] = []
        self._pruning: asyncio.Task[None] | None = None  # a pruning round (ledger/pruning.py), one at a time
        self._prune_again = False
        # State exports made ahead for joining nodes (ledger/snapshot/exports.py), on a thread of their own.
        sync = config.sync
        self.exports = StateExports(self.chain, config.data_dir, sync.export_every, sync.export_min_interval_s,
                                    sync.exports_kept)
        self.started_at = time.time()
        # Anchoring to Ethereum, when configured: attached by `ledger.assembly.build_node`.
        self.anchoring: Service | None = None
        # An observer's link to the validators (blocks in, writes out): attached by `build_node`.
        self.follower: Follower | None = None
        # Private data (ledger/private/service.py): side store, fetches between member nodes; by `build_node`.
        self.private: Service | None = None
        # Older blocks of a node that joined by state sync (ledger/snapshot/history.py), with `"history": "full"`.
        self.history: Service | None = None
        # Peer requests of kinds beside block requests, by first byte (private data's fetches).
        self._peer_request_handlers: dict[int, Callable[[str, bytes], Awaitable[bytes]]] = {}

    @property
    def replica(self) -> Replica:
        return self.driver.replica

    def committed_height(self) -> int:
        return self.chain.height

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.transport is not None:
            await self.transport.start()
        if not self.observer:
            self._ticker = asyncio.create_task(self._tick_loop(), name="ticker")
        self._trimmer = asyncio.create_task(memtrim.trim_periodically(), name="heap-trim")
        if self.anchoring is not None:
            self.anchoring.start()
        if self.follower is not None:
            self.follower.start()
        if self.private is not None:
            self.private.start()
        if self.history is not None:
            self.history.start()
        self.exports.start()
        self._maybe_export(self.chain.height)
        log.info("%s %s started at height %d", "observer" if self.observer else "node", self.key.id,
                 self.chain.height)

    async def stop(self) -> None:
        if self.history is not None:
            await self.history.stop()
        if self.private is not None:
            await self.private.stop()
        if self.anchoring is not None:
            await self.anchoring.stop()
        if self.follower is not None:
            await self.follower.stop()
        if self._catch_up_task is not None:
            self._catch_up_task.cancel()
        await cancel_and_wait(self._pruning)
        await asyncio.to_thread(self.exports.stop)  # before the store closes under its reads
        if self.transport is not None:
            await self.transport.stop()
        await cancel_and_wait(self._ticker)
        await cancel_and_wait(self._trimmer)
        self.mempool.close()
        self.store.close()

    async def _tick_loop(self) -> None:
        """One replica tick per elapsed `tick_ms` of wall time, so timeouts keep their meaning in
        seconds even when a busy event loop wakes the ticker late (at most a few ticks at once)."""
        interval = self.config.tick_ms / 1000
        last = time.monotonic()
        view = self.replica.view
        while self.failed is None:
            await asyncio.sleep(interval)
            now = time.monotonic()
            due = min(int((now - last) / interval), MAX_TICKS_PER_WAKEUP)
            last = now if due == MAX_TICKS_PER_WAKEUP else last + due * interval
            try:
                for _ in range(due):
                    self._drive(self.driver.tick)
                if expired := self.mempool.expire_gaps():  # refused in time when nothing commits, too
                    self._answer_refused(expired)
                self.metrics.view.set(self.replica.view)
                if self.replica.view != view:
                    view = self._log_view_change(view)
            except Exception:  # a bug here must not stop the ticker; it is logged loudly
                log.exception("tick failed")

    def _log_view_change(self, old: int) -> int:
        """Say why views change (operators ask): this replica's suspicions so far, by reason."""
        m = self.replica.metrics
        log.info("view %d -> %d at height %d (this node's suspicions so far: stalled %d, passed over %d, "
                 "unordered %d)", old, self.replica.view, self.chain.height, m["suspected_stalled"],
                 m["suspected_passed_over"], m["suspected_unordered"])
        return self.replica.view

    def _drive(self, step: Callable[..., Any], *args: Any) -> Any:
        """Run one step of the driver; an application failure stops the node."""
        if self.failed is not None:
            return None
        try:
            return step(*args)
        except ApplicationError as exc:
            self.failed = exc
            log.critical("the application failed; stopping this node: %s", exc, exc_info=exc)
            self._on_fatal(exc)
            return None

    # --- admission -------------------------------------------------------------------------------

    def submit(self, raws: Sequence[bytes]) -> list[Admission]:
        """Admit transactions (`Mempool.admit`); released ones go to the replica. Results are in input order."""
        results = self._admit(raws)
        self._submit_released()
        return results

    def _submit_released(self) -> None:
        if released := self.mempool.take_released():
            self._drive(self.driver.submit, released)

    def _admit(self, raws: Sequence[bytes]) -> list[Admission]:
        results = self.mempool.admit(raws)
        for r in results:
            if r.accepted:
                self.metrics.tx_admitted.inc()
            else:
                self.metrics.tx_rejected.labels(r.reason).inc()
        self.metrics.mempool.set(len(self.mempool))
        return results

    def submit_system(self, kind: str, payload: Any) -> Admission:
        """Submit a transaction signed with this validator's node key (anchor receipts, evidence)."""
        (admission,) = self.submit([self.system_txs.sign(self.chain.latest, kind, payload)])
        return admission

    # --- the driver's host -------------------------------------------------------------------------

    def admit(self, raws: Sequence[bytes]) -> list[bytes]:
        """Transactions a backup forwarded to this primary: the same admission as a client's; the released ones."""
        self._admit(raws)
        return self.mempool.take_released()

    def on_evidence(self, first: bytes, second: bytes) -> None:
        """This replica met a validator's two contradicting messages: record them in the ledger."""
        admission = self.submit_system(EVIDENCE_KIND, EquivocationEvidence(first, second))
        log.warning("equivocation evidence submitted (tx %s): %s", admission.tx_id.hex()[:16],
                    admission.reason or "accepted")

    async def wait_committed(self, tx_ids: Iterable[bytes], timeout: float) -> list[Outcome | Refusal | None]:
        """Wait until each tx commits, or is refused after admission (None: still pending at the timeout)."""
        futures: list[asyncio.Future[Outcome | Refusal] | Outcome | Refusal | None] = []
        loop = asyncio.get_running_loop()
        for tx_id in tx_ids:
            loc = self.chain.get_tx_location(tx_id)
            if loc is not None:
                futures.append(Outcome(tx_id, loc.height, loc.index, loc.ok, loc.reason, loc.message))
            elif self.mempool.is_pending(tx_id):
                fut: asyncio.Future[Outcome | Refusal] = loop.create_future()
                self._waiters.setdefault(tx_id, []).append(fut)
                futures.append(fut)
            else:
                futures.append(self.mempool.refusal(tx_id))
        pending = [f for f in futures if isinstance(f, asyncio.Future)]
        if pending:
            await asyncio.wait(pending, timeout=timeout)
        out: list[Outcome | Refusal | None] = []
        for f in futures:
            if isinstance(f, asyncio.Future):
                out.append(f.result() if f.done() else None)
                if not f.done():
                    f.cancel()
            else:
                out.append(f)
        return out

    def on_dropped(self, txs: Sequence[bytes], reason: str) -> None:
        """Consensus gave up ordering these admitted transactions: they are refused, not pending, and so are
        their senders' later ones (which could only fail without them)."""
        withdrawn, refusals = self.mempool.give_up([compute_tx_id(raw) for raw in txs], reason)
        self.driver.withdraw(withdrawn)
        self._answer_refused(refusals)

    def _answer_refused(self, refusals: Sequence[Refusal]) -> None:
        for refusal in refusals:
            self.metrics.tx_rejected.labels(refusal.reason).inc()
            for fut in self._waiters.pop(refusal.tx_id, ()):
                if not fut.done():
                    fut.set_result(refusal)
        self.metrics.mempool.set(len(self.mempool))

    # --- committed blocks --------------------------------------------------------------------------

    def add_commit_listener(self, listener: Callable[[ExecutedBlock], None]) -> None:
        """Call `listener` with every block once it is on disk, before any of its txs is acknowledged.

        For consumers of committed blocks (response caches, the anchoring service). A listener must
        be quick and must not raise; a failing listener is logged and does not stop the node.
        """
        self._commit_listeners.append(listener)

    def on_committed(self, executed: ExecutedBlock) -> None:
        """Bookkeeping after a block is on disk: listeners, metrics, mempool, clients waiting on its txs."""
        height = executed.block.header.height
        if COUNT_KEY in executed.changes or height + 1 == self._next_activation:
            self._follow_validators()
        for listener in self._commit_listeners:
            try:
                listener(executed)
            except Exception:  # one consumer's bug must not stop commits
                log.exception("commit listener %r failed", listener)
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
        senders = [k[len(NONCE_PREFIX):].decode() for k in executed.changes if k.startswith(NONCE_PREFIX)]
        withdrawn, refusals = self.mempool.after_commit(senders)
        self.driver.withdraw(withdrawn)
        self._answer_refused(refusals)
        with contextlib.suppress(RuntimeError):  # released: sent after the driver's step this runs in (no loop: later)
            asyncio.get_running_loop().call_soon(self._submit_released)
        self.metrics.mempool.set(len(self.mempool))
        self._maybe_prune(height)
        self._maybe_export(height)

    def _maybe_export(self, height: int) -> None:
        """A state export of `height` if one is due, unless this node is catching up: a height it passes on the
        way to the head is not worth the reads (the export at the head follows once it is there)."""
        catching_up = self._catch_up_task is not None and not self._catch_up_task.done()
        claims = self.follower.claims() if self.follower is not None else []
        if not catching_up and max(claims, default=height) - height <= MAX_LAG:
            self.exports.after_commit(height)

    def _maybe_prune(self, height: int) -> None:
        settings = self.config.prune
        if settings.keep_heights is None or height % settings.every_blocks:
            return
        if self._pruning is None or self._pruning.done():
            self._pruning = asyncio.create_task(self._prune(settings.keep_heights), name="pruning")
        else:
            self._prune_again = True  # due while a round runs (a burst of catch-up): one more round after it

    async def _prune(self, keep_heights: int) -> None:
        self._prune_again = True
        while self._prune_again:
            self._prune_again = False
            try:
                await prune(self.chain, keep_heights)
            except Exception:  # a failed round leaves the store as an archive of what it did not reach
                log.exception("pruning failed")
                return

    # --- the validator set the links follow ---------------------------------------------------------

    def _sets_ahead(self) -> list[ValidatorSet]:
        """The set of the next height and those decided to take effect later."""
        return sets_from(self.chain.latest, self.chain.height + 1, self.genesis)

    def _pinned_keys(self) -> dict[str, bytes]:
        """The keys peer links accept: every validator of the next height's set or of one decided after it."""
        sets = self._sets_ahead()
        self._next_activation = sets[-1].active_from if len(sets) > 1 else 0
        return {v.id: v.public_key for s in sets for v in s.validators}

    def _peers_known(self, configured: Sequence[Peer]) -> list[Peer]:
        """The configured peers, and the validators whose addresses the chain carries (added by a change)."""
        peers = {p.id: p for p in configured}
        for s in self._sets_ahead():
            for v in s.validators:
                if v.host and v.id not in peers:
                    peers[v.id] = Peer(id=v.id, host=v.host, port=v.port)
        return list(peers.values())

    def _follow_validators(self) -> None:
        """A block decided a set, or a decided one now governs: the links follow (no restart, no config edit)."""
        keys = self._pinned_keys()
        if self.transport is not None:
            self.transport.follow_validators(keys, self._peers_known(self.config.peers))

    # --- peers (the driver's links) ----------------------------------------------------------------

    def send(self, peer: str, payload: bytes) -> None:
        if self.transport is not None:
            self.transport.send(peer, payload)

    def broadcast(self, payload: bytes) -> None:
        if self.transport is not None:
            self.transport.broadcast(payload)

    def start_catch_up(self) -> None:
        if self.transport is not None and (self._catch_up_task is None or self._catch_up_task.done()):
            self._catch_up_task = asyncio.create_task(self._catch_up(), name="catch-up")

    def _on_peer_message(self, peer: str, payload: bytes) -> None:
        self.peer_info.heard(peer, payload[1:] if payload[:1] == bytes([MSG_CONSENSUS]) else None)
        self._drive(self.driver.on_peer_message, peer, payload)

    async def _on_peer_request(self, peer: str, payload: bytes) -> bytes:
        handler = self._peer_request_handlers.get(payload[0]) if payload else None
        if handler is not None:
            return await handler(peer, payload)
        return self.driver.serve(payload)

    def add_peer_request_handler(self, kind: int, handler: Callable[[str, bytes], Awaitable[bytes]]) -> None:
        """Serve peer requests whose first byte is `kind` (never a block request's: those are msgpack arrays)."""
        self._peer_request_handlers[kind] = handler

    def member_peers(self) -> list[str]:
        """The validators this node has a link to (an observer: none)."""
        return self.transport.connected_peers() if self.transport is not None else []

    async def request_peer(self, peer: str, payload: bytes, timeout: float) -> bytes | None:
        """A request to a peer over its link (None: it failed)."""
        if self.transport is None:
            return None
        try:
            return await self.transport.request(peer, payload, timeout=timeout)
        except TransportError as exc:
            log.info("request to %s failed: %s", peer[:8], exc)
            return None

    async def _catch_up(self) -> None:
        """Run one catch-up round over the peer links."""
        transport = self.transport
        assert transport is not None

        async def request(peer: str, payload: bytes) -> bytes | None:
            try:
                return await transport.request(peer, payload, timeout=CATCH_UP_REQUEST_TIMEOUT_S)
            except TransportError as exc:
                log.info("catch-up from %s failed: %s", peer, exc)
                return None

        peers = transport.connected_peers()
        random.shuffle(peers)
        await self.catch_up_over(peers, request)

    async def catch_up_over(self, peers: Sequence[str], request: Callable[[str, bytes], Awaitable[bytes | None]],
                            on_invalid: Callable[[str, int, str], None] | None = None) -> None:
        """Run one catch-up round of the driver over `peers`: await each block request it makes of a
        peer through `request` (None: the request failed). The peer links use it, and an observer's
        follower over the validators' HTTP."""
        round_ = self.driver.catch_up(peers, on_invalid)
        answer: bytes | None = None
        first = True
        while self.failed is None:
            try:
                step = self._drive(round_.__next__) if first else self._drive(round_.send, answer)
            except StopIteration:
                return
            first = False
            if step is None:
                return  # the application failed
            if isinstance(step, CatchUpPause):
                answer = None
                await asyncio.sleep(0)  # let the node serve while it catches up
                continue
            peer, payload = step
            answer = await request(peer, payload)

    # --- status ----------------------------------------------------------------------------------

    async def readiness(self) -> Readiness:
        """Caught up and able to answer: within a few blocks of the head the validators show (`ledger.health`).

        A validator counts its own height and its peers' (their votes and checkpoints, and probes of
        their heads, at most one a second); an observer counts what the validators claimed to its polls."""
        height = self.chain.height
        validators = len(self.chain.validators_at(height + 1))
        if self.failed is not None:
            return Readiness(False, height, None, "the application failed")
        if self.follower is not None:
            return judge(height, self.follower.claims(), validators)
        claims = [height] if self.key.id in {v.id for v in self.chain.validators_at(height + 1)} else []
        if self.transport is not None:
            connected = self.transport.connected_peers()
            await self.peer_info.refresh(self.transport, sorted(connected))
            now = time.time()
            for peer in connected:
                seen = self.peer_info.seen(peer)
                fresh = seen.last_seen is not None and now - seen.last_seen <= READY_PEER_FRESH_S
                if seen.height is not None and fresh:
                    claims.append(seen.height)
        return judge(height, claims, validators)

    def _pace(self) -> dict[str, int]:
        views, tick = self.replica.views, self.config.tick_ms
        return {"recent_wait_ms": views.recent_wait * tick, "progress_timeout_ms": views.progress_timeout() * tick,
                "request_timeout_ms": views.request_timeout() * tick}

    def status(self) -> dict[str, Any]:
        head = self.chain.head
        return {
            "node_id": self.key.id,
            "role": "observer" if self.observer else "validator",
            "chain_id": self.chain.chain_id,
            "height": head.height,
            "view": None if self.observer else self.replica.view,  # an observer takes part in no view
            "primary": None if self.observer else self.replica.primary,
            "block_hash": self.chain.head_hash.hex(),
            "state_root": head.state_root.hex(),
            "oldest_height": self.chain.base,  # above 0 for a node that joined by state sync
            "oldest_block": self.chain.blocks_from,  # below it while older blocks are fetched (`history`)
            # Every height's blocks and state answerable: from genesis, or state-synced with its history replayed.
            "archive": self.chain.base == 0 and self.chain.blocks_from == 0 and self.chain.pruned is None,
            # A pruning node: the state of every height from `from` on, and of the `kept` ones below it.
            "state_kept": None if self.chain.pruned is None else {"from": self.chain.pruned.below,
                                                                   "kept": list(self.chain.pruned.kept)},
            "timestamp": head.timestamp,
            "validators": [v.id for v in self.chain.validators_at(head.height + 1)],  # the next block's set
            "peers": self.transport.connected_peers() if self.transport is not None else
            self.follower.reachable() if self.follower is not None else [],
            "mempool": len(self.mempool),
            "uptime_s": round(time.time() - self.started_at, 1),
            "anchoring": self.anchoring.status() if self.anchoring is not None else disabled_status(),
            **({"observer": self.follower.status()} if self.follower is not None else {}),
            **({"private_data": self.private.status()} if self.private is not None else {}),
            **({"state_sync": self.state_sync} if self.state_sync is not None else {}),
            **({"history": self.history.status()} if self.history is not None else {}),
            "state_exports": self.exports.status(),  # what joining nodes are offered (ledger/snapshot/exports.py)
        }
