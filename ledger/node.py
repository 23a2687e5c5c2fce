"""The one asyncio driver: admit transactions, drive the replica, persist, send, apply, serve.

Theory of operation: the node owns the store, the chain database and the replica. Client
transactions are admitted (decoded, checked, signatures verified on a thread pool, since
`cryptography` releases the GIL while verifying) and handed to the replica. A ticker calls
`replica.tick()` every `tick_ms`. Every action list the replica returns is performed in order:
`Persist` writes are flushed (synced) before any following message leaves, `Deliver` writes the
block with its certificate in one atomic batch and only then wakes the clients waiting on its
transactions. An acknowledged (committed) transaction is therefore on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ledger.app import LedgerApp
from ledger.chaindb import ChainDB
from ledger.config import NodeConfig
from ledger.consensus.actions import Action, Broadcast, Deliver, FetchBlocks, Persist, Send
from ledger.consensus.replica import Replica, ReplicaConfig
from ledger.crypto import DOMAIN_TX, SigningKey, signing_digest, verify_digest
from ledger.genesis import load_genesis
from ledger.members import lookup_sender
from ledger.metrics import NodeMetrics
from ledger.state import get_nonce
from ledger.store import NS, LevelDBStore, Store
from ledger.tx import MAX_TX_BYTES, Reject, SignedTx, TxRejected, check_tx_stateless, compute_tx_id, decode_tx

log = logging.getLogger("ledger.node")

MAX_MEMPOOL = 200_000


@dataclass(frozen=True)
class Admission:
    tx_id: bytes
    accepted: bool
    reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class Outcome:
    """What happened to a committed transaction."""

    tx_id: bytes
    height: int
    index: int
    ok: bool
    reason: str
    message: str


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class Node:
    def __init__(self, config: NodeConfig, store: Store | None = None) -> None:
        self.config = config
        self.key = SigningKey.load(config.node_key)
        self.genesis = load_genesis(config.genesis)
        self.store: Store = store if store is not None else LevelDBStore(config.data_dir / "ledger.db")
        self.chain = ChainDB(self.store, self.genesis)
        self.app = LedgerApp(self.chain, wall_clock_ms)
        validators = self.genesis.validator_ids()
        if self.key.id not in validators:
            raise ValueError(f"node key {self.key.id} is not a validator of this genesis")
        persisted = {k[len(NS.CONSENSUS):]: v for k, v in self.store.iterate(NS.CONSENSUS)}
        self.replica = Replica(
            ReplicaConfig(self.genesis.chain_id, tuple(validators), batch_size=config.batch_size),
            self.key,
            self.app,
            self.genesis.validator_keys(),
            persisted,
        )
        if len(validators) > 1:
            raise NotImplementedError("multi-validator networking is not available in this build")
        self.metrics = NodeMetrics()
        self.metrics.height.set(self.chain.height)
        self._mempool: set[bytes] = set()
        self._waiters: dict[bytes, list[asyncio.Future[Outcome]]] = {}
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="verify")
        self._ticker: asyncio.Task[None] | None = None
        self.started_at = time.time()

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        self._ticker = asyncio.create_task(self._tick_loop(), name="ticker")
        log.info("node %s started at height %d", self.key.id, self.chain.height)

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        self._pool.shutdown(wait=True)
        self.store.close()

    async def _tick_loop(self) -> None:
        interval = self.config.tick_ms / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                self._perform(self.replica.tick())
            except Exception:  # a bug here must not stop the ticker; it is logged loudly
                log.exception("tick failed")

    # --- admission -------------------------------------------------------------------------------

    async def submit(self, raws: Sequence[bytes]) -> list[Admission]:
        """Admit transactions; accepted ones go to the replica. Results are in input order."""
        results: list[Admission | None] = [None] * len(raws)
        candidates: list[tuple[int, bytes, SignedTx, Any, bytes, bytes]] = []  # (i, id, tx, payload, key, digest)
        batch_ids: set[bytes] = set()
        view = self.chain.latest
        for i, raw in enumerate(raws):
            tx_id = compute_tx_id(raw) if len(raw) <= MAX_TX_BYTES else b""
            try:
                tx = decode_tx(raw)
                payload = check_tx_stateless(tx, self.chain.chain_id)
                # Not already waiting here, committed, or repeated within this request.
                if tx_id in self._mempool or tx_id in batch_ids or self.chain.get_tx_location(tx_id):
                    raise TxRejected(Reject.DUPLICATE, "transaction already submitted")
                sender = lookup_sender(view, tx.sender)
                if sender is None:
                    raise TxRejected(Reject.UNKNOWN_SENDER, f"{tx.sender} is not an active member")
                # A nonce at or below the committed one can never execute again.
                committed_nonce = get_nonce(view, tx.sender)
                if tx.nonce <= committed_nonce:
                    raise TxRejected(Reject.REPLAYED_NONCE, f"nonce {tx.nonce} already used")
            except TxRejected as exc:
                results[i] = Admission(tx_id, False, exc.reason.value, exc.message)
                continue
            batch_ids.add(tx_id)
            candidates.append((i, tx_id, tx, payload, sender.public_key, signing_digest(DOMAIN_TX, tx.body())))
        verdicts = await self._verify_all([(c[4], c[5], c[2].signature) for c in candidates])
        accepted: list[bytes] = []
        for (i, tx_id, tx, payload, public_key, _), good in zip(candidates, verdicts, strict=True):
            if not good:
                results[i] = Admission(tx_id, False, Reject.BAD_SIGNATURE.value, "signature does not verify")
            elif len(self._mempool) >= MAX_MEMPOOL:
                results[i] = Admission(tx_id, False, Reject.MEMPOOL_FULL.value, "node is overloaded; retry")
            else:
                self.chain.verified.add(tx_id, public_key, tx, payload)
                self._mempool.add(tx_id)
                accepted.append(raws[i])
                results[i] = Admission(tx_id, True)
        done = [r for r in results if r is not None]  # every index was filled above
        for r in done:
            if r.accepted:
                self.metrics.tx_admitted.inc()
            else:
                self.metrics.tx_rejected.labels(r.reason).inc()
        if accepted:
            self._perform(self.replica.submit(accepted))
        self.metrics.mempool.set(len(self._mempool))
        return done

    async def _verify_all(self, items: list[tuple[bytes, bytes, bytes]]) -> list[bool]:
        if len(items) < 64:
            return [verify_digest(*item) for item in items]
        loop = asyncio.get_running_loop()
        half = len(items) // 2
        parts = await asyncio.gather(
            loop.run_in_executor(self._pool, _verify_chunk, items[:half]),
            loop.run_in_executor(self._pool, _verify_chunk, items[half:]),
        )
        return parts[0] + parts[1]

    async def wait_committed(self, tx_ids: Iterable[bytes], timeout: float) -> list[Outcome | None]:
        """Wait until each tx commits (None for those still pending at the timeout)."""
        futures: list[asyncio.Future[Outcome] | Outcome | None] = []
        loop = asyncio.get_running_loop()
        for tx_id in tx_ids:
            loc = self.chain.get_tx_location(tx_id)
            if loc is not None:
                futures.append(Outcome(tx_id, loc.height, loc.index, loc.ok, loc.reason, loc.message))
            elif tx_id in self._mempool:
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

    def is_pending(self, tx_id: bytes) -> bool:
        return tx_id in self._mempool

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
            elif isinstance(action, Send | Broadcast | FetchBlocks):
                log.warning("no transport for %s in a single-validator build", type(action).__name__)
        if persist:
            self._flush(persist)

    def _flush(self, persist: list[Persist]) -> None:
        puts = [(NS.CONSENSUS + p.key, p.value) for p in persist if p.value]
        deletes = [NS.CONSENSUS + p.key for p in persist if not p.value]
        self.store.write_batch(puts, deletes, sync=True)

    def _deliver(self, action: Deliver) -> None:
        started = time.perf_counter()
        executed = self.app.commit(action.block, action.certificate)
        height = executed.block.header.height
        self.metrics.block_commit_seconds.observe(time.perf_counter() - started)
        self.metrics.height.set(height)
        self.metrics.blocks_committed.inc()
        ok = sum(1 for r in executed.results if r.ok)
        self.metrics.tx_committed.inc(ok)
        self.metrics.tx_failed.inc(len(executed.results) - ok)
        for index, r in enumerate(executed.results):
            self._mempool.discard(r.tx_id)
            for fut in self._waiters.pop(r.tx_id, ()):
                if not fut.done():
                    fut.set_result(Outcome(r.tx_id, height, index, r.ok, r.reason, r.message))
        self.metrics.mempool.set(len(self._mempool))

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
            "peers": [],
            "mempool": len(self._mempool),
            "uptime_s": round(time.time() - self.started_at, 1),
            "anchoring": None,
        }


def _verify_chunk(items: list[tuple[bytes, bytes, bytes]]) -> list[bool]:
    return [verify_digest(pk, digest, sig) for pk, digest, sig in items]
