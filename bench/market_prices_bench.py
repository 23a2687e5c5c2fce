"""The cost of a price query (`GET /v1/market/prices?kind=...`) over N recorded sales (issue 15's target:
under 50 ms for 100,000), beside a ceiling measured in the same run: LevelDB iterating the sales' index entries
and doing nothing with them (what any scan of them costs at least).

N sales (one kind, 1,000 tokens, 997 distinct prices, spread over 60 days) are recorded by the state machine's
own `record_sale` (the sale, its index entries and the day and all-time aggregates of `ledger.market.prices`)
into an overlay, written under the latest-state namespace of a LevelDB store in a temporary directory. Timed:
the route's `read_windows` (the four windows: aggregates read, each window's first partial day scanned from the
index), the same for all token sales (`GET /v1/market/prices` without a kind: every kind's aggregates and indexes
read and merged), and for reference the scan it replaced (every index entry decoded, then `price_stats`). Not timed:
HTTP, and reading the latest `--recent` sale records (20 gets). Also printed: the read tokens the query charges
its client, and the mean cost of `record_sale` per sale while filling (an in-memory overlay).

    .venv/bin/python bench/market_prices_bench.py [--sales 100000] [--runs 5]

Prints one JSON line of figures last (median of the runs, in ms: wall clock and this process's CPU time).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from ledger.api.routes.market import read_windows
from ledger.market.prices import ALL_SCOPES, kind_scope
from ledger.market.sales import ALL_PREFIXES, DAY_MS, index_entries, kind_prefix, open_entries, price_stats, record_sale
from ledger.state import Overlay, TxContext
from ledger.store import NS, LevelDBStore

NOW = 1_800_000_000_000 + 12_345_678  # not a midnight: each window has a partial first day


class Empty:
    def get(self, key: bytes) -> bytes | None:
        return None


class Latest:
    def __init__(self, store: LevelDBStore) -> None:
        self.store = store

    def get(self, key: bytes) -> bytes | None:
        return self.store.get(NS.STATE_LATEST + key)


def fill(store: LevelDBStore, sales: int) -> float:
    """Record the sales; the mean µs of `record_sale`."""
    state = Overlay(Empty())
    step = 60 * DAY_MS // sales
    start = time.perf_counter()
    for seq in range(1, sales + 1):
        ctx = TxContext(state, "org1", (), seq, NOW - 60 * DAY_MS + seq * step, seq.to_bytes(32, "big"))
        record_sale(ctx, f"T-{seq % 1000}", "data", 100 + seq % 997, 0, "org1", "org2", "listing")
    per_sale = (time.perf_counter() - start) / sales * 1e6
    items = [(NS.STATE_LATEST + k, v) for k, v in state.changes.items() if v is not None]
    for n in range(0, len(items), 10_000):
        store.write_batch(items[n:n + 10_000])
    return per_sale


def timed(fn: object, runs: int) -> tuple[float, float]:
    """Median wall and CPU (this process's) ms of `runs` calls: on a shared machine the CPU time is the steadier."""
    wall, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()  # type: ignore[operator]
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return round(statistics.median(wall), 1), round(statistics.median(cpu), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sales", type=int, default=100_000, help="sales recorded (default 100,000)")
    parser.add_argument("--runs", type=int, default=5, help="runs of each measurement; the median is printed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = LevelDBStore(Path(tmp) / "db")
        record_us = fill(store, args.sales)
        prefix = kind_prefix("data")
        raw_prefix = NS.STATE_LATEST + prefix
        view = Latest(store)
        loop = asyncio.new_event_loop()
        charged: list[float] = []

        def ceiling() -> None:
            for _ in store.iterate(raw_prefix):
                pass

        def query() -> None:
            windows, cost = loop.run_until_complete(read_windows(store, view, (kind_scope("data"),), (prefix,), NOW))
            charged.append(cost)

        def query_all() -> None:  # all token sales: every kind's aggregates and indexes, merged
            loop.run_until_complete(read_windows(store, view, ALL_SCOPES, ALL_PREFIXES, NOW))

        def scan_all() -> None:
            closed = (entry for k, v in store.iterate(raw_prefix) for entry in index_entries(k, v, raw_prefix))
            entries = ((t, price) for t, _, price in itertools.chain(closed, open_entries(view, kind_scope("data"))[1]))
            price_stats(entries, NOW)

        ceiling()  # warm the cache: every run reads from memory
        figures = {
            "sales": args.sales,
            "leveldb_iterate_ms_wall_cpu": timed(ceiling, args.runs),
            "query_ms_wall_cpu": timed(query, args.runs),
            "query_all_sales_ms_wall_cpu": timed(query_all, args.runs),
            "scan_all_windows_ms_wall_cpu": timed(scan_all, args.runs),
            "query_read_tokens": round(charged[-1], 1),
            "record_sale_us": round(record_us, 1),
            "target_ms": 50,
            "load_average": os.getloadavg()[0],
        }
        loop.close()
        store.close()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
