"""Backup and restore times on a ledger of some size, beside the floors measured in the same run.

On a one-node devnet without anchoring, `--ids` identifiers (default 100,000) are registered with the bulk
import. Then, with the node running (and, with `--load`, registrations still arriving):

* `ledger backup --home` of the running node (the node streams a LevelDB snapshot over HTTP): seconds, bytes;
* `ledger restore` of that file into a fresh home of the same node (every check: certificates, links,
  state nodes, the head state against its root, the tx index): seconds;
* CPU seconds of each (the backup's: the command's and the node's, whose CPU also serves `--load`), which a
  busy machine changes less than the wall time;
* the floors: copying the store directory (`cp -r`, what any file-level copy costs, not consistent while
  the node runs), and reading the backup file with sha256 (what any check of the file's bytes costs).

The issue's targets (with 1,000,000 identifiers: backup within 60 s, restore within 120 s) are printed beside
the figures; everything runs on this machine, so its load shows in them: the 1-minute load average is
printed before and after. The last line is one JSON object with all figures.

With `--dir DIR` the work directory is kept; a directory holding a devnet from an earlier run (of this
benchmark or of bench/state_sync_bench.py) is restarted and its ledger reused, without an import.

    .venv/bin/python bench/backup_bench.py [--ids 100000] [--batch 500] [--load] [--dir DIR]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchnet import free_port, ledger

from devnet.record import load_devnet

PREFIX = "88.100.1"
TARGET_BACKUP_S = 60.0
TARGET_RESTORE_S = 120.0


def timed(fn: Any, *args: Any) -> tuple[float, Any]:
    t = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - t, result


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu_s(pid: int) -> float:
    """CPU seconds of a process that is not our child (the node: `devnet up` started it)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_rows(path: Path, start: int, stop: int) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["identifier", "url"])
        w.writerows((f"{PREFIX}/EQ-{n:08d}", f"https://twin.example.com/eq/{n:08d}") for n in range(start, stop))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def dir_mb(path: Path) -> float:
    return round(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20, 1)


def background_load(directory: Path, start: int, stop: threading.Event) -> threading.Thread:
    """Registrations in small imports while the backup runs (the node commits throughout)."""
    def run() -> None:
        n = start
        while not stop.is_set():
            path = directory / f"load-{n}.csv"
            write_rows(path, n, n + 500)
            ledger("id", "import", str(path), "--dir", str(directory), "--batch", "100")
            n += 500

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ids", type=int, default=100_000, help="identifiers registered before the backup")
    parser.add_argument("--batch", type=int, default=500, help="`ledger id import --batch`")
    parser.add_argument("--load", action="store_true", help="keep registering while the backup runs")
    parser.add_argument("--dir", help="work directory (default: a new temporary one, removed at the end); one "
                        "holding a devnet from an earlier run is reused as it is (--ids is then ignored)")
    args = parser.parse_args()
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="backup-bench-"))
    directory = work / "devnet"
    load_before = os.getloadavg()[0]
    print(f"{os.cpu_count()} cores, load {load_before:.2f}", file=sys.stderr)
    fig: dict[str, Any] = {"ids": args.ids, "load_avg_before": round(load_before, 2)}
    stop = threading.Event()
    try:
        rows = work / "ids.csv"
        if (directory / "devnet.json").exists():
            ledger("devnet", "up", "--dir", str(directory), "--detach")  # restarted as it was created
            with rows.open() as f:  # the rows the first run imported
                fig["ids"] = sum(1 for _ in f) - 1
            fig["reused"] = True
        else:
            ledger("devnet", "up", "--nodes", "1", "--ethereum", "none", "--dir", str(directory), "--detach",
                   "--base-port", str(free_port()))
            ledger("id", "prefix", PREFIX, "--owner", "org1", "--dir", str(directory))
            write_rows(rows, 0, args.ids)
            seconds, _ = timed(ledger, "id", "import", str(rows), "--dir", str(directory), "--batch",
                               str(args.batch))
            fig["import_s"] = round(seconds, 1)
            print(f"imported {args.ids} in {seconds:.1f} s", file=sys.stderr)
        node = load_devnet(directory)["nodes"][0]
        home = Path(node["home"])
        fig["store_mb"] = dir_mb(home / "data")

        # New identifiers only: a reused ledger may hold some from an earlier --load already.
        loader = background_load(directory, fig["ids"] + 10_000_000, stop) if args.load else None
        seconds, _ = timed(shutil.copytree, home / "data", work / "store-copy")
        fig["floor_copy_store_s"] = round(seconds, 2)
        shutil.rmtree(work / "store-copy")
        backup = work / "node.ledger"
        backup.unlink(missing_ok=True)
        node_cpu, cli_cpu = process_cpu_s(node["pid"]), children_cpu_s()
        seconds, out = timed(ledger, "backup", "--home", str(home), "--out", str(backup))
        made = json.loads(out)
        fig.update(backup_s=round(seconds, 2), backup_mb=round(made["bytes"] / 2**20, 1), height=made["height"],
                   backup_cpu_s_command=round(children_cpu_s() - cli_cpu, 2),
                   backup_cpu_s_node=round(process_cpu_s(node["pid"]) - node_cpu, 2))
        print(f"figures so far: {json.dumps(fig)}", file=sys.stderr)
        stop.set()
        if loader is not None:
            loader.join(timeout=600)

        seconds, _ = timed(sha256_file, backup)
        fig["floor_sha256_file_s"] = round(seconds, 2)
        fresh = home.parent / "restored"  # beside the node's home: the config names the genesis relative to it
        shutil.rmtree(fresh, ignore_errors=True)  # left by an earlier run
        fresh.mkdir()
        for item in home.iterdir():
            if item.is_file():
                shutil.copy2(item, fresh / item.name)
        cpu = children_cpu_s()
        seconds, out = timed(ledger, "restore", str(backup), "--home", str(fresh))
        fig["restore_cpu_s"] = round(children_cpu_s() - cpu, 2)
        restored = json.loads(out)
        if restored["block_hash"] != made["block_hash"]:
            raise SystemExit(f"restored {restored} is not the backup's head {made}")
        fig["restore_s"] = round(seconds, 2)
    finally:
        stop.set()
        if (directory / "devnet.json").exists():
            subprocess.run([sys.executable, "-m", "ledger.cli", "devnet", "down", "--dir", str(directory)],
                           capture_output=True, timeout=120)
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    fig["load_avg_after"] = round(os.getloadavg()[0], 2)
    fig["targets_at_1m"] = {"backup_s": TARGET_BACKUP_S, "restore_s": TARGET_RESTORE_S}
    print(f"backup {fig['backup_s']} s ({fig['backup_mb']} MB; copying the store: {fig['floor_copy_store_s']} s), "
          f"restore {fig['restore_s']} s (reading the file with sha256: {fig['floor_sha256_file_s']} s)",
          file=sys.stderr)
    print(json.dumps(fig))


if __name__ == "__main__":
    main()
