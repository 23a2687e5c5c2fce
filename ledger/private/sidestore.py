"""A node's side store of private plaintexts: a LevelDB of its own beside the chain's (never in it).

Key: collection, a zero byte, key. Value: the entry's commitment, salt and plaintext.

A purge deletes the entry, then copies what remains into a fresh LevelDB and removes the old one's
directory. Compacting in place is not enough: LevelDB's `CompactRange` leaves the deepest level's tables as
they are, and a memtable flushed straight to that level keeps both the value and its deletion (measured on
the devnet: the plaintext stayed in an .ldb file after `compact_range()`). The store holds only private
data, so the copy is small. A marker file makes a purge that a crash interrupted run again at the next
start. (The old files are unlinked, not overwritten: what a filesystem or disk keeps of freed blocks is
outside the ledger's reach.)
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import plyvel

from ledger.codec import decode, encode


@dataclass(frozen=True)
class SideEntry:
    commitment: bytes
    salt: bytes
    value: bytes


def side_key(collection: str, key: str) -> bytes:
    return collection.encode() + b"\x00" + key.encode()


class SideStore:
    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._fresh = self._path.with_name(self._path.name + ".fresh")
        self._marker = self._path.with_name(self._path.name + ".purging")
        if self._fresh.exists() and not self._path.exists():  # a crash between removing the old and renaming
            self._fresh.rename(self._path)
        self._path.mkdir(parents=True, exist_ok=True)
        self._db = self._open(self._path)
        if self._marker.exists():  # a purge that did not finish
            self._rewrite()

    @staticmethod
    def _open(path: Path) -> plyvel.DB:
        return plyvel.DB(str(path), create_if_missing=True, paranoid_checks=True, compression=None)

    def get(self, collection: str, key: str) -> SideEntry | None:
        raw = self._db.get(side_key(collection, key))
        return None if raw is None else decode(SideEntry, raw, trusted=True)

    def put(self, collection: str, key: str, entry: SideEntry) -> None:
        self._db.put(side_key(collection, key), encode(entry), sync=True)

    def purge(self, collection: str, key: str) -> bool:
        """Delete the entry and rewrite the store without it, so its bytes leave the files; True if it was held."""
        k = side_key(collection, key)
        if self._db.get(k) is None:
            return False  # nothing of it here (a value is only ever removed by a purge, which rewrote the store)
        self._marker.touch()
        self._db.delete(k, sync=True)
        self._rewrite()
        return True

    def _rewrite(self) -> None:
        """Copy the live entries into a fresh store, remove the old one's files, and use the fresh one."""
        shutil.rmtree(self._fresh, ignore_errors=True)
        fresh = self._open(self._fresh)
        with fresh.write_batch(sync=True) as batch:
            for k, v in self._db:
                batch.put(k, v)
        fresh.close()
        self._db.close()
        shutil.rmtree(self._path)
        self._fresh.rename(self._path)
        self._db = self._open(self._path)
        self._marker.unlink(missing_ok=True)

    def close(self) -> None:
        if not self._db.closed:
            self._db.close()
