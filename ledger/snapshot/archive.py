"""The backup file: a point-in-time copy of a node's store, written as a stream and read back part by part.

Theory of operation: a backup holds the tables a node cannot rebuild from the others (`PARTS`: blocks,
certificates, state-tree nodes (both layouts of ledger/tree_store.py, and the roots' births), the
latest-value index, the tx index). A backup made before nodes were stored by birth lists fewer parts
(`PARTS_BEFORE_BIRTHS`) and is restored as it is. Everything else in a store is
derived from these and is rebuilt by the restore (`ledger.snapshot.checks`), never copied: a hash index
or a history node read from a file would have to be trusted. The replica's persisted votes (`k/`) are
left out: they belong to the store they were cast from.

Layout (all integers big-endian):

    MAGIC
    u32 len, header JSON      chain id, genesis hash, height, block hash, state root, part names
    records                   u32 len(key) ‖ key ‖ u32 len(value) ‖ value, parts in `PARTS` order,
                              keys ascending within a part; each key starts with its part's prefix
    u32 END_OF_RECORDS
    u32 len, trailer JSON     per part: records, bytes, sha256 of its record bytes
    sha256 of every byte above
    END_MAGIC

The header and trailer together are the manifest. The closing digest makes any changed byte
detectable; the restore's checks make a file rewritten with fresh digests (a rogue admin's) fail
where it lies. The writer is a generator of chunks, so the node can stream it over HTTP.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ledger.chain import Block, compute_block_hash
from ledger.chain_history import BASE_KEY
from ledger.chaindb import HEAD_KEY, PRUNED_KEY
from ledger.codec import CodecError, decode
from ledger.genesis import Genesis
from ledger.store import NS, Snapshot

MAGIC = b"LEDGER-BACKUP/1\n"
END_MAGIC = b"\nEND-BACKUP/1\n"
END_OF_RECORDS = 0xFFFFFFFF
FORMAT = 1
MAX_KEY = 1 << 16  # a store key is a prefix and a hash or a state key: far below this
MAX_VALUE = 64 << 20  # a block is at most ~1 MiB; anything near this is not a ledger record
MAX_JSON = 1 << 20

# name -> prefix, in file order.
PARTS: dict[str, bytes] = {
    "blocks": NS.BLOCK,
    "certificates": NS.CERT,
    "state_nodes": NS.STATE_NODE,
    "state": NS.STATE_LATEST,
    "tx_index": NS.TX,
    "state_nodes_at": NS.STATE_NODE_AT,  # (ledger/tree_store.py) after the parts that older backups hold
    "root_births": NS.ROOT_BIRTH,
}
# The parts of a backup made before nodes were stored by birth: still restored (every node is then by hash).
PARTS_BEFORE_BIRTHS = ["blocks", "certificates", "state_nodes", "state", "tx_index"]


class BackupError(ValueError):
    """A backup file that cannot be used; the message says which check failed."""


@dataclass(frozen=True)
class Head:
    height: int
    block_hash: bytes
    state_root: bytes


@dataclass(frozen=True)
class PartInfo:
    name: str
    records: int
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    chain_id: str
    genesis_hash: str
    height: int
    block_hash: str
    state_root: str
    parts: tuple[PartInfo, ...]


def not_archive(base: int, pruned: bool) -> str | None:
    """Why a backup of a store with this state-sync base and pruning could never be restored (a restore checks
    every block and every state from genesis), or None for an archive node's store."""
    if base > 0:
        return (f"this node joined by state sync at height {base} and holds no blocks below it: a restore, which "
                f"checks every block from genesis, would refuse its backup; back up an archive node (or "
                f"state-sync a new one)")
    if pruned:
        return ("this node prunes its state: a restore, which checks the state of every height, would refuse its "
                "backup; back up an archive node (or state-sync a new one)")
    return None


def store_not_archive(snapshot: Snapshot) -> str | None:
    """`not_archive` of a store read directly (a stopped node's)."""
    raw_base = snapshot.get(BASE_KEY)
    return not_archive(0 if raw_base is None else int.from_bytes(raw_base, "big"),
                       snapshot.get(PRUNED_KEY) is not None)


def snapshot_head(snapshot: Snapshot) -> Head:
    raw = snapshot.get(HEAD_KEY)
    if raw is None:
        raise BackupError("the store has no head block")
    block_raw = snapshot.get(NS.BLOCK + raw)
    if block_raw is None:
        raise BackupError("the store's head block is missing")
    try:
        header = decode(Block, block_raw).header
    except CodecError as exc:
        raise BackupError(f"the store's head block does not decode: {exc}") from None
    return Head(header.height, compute_block_hash(header), header.state_root)


_U32 = struct.Struct(">I")


def write_stream(snapshot: Snapshot, genesis: Genesis, chunk_bytes: int = 1 << 20) -> Generator[bytes, None, None]:
    """The backup of `snapshot` as chunks of about `chunk_bytes`. The first chunk is the magic and the header
    alone (a reader learns the height before the bulk arrives). Refuses (BackupError) a store that is not an
    archive node's, whose backup no restore would accept."""
    problem = store_not_archive(snapshot)
    if problem is not None:
        raise BackupError(problem)
    head = snapshot_head(snapshot)
    whole = hashlib.sha256()
    header = json.dumps({
        "format": FORMAT, "chain_id": genesis.chain_id, "genesis_hash": genesis.hash().hex(),
        "height": head.height, "block_hash": head.block_hash.hex(), "state_root": head.state_root.hex(),
        "parts": list(PARTS),
    }, sort_keys=True).encode()
    first = MAGIC + struct.pack(">I", len(header)) + header
    whole.update(first)
    yield first
    infos = []
    for name, prefix in PARTS.items():
        part = hashlib.sha256()
        records = part_bytes = 0
        buffer: list[bytes] = []
        size = 0
        pack = _U32.pack
        for key, value in snapshot.iterate(prefix):
            buffer.append(pack(len(key)) + key + pack(len(value)) + value)
            size += 8 + len(key) + len(value)
            records += 1
            if size >= chunk_bytes:
                chunk = b"".join(buffer)  # hashed a chunk at a time: a call per record costs more than the hash
                part.update(chunk)
                whole.update(chunk)
                part_bytes += size
                yield chunk
                buffer, size = [], 0
        if buffer:  # a part ends its last chunk early, so that no chunk spans two parts
            chunk = b"".join(buffer)
            part.update(chunk)
            whole.update(chunk)
            part_bytes += size
            yield chunk
        infos.append({"name": name, "records": records, "bytes": part_bytes, "sha256": part.hexdigest()})
    trailer = json.dumps({"parts": infos}, sort_keys=True).encode()
    tail = struct.pack(">I", END_OF_RECORDS) + struct.pack(">I", len(trailer)) + trailer
    whole.update(tail)
    yield tail + whole.digest() + END_MAGIC


class _Buffered:
    """Reads a file in large blocks while hashing every byte consumed; records are parsed in the buffer (small
    reads and a hash call per field would cost more than the checks)."""

    def __init__(self, stream: IO[bytes], block: int) -> None:
        self._stream = stream
        self._block = block
        self.whole = hashlib.sha256()
        self._buf = b""
        self._pos = 0
        self._hashed = 0  # bytes of the buffer already in `whole`
        self._base = 0  # file offset of the buffer's first byte

    @property
    def offset(self) -> int:
        return self._base + self._pos

    def _ensure(self, n: int, what: str) -> None:
        if self._pos + n <= len(self._buf):
            return
        self.whole.update(memoryview(self._buf)[self._hashed:self._pos])
        rest = self._buf[self._pos:]
        self._base += self._pos
        self._buf = rest + self._stream.read(max(self._block, n - len(rest)))
        self._pos = self._hashed = 0
        if n > len(self._buf):
            raise BackupError(f"the file ends inside {what} at byte {self._base + len(self._buf)} (truncated?)")

    def read(self, n: int, what: str) -> bytes:
        self._ensure(n, what)
        data = self._buf[self._pos:self._pos + n]
        self._pos += n
        return data

    def u32(self, what: str) -> int:
        self._ensure(4, what)
        value: int = _U32.unpack_from(self._buf, self._pos)[0]
        self._pos += 4
        return value

    def record(self) -> tuple[bytes, bytes, memoryview] | None:
        """The next record's key, value and whole bytes; None at the end of the records."""
        buf, pos = self._buf, self._pos
        size = len(buf)
        if pos + 8 <= size:  # the common case: the whole record is in the buffer
            klen: int = _U32.unpack_from(buf, pos)[0]
            if klen <= MAX_KEY and pos + 8 + klen <= size:
                vlen: int = _U32.unpack_from(buf, pos + 4 + klen)[0]
                end = pos + 8 + klen + vlen
                if vlen <= MAX_VALUE and end <= size:
                    self._pos = end
                    return buf[pos + 4:pos + 4 + klen], buf[pos + 8 + klen:end], memoryview(buf)[pos:end]
        return self._record_across_blocks()

    def _record_across_blocks(self) -> tuple[bytes, bytes, memoryview] | None:
        self._ensure(4, "a record")
        klen = _U32.unpack_from(self._buf, self._pos)[0]
        if klen == END_OF_RECORDS:
            self._pos += 4
            return None
        if klen > MAX_KEY:
            raise BackupError(f"a record at byte {self.offset} claims a {klen}-byte key")
        self._ensure(8 + klen, "a record")
        vlen = _U32.unpack_from(self._buf, self._pos + 4 + klen)[0]
        if vlen > MAX_VALUE:
            raise BackupError(f"a record at byte {self.offset} claims a {vlen}-byte value")
        self._ensure(8 + klen + vlen, "a record")
        buf, start = self._buf, self._pos
        self._pos = end = start + 8 + klen + vlen
        return buf[start + 4:start + 4 + klen], buf[start + 8 + klen:end], memoryview(buf)[start:end]

    def digest_so_far(self) -> bytes:
        self.whole.update(memoryview(self._buf)[self._hashed:self._pos])
        self._hashed = self._pos
        return self.whole.digest()

    def rest(self) -> bytes:
        """Everything not read yet (the end of the file: a few bytes)."""
        data = self._buf[self._pos:] + self._stream.read()
        self._pos = len(self._buf)
        return data


def _json(reader: _Buffered, what: str) -> dict[str, Any]:
    length = reader.u32(what)
    if length > MAX_JSON:
        raise BackupError(f"the {what} claims {length} bytes (at most {MAX_JSON})")
    try:
        value = json.loads(reader.read(length, what))
    except ValueError as exc:
        raise BackupError(f"the {what} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BackupError(f"the {what} is not a JSON object")
    return value


def _field(obj: dict[str, Any], name: str, kind: type, what: str) -> Any:
    value = obj.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise BackupError(f"the {what} lacks a valid '{name}'")
    return value


class BackupReader:
    """Reads a backup file once, front to back: `header` first, then `records()`, then `manifest` (filled in
    once every record was read and the file's digests checked)."""

    def __init__(self, path: Path, block: int = 4 << 20) -> None:
        self.path = path
        self.size = path.stat().st_size
        self._file = path.open("rb")
        self._reader = _Buffered(self._file, block)
        self.manifest: Manifest | None = None
        try:
            if self._reader.read(len(MAGIC), "the magic line") != MAGIC:
                raise BackupError(f"{path} is not a ledger backup (wrong magic line)")
            self.header = _json(self._reader, "header")
            if self.header.get("format") != FORMAT:
                raise BackupError(f"backup format {self.header.get('format')!r} is not {FORMAT}")
            if self.header.get("parts") not in (list(PARTS), PARTS_BEFORE_BIRTHS):
                raise BackupError(f"the header lists parts {self.header.get('parts')!r}, expected {list(PARTS)}")
            self.parts: list[str] = list(self.header["parts"])
        except BackupError:
            self._file.close()
            raise

    @property
    def offset(self) -> int:
        return self._reader.offset

    def records(self) -> Iterator[tuple[str, bytes, bytes]]:
        """(part name, key, value) in file order; checks framing, prefixes, order and, at the end, every digest."""
        reader = self._reader
        names = self.parts
        index = 0
        digests = {name: hashlib.sha256() for name in names}
        counts = dict.fromkeys(names, 0)
        sizes = dict.fromkeys(names, 0)
        last = b""
        while True:
            record = reader.record()
            if record is None:
                break
            key, value, raw = record
            while index < len(names) and not key.startswith(PARTS[names[index]]):
                index, last = index + 1, b""
            if index == len(names):
                raise BackupError(f"a record's key {key[:16].hex()}... belongs to no part, or its part is out of order")
            if key <= last:
                raise BackupError(f"keys of part {names[index]} are not in ascending order")
            last = key
            name = names[index]
            digests[name].update(raw)
            counts[name] += 1
            sizes[name] += len(raw)
            yield name, key, value
        trailer = _json(reader, "trailer")
        expected = reader.digest_so_far()
        rest = reader.rest()
        if len(rest) < 32:
            raise BackupError("the file ends before its closing sha256 (truncated?)")
        if rest[:32] != expected:
            raise BackupError("the file's closing sha256 does not match its contents (the file was changed or damaged)")
        if rest[32:] != END_MAGIC:
            raise BackupError("the file does not end with the end marker (truncated, or bytes appended)")
        parts = trailer.get("parts")
        if not isinstance(parts, list) or len(parts) != len(names):
            raise BackupError("the trailer does not list every part")
        infos = []
        for name, claimed in zip(names, parts, strict=True):
            if not isinstance(claimed, dict) or claimed.get("name") != name:
                raise BackupError(f"the trailer's parts are not {names}")
            info = PartInfo(name, _field(claimed, "records", int, "trailer"), _field(claimed, "bytes", int, "trailer"),
                            _field(claimed, "sha256", str, "trailer"))
            if (info.records, info.bytes, info.sha256) != (counts[name], sizes[name], digests[name].hexdigest()):
                raise BackupError(f"part {name}: the manifest says {info.records} records, {info.bytes} bytes, sha256 "
                                  f"{info.sha256[:16]}...; the file holds {counts[name]}, {sizes[name]}, "
                                  f"{digests[name].hexdigest()[:16]}...")
            infos.append(info)
        h = self.header
        self.manifest = Manifest(
            _field(h, "chain_id", str, "header"), _field(h, "genesis_hash", str, "header"),
            _field(h, "height", int, "header"), _field(h, "block_hash", str, "header"),
            _field(h, "state_root", str, "header"), tuple(infos))

    def close(self) -> None:
        self._file.close()

