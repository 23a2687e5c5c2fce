"""State-tree updates on a large ledger store, with the node cache and LevelDB's open tables as configured.

Takes a node's store (`ledger.db` of a node that holds a large state, for instance one left by
`ledger bench --preload N` or `bench/state_sync_bench.py --dir DIR`), copies it once per configuration
(every configuration starts from the same store), and applies `--blocks` blocks of `--block-keys` new
random keys to its head state root, writing each block's new nodes as the node does. For each
configuration it prints one JSON line: tree nodes read from LevelDB per block, microseconds per read, and
milliseconds per block (the mean of the first ten blocks and of the last twenty). The ceiling printed
beside them, measured in the same run: microseconds per read of one node read again and again (its table
open, its block in memory), the least a read from LevelDB costs here.

    .venv/bin/python bench/tree_cache_bench.py --store DIR/nodes/node0/data/ledger.db

A configuration is `PIN:CACHE:TABLES` (pinned levels, node-cache size, LevelDB open tables); the default
set is the node's before (0:200000:200) and now (16:100000:200), and 17 levels, and 1,000 open tables.
`file_rss_mb` is the process's resident file pages after the blocks (the table pages LevelDB mapped, and the
program's own files), `table_files` the tables of the copy.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger.benchmark import proc_memory_mb  # noqa: E402
from ledger.chaindb import HEAD_KEY  # noqa: E402
from ledger.smt import SparseMerkleTree  # noqa: E402
from ledger.store import NS, LevelDBStore  # noqa: E402
from ledger.tree_store import node_getter, node_key, node_puts, root_birth_getter  # noqa: E402

CONFIGS = ("0:200000:200", "16:100000:200", "17:100000:200", "16:100000:1000")


def run(store_dir: Path, pin: int, cache: int, tables: int, blocks: int, block_keys: int, seed: int) -> dict:
    store = LevelDBStore(store_dir, max_open_files=tables)
    try:
        head = store.get(HEAD_KEY)
        if head is None:
            raise SystemExit(f"{store_dir} holds no ledger (no head)")
        root = store.get(NS.STATE_ROOT + head)
        assert root is not None
        reads = 0
        spent = 0.0
        last = node_key(0, root)
        height = int.from_bytes(head, "big")
        stored_node = node_getter(store.get)

        def get_node(birth: int, h: bytes) -> bytes | None:
            nonlocal reads, spent, last
            started = time.perf_counter()
            value = stored_node(birth, h)
            spent += time.perf_counter() - started
            reads += 1
            last = node_key(birth, h)
            return value

        tree = SparseMerkleTree(get_node, cache_size=cache, pin_depth=pin, root_birth=root_birth_getter(store.get))
        rng = random.Random(seed)
        times = []
        for _ in range(blocks):
            changes = {rng.randbytes(20): rng.randbytes(120) for _ in range(block_keys)}
            started = time.perf_counter()
            height += 1
            root, nodes = tree.update(root, changes, height)
            store.write_batch(node_puts(height, nodes, root, tree.new_root_birth), sync=False)
            times.append(time.perf_counter() - started)
        # The ceiling: LevelDB's cost of a read whose table is open and whose block is in memory (one node
        # read again and again), against which the reads above pay for opening tables and reading blocks.
        again = last
        started = time.perf_counter()
        for _ in range(10_000):
            store.get(again)
        warm_us = (time.perf_counter() - started) / 10_000 * 1e6
        return {
            "pinned_levels": pin, "cache": cache, "open_tables": tables,
            "node_reads_per_block": round(reads / blocks),
            "read_us": round(spent / max(1, reads) * 1e6, 1),
            "ms_per_block_first10": round(sum(times[:10]) / len(times[:10]) * 1000, 1),
            "ms_per_block_last20": round(sum(times[-20:]) / len(times[-20:]) * 1000, 1),
            "ceiling_warm_read_us": round(warm_us, 1),
            "file_rss_mb": round(proc_memory_mb(os.getpid(), "RssFile"), 1),
            "table_files": len(list(store_dir.glob("*.ldb"))),
        }
    finally:
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", type=Path, required=True, help="a node's ledger.db (copied, never written)")
    ap.add_argument("--blocks", type=int, default=100)
    ap.add_argument("--block-keys", type=int, default=1_500, help="new keys a block")
    ap.add_argument("--config", action="append", metavar="PIN:CACHE:TABLES",
                    help=f"a configuration to run (repeatable; default: {' '.join(CONFIGS)})")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    if not (args.store / "CURRENT").exists():
        raise SystemExit(f"{args.store} is not a LevelDB directory")
    for config in args.config or CONFIGS:
        try:
            pin, cache, tables = (int(x) for x in config.split(":"))
        except ValueError:
            raise SystemExit(f"--config {config!r}: expected PIN:CACHE:TABLES, three integers") from None
        with tempfile.TemporaryDirectory(prefix="tree-cache-bench-") as tmp:
            copy = Path(tmp) / "ledger.db"
            print(f"copying {args.store} for {config}...", file=sys.stderr)
            shutil.copytree(args.store, copy)
            print(json.dumps(run(copy, pin, cache, tables, args.blocks, args.block_keys, args.seed)), flush=True)


if __name__ == "__main__":
    main()
