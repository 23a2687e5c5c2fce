"""bench/node_keys_bench.py writes and reads back both layouts of tree-node keys, and shows what the
height-first layout saves LevelDB: its tables are never merged into smaller ones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_height_first_keys_leave_fewer_tables_than_hash_keys_and_every_record_reads_back(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "node_keys_bench.py"), "--blocks", "80", "--nodes", "20000",
         "--reads", "2000", "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600, check=True,
    )
    by_hash, by_height = (json.loads(line) for line in done.stdout.strip().splitlines())
    assert (by_hash["layout"], by_height["layout"]) == ("hash", "height")
    assert by_hash["reads"] == by_height["reads"] == 2000  # (a record not read back exits non-zero)
    # The same bytes; hash keys are merged level after level into 2 MB tables, height keys are not.
    assert abs(by_hash["tables_mb"] - by_height["tables_mb"]) <= 0.1 * by_hash["tables_mb"]
    assert 2 * by_height["table_files"] < by_hash["table_files"]
    assert list(tmp_path.iterdir()) == []  # the stores were removed
