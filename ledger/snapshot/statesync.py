"""State sync: a joining node takes a certified snapshot of the state from its peers instead of replaying history.

Theory of operation. The node asks every source (peers' public HTTP URLs) for its snapshot offer
(`GET /v1/sync/snapshot`) and keeps the highest one that passes `check_offer` against the genesis file: a
block whose commit certificate holds a quorum of the validator set of its height, that set derived from
genesis through each certified change. It then walks that block's state tree in pre-order chunks
(`GET /v1/sync/state`), `fetchers` requests in flight at once, spread over the sources: the walk is split into
cursors over disjoint subtrees (`ledger.snapshot.treewalk`), each asked of one source at a time, and each
chunk is checked node by node against the hashes its already-checked parent names. No source is trusted. A
chunk that fails is refused whole, the source is noted (logged, counted in the report, asked last from then
on) and another source is asked for the same chunk; a source that is down costs a timeout. The requests are
made on worker threads; checking and writing happen on the calling thread while the next chunks are fetched.

Everything goes into a scratch store beside the node's (`ledger.db.state-sync`); each chunk's nodes, the
leaves' latest-value entries and every cursor are written in one batch, so a process killed at any moment
resumes where its last batch ended. Once the tree is complete, the certified state must hold the
validator sets the offer proved (`check_state_agrees`); then the block, its certificate, the history peaks
after it, the set-change links and the base height are written, the head pointer last, and the scratch
store is renamed into place. The node then opens at that base (ChainDB `base`) and fetches the blocks
after it by the usual catch-up. What it does not have: blocks and state below the base (questions about
them are answered with the oldest height held), and the tx index of earlier transactions.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ledger import merkle
from ledger.chain_history import BASE_KEY
from ledger.chaindb import GENESIS_KEY, HEAD_KEY, SET_LINK_PREFIX, STATE_SYNC_KEY
from ledger.codec import CodecError, decode, encode
from ledger.genesis import Genesis
from ledger.smt import RootView
from ledger.snapshot.offer import (
    CheckedOffer,
    OfferRefused,
    SnapshotOffer,
    StateChunk,
    check_offer,
    check_state_agrees,
)
from ledger.snapshot.treewalk import ChunkRefused, Cursor, Pending, leaf_entry
from ledger.store import NS, LevelDBStore, height_key
from ledger.tree_store import node_key, tree_over

log = logging.getLogger("ledger.statesync")

SCRATCH_NAME = "ledger.db.state-sync"
OFFER_KEY = NS.META + b"sync-offer"  # in the scratch store: the checked offer being synced
CURSORS_KEY = NS.META + b"sync-cursors"  # in the scratch store: where each part of the walk stands
CHUNK_BYTES = 1 << 20
FETCHERS = 4  # requests in flight: a source's serving overlaps the checking here, several sources share
MSGPACK = "application/msgpack"
PROGRESS_EVERY_S = 2.0


class _RootGone(Exception):
    """Every source answered that it does not hold the state version being fetched."""


class StateSyncError(RuntimeError):
    """State sync could not finish: no source offered a snapshot that passed its checks, or none answered."""


@dataclass
class Source:
    url: str
    refused: int = 0  # offers and chunks that failed their checks
    errors: int = 0  # requests that failed (unreachable, timeout, error status)
    failing: int = field(default=0, compare=False)  # its requests that failed since its last good answer
    busy: int = field(default=0, compare=False)  # its requests in flight

    def to_json(self) -> dict[str, object]:
        return {"url": self.url, "refused": self.refused, "errors": self.errors}


@dataclass
class SyncReport:
    height: int = 0
    block_hash: str = ""
    state_root: str = ""
    chunks: int = 0
    nodes: int = 0
    bytes: int = 0
    seconds: float = 0.0
    resumed: bool = False
    sources: list[Source] = field(default_factory=list)

    @property
    def refused(self) -> int:
        return sum(s.refused for s in self.sources)

    def to_json(self) -> dict[str, object]:
        return {"height": self.height, "block_hash": self.block_hash, "state_root": self.state_root,
                "chunks": self.chunks, "nodes": self.nodes, "bytes": self.bytes, "seconds": round(self.seconds, 2),
                "resumed": self.resumed, "refused": self.refused, "sources": [s.to_json() for s in self.sources]}


def scratch_path(data_dir: Path) -> Path:
    return data_dir / SCRATCH_NAME


def state_sync(data_dir: Path, genesis: Genesis, urls: Sequence[str], chunk_bytes: int = CHUNK_BYTES,
               timeout_s: float = 30.0, max_failures: int = 50,
               sleep: Callable[[float], None] = time.sleep, client: httpx.Client | None = None,
               fetchers: int = FETCHERS) -> SyncReport:
    """Fill `data_dir`/ledger.db from a certified snapshot of `urls`' state (see the module docstring).

    `max_failures`: consecutive failed or refused requests after which it gives up (StateSyncError).
    `client`: the HTTP client to use (default: a new one with `timeout_s`), shared by the worker threads.
    `fetchers`: state chunks requested at once.
    """
    if fetchers < 1:
        raise ValueError("fetchers must be at least 1")
    target = data_dir / "ledger.db"
    if target.exists() and any(target.iterdir()):
        raise StateSyncError(f"{target} exists: state sync fills an empty home only")
    data_dir.mkdir(parents=True, exist_ok=True)
    report = SyncReport(sources=[Source(url.rstrip("/")) for url in urls])
    if not report.sources:
        raise StateSyncError("state sync needs the HTTP URLs of peers to sync from (sync.sources)")
    started = time.monotonic()
    scratch = scratch_path(data_dir)
    limits = httpx.Limits(max_connections=fetchers + 2, max_keepalive_connections=fetchers + 2)
    with client if client is not None else httpx.Client(timeout=timeout_s, limits=limits) as http:
        sync = _Sync(http, LevelDBStore(scratch), genesis, report, chunk_bytes, max_failures, sleep, started,
                     fetchers)
        try:
            sync.run()
        finally:
            sync.store.close()
    scratch.rename(target)
    log.info("state sync done: block %d (%s...), %d chunks, %d nodes, %.1f MiB in %.1f s; %d chunks or offers "
             "refused", report.height, report.block_hash[:16], report.chunks, report.nodes, report.bytes / 2**20,
             report.seconds, report.refused)
    return report


class _Sync:
    def __init__(self, http: httpx.Client, store: LevelDBStore, genesis: Genesis, report: SyncReport,
                 chunk_bytes: int, max_failures: int, sleep: Callable[[float], None], started: float,
                 fetchers: int) -> None:
        self.http = http
        self.store = store
        self.genesis = genesis
        self.report = report
        self.queue = list(report.sources)  # in order of preference: a failing source goes to the back
        self.chunk_bytes = chunk_bytes
        self.max_failures = max_failures
        self.sleep = sleep
        self.failures = 0  # consecutive
        self.started = started
        self.gone: set[str] = set()  # sources that answered that they do not hold the version being walked
        self.fetchers = fetchers
        self.refused_at: dict[int, str] = {}  # id of a cursor -> the source whose chunk for it was refused last

    def run(self) -> None:
        checked, cursors = self._resume() or self._choose()
        while True:
            self.report.height = checked.height
            self.report.block_hash = checked.block_hash.hex()
            self.report.state_root = checked.state_root.hex()
            log.info("state sync: block %d (%s...), state root %s..., from %d sources%s", checked.height,
                     checked.block_hash.hex()[:16], checked.state_root.hex()[:16], len(self.queue),
                     " (resumed)" if self.report.resumed else "")
            try:
                self._walk(checked, cursors)
                break
            except _RootGone:
                # Every source pruned that version meanwhile: start again from a newer snapshot.
                log.warning("state sync: no source holds the state of block %d any more; taking a newer snapshot",
                            checked.height)
                self._wipe()
                self.gone.clear()
                checked, cursors = self._choose()
        smt = tree_over(self.store.get, cache_size=1000)
        try:
            check_state_agrees(checked, RootView(smt, checked.state_root), self.genesis)
        except OfferRefused as exc:
            # The tree matched the certified root, so the offer's links were wrong: start again elsewhere.
            self._wipe()
            raise StateSyncError(f"the snapshot's validator sets disagree with its certified state: {exc}") from None
        self.report.seconds = time.monotonic() - self.started
        self._finish(checked)

    # --- choosing the snapshot --------------------------------------------------------------------

    def _resume(self) -> tuple[CheckedOffer, list[Cursor]] | None:
        raw_offer, raw_cursors = self.store.get(OFFER_KEY), self.store.get(CURSORS_KEY)
        if raw_offer is None or raw_cursors is None:
            self._wipe()
            return None
        try:
            checked = check_offer(decode(SnapshotOffer, raw_offer), self.genesis)
            cursors = [_unpack_cursor(c) for c in decode(tuple[bytes, ...], raw_cursors)]
        except (CodecError, OfferRefused, ValueError) as exc:
            log.warning("state sync: the interrupted sync's records are unusable (%s); starting again", exc)
            self._wipe()
            return None
        self.report.resumed = True
        return checked, cursors

    def _wipe(self) -> None:
        """Empty the scratch store (a sync killed while it finished leaves records without an offer)."""
        keys = [k for k, _ in self.store.iterate(b"")]
        for i in range(0, len(keys), 10_000):
            self.store.write_batch([], keys[i:i + 10_000], sync=False)

    def _choose(self) -> tuple[CheckedOffer, list[Cursor]]:
        """The highest offer of any source that passes its checks."""
        while True:
            best: CheckedOffer | None = None
            for source in self.report.sources:
                body = self._get(source, "/v1/sync/snapshot", {})
                if body is None:
                    continue
                try:
                    checked = check_offer(decode(SnapshotOffer, body), self.genesis)
                except (CodecError, OfferRefused) as exc:
                    self._refused(source, f"its snapshot offer: {exc}")
                    continue
                if best is None or checked.height > best.height:
                    best = checked
            if best is not None:
                break
            self._give_up_or_wait("no source offered a snapshot that passed its checks")
        self.failures = 0
        cursors = [Cursor.start(best.state_root)]
        self.store.write_batch([(OFFER_KEY, encode(best.offer)), (CURSORS_KEY, _pack_cursors(cursors))], sync=True)
        return best, cursors

    # --- walking the tree ---------------------------------------------------------------------------

    def _walk(self, checked: CheckedOffer, cursors: list[Cursor]) -> None:
        root = checked.state_root.hex()
        waiting = [c for c in cursors if not c.done]  # cursors with no request in flight
        flying: dict[Future[httpx.Response], tuple[Cursor, Source]] = {}
        progress = _Progress(self.report)
        executor = ThreadPoolExecutor(self.fetchers, thread_name_prefix="state-sync")
        try:
            while waiting or flying:
                while waiting and len(flying) < self.fetchers:
                    _split_for(waiting, self.fetchers - len(flying))
                    cursor = waiting.pop()
                    source = self._pick(cursor)
                    source.busy += 1
                    flying[executor.submit(self._fetch, source, root, cursor)] = (cursor, source)
                done, _ = wait(flying, return_when=FIRST_COMPLETED)
                for future in done:
                    cursor, source = flying.pop(future)
                    source.busy -= 1
                    if self._take(future, cursor, source, [c for c, _ in flying.values()] + waiting):
                        progress.chunk()
                    if not cursor.done:
                        waiting.append(cursor)
                if self.gone >= {s.url for s in self.report.sources}:
                    raise _RootGone
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
        progress.end()

    def _fetch(self, source: Source, root: str, cursor: Cursor) -> httpx.Response:
        """On a worker thread: the next chunk of `cursor` from `source` (nothing else is touched here)."""
        at = cursor.next
        return self.http.get(source.url + "/v1/sync/state", headers={"accept": MSGPACK}, params={
            "root": root, "depth": at.depth, "path": f"{at.path:064x}", "max_bytes": self.chunk_bytes,
            "within": cursor.within})

    def _take(self, future: Future[httpx.Response], cursor: Cursor, source: Source, others: list[Cursor]) -> bool:
        """Check an answer and write what it holds, with every cursor (`cursor` and `others`) in the same batch;
        False if it failed or was refused (the cursor stays where it was and is asked again, of another
        source first)."""
        try:
            response = future.result()  # anything but an HTTP error (a bug, a kill) ends the sync here
        except httpx.HTTPError as exc:
            self._failed(source, f"{type(exc).__name__}: {exc}")
            return False
        body = self._answer(source, "/v1/sync/state", response)
        if body is None:
            return False
        at = cursor.next
        try:
            accepted = cursor.accept(list(decode(StateChunk, body).nodes))
        except (CodecError, ChunkRefused) as exc:
            self.refused_at[id(cursor)] = source.url
            self._refused(source, f"a state chunk at depth {at.depth}: {exc}")
            return False
        self.failures = 0
        source.failing = 0
        self.gone.clear()
        puts = [(node_key(0, h), enc) for h, enc in accepted]  # a peer sends no births: stored by hash
        puts.extend((NS.STATE_LATEST + key, value) for key, value in
                    (leaf_entry(enc) for _, enc in accepted if enc[0] == 0))
        puts.append((CURSORS_KEY, _pack_cursors([cursor, *others])))
        self.store.write_batch(puts, sync=False)
        self.report.chunks += 1
        self.report.nodes += len(accepted)
        self.report.bytes += len(body)
        return True

    def _finish(self, checked: CheckedOffer) -> None:
        """The records a ChainDB opens by, around the synced state; the head pointer last."""
        offer, height = checked.offer, checked.height
        hk = height_key(height)
        history = merkle.HistoryAccumulator(height, offer.peaks)
        puts = [(NS.BLOCK + hk, encode(offer.block)), (NS.CERT + hk, encode(offer.certificate)),
                (NS.BLOCK_BY_HASH + checked.block_hash, hk), (NS.STATE_ROOT + hk, checked.state_root)]
        # The peaks are the history nodes covering blocks 0..height-1: inclusion proofs of later blocks use them.
        for (level, index), node in zip(_peak_positions(height), offer.peaks, strict=True):
            puts.append((NS.HISTORY_NODE + bytes([level]) + index.to_bytes(8, "big"), node))
        for level, index, node in history.append(checked.block_hash):
            puts.append((NS.HISTORY_NODE + bytes([level]) + index.to_bytes(8, "big"), node))
        puts.append((NS.HISTORY_PEAKS + hk, encode(tuple(history.peaks))))
        puts.extend((SET_LINK_PREFIX + link.seq.to_bytes(8, "big"), encode(link)) for link in offer.links)
        puts.append((STATE_SYNC_KEY, encode(_report_text(self.report))))
        puts += [(BASE_KEY, hk), (GENESIS_KEY, self.genesis.hash())]
        self.store.write_batch(puts, [OFFER_KEY, CURSORS_KEY], sync=True)
        self.store.write_batch([(HEAD_KEY, hk)], sync=True)

    # --- sources --------------------------------------------------------------------------------------

    def _get(self, source: Source, path: str, params: dict[str, str | int]) -> bytes | None:
        try:
            response = self.http.get(source.url + path, params=params, headers={"accept": MSGPACK})
        except httpx.HTTPError as exc:
            return self._failed(source, f"{type(exc).__name__}: {exc}")
        return self._answer(source, path, response)

    def _answer(self, source: Source, path: str, response: httpx.Response) -> bytes | None:
        if response.status_code == 404 and path == "/v1/sync/state":
            self.gone.add(source.url)  # it does not hold that version (pruned since, or it never had it)
        if response.status_code != 200:
            return self._failed(source, f"HTTP {response.status_code}: {response.text[:200]}")
        return response.content

    def _pick(self, cursor: Cursor) -> Source:
        """The source to ask for `cursor`'s next chunk: not the one that just failed its check there, then the
        fewest refused chunks, the fewest recent failures, the fewest requests in flight, the queue's order."""
        order = {s.url: i for i, s in enumerate(self.queue)}
        refused_by = self.refused_at.get(id(cursor))
        return min(self.report.sources, key=lambda s: (s.url == refused_by, s.refused, s.failing, s.busy,
                                                         order[s.url]))

    def _failed(self, source: Source, why: str) -> bytes | None:
        source.errors += 1
        source.failing += 1
        log.info("state sync: %s failed: %s", source.url, why)
        self._next(source)
        return None

    def _refused(self, source: Source, why: str) -> None:
        source.refused += 1
        log.warning("state sync: refused %s from %s; asking another source", why, source.url)
        self._next(source)

    def _next(self, source: Source) -> None:
        if source in self.queue:
            self.queue.remove(source)
            self.queue.append(source)
        self.failures += 1
        if self.failures % len(self.queue) == 0:
            self._give_up_or_wait("every source failed in turn")

    def _give_up_or_wait(self, why: str) -> None:
        if self.failures >= self.max_failures:
            seen = ", ".join(f"{s.url}: {s.refused} refused, {s.errors} errors" for s in self.queue)
            raise StateSyncError(f"state sync gave up after {self.failures} failed requests in a row: {why} ({seen})")
        self.sleep(1.0)


def _peak_positions(size: int) -> list[tuple[int, int]]:
    """(level, index at that level) of the history accumulator's peaks over `size` blocks, left to right."""
    out, start = [], 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            out.append((level, start >> level))
            start += 1 << level
    return out


def _pack_pending(p: Pending) -> bytes:
    return p.hash + p.depth.to_bytes(2, "big") + p.path.to_bytes(32, "big")


def _unpack_pending(raw: bytes) -> Pending:
    if len(raw) != 66:
        raise ValueError("a cursor entry is not 66 bytes")
    return Pending(raw[:32], int.from_bytes(raw[32:34], "big"), int.from_bytes(raw[34:], "big"))


def _pack_cursors(cursors: list[Cursor]) -> bytes:
    """Each cursor as its `within` depth (2 bytes) then its stack's entries (66 bytes each)."""
    return encode(tuple(cursor.within.to_bytes(2, "big") + b"".join(_pack_pending(p) for p in cursor.stack)
                        for cursor in cursors if not cursor.done))


def _unpack_cursor(raw: bytes) -> Cursor:
    if len(raw) < 2 or (len(raw) - 2) % 66:
        raise ValueError("a cursor record is not 2 + 66 n bytes")
    return Cursor([_unpack_pending(raw[i:i + 66]) for i in range(2, len(raw), 66)], int.from_bytes(raw[:2], "big"))


def _split_for(waiting: list[Cursor], idle: int) -> None:
    """Split waiting cursors, the largest part first, until there is one for each of `idle` fetchers (or
    nothing is left to split): each split hands a whole subtree to a cursor of its own."""
    while len(waiting) < idle:
        splittable = [c for c in waiting if len(c.stack) > 1]
        if not splittable:
            return
        widest = min(splittable, key=lambda c: c.stack[0].depth)
        part = widest.split()
        assert part is not None
        waiting.insert(0, part)


class _Progress:
    """A log line every PROGRESS_EVERY_S seconds and one at the end."""

    def __init__(self, report: SyncReport) -> None:
        self.report = report
        self.started = self.last = time.monotonic()

    def chunk(self) -> None:
        if time.monotonic() - self.last >= PROGRESS_EVERY_S:
            self._log()

    def end(self) -> None:
        self._log()

    def _log(self) -> None:
        self.last = now = time.monotonic()
        log.info("state sync: %d chunks, %d nodes, %.1f MiB, %.1f MiB/s", self.report.chunks, self.report.nodes,
                 self.report.bytes / 2**20, self.report.bytes / 2**20 / max(now - self.started, 1e-9))


def _report_text(report: SyncReport) -> str:
    return json.dumps(report.to_json(), sort_keys=True)


def wants_state_sync(data_dir: Path) -> bool:
    """Whether the home under `data_dir` is empty enough to join by state sync: no store, or one holding only
    the genesis block and no consensus vote (an empty store of that kind is removed). A store with blocks, or
    with votes this node cast, catches up by blocks: its votes must never be lost."""
    target = data_dir / "ledger.db"
    if not target.exists():
        return True
    store = LevelDBStore(target)
    try:
        head = store.get(HEAD_KEY)
        voted = next(iter(store.iterate(NS.CONSENSUS)), None) is not None
        empty = (head is None or int.from_bytes(head, "big") == 0) and not voted
    finally:
        store.close()
    if empty:
        shutil.rmtree(target)
    return empty


__all__ = ["StateSyncError", "SyncReport", "scratch_path", "state_sync", "wants_state_sync"]
