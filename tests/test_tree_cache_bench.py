"""bench/tree_cache_bench.py runs on a real node store and counts the tree-node reads each cache makes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ledger.chaindb import ChainDB
from ledger.store import LevelDBStore
from tests.test_chain_state import Chain

ROOT = Path(__file__).resolve().parent.parent


def test_the_bench_reads_fewer_nodes_with_pinned_levels_and_leaves_the_store_as_it_was(tmp_path: Path) -> None:
    store_dir = tmp_path / "ledger.db"
    chain = Chain()
    store = LevelDBStore(store_dir)
    ChainDB(store, chain.genesis)  # a real store with a genesis state and a head
    store.close()
    before = sorted((p.name, p.stat().st_size) for p in store_dir.iterdir())
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "tree_cache_bench.py"), "--store", str(store_dir), "--blocks", "12",
         "--block-keys", "300", "--config", "0:0:50", "--config", "4:0:50"],
        capture_output=True, text=True, timeout=300, check=True,
    )
    unpinned, pinned = (json.loads(line) for line in done.stdout.strip().splitlines())
    assert (unpinned["pinned_levels"], pinned["pinned_levels"]) == (0, 4)
    # With no cache every block reads its whole walk; four pinned levels (15 nodes) are read once.
    assert unpinned["node_reads_per_block"] > pinned["node_reads_per_block"] > 0
    assert pinned["read_us"] > 0 and pinned["ceiling_warm_read_us"] > 0
    assert pinned["table_files"] >= 1 and pinned["file_rss_mb"] > 0
    assert sorted((p.name, p.stat().st_size) for p in store_dir.iterdir()) == before  # a copy was written
