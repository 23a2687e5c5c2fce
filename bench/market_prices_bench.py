"""The cost of a price query (`GET /v1/market/prices?kind=...`) over N recorded sales (issue 15's target:
under 50 ms for 100,000), beside a ceiling measured in the same run: LevelDB iterating the same index
entries and doing nothing with them.

The sales' index entries (what `ledger.market.sales.record_sale` writes, under the latest-state namespace)
are written straight into a LevelDB store in a temporary directory, spread over 60 days; the query part
timed is the route's own: `scan_sales` (the index scan from the window's start, decoding each price) and
`price_stats` (the four windows). Not timed: HTTP, and reading the latest `--recent` sale records (20 gets).

    .venv/bin/python bench/market_prices_bench.py [--sales 100000] [--runs 5]

Prints one JSON line of figures last (median of the runs, in ms).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from ledger.api.routes.market import scan_sales
from ledger.codec import encode
from ledger.market.sales import DAY_MS, kind_prefix, price_stats
from ledger.store import NS, LevelDBStore

NOW = 1_800_000_000_000


def fill(store: LevelDBStore, sales: int) -> None:
    prefix = NS.STATE_LATEST + kind_prefix("data")
    step = 60 * DAY_MS // sales
    batch: list[tuple[bytes, bytes]] = []
    for seq in range(1, sales + 1):
        t = NOW - 60 * DAY_MS + seq * step
        batch.append((prefix + f"{t:016d}/{seq:016d}".encode(), encode(100 + seq % 997)))
        if len(batch) >= 10_000:
            store.write_batch(batch)
            batch = []
    store.write_batch(batch)


def timed(fn: object, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sales", type=int, default=100_000, help="sales recorded (default 100,000)")
    parser.add_argument("--runs", type=int, default=5, help="runs of each measurement; the median is printed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = LevelDBStore(Path(tmp) / "db")
        fill(store, args.sales)
        prefix = kind_prefix("data")
        raw_prefix = NS.STATE_LATEST + prefix

        def ceiling() -> None:
            for _ in store.iterate(raw_prefix):
                pass

        def query_all() -> None:
            entries, _ = scan_sales(store, prefix, 0)
            price_stats(((t, p) for t, _, p in entries), NOW)

        def query_30d() -> None:
            entries, _ = scan_sales(store, prefix, NOW - 30 * DAY_MS)
            price_stats(((t, p) for t, _, p in entries), NOW)

        ceiling()  # warm the cache: every run reads from memory
        figures = {
            "sales": args.sales,
            "leveldb_iterate_ms": round(timed(ceiling, args.runs), 1),
            "query_all_windows_ms": round(timed(query_all, args.runs), 1),
            "query_from_30d_ms": round(timed(query_30d, args.runs), 1),
            "target_ms": 50,
            "load_average": os.getloadavg()[0],
        }
        store.close()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
