"""What the key layout of state-tree nodes costs LevelDB: keys by hash (the older layout) against keys that begin
with the height that wrote them (the node's since 3 December 2026, ledger/tree_store.py; as the Jellyfish Merkle
tree keys nodes by version).

For each layout it writes `--blocks` blocks of `--nodes` node-like records (65-byte values, as a tree node's
encoding) into a fresh LevelDB store with the node's options, one batch a block, then reads `--reads`
records written earlier, at random, with `--open-tables` tables held open. It prints one JSON line a
layout: the CPU the process used for the writes (every thread: LevelDB's background compaction included,
counted until it has been idle for two seconds), table files at the end, and microseconds a read. The
ceiling beside them, measured in the same run: a read of one record again and again (its table open, its
block in memory).

    .venv/bin/python bench/node_keys_bench.py [--blocks 300] [--nodes 30000] [--reads 100000]

The layouts differ only in the key, made by `tree_store.node_key`: `hash` is `n/` and the 32-byte hash
(random); `height` is `v/`, the 8-byte height and the hash, so each block's keys sort after every earlier
block's. A reader of the height layout must know the height of the node it wants (a parent records its
children's), which this benchmark does, as the tree does. `--others N` adds, to each block, N records at
random keys that sort before the nodes (a block's latest values and tx index), and `--max-file-mb` sets
LevelDB's table size: with both, the run shows why a large store's node reads open tables (docs/performance.md,
"Larger tables"). `file_rss_mb_after_reads` is the table pages the reads left mapped.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger.benchmark import proc_memory_mb  # noqa: E402
from ledger.store import NS, LevelDBStore  # noqa: E402
from ledger.tree_store import node_key  # noqa: E402

NODE_BYTES = 65  # a branch node: two child hashes and a tag
OTHER_BYTES = 60  # a latest value or a transaction's location


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # all threads of the process
    return usage.ru_utime + usage.ru_stime


def _settle(idle_s: float = 2.0, timeout_s: float = 300.0) -> None:
    """Wait until LevelDB's background thread has used no CPU for `idle_s` (compaction finished)."""
    deadline = time.monotonic() + timeout_s
    last = _cpu_s()
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = _cpu_s()
        if now - last > 0.01:
            quiet_since = time.monotonic()
        last = now
        if time.monotonic() - quiet_since >= idle_s:
            return


def _key(layout: str, height: int, node_hash: bytes) -> bytes:
    return node_key(0 if layout == "hash" else height, node_hash)  # birth 0 is the layout by hash alone


def run(layout: str, directory: Path, blocks: int, nodes: int, others: int, reads: int, open_tables: int,
        max_file_mb: int, seed: int) -> dict:
    rng = random.Random(seed)
    store = LevelDBStore(directory, max_open_files=open_tables, max_file_mb=max_file_mb)
    sample: list[bytes] = []  # keys to read back, drawn evenly from every block
    try:
        started_cpu, started = _cpu_s(), time.perf_counter()
        for height in range(1, blocks + 1):
            batch = []
            for _ in range(nodes):
                key = _key(layout, height, rng.randbytes(32))
                batch.append((key, rng.randbytes(NODE_BYTES)))
            sample.extend(k for k, _ in rng.sample(batch, max(1, reads // blocks)))
            # The block's other records, at random keys that sort before the nodes' (latest values, tx index).
            batch.extend((NS.STATE_LATEST + rng.randbytes(32), rng.randbytes(OTHER_BYTES)) for _ in range(others))
            store.write_batch(batch, sync=False)
        write_wall = time.perf_counter() - started
        _settle()
        write_cpu = _cpu_s() - started_cpu
    finally:
        store.close()
    # Reopen (an empty table cache, as after a restart), then read at random.
    store = LevelDBStore(directory, max_open_files=open_tables, max_file_mb=max_file_mb)
    try:
        rng.shuffle(sample)
        started = time.perf_counter()
        for key in sample:
            if store.get(key) is None:
                raise SystemExit(f"{layout}: a record written was not read back")
        read_us = (time.perf_counter() - started) / len(sample) * 1e6
        again = sample[0]
        started = time.perf_counter()
        for _ in range(10_000):
            store.get(again)
        warm_us = (time.perf_counter() - started) / 10_000 * 1e6
        # The table pages the reads left mapped (LevelDB maps the tables it holds open).
        mapped_mb = round(proc_memory_mb(os.getpid(), "RssFile"), 1)
    finally:
        store.close()
    size = sum(p.stat().st_size for p in directory.glob("*.ldb"))
    return {
        "layout": layout, "blocks": blocks, "nodes_per_block": nodes, "others_per_block": others,
        "open_tables": open_tables, "max_file_mb": max_file_mb,
        "write_wall_s": round(write_wall, 1), "write_cpu_s": round(write_cpu, 1),
        "table_files": len(list(directory.glob("*.ldb"))), "tables_mb": round(size / 2**20),
        "reads": len(sample), "read_us": round(read_us, 1), "ceiling_warm_read_us": round(warm_us, 1),
        "file_rss_mb_after_reads": mapped_mb,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", type=int, default=300)
    ap.add_argument("--nodes", type=int, default=30_000, help="records a block (default 30000: ~1,400 keys changed "
                    "at a million identifiers, ~21 nodes each)")
    ap.add_argument("--others", type=int, default=0, help="records a block at random keys besides the nodes "
                    "(a node's block also writes its changed keys' latest values and its transactions' locations)")
    ap.add_argument("--max-file-mb", type=int, default=2, help="LevelDB's table size (its default, and the node's: 2)")
    ap.add_argument("--reads", type=int, default=100_000)
    ap.add_argument("--open-tables", type=int, default=200, help="LevelDB tables held open (the node's default)")
    ap.add_argument("--layout", action="append", choices=("hash", "height"), help="default: both")
    ap.add_argument("--dir", type=Path, help="where the stores go (default: a temporary directory)")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="node-keys-bench-", dir=args.dir) as tmp:
        for layout in args.layout or ("hash", "height"):
            path = Path(tmp) / layout
            os.makedirs(path)
            figures = run(layout, path, args.blocks, args.nodes, args.others, args.reads, args.open_tables,
                          args.max_file_mb, args.seed)
            print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
