"""A state export: the state tree of one certified height written ahead, in the order a state sync walks it.

Theory of operation. Serving a state sync by walking the tree reads every node by its hash, at random, from
LevelDB; with a large store most reads open a table. An export is the same walk done once, ahead, into a
file: the nodes of the tree in the canonical pre-order `ledger.snapshot.treewalk.preorder_from` sends, each
with its position. Pre-order is the order of (path, depth) with the path's bits below its depth zero, so a
position is found by a binary search of a sparse index (the first position of every block of records) and a
forward scan of one block; a chunk is then a sequential read. What the file answers is byte for byte what
the walk would (tests/test_state_exports.py checks it on random trees and positions), so the joining node
checks it exactly as before: the file is node-local and vouches for nothing.

Format (integers big-endian):

    header   MAGIC (8) | height (8) | state root (32) | block hash (32)
    records  depth (2) | path (32) | length (4) | the node's encoding, in pre-order
    index    per block of up to `block_records` records: depth (2) | path (32) of its first record |
             offset (8) | length in bytes (4) | CRC-32 of its bytes (4)
    trailer  records (8) | offset of the index (8) | CRC-32 of header and index (4) | END (8)

A file whose header, trailer or index does not check is refused when opened (`ExportDamaged`); a block whose
CRC-32 does not match is refused when read, so damage is noticed before it is served (a rogue operator who
recomputes the checksums is caught by the joining node's check of every node against the certified root).
"""

from __future__ import annotations

import bisect
import os
import struct
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ledger.smt import EMPTY, MissingNodeError, NodeGetter, child_births, encoding

MAGIC = b"LSTEXP\x00\x01"
END = b"LSTEND\x00\x01"
HEADER = struct.Struct(">8sQ32s32s")
RECORD = struct.Struct(">H32sI")
INDEX_ENTRY = struct.Struct(">H32sQII")
TRAILER = struct.Struct(">QQI8s")
BLOCK_RECORDS = 256  # records per index entry: a lookup scans at most one block (about 40 KB)
TOP_BIT = 255
DEPTH_BITS = 9  # a position's sort key: path << DEPTH_BITS | depth (depth 0..256)


class ExportDamaged(ValueError):
    """An export file does not check (truncated, edited, not an export); the message says where."""


@dataclass(frozen=True)
class ExportInfo:
    height: int
    root: bytes
    block_hash: bytes
    nodes: int
    bytes: int


def _key(depth: int, path: int) -> int:
    return path << DEPTH_BITS | depth


def write_export(get_node: NodeGetter, root: bytes, height: int, block_hash: bytes,
                 target: Path, stop: threading.Event | None = None, block_records: int = BLOCK_RECORDS,
                 pace: Callable[[], None] | None = None, root_birth: int = 0) -> ExportInfo | None:
    """Write the tree under `root` (its node written at `root_birth`) to `target` (through a temporary name, synced,
    then renamed); None if `stop` was set meanwhile (nothing is left behind). `pace` is called between blocks of
    records (to yield the CPU). Raises MissingNodeError if the store lacks a node of the tree."""
    tmp = target.with_name(target.name + ".tmp")
    index: list[bytes] = []
    count = 0
    try:
        with open(tmp, "wb", buffering=1 << 20) as f:
            header = HEADER.pack(MAGIC, height, root, block_hash)
            f.write(header)
            offset = len(header)
            block_start, block_crc, in_block = offset, 0, 0
            block_first: tuple[int, bytes] = (0, b"")
            stack = [] if root == EMPTY else [(root, root_birth, 0, 0)]
            pop, push = stack.pop, stack.append
            while stack:
                h, birth, depth, path = pop()
                stored = get_node(birth, h)
                if stored is None:
                    raise MissingNodeError(h.hex())
                enc = encoding(stored)
                if in_block == block_records:
                    index.append(INDEX_ENTRY.pack(*block_first, block_start, offset - block_start, block_crc))
                    block_start, block_crc, in_block = offset, 0, 0
                if in_block == 0:
                    block_first = (depth, path.to_bytes(32, "big"))
                    if stop is not None and stop.is_set():
                        return None
                    if pace is not None:
                        pace()
                record = RECORD.pack(depth, path.to_bytes(32, "big"), len(enc)) + enc
                f.write(record)
                block_crc = zlib.crc32(record, block_crc)
                offset += len(record)
                in_block += 1
                count += 1
                if len(enc) == 65 and enc[0] == 1:
                    right, left = enc[33:65], enc[1:33]
                    left_birth, right_birth = child_births(stored)
                    if right != EMPTY:
                        push((right, right_birth, depth + 1, path | (1 << (TOP_BIT - depth))))
                    if left != EMPTY:
                        push((left, left_birth, depth + 1, path))
            if in_block:
                index.append(INDEX_ENTRY.pack(*block_first, block_start, offset - block_start, block_crc))
            index_bytes = b"".join(index)
            f.write(index_bytes)
            f.write(TRAILER.pack(count, offset, zlib.crc32(index_bytes, zlib.crc32(header)), END))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        _sync_dir(target.parent)
        return ExportInfo(height, root, block_hash, count, target.stat().st_size)
    finally:
        tmp.unlink(missing_ok=True)


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ExportFile:
    """A finished export, opened: its header and sparse index in memory, records read from disk per request."""

    def __init__(self, path: Path) -> None:
        """Raises ExportDamaged if the header, trailer or index does not check, OSError if it cannot be read."""
        self.path = path
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < HEADER.size + TRAILER.size:
                raise ExportDamaged(f"{path.name}: {size} bytes, shorter than a header and a trailer")
            header = f.read(HEADER.size)
            f.seek(size - TRAILER.size)
            count, index_at, crc, end = TRAILER.unpack(f.read(TRAILER.size))
            magic, height, root, block_hash = HEADER.unpack(header)
            if magic != MAGIC or end != END:
                raise ExportDamaged(f"{path.name}: not a state export (or cut short)")
            index_len = size - TRAILER.size - index_at
            if not HEADER.size <= index_at <= size - TRAILER.size or index_len % INDEX_ENTRY.size:
                raise ExportDamaged(f"{path.name}: its trailer places the index outside the file")
            f.seek(index_at)
            index = f.read(index_len)
        if zlib.crc32(index, zlib.crc32(header)) != crc:
            raise ExportDamaged(f"{path.name}: the checksum of its header and index does not match")
        self.info = ExportInfo(height, root, block_hash, count, size)
        self._keys: list[int] = []
        self._blocks: list[tuple[int, int, int]] = []  # (offset, length, crc) of each block, in file order
        end_of_records = HEADER.size
        for depth, path_bytes, offset, length, block_crc in INDEX_ENTRY.iter_unpack(index):
            if offset != end_of_records:
                raise ExportDamaged(f"{path.name}: its index leaves a gap at byte {end_of_records}")
            self._keys.append(_key(depth, int.from_bytes(path_bytes, "big")))
            self._blocks.append((offset, length, block_crc))
            end_of_records = offset + length
        if end_of_records != index_at:
            raise ExportDamaged(f"{path.name}: its index does not cover its records")

    @property
    def height(self) -> int:
        return self.info.height

    @property
    def root(self) -> bytes:
        return self.info.root

    def chunk(self, depth: int, path: int, max_bytes: int, within: int = 0) -> list[bytes]:
        """What `preorder_from(get_node, self.root, depth, path, max_bytes, within)` returns, read from the file.
        Raises ExportDamaged if a block read does not match its checksum, ValueError for a bad `within`."""
        if not 0 <= within <= depth <= 256:
            raise ValueError(f"within ({within}) must lie between 0 and depth ({depth})")
        path &= ~((1 << (256 - depth)) - 1)  # the walk reads only the path's first `depth` bits
        target = _key(depth, path)
        first = bisect.bisect_right(self._keys, target) - 1
        if first < 0:
            return []
        shift = 256 - within
        prefix = path >> shift  # the subtree at depth `within` on the path holds everything sent
        out: list[bytes] = []
        size = 0
        found = False
        with open(self.path, "rb", buffering=0) as f:
            for block in range(first, len(self._blocks)):
                data = self._read_block(f.fileno(), block)
                at = 0
                while at < len(data):
                    d, p_bytes, length = RECORD.unpack_from(data, at)
                    at += RECORD.size
                    enc = data[at:at + length]
                    at += length
                    p = int.from_bytes(p_bytes, "big")
                    if not found:
                        key = _key(d, p)
                        if key < target:
                            continue
                        if key > target:
                            return []  # no node at that position
                        found = True
                    elif p >> shift != prefix:
                        return out  # past the end of the subtree at depth `within`
                    out.append(enc)
                    size += length
                    if size >= max_bytes:
                        return out
                if not found:
                    return []
        return out

    def _read_block(self, fd: int, block: int) -> bytes:
        offset, length, crc = self._blocks[block]
        data = os.pread(fd, length, offset)
        if len(data) != length or zlib.crc32(data) != crc:
            raise ExportDamaged(f"{self.path.name}: block {block} (bytes {offset}..{offset + length}) does not "
                                "match its checksum")
        return data


__all__ = ["ExportDamaged", "ExportFile", "ExportInfo", "write_export"]
