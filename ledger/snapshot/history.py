"""Full history for a node that joined by state sync: the blocks below its snapshot fetched in the background, then
their state replayed: an archive node.

Theory of operation. With `"sync": {"history": "full"}` a node whose store starts at a snapshot height B
(ledger/snapshot/statesync.py) asks its sync sources for the blocks B-1, B-2, ... 1, newest first, in
batches of `history_batch` over the route catch-up and observers use (`GET /v1/sync/blocks`, a
`BlockBatch`). No source is trusted: block B is certified (state sync checked its certificate against the
genesis file), so walking down, each block's hash must be the parent hash of the block above it; its
transactions must make its tx root and its certificate must carry a quorum of its height's validators
(`ChainDB.check_history`, on a worker thread). A batch that fails any check is refused whole, the source
noted (logged, counted, asked last from then on) and another asked; a source that is down, or that does not
hold those blocks (itself state-synced), is passed over for the next. When every source failed in turn the
fetch waits (1 s, doubling to 30 s) and goes on: it never gives up while the node runs.

Each checked batch is written by the chain's owner (`ChainDB.add_history`) in one synced batch with the new
oldest block held, so a process killed at any moment resumes from the last batch written and loses none.
Once block 1 is in, `ChainDB.finish_history` writes block 0 (the genesis file makes it) and the history
accumulator's nodes below B, which must end in the certified peaks B was written with. Blocks, certificates
and transactions then answer at every height (`/v1/blocks/H`, `/v1/tx/{id}`: the outcome of a transaction
below B reads `not_executed` until the replay reaches it).

Then the state: blocks 0..B-1 are executed again from the genesis state on a worker thread, a slice of
`REPLAY_SLICE` blocks at a time (`ChainDB.replay_older`), each block's resulting state root checked against
its header's, each slice's state nodes, roots, history peaks and transaction outcomes written in one synced
batch with the height reached (a kill loses at most the slice under way). The state tree is
content-addressed, so the replayed versions sit beside the live one and no key of the live head is written.
The slice reaching B sets the oldest state held to 0: the node is an archive node (`"archive": true` in
/v1/status), and proofs and `?height=H` answer at every height.

Nothing here can be started, stopped or steered from outside: only the configuration turns it on, and the
sources are those of `sync.sources` (an observer's validators by default). State owned here: the sources'
standing and the counts shown in /v1/status (`history`) and /metrics (`ledger_history`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from ledger.chain import InvalidBlock
from ledger.chaindb import ChainDB
from ledger.codec import CodecError, decode
from ledger.net.sync import MAX_BLOCKS_PER_REPLY, BlockBatch
from ledger.tasks import cancel_and_wait

log = logging.getLogger("ledger.history")

SYNC_PATH = "/v1/sync/blocks"
MSGPACK = "application/msgpack"
PROGRESS_EVERY_S = 5.0
REPLAY_SLICE = 16  # blocks re-executed between two writes (a kill loses at most these)
WAIT_FIRST_S, WAIT_MAX_S = 1.0, 30.0  # after every source failed in turn

T = TypeVar("T")


@dataclass
class HistorySource:
    url: str
    refused: int = 0  # batches that failed their checks
    errors: int = 0  # requests that failed (unreachable, timeout, error status, not decodable)
    lacking: int = 0  # answers without the blocks asked (the source does not hold them)
    failing: int = 0  # failed, refused or lacking answers since its last good one

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "refused": self.refused, "errors": self.errors, "lacking": self.lacking}


class HistoryFetch:
    """Fetches the blocks below a state-synced node's base from `sources`, then replays their state (see the module
    docstring)."""

    def __init__(self, chain: ChainDB, sources: Sequence[str], batch: int = MAX_BLOCKS_PER_REPLY,
                 client: httpx.AsyncClient | None = None, timeout_s: float = 30.0,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        if not 1 <= batch <= MAX_BLOCKS_PER_REPLY:
            raise ValueError(f"batch must be between 1 and {MAX_BLOCKS_PER_REPLY}")
        self.chain = chain
        self.sources = [HistorySource(url.rstrip("/")) for url in sources]
        self.batch = batch
        self._span = batch  # blocks asked at once: less after a source answered fewer (its reply's byte bound)
        self._client = client
        self._own_client = client is None
        self._timeout_s = timeout_s
        self._sleep = sleep
        self.started_from = chain.blocks_from  # the oldest block held when this process began fetching
        self.fetched = 0
        self.state = "done" if chain.base == 0 else "waiting"
        self.seconds = 0.0
        self.replayed = 0  # heights whose state this process replayed
        self.replay_seconds = 0.0
        self._task: asyncio.Task[None] | None = None
        self._thread: asyncio.Future[Any] | None = None  # a check or write running on a worker thread
        self._order = list(self.sources)  # in order of preference: a failing source goes to the back

    # --- lifecycle (the node starts and stops it, like its other services) ------------------------------

    def start(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout_s)
        self._task = asyncio.create_task(self._run_logged(), name="history-fetch")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        if self._thread is not None:  # the store closes after this: let a thread using it end first
            await asyncio.wait({self._thread})
        if self._own_client and self._client is not None:
            await self._client.aclose()

    def status(self) -> dict[str, Any]:
        return {"mode": "full", "state": self.state, "blocks_from": self.chain.blocks_from,
                "state_from": self.chain.base, "started_from": self.started_from, "fetched": self.fetched,
                "refused": self.refused, "seconds": round(self.seconds, 2),
                "replayed_to": self.chain.replayed_height(), "replay_seconds": round(self.replay_seconds, 2),
                "sources": [s.to_json() for s in self.sources]}

    def gauges(self) -> dict[str, int]:
        """For /metrics (`ledger_history{what=...}`)."""
        return {"blocks_from": self.chain.blocks_from, "state_from": self.chain.base, "fetched": self.fetched,
                "refused": self.refused}

    @property
    def refused(self) -> int:
        return sum(s.refused for s in self.sources)

    # --- fetching ---------------------------------------------------------------------------------------

    async def _run_logged(self) -> None:
        try:
            await self.run()
        except asyncio.CancelledError:
            raise
        except Exception:  # a store error or a bug: the node goes on serving what it holds
            self.state = "failed"
            log.exception("history: the fetch failed; it starts again with the node")

    async def run(self) -> None:
        """Fetch until every block is held, then replay the state below the base (returns at once on a node
        that holds both)."""
        if self.chain.blocks_from > 0:
            if not self.sources:
                self.state = "no_sources"
                log.warning("history: no sources to fetch the blocks below %d from (sync.sources)",
                            self.chain.blocks_from)
                return
            await self._fetch()
        if self.chain.base > 0:
            await self._replay()
        if self.chain.base == 0:
            self.state = "done"

    async def _fetch(self) -> None:
        started = last_log = time.monotonic()
        self.state = "fetching"
        log.info("history: fetching blocks %d..1 from %d sources", self.chain.blocks_from - 1, len(self.sources))
        failures, wait_s = 0, WAIT_FIRST_S
        while self.chain.blocks_from > 1:
            if await self._step():
                failures, wait_s = 0, WAIT_FIRST_S
            else:
                failures += 1
                if failures % len(self.sources) == 0:  # every source failed in turn
                    self.state = "waiting"
                    log.warning("history: no source served blocks below %d; trying again in %.0f s",
                                self.chain.blocks_from, wait_s)
                    await self._sleep(wait_s)
                    wait_s = min(wait_s * 2, WAIT_MAX_S)
                    self.state = "fetching"
            self.seconds = time.monotonic() - started
            if time.monotonic() - last_log >= PROGRESS_EVERY_S:
                last_log = time.monotonic()
                log.info("history: blocks held from %d, %d fetched (%.0f blocks/s), %d batches refused",
                         self.chain.blocks_from, self.fetched, self.fetched / max(self.seconds, 1e-9), self.refused)
        await self._on_thread(self.chain.finish_history)
        self.seconds = time.monotonic() - started
        log.info("history: every block held (0..%d); %d blocks fetched in %.1f s, %d batches refused",
                 self.chain.height, self.fetched, self.seconds, self.refused)

    async def _replay(self) -> None:
        """Re-execute blocks 0..base-1 on a worker thread, `REPLAY_SLICE` blocks a slice, each slice written
        before the next (`ChainDB.replay_older`): a kill loses at most the slice under way."""
        started = last_log = time.monotonic()
        self.state = "replaying"
        base, first = self.chain.base, self.chain.replayed_height() + 1
        log.info("history: replaying the state of heights %d..%d", first, base - 1)
        while self.chain.base > 0:
            try:
                height = await self._on_thread(lambda: self.chain.replay_older(REPLAY_SLICE))
            except InvalidBlock as exc:
                self.state = "replay_failed"
                log.error("history: the replay stopped: %s (this node's execution disagrees with the chain's: "
                          "report it)", exc)
                return
            self.replayed = height + 1 - first
            if time.monotonic() - last_log >= PROGRESS_EVERY_S:
                last_log = time.monotonic()
                log.info("history: state replayed up to height %d of %d", height, base - 1)
        self.replay_seconds = time.monotonic() - started
        log.info("history: the state of every height is held (replayed 0..%d in %.1f s): an archive node",
                 base - 1, self.replay_seconds)

    async def _step(self) -> bool:
        """Ask one source for the next batch below the oldest block held; True if it was written."""
        below = self.chain.blocks_from
        count = min(self._span, below - 1)
        first = below - count
        source = min(self._order, key=lambda s: (s.refused, s.failing, self._order.index(s)))
        batch = await self._get(source, first, count)
        if batch is None:
            return False
        entries = [(e.block, e.certificate) for e in batch.blocks]
        if not entries:
            source.lacking += 1
            return self._failed(source, f"it does not hold blocks {first}..{below - 1}")
        if len(entries) < count and [b.header.height for b, _ in entries] == list(range(first, first + len(entries))):
            # Fewer than asked, from the right height: the reply's byte bound. Ask fewer from now on.
            self._span = len(entries)
            log.info("history: %s answered %d of %d blocks; asking %d at a time", source.url, len(entries), count,
                     self._span)
            return True
        try:
            checked = await self._on_thread(lambda: self.chain.check_history(entries))
        except InvalidBlock as exc:
            source.refused += 1
            log.warning("history: refused blocks %d..%d from %s: %s; asking another source", first, below - 1,
                        source.url, exc)
            return self._failed(source, "")
        if self.chain.blocks_from != below:  # (one fetch writes; never expected)
            return False
        self.chain.add_history(checked)
        self.fetched += len(entries)
        self._span = min(self.batch, self._span * 2)  # back up after a short answer (a source may lie about it)
        source.failing = 0
        return True

    async def _get(self, source: HistorySource, first: int, count: int) -> BlockBatch | None:
        assert self._client is not None
        try:
            r = await self._client.get(source.url + SYNC_PATH, params={"from": first, "max": count},
                                       headers={"accept": MSGPACK})
            if r.status_code != 200:
                raise httpx.HTTPStatusError(f"answered {r.status_code}", request=r.request, response=r)
            return decode(BlockBatch, r.content)
        except (httpx.HTTPError, CodecError) as exc:
            source.errors += 1
            self._failed(source, f"{type(exc).__name__}: {exc}")
            return None

    def _failed(self, source: HistorySource, why: str) -> bool:
        source.failing += 1
        if why:
            log.info("history: %s: %s", source.url, why)
        self._order.remove(source)
        self._order.append(source)
        return False

    async def _on_thread(self, fn: Callable[[], T]) -> T:
        """Run `fn` on a worker thread (checking signatures or rebuilding the accumulator must not hold up the
        event loop); a cancellation waits for it in `stop`, before the store closes."""
        self._thread = asyncio.ensure_future(asyncio.to_thread(fn))
        try:
            return await asyncio.shield(self._thread)
        finally:
            if self._thread.done():
                self._thread = None


__all__ = ["HistoryFetch", "HistorySource"]
