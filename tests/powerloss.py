"""A store that loses power: what a test uses to show that acknowledged data survives a power cut.

`kill -9` keeps the operating system's page cache, so a write LevelDB handed to the kernel survives
it even unsynced; a power cut does not. `PowerLossStore` models the disk under LevelDB's log:

- every batch is visible to reads at once (as in the page cache);
- a batch written with `sync=True` is durable when the call returns, and so is every batch written
  before it (the log is one sequential file: its fsync covers the earlier records);
- `crash()` cuts the power: unsynced batches are lost, except perhaps the oldest few (the kernel may
  have flushed some pages on its own; `rng` decides how many), each batch whole or not at all (a log
  record carries a checksum). It returns a store over what survived, as a restarted node finds it,
  and the crashed store refuses every further call (its process is gone);
- `cut_after_writes=N` cuts the power during the N-th write: that batch may or may not have reached
  the disk (the call raises `PowerCut`, so nothing above it acknowledged it).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator

from ledger.store import MemoryStore


class PowerCut(Exception):
    """The power went out during a write (raised to the writer, which never learns what happened)."""


Batch = tuple[list[tuple[bytes, bytes]], list[bytes]]


class PowerLossStore:
    def __init__(self, durable: MemoryStore | None = None, rng: random.Random | None = None,
                 cut_after_writes: int | None = None) -> None:
        self.durable = durable if durable is not None else MemoryStore()  # what survives a power cut
        self._visible = MemoryStore()  # what reads see: the durable data and the unsynced batches
        for key, value in self.durable.iterate(b""):
            self._visible.write_batch([(key, value)])
        self._unsynced: list[Batch] = []
        self._rng = rng or random.Random(0)
        self._cut_after = cut_after_writes
        self.writes = 0
        self.synced_writes = 0
        self.crashed = False

    # --- the Store protocol ---------------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        self._alive()
        return self._visible.get(key)

    def iterate(self, prefix: bytes, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        self._alive()
        return self._visible.iterate(prefix, reverse)

    def write_batch(
        self, puts: Iterable[tuple[bytes, bytes]], deletes: Iterable[bytes] = (), sync: bool = True
    ) -> None:
        self._alive()
        batch: Batch = ([(bytes(k), bytes(v)) for k, v in puts], [bytes(k) for k in deletes])
        self.writes += 1
        if self._cut_after is not None and self.writes >= self._cut_after:
            # The power goes out while this batch is on its way: it reached the disk or it did not.
            self._unsynced.append(batch)
            if sync and self._rng.random() < 0.5:
                self._make_durable()
            self.crashed = True
            raise PowerCut(f"power cut during write {self.writes}")
        self._visible.write_batch(*batch)
        self._unsynced.append(batch)
        if sync:
            self.synced_writes += 1
            self._make_durable()

    def close(self) -> None:
        pass  # closing flushes nothing LevelDB had not synced (and a crashed store has no process)

    # --- power ----------------------------------------------------------------------------------

    def crash(self) -> PowerLossStore:
        """Cut the power: keep the durable data and perhaps the oldest unsynced batches; return a
        store over what survived."""
        kept = self._rng.randint(0, len(self._unsynced)) if self._unsynced else 0
        for puts, deletes in self._unsynced[:kept]:
            self.durable.write_batch(puts, deletes)
        self._unsynced = []
        self.crashed = True
        return PowerLossStore(self.durable, self._rng)

    @property
    def unsynced(self) -> int:
        """Batches a power cut now could lose."""
        return len(self._unsynced)

    def _make_durable(self) -> None:
        for puts, deletes in self._unsynced:
            self.durable.write_batch(puts, deletes)
        self._unsynced = []

    def _alive(self) -> None:
        if self.crashed:
            raise PowerCut("this store lost its power: open the one crash() returned")
