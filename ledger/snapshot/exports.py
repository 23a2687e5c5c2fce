"""A serving node's state exports: made ahead in the background, kept on disk, served to joining nodes.

Theory of operation (as Cosmos SDK state-sync snapshots). After a commit (the node does not ask while it is
catching up), when the head is `sync.export_every`
heights past the newest export (or there is none) and `sync.export_min_interval_s` has passed since the last
one began, the node takes a LevelDB snapshot of its store (on the event loop, at once: a pruning round can
then delete nothing the export still has to read) and a worker thread writes the head's state tree into
`DATA_DIR/state-exports/HEIGHT.export` (`ledger.snapshot.exportfile`; plyvel releases the GIL, so the loop
goes on committing). The newest `sync.exports_kept` finished exports are kept, older ones deleted.

`GET /v1/sync/snapshot` then offers the newest export's height; chunks of its root are read from its file,
any other root is walked in the store as before. A damaged file (a checksum that fails when opened or when a
block is read) is logged, deleted and no longer offered; the request that met it is answered by the walk. A
temporary file left by a process killed while exporting is deleted at the next start, as is an export whose
height, root or block hash is not this store's (a home restored from a backup of another history).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ledger.chain import compute_block_hash
from ledger.chaindb import ChainDB
from ledger.smt import MissingNodeError
from ledger.snapshot.exportfile import ExportDamaged, ExportFile, write_export
from ledger.snapshot.treewalk import preorder_in
from ledger.store import NS
from ledger.tree_store import node_getter, root_birth_getter

log = logging.getLogger("ledger.exports")

DIR_NAME = "state-exports"
SUFFIX = ".export"
CPU_SHARE = 0.5  # an export thread sleeps as long as it computed: it holds the GIL at most half the time


class _Pacer:
    """Sleeps, between blocks of an export, as long as the thread used the CPU since (time spent waiting on reads
    does not count): with a store in the page cache the export would otherwise hold the GIL against the event
    loop nearly all the time; with one on disk it mostly waits on reads and hardly sleeps."""

    def __init__(self, share: float = CPU_SHARE) -> None:
        self.ratio = (1 - share) / share
        self.last = time.thread_time()

    def __call__(self) -> None:
        used = time.thread_time() - self.last
        if used >= 0.002:
            time.sleep(used * self.ratio)
            self.last = time.thread_time()


class StateExports:
    """The exports of one node (see the module docstring). `chain` is read on the event loop only (`after_commit`,
    `start`); the export thread reads a LevelDB snapshot, the serving threads the files."""

    def __init__(self, chain: ChainDB, data_dir: Path, every: int, min_interval_s: float, kept: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.chain = chain
        self.dir = data_dir / DIR_NAME
        self.every = every  # 0: no exports are made (those on disk are still served)
        self.min_interval_s = min_interval_s
        self.kept = kept
        self.clock = clock
        self._lock = threading.Lock()  # guards `_files` (serving threads read it, the export thread adds)
        self._files: list[ExportFile] = []  # finished exports, oldest first
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._started_at: float | None = None  # when the last export began
        self.running: int | None = None  # the height being exported
        self.last: dict[str, Any] | None = None  # what the last export did (for /v1/status)
        self.chunks_served = 0  # chunks read from export files (the others were walked)
        self.made = 0  # exports finished since the node started

    # --- on the event loop --------------------------------------------------------------------------------

    def start(self) -> None:
        """Open the exports on disk, dropping leftovers and damaged ones (the node then calls `after_commit`)."""
        for tmp in self.dir.glob(f"*{SUFFIX}.tmp"):
            log.warning("deleting %s, an export left unfinished by a stopped process", tmp.name)
            tmp.unlink(missing_ok=True)
        files = []
        for path in sorted(self.dir.glob(f"*{SUFFIX}")):
            try:
                export = ExportFile(path)
            except (ExportDamaged, OSError) as exc:
                log.warning("deleting state export %s: %s", path.name, exc)
                path.unlink(missing_ok=True)
                continue
            if not self._matches_chain(export):
                log.warning("deleting state export %s: its height, root or block is not this store's", path.name)
                path.unlink(missing_ok=True)
                continue
            files.append(export)
        with self._lock:
            self._files = sorted(files, key=lambda e: e.height)
        self._drop_old()

    def _matches_chain(self, export: ExportFile) -> bool:
        h = export.height
        return (self.chain.base < h <= self.chain.height and self.chain.state_root_at(h) == export.root
                and self.chain.store.get(NS.BLOCK_BY_HASH + export.info.block_hash) == h.to_bytes(8, "big"))

    def after_commit(self, height: int) -> int | None:
        """Start an export of `height` (the head just committed) if one is due and none is running; the height
        if one started."""
        if self.every <= 0 or (self._thread is not None and self._thread.is_alive()):
            return None
        newest = self.newest()
        if height <= self.chain.base or height - (newest.height if newest else 0) < self.every:
            return None
        now = self.clock()
        if self._started_at is not None and now - self._started_at < self.min_interval_s:
            return None
        root = self.chain.state_root_at(height)
        block = self.chain.get_block(height)
        if root is None or block is None:
            return None
        block_hash = compute_block_hash(block.header)
        snapshot = self.chain.store.snapshot()  # now: nothing this export reads can be pruned under it
        self._started_at = now
        self.running = height
        self._thread = threading.Thread(target=self._export, args=(snapshot, root, height, block_hash),
                                        name=f"state-export-{height}", daemon=True)
        self._thread.start()
        return height

    def wait(self) -> None:
        """Until the export under way (if any) has finished."""
        if self._thread is not None:
            self._thread.join()

    def stop(self) -> None:
        """Stop an export under way (its temporary file is removed) and wait for its thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    # --- on the export thread -----------------------------------------------------------------------------

    def _export(self, snapshot: Any, root: bytes, height: int, block_hash: bytes) -> None:
        started = time.monotonic()
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            info = write_export(node_getter(snapshot.get), root, height, block_hash,
                                self.dir / f"{height:016d}{SUFFIX}", self._stop, pace=_Pacer(),
                                root_birth=root_birth_getter(snapshot.get)(root))
            if info is None:
                return
            export = ExportFile(self.dir / f"{height:016d}{SUFFIX}")
            seconds = time.monotonic() - started
            with self._lock:
                self._files.append(export)
                self.made += 1
            self.last = {"height": height, "nodes": info.nodes, "bytes": info.bytes, "seconds": round(seconds, 1)}
            log.info("state export of height %d: %d nodes, %.1f MiB in %.1f s", height, info.nodes,
                     info.bytes / 2**20, seconds)
            self._drop_old()
        except (MissingNodeError, OSError, ExportDamaged) as exc:
            log.error("state export of height %d failed: %s", height, exc)
        finally:
            snapshot.close()
            self.running = None

    def _drop_old(self) -> None:
        with self._lock:
            doomed = self._files[:-self.kept] if len(self._files) > self.kept else []
            self._files = self._files[len(doomed):]
        for export in doomed:
            export.path.unlink(missing_ok=True)  # a request reading it keeps its open file until done

    # --- on serving threads -------------------------------------------------------------------------------

    def newest(self) -> ExportFile | None:
        with self._lock:
            return self._files[-1] if self._files else None

    def offer_height(self) -> int | None:
        """The height to offer joining nodes: the newest finished export's (None: none, offer the head)."""
        newest = self.newest()
        return None if newest is None else newest.height

    def serve(self, get: Callable[[bytes], bytes | None], root: bytes, depth: int, path: int, max_bytes: int,
              within: int) -> list[bytes]:
        """`preorder_from` of `root` in the store read by `get`: from an export of `root` if there is one, else
        walked."""
        exported = self.chunk(root, depth, path, max_bytes, within)
        if exported is not None:
            return exported
        return preorder_in(get, root, depth, path, max_bytes, within)

    def chunk(self, root: bytes, depth: int, path: int, max_bytes: int, within: int) -> list[bytes] | None:
        """The chunk from an export of `root`, or None when there is none (or it proved damaged: then it is
        deleted, and the caller walks the store instead)."""
        with self._lock:
            export = next((e for e in reversed(self._files) if e.root == root), None)
        if export is None:
            return None
        try:
            nodes = export.chunk(depth, path, max_bytes, within)
            with self._lock:
                self.chunks_served += 1
            return nodes
        except FileNotFoundError:
            return None  # deleted meanwhile, a newer export having taken its place
        except (ExportDamaged, OSError) as exc:
            log.error("state export %s is damaged, walking the store instead and deleting it: %s",
                      export.path.name, exc)
            with self._lock:
                self._files = [e for e in self._files if e is not export]
            export.path.unlink(missing_ok=True)
            return None

    def status(self) -> dict[str, Any]:
        with self._lock:
            files = [{"height": e.height, "nodes": e.info.nodes, "bytes": e.info.bytes} for e in self._files]
        return {"exports": files, "exporting": self.running, "last": self.last, "made": self.made,
                "chunks_served": self.chunks_served}


__all__ = ["DIR_NAME", "StateExports"]
