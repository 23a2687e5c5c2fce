"""The backup file: a point-in-time copy of a node's store, written as a stream and read back part by part.

Theory of operation: a backup holds the tables a node cannot rebuild from the others (`PARTS`: blocks,
certificates, state-tree nodes, the latest-value index, the tx index). Everything else in a store is
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
from ledger.chaindb import HEAD_KEY
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
}


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

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "chain_id": self.chain_id, "genesis_hash": self.genesis_hash, "height": self.height,
            "block_hash": self.block_hash, "state_root": self.state_root,
            "parts": [{"name": p.name, "records": p.records, "bytes": p.bytes, "sha256": p.sha256}
                      for p in self.parts],
        }


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


def _record(key: bytes, value: bytes) -> bytes:
    return struct.pack(">I", len(key)) + key + struct.pack(">I", len(value)) + value


def write_stream(snapshot: Snapshot, genesis: Genesis, chunk_bytes: int = 1 << 20) -> Generator[bytes, None, None]:
    """The backup of `snapshot` as chunks of about `chunk_bytes`. The first chunk is the magic and the header
    alone (a reader learns the height before the bulk arrives)."""
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
    buffer: list[bytes] = []
    size = 0
    for name, prefix in PARTS.items():
        part = hashlib.sha256()
        records = part_bytes = 0
        for key, value in snapshot.iterate(prefix):
            rec = _record(key, value)
            part.update(rec)
            records += 1
            part_bytes += len(rec)
            buffer.append(rec)
            size += len(rec)
            if size >= chunk_bytes:
                chunk = b"".join(buffer)
                whole.update(chunk)
                yield chunk
                buffer, size = [], 0
        infos.append({"name": name, "records": records, "bytes": part_bytes, "sha256": part.hexdigest()})
    trailer = json.dumps({"parts": infos}, sort_keys=True).encode()
    tail = b"".join(buffer) + struct.pack(">I", END_OF_RECORDS) + struct.pack(">I", len(trailer)) + trailer
    whole.update(tail)
    yield tail + whole.digest() + END_MAGIC


class _Counting:
    """Reads a file while hashing every byte read."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.whole = hashlib.sha256()
        self.offset = 0

    def read(self, n: int, what: str) -> bytes:
        data = self._stream.read(n)
        if len(data) != n:
            raise BackupError(f"the file ends inside {what} at byte {self.offset + len(data)} (truncated?)")
        self.whole.update(data)
        self.offset += n
        return data

    def u32(self, what: str) -> int:
        value: int = struct.unpack(">I", self.read(4, what))[0]
        return value


def _json(reader: _Counting, what: str) -> dict[str, Any]:
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

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = path.stat().st_size
        self._file = path.open("rb")
        self._reader = _Counting(self._file)
        if self._reader.read(len(MAGIC), "the magic line") != MAGIC:
            raise BackupError(f"{path} is not a ledger backup (wrong magic line)")
        self.header = _json(self._reader, "header")
        if self.header.get("format") != FORMAT:
            raise BackupError(f"backup format {self.header.get('format')!r} is not {FORMAT}")
        if self.header.get("parts") != list(PARTS):
            raise BackupError(f"the header lists parts {self.header.get('parts')!r}, expected {list(PARTS)}")
        self.manifest: Manifest | None = None

    @property
    def offset(self) -> int:
        return self._reader.offset

    def records(self) -> Iterator[tuple[str, bytes, bytes]]:
        """(part name, key, value) in file order; checks framing, prefixes, order and, at the end, every digest."""
        reader = self._reader
        names = list(PARTS)
        index = 0
        digests = {name: hashlib.sha256() for name in names}
        counts = dict.fromkeys(names, 0)
        sizes = dict.fromkeys(names, 0)
        last = b""
        while True:
            klen = reader.u32("a record")
            if klen == END_OF_RECORDS:
                break
            if klen > MAX_KEY:
                raise BackupError(f"a record at byte {reader.offset - 4} claims a {klen}-byte key")
            key = reader.read(klen, "a record's key")
            vlen = reader.u32("a record")
            if vlen > MAX_VALUE:
                raise BackupError(f"a record at byte {reader.offset - 4} claims a {vlen}-byte value")
            value = reader.read(vlen, "a record's value")
            while index < len(names) and not key.startswith(PARTS[names[index]]):
                index, last = index + 1, b""
            if index == len(names):
                raise BackupError(f"a record's key {key[:16].hex()}... belongs to no part, or its part is out of order")
            if key <= last:
                raise BackupError(f"keys of part {names[index]} are not in ascending order")
            last = key
            name = names[index]
            rec_len = 8 + klen + vlen
            digests[name].update(struct.pack(">I", klen) + key + struct.pack(">I", vlen) + value)
            counts[name] += 1
            sizes[name] += rec_len
            yield name, key, value
        trailer = _json(reader, "trailer")
        expected = reader.whole.digest()
        digest = self._file.read(32)
        if len(digest) != 32:
            raise BackupError("the file ends before its closing sha256 (truncated?)")
        if digest != expected:
            raise BackupError("the file's closing sha256 does not match its contents (the file was changed or damaged)")
        if self._file.read(len(END_MAGIC) + 1) != END_MAGIC:
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

