"""Committed blocks of the last minutes, for the explorer's live chart (`GET /v1/activity`).

Kept in memory from the node's commit listener, so a chart refreshed every few seconds costs no
store reads; filled from the chain when first asked, so a chart opened on a node that has been
running for a while starts full. Times are block timestamps (the proposer's clock, checked by the
validators), bucketed against this node's wall clock so an idle ledger shows empty buckets up to now.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from ledger.chaindb import ChainDB, ExecutedBlock

KEEP_MS = 15 * 60_000  # what the chart can show at most
MAX_BACKFILL = 2_000  # blocks read back from the store on first use (a busy ledger makes many)


class ChainActivity:
    def __init__(self) -> None:
        self._blocks: deque[tuple[int, int, int]] = deque()  # (height, timestamp ms, tx count), oldest first

    def backfill(self, chain: ChainDB) -> None:
        """Read the last minutes of blocks (at most MAX_BACKFILL) from the chain."""
        head = chain.head
        older: list[tuple[int, int, int]] = []
        height = head.height
        while height >= 1 and len(older) < MAX_BACKFILL:
            block = chain.get_block(height)
            if block is None or block.header.timestamp < head.timestamp - KEEP_MS:
                break
            older.append((height, block.header.timestamp, len(block.txs)))
            height -= 1
        self._blocks.extend(reversed(older))

    def on_commit(self, executed: ExecutedBlock) -> None:
        header = executed.block.header
        self._blocks.append((header.height, header.timestamp, len(executed.block.txs)))
        while self._blocks and self._blocks[0][1] < header.timestamp - KEEP_MS:
            self._blocks.popleft()

    def series(self, now_ms: int, window_ms: int, bucket_ms: int) -> list[dict[str, Any]]:
        """Per bucket of `bucket_ms` over the `window_ms` before `now_ms`: committed transactions (total
        and per second), blocks, and the mean time between consecutive blocks ending in the bucket."""
        count = max(1, window_ms // bucket_ms)
        start = now_ms - count * bucket_ms
        buckets = [{"t": start + i * bucket_ms, "txs": 0, "blocks": 0, "gaps": 0, "gap_sum": 0}
                   for i in range(count)]
        previous: int | None = None
        for _, timestamp, txs in self._blocks:
            gap = None if previous is None else timestamp - previous
            previous = timestamp
            i = (timestamp - start) // bucket_ms
            if not 0 <= i < count:
                continue
            b = buckets[i]
            b["txs"] += txs
            b["blocks"] += 1
            if gap is not None:
                b["gaps"] += 1
                b["gap_sum"] += gap
        return [{"t": b["t"], "txs": b["txs"], "blocks": b["blocks"],
                 "tx_per_s": round(b["txs"] * 1000 / bucket_ms, 2),
                 "block_time_ms": round(b["gap_sum"] / b["gaps"]) if b["gaps"] else None}
                for b in buckets]
