"""Synced writes per committed block on each node of a running devnet, counted from outside by strace.

    python bench/sync_writes_bench.py --dir DEVNET [--seconds 20]

Attaches `strace -c -f -e trace=fsync,fdatasync` to every validator process of the devnet for the given
time (load it meanwhile, e.g. with `ledger id import`), reads each node's height before and after, and
prints per node the fsync/fdatasync calls and how many there were per committed block. Each synced
LevelDB write is one such call (LevelDB syncs its log); they block the node's event loop (4-5 ms each on
the development machine's disk), which is why the driver gathers a turn's records into one write.
strace slows the traced process, so read the count per block, not the throughput.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx


def _height(url: str) -> int:
    return int(httpx.get(f"{url}/v1/status", timeout=10).json()["height"])


def _syncs(report: str) -> int:
    """fsync + fdatasync calls from an `strace -c` summary."""
    total = 0
    for line in report.splitlines():
        m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(fsync|fdatasync)\s*$", line)
        if m:
            total += int(m.group(1))
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", required=True, type=Path, help="the devnet's directory (its devnet.json)")
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()
    data = json.loads((args.dir / "devnet.json").read_text())
    nodes = [n for n in data["nodes"] if n.get("pid")]
    before = [_height(n["http"]) for n in nodes]
    tracers = [subprocess.Popen(["strace", "-c", "-f", "-e", "trace=fsync,fdatasync", "-p", str(n["pid"])],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for n in nodes]
    time.sleep(args.seconds)
    for t in tracers:
        t.send_signal(signal.SIGINT)
    reports = [t.communicate(timeout=30)[1] for t in tracers]
    after = [_height(n["http"]) for n in nodes]
    rows = []
    for node, report, h0, h1 in zip(nodes, reports, before, after, strict=True):
        syncs, blocks = _syncs(report), h1 - h0
        rows.append({"node": Path(node["home"]).name, "blocks": blocks, "synced_writes": syncs,
                     "per_block": round(syncs / blocks, 2) if blocks else None})
        print(json.dumps(rows[-1]))
    if not any(r["blocks"] for r in rows):
        sys.exit("no block committed while traced: load the devnet meanwhile")


if __name__ == "__main__":
    main()
