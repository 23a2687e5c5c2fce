"""Key-value storage behind a narrow protocol.

Theory of operation: everything a block changes (the block, its commit certificate, the new
state-tree nodes, the flat latest-value index, the tx index and the head pointer) is written in
one atomic batch with sync=True. LevelDB applies a batch from its write-ahead log entirely or
not at all, so after a kill -9 at any moment a reopened store holds exactly the blocks up to the
last batch that returned, and the head pointer never names a block that is not there.

Keys are namespaced by a short prefix (see `NS`), so one LevelDB holds every table.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol


class NS:
    """Key prefixes of the tables in one store."""

    META = b"m/"  # head height, chain id, genesis hash
    BLOCK = b"b/"  # height(8) -> encoded Block
    CERT = b"c/"  # height(8) -> encoded CommitCertificate
    BLOCK_BY_HASH = b"h/"  # block hash -> height(8)
    TX = b"t/"  # tx id -> encoded TxLocation
    STATE_NODE = b"n/"  # sparse Merkle node hash -> node encoding (birth 0: ledger/tree_store.py)
    STATE_NODE_AT = b"v/"  # birth height(8) || node hash -> node encoding || children's births
    ROOT_BIRTH = b"o/"  # state root hash -> the birth height(8) of its node, when not 0
    STATE_LATEST = b"s/"  # state key -> latest value
    STATE_ROOT = b"r/"  # height(8) -> state root
    HISTORY_NODE = b"a/"  # level(1) index(8) -> history accumulator node
    HISTORY_PEAKS = b"p/"  # height(8) -> accumulator peaks after that block
    CONSENSUS = b"k/"  # replica's persisted votes and view (consensus durability)


class StoreError(RuntimeError):
    """The store cannot be opened: locked by another process, or damaged."""


def height_key(height: int) -> bytes:
    return height.to_bytes(8, "big")


class Store(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def iterate(self, prefix: bytes, reverse: bool = False, start: bytes | None = None
                ) -> Iterator[tuple[bytes, bytes]]:
        """Keys under `prefix` in order (from `start` on, when given, forward only)."""
        ...

    def write_batch(
        self, puts: Iterable[tuple[bytes, bytes]], deletes: Iterable[bytes] = (), sync: bool = True
    ) -> None: ...

    def snapshot(self) -> Snapshot:
        """A consistent read-only view as of now (whole batches only)."""
        ...

    def close(self) -> None: ...


class Snapshot(Protocol):
    """A read-only, point-in-time view of a store (what backups read while the node keeps committing)."""

    def get(self, key: bytes) -> bytes | None: ...

    def iterate(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]: ...

    def close(self) -> None: ...


class _MemorySnapshot:
    def __init__(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        self._store = MemoryStore()
        self._store.write_batch(items)

    def get(self, key: bytes) -> bytes | None:
        return self._store.get(key)

    def iterate(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        return self._store.iterate(prefix)

    def close(self) -> None:
        pass


class _LevelDBSnapshot:
    def __init__(self, snapshot: Any) -> None:
        self._snapshot = snapshot

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._snapshot.get(key)
        return value

    def iterate(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        with self._snapshot.iterator(prefix=prefix) as it:
            yield from it

    def close(self) -> None:
        self._snapshot.close()


class MemoryStore:
    """Dict-backed store for tests and simulations; the same semantics as LevelDBStore."""

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._sorted: list[bytes] | None = None

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def iterate(self, prefix: bytes, reverse: bool = False, start: bytes | None = None
                ) -> Iterator[tuple[bytes, bytes]]:
        if self._sorted is None:
            self._sorted = sorted(self._data)
        keys = self._sorted
        lo = bisect.bisect_left(keys, prefix if start is None else max(prefix, start))
        hi = lo
        while hi < len(keys) and keys[hi].startswith(prefix):
            hi += 1
        # A snapshot taken when iteration starts, as LevelDB iterators are.
        snapshot = [(k, self._data[k]) for k in keys[lo:hi]]
        if reverse:
            snapshot.reverse()
        yield from snapshot

    def write_batch(
        self, puts: Iterable[tuple[bytes, bytes]], deletes: Iterable[bytes] = (), sync: bool = True
    ) -> None:
        staged = list(puts)
        removed = list(deletes)
        for k, v in staged:
            self._data[bytes(k)] = bytes(v)
        for k in removed:
            self._data.pop(k, None)
        self._sorted = None

    def snapshot(self) -> Snapshot:
        return _MemorySnapshot(list(self._data.items()))

    def close(self) -> None:
        pass


# LevelDB maps every table file it holds open (up to 1,000 of them) into memory, and a table it has
# read or compacted stays resident while open: with a million identifiers (~2 GB of tables) that made
# the node's RSS grow to the size of the store. Capping the open tables caps that part of the RSS at
# about MAX_OPEN_FILES x 2 MB (LevelDB's table size), whatever the size of the state. The price: a read
# of a table not open opens it; with a million identifiers (~780 tables) a node serving a state sync,
# which reads tree nodes at random, spent 6 to 8 times longer a node (README, "Joining by state sync").
# `leveldb_open_files` in config.json trades one for the other.
MAX_OPEN_FILES = 200


class LevelDBStore:
    """LevelDB through plyvel. One process owns a directory at a time (LevelDB locks it)."""

    def __init__(self, path: str | Path, cache_mb: int = 32, max_open_files: int = MAX_OPEN_FILES,
                 max_file_mb: int = 2) -> None:
        import plyvel  # local import keeps plyvel out of modules that only need the protocol

        Path(path).mkdir(parents=True, exist_ok=True)
        try:
            self._db = plyvel.DB(
                str(path), create_if_missing=True, paranoid_checks=True, lru_cache_size=cache_mb << 20,
                bloom_filter_bits=10,  # most tx-index lookups are for ids not there yet
                compression=None,  # hashes and signatures do not compress; snappy only costs CPU
                write_buffer_size=32 << 20,  # fewer, larger level-0 files: less compaction per block
                max_open_files=max_open_files,
                max_file_size=max_file_mb << 20,
            )
        except plyvel.IOError as exc:
            raise StoreError(f"cannot open {path}: {exc} (is another node using this home?)") from exc
        except plyvel.CorruptionError as exc:
            raise StoreError(f"{path} is corrupt: {exc}") from exc

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._db.get(key)
        return value

    def iterate(self, prefix: bytes, reverse: bool = False, start: bytes | None = None
                ) -> Iterator[tuple[bytes, bytes]]:
        if reverse:
            # plyvel 1.5's reverse prefix iterator skips a key equal to the prefix: reverse a forward scan.
            yield from reversed(list(self.iterate(prefix, start=start)))
            return
        if start is None or start <= prefix:
            with self._db.iterator(prefix=prefix) as it:
                yield from it
            return
        with self._db.iterator(start=start) as it:  # plyvel takes a prefix or a start, not both
            for key, value in it:
                if not key.startswith(prefix):
                    return
                yield key, value

    def write_batch(
        self, puts: Iterable[tuple[bytes, bytes]], deletes: Iterable[bytes] = (), sync: bool = True
    ) -> None:
        with self._db.write_batch(transaction=True, sync=sync) as wb:
            for k, v in puts:
                wb.put(k, v)
            for k in deletes:
                wb.delete(k)

    def snapshot(self) -> Snapshot:
        """LevelDB's own snapshot: later batches are invisible to it, whole or not at all."""
        return _LevelDBSnapshot(self._db.snapshot())

    def compact(self) -> None:
        """Compact the whole key range now: the space of deleted records comes back at once rather than when
        LevelDB's background compaction reaches them (a benchmark measuring disk use after pruning)."""
        # Explicit bounds: plyvel's compact_range() without them compacted nothing here (plyvel 1.5.1).
        self._db.compact_range(start=b"\x00", stop=b"\xff" * 8)  # every table's prefix is printable ASCII

    def close(self) -> None:
        if not self._db.closed:
            self._db.close()
