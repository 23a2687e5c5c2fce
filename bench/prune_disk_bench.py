"""Disk use of one ledger as an archive node and pruned (`"prune": {"keep_heights": N}`), side by side.

It copies a stopped node's data directory (`--data`, e.g. a devnet node's `data/` after bench/state_sync_bench.py
with `--dir`), and for each `--keep N` runs one pruning round on a copy (`ledger.pruning.prune_now`, what a
pruning node does every `every_blocks` blocks), then measures the directory: right after the round (LevelDB
still holds the deleted records until its compaction reaches them) and after a full compaction (the space a
pruning node ends up using). The archive figure is the copy untouched, also compacted, so both are measured
the same way. The last line is one JSON object.

    .venv/bin/python bench/prune_disk_bench.py --data DEVNET/nodes/node0/data --genesis DEVNET/genesis.json \\
        --keep 1000 --keep 100
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ledger.chaindb import ChainDB
from ledger.genesis import load_genesis
from ledger.pruning import prune_now
from ledger.store import LevelDBStore


def dir_mb(path: Path) -> float:
    return round(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20, 1)


def measure(data: Path, genesis_path: str, keep: int | None, work: Path) -> dict[str, Any]:
    copy = work / f"keep-{keep or 'all'}"
    shutil.copytree(data, copy)
    out: dict[str, Any] = {"keep_heights": keep, "before_mb": dir_mb(copy)}
    store = LevelDBStore(copy / "ledger.db")
    try:
        chain = ChainDB(store, load_genesis(genesis_path))
        out["height"] = chain.height
        if keep is not None:
            result = prune_now(chain, keep)
            if result is not None:
                out.update(below=result.below, kept=list(result.kept), nodes_kept=result.marked,
                           nodes_deleted=result.deleted, prune_s=round(result.seconds, 1))
            out["after_round_mb"] = dir_mb(copy)
        t = time.perf_counter()
        store.compact()
        out["compact_s"] = round(time.perf_counter() - t, 1)
    finally:
        store.close()
    out["compacted_mb"] = dir_mb(copy)
    shutil.rmtree(copy)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a stopped node's data directory (holding ledger.db)")
    parser.add_argument("--genesis", required=True, help="its genesis.json")
    parser.add_argument("--keep", type=int, action="append", default=[], help="prune.keep_heights (repeatable)")
    parser.add_argument("--dir", help="where the copies go (default: a temporary directory)")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}", file=sys.stderr)
    fig: dict[str, Any] = {"load_avg_before": round(os.getloadavg()[0], 2), "runs": []}
    with tempfile.TemporaryDirectory(prefix="prune-disk-", dir=args.dir) as work:
        for keep in [None, *args.keep]:
            row = measure(Path(args.data), args.genesis, keep, Path(work))
            print(json.dumps(row), file=sys.stderr)
            fig["runs"].append(row)
    fig["load_avg_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(fig))


if __name__ == "__main__":
    main()
