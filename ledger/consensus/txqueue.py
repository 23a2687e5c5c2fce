"""Admitted client transactions waiting for a delivered block, in arrival order, bounded.

Theory of operation: the primary marks the transactions it put in an in-flight proposal; a view
change clears the marks (the new primary re-proposes what the new view does not carry). Each entry
remembers when it arrived (restarted on every view change), how many delivered blocks with room to
spare left it out while it was the oldest (`passed`, and how many of those it was forwarded again
after), and how many view changes it already caused (`strikes`), so a transaction that is never
ordered causes a bounded number of view changes before it is dropped (see timers.py).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence


class TxEntry:
    """One queued transaction's bookkeeping; written only by its TxQueue."""

    __slots__ = ("arrival", "strikes", "proposed", "passed", "reforwarded")

    def __init__(self, arrival: int) -> None:
        self.arrival = arrival
        self.strikes = 0
        self.proposed = False
        self.passed = 0
        self.reforwarded = 0


class TxQueue:
    """Admitted client transactions in arrival order, bounded."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._entries: OrderedDict[bytes, TxEntry] = OrderedDict()
        self._unproposed = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def unproposed(self) -> int:
        """How many queued transactions are in no in-flight proposal."""
        return self._unproposed

    def txs(self) -> tuple[bytes, ...]:
        """Every queued transaction, oldest first."""
        return tuple(self._entries)

    def add(self, txs: Sequence[bytes], now: int) -> tuple[list[bytes], int]:
        """Queue new transactions; return (the ones added, how many were refused as over the limit)."""
        added: list[bytes] = []
        refused = 0
        for tx in txs:
            if tx in self._entries:
                continue
            if len(self._entries) >= self._limit:
                refused += 1
                continue
            self._entries[tx] = TxEntry(now)
            self._unproposed += 1
            added.append(tx)
        return added, refused

    def remove(self, txs: Sequence[bytes]) -> None:
        for tx in txs:
            entry = self._entries.pop(tx, None)
            if entry is not None and not entry.proposed:
                self._unproposed -= 1

    def take_batch(self, size: int, max_bytes: int) -> list[bytes]:
        """Mark and return, oldest first, transactions not yet in a proposal: at most `size` of them
        and `max_bytes` in all (always one, so an outsized transaction cannot block the queue)."""
        batch: list[bytes] = []
        total = 0
        for tx, entry in self._entries.items():
            if len(batch) >= size:
                break
            if entry.proposed:
                continue
            if batch and total + len(tx) > max_bytes:
                break
            entry.proposed = True
            batch.append(tx)
            total += len(tx)
        self._unproposed -= len(batch)
        return batch

    def mark_proposed(self, txs: Sequence[bytes]) -> None:
        for tx in txs:
            entry = self._entries.get(tx)
            if entry is not None and not entry.proposed:
                entry.proposed = True
                self._unproposed -= 1

    def unmark(self, txs: Sequence[bytes]) -> None:
        """A proposal carrying `txs` was not made after all."""
        for tx in txs:
            entry = self._entries.get(tx)
            if entry is not None and entry.proposed:
                entry.proposed = False
                self._unproposed += 1

    def restart(self, now: int) -> None:
        """A new view: nothing is in a proposal any more and every timer starts again."""
        for entry in self._entries.values():
            entry.proposed = False
            entry.arrival = now
            entry.passed = entry.reforwarded = 0
        self._unproposed = len(self._entries)

    def oldest(self) -> tuple[bytes, TxEntry] | None:
        return next(iter(self._entries.items())) if self._entries else None

    def had_room_for_oldest(self, block_txs: Sequence[bytes], batch_size: int, max_bytes: int) -> bool:
        """A block of `block_txs` could have carried the oldest queued transaction too."""
        oldest = self.oldest()
        if oldest is None:
            return False
        used = sum(len(tx) for tx in block_txs)
        return len(block_txs) < batch_size and used + len(oldest[0]) <= max_bytes

    def pass_over(self, seen: int, min_wait: int) -> None:
        """A block with room for the oldest transaction was delivered without it: count that, if the
        oldest had waited `min_wait` when this replica saw the block proposed (`seen`: its forward had
        time to reach the primary before the primary proposed it)."""
        oldest = self.oldest()
        if oldest is not None and seen - oldest[1].arrival >= min_wait:
            oldest[1].passed += 1

    def note_reforwarded(self, tx: bytes) -> None:
        entry = self._entries[tx]
        entry.reforwarded = entry.passed

    def drop(self, tx: bytes) -> None:
        self.remove([tx])

    def strike(self, tx: bytes, now: int) -> None:
        """`tx` caused a view change: count it, and its timer and pass-overs start again."""
        entry = self._entries[tx]
        entry.strikes += 1
        entry.arrival = now
        entry.passed = entry.reforwarded = 0
