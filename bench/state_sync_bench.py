"""A new node at the head by state sync, beside one replaying from genesis, on the same ledger in the same run.

On a one-validator devnet without anchoring, `--ids` identifiers (default 100,000) are registered with the bulk
import. The validator, with its default settings, exports its state tree ahead (`sync.export_every`,
ledger/snapshot/exports.py) once its head is 1,000 heights past its newest export: the time it takes to make
that export (the node's own figure, and from the validator's start until it is offered), its size and the
validator's resident memory meanwhile are printed. `--export-every N` sets it in the validator's config.json
(0: no export, the head walked as before). Then three new observers join it, one after the other, each a real
`ledger node run` process:

* `--state-sync`: a certified snapshot in chunks, every chunk checked, then the blocks after it: seconds from
  the process's start until it holds the validator's head block (same hash), and what the sync reported
  (chunks, MiB, its own seconds);
* replay from genesis (`sync.mode` "blocks", the only way before): every block fetched, its certificate
  checked and its transactions executed again, until the same head;
* the floor: copying the validator's store directory (`cp -r`, what any file-level copy of the state costs,
  checking nothing);
* with `--history`, an archive by state sync (`"history": "full"`): at the head by state sync, then the blocks
  below the snapshot fetched and checked, then their state replayed, until /v1/status says `"archive": true`:
  beside the archive made by replaying from genesis above (the same blocks executed once each).

The issue's target (with 1,000,000 identifiers: at the head by state sync within 60 s) is printed beside the
figures. Everything runs on this machine (the validator serves while the observer checks), so its load shows
in them: the 1-minute load average is printed before and after. The last line is one JSON object.

With `--dir DIR` the work directory is kept; run again with the same `--dir`, the devnet there is restarted and
its ledger reused (no import: building 1,000,000 identifiers takes long), and the joining nodes start afresh.

    .venv/bin/python bench/state_sync_bench.py [--ids 100000] [--skip-replay] [--history] [--fetchers N] [--dir DIR]
        [--export-every N] [--keep-export]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from benchnet import free_port, ledger

from ledger.config import write_config
from ledger.crypto import SigningKey

PREFIX = "88.100.1"
TARGET_STATE_SYNC_S = 60.0


def write_rows(path: Path, count: int) -> None:
    with path.open("w") as f:
        f.write("identifier,url\n")
        f.writelines(f"{PREFIX}/EQ-{n:08d},https://twin.example.com/eq/{n:08d}\n" for n in range(count))


def dir_mb(path: Path) -> float:
    return round(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20, 1)


class PeakRss:
    """The highest resident memory of process `pid` while it runs, sampled every 0.2 s on a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kb = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.wait(0.2):
            try:
                for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        self.peak_kb = max(self.peak_kb, int(line.split()[1]))
            except OSError:
                return

    def stop(self) -> float:
        """The peak so far in MB; sampling stops."""
        self._done.set()
        self._thread.join()
        return round(self.peak_kb / 1024, 1)


def set_export_every(home: Path, every: int | None) -> None:
    """`sync.export_every` in the validator's config.json (None: the node's default, the key left out)."""
    path = home / "config.json"
    config = json.loads(path.read_text())
    sync = config.get("sync", {})
    sync.pop("export_every", None)
    if every is not None:
        sync["export_every"] = every
    if sync:
        config["sync"] = sync
    else:
        config.pop("sync", None)
    path.write_text(json.dumps(config, indent=2) + "\n")


def wait_export(validator: str, started: float, timeout: float) -> dict[str, Any]:
    """Until the validator has no export under way: what it offers (an export's height, or its head when it has
    none), and the figures of the export it made since `started`, if it made one."""
    head = httpx.get(f"{validator}/v1/blocks/latest", timeout=30).json()["height"]
    while True:
        exports = httpx.get(f"{validator}/v1/status", timeout=30).json()["state_exports"]
        if exports["exporting"] is None:
            break
        if time.perf_counter() - started > timeout:
            raise SystemExit(f"an export still under way after {timeout:.0f} s: {exports}")
        time.sleep(0.2)
    offered = exports["exports"][-1]["height"] if exports["exports"] else head
    out: dict[str, Any] = {"head": head, "offered": offered}
    last = exports["last"]
    if last is not None:
        out.update(height=last["height"], node_s=last["seconds"], since_start_s=round(time.perf_counter() - started, 1),
                   nodes=last["nodes"], mb=round(last["bytes"] / 2**20, 1))
    return out


def join(work: Path, name: str, genesis: str, validator: str, sync: dict[str, Any], timeout: float,
         archive: bool = False) -> dict[str, Any]:
    """Start a new observer with these `sync` settings; seconds until it holds the validator's head block (and
    with `archive`, until it says it is an archive node)."""
    home = work / name
    shutil.rmtree(home, ignore_errors=True)  # a home left by an earlier run would catch up from its blocks
    SigningKey.generate().save(home / "node.pem")
    port = free_port()
    write_config(home, {"genesis": os.path.relpath(genesis, home), "http": {"port": port}, "role": "observer",
                        "observer": {"validators": [validator]}, "sync": sync})
    url = f"http://127.0.0.1:{port}"
    head = httpx.get(f"{validator}/v1/blocks/latest", timeout=30).json()
    started = time.perf_counter()
    with open(home / "node.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "ledger.cli", "node", "run", "--home", str(home)],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"{name} exited: {(home / 'node.log').read_text()[-3000:]}")
            if time.perf_counter() - started > timeout:
                raise SystemExit(f"{name} not at the head after {timeout:.0f} s")
            try:
                mine = httpx.get(f"{url}/v1/blocks/{head['height']}", timeout=5)
                if mine.status_code == 200 and mine.json()["hash"] == head["hash"]:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        seconds = time.perf_counter() - started
        status = httpx.get(f"{url}/v1/status", timeout=30).json()
        while archive and not status["archive"]:
            if proc.poll() is not None or time.perf_counter() - started > timeout:
                raise SystemExit(f"{name} not an archive node: {(home / 'node.log').read_text()[-3000:]}")
            if status.get("history", {}).get("state") == "replay_failed":
                raise SystemExit(f"{name}: the replay failed: {(home / 'node.log').read_text()[-3000:]}")
            time.sleep(0.2)
            status = httpx.get(f"{url}/v1/status", timeout=30).json()
        archive_s = time.perf_counter() - started
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    out: dict[str, Any] = {"seconds": round(seconds, 1), "height": head["height"]}
    if archive:
        h = status["history"]
        out.update(archive_s=round(archive_s, 1), history_fetch_s=h["seconds"], history_blocks=h["fetched"],
                   history_replay_s=h["replay_seconds"], history_refused=h["refused"])
    if "state_sync" in status:
        s = status["state_sync"]
        out.update(sync_s=s["seconds"], chunks=s["chunks"], mib=round(s["bytes"] / 2**20, 1), nodes=s["nodes"],
                   refused=s["refused"])
    out["store_mb"] = dir_mb(home / "data")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ids", type=int, default=100_000, help="identifiers registered before the nodes join")
    parser.add_argument("--batch", type=int, default=500, help="`ledger id import --batch`")
    parser.add_argument("--skip-replay", action="store_true", help="do not time the replay from genesis")
    parser.add_argument("--history", action="store_true", help="also time an archive made by state sync with "
                        "\"history\": \"full\" (fetch the older blocks, replay their state)")
    parser.add_argument("--timeout", type=float, default=3 * 3600, help="seconds a joining node may take")
    parser.add_argument("--fetchers", type=int, help="the state-syncing node's sync.fetchers (default: the node's "
                        "default; left out of its config, so the code before this setting can be measured too)")
    parser.add_argument("--export-every", type=int, help="the validator's sync.export_every (default: the node's "
                        "default; 0: no export, the head walked)")
    parser.add_argument("--keep-export", action="store_true", help="with a reused --dir: keep the validator's "
                        "export from an earlier run (its time is then not measured again)")
    parser.add_argument("--dir", help="work directory (default: a new temporary one, removed at the end); one "
                        "holding a devnet from an earlier run is reused as it is (--ids is then ignored)")
    args = parser.parse_args()
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="state-sync-bench-"))
    directory = work / "devnet"
    load_before = os.getloadavg()[0]
    print(f"{os.cpu_count()} cores, load {load_before:.2f}", file=sys.stderr)
    fig: dict[str, Any] = {"ids": args.ids, "load_avg_before": round(load_before, 2)}
    try:
        if (directory / "devnet.json").exists():
            home = Path(json.loads((directory / "devnet.json").read_text())["nodes"][0]["home"])
            set_export_every(home, args.export_every)
            if not args.keep_export:
                shutil.rmtree(home / "data" / "state-exports", ignore_errors=True)  # an export made by this run
            started = time.perf_counter()
            ledger("devnet", "up", "--dir", str(directory), "--detach")  # restarted as it was created
            fig["reused"] = True
            with (work / "ids.csv").open() as f:  # the rows the first run imported
                fig["ids"] = sum(1 for _ in f) - 1
            print(f"reusing the devnet in {directory}", file=sys.stderr)
        else:
            ledger("devnet", "up", "--nodes", "1", "--ethereum", "none", "--dir", str(directory), "--detach",
                   "--base-port", str(free_port()))
            started = time.perf_counter()
            ledger("id", "prefix", PREFIX, "--owner", "org1", "--dir", str(directory))
            rows = work / "ids.csv"
            write_rows(rows, args.ids)
            t = time.perf_counter()
            ledger("id", "import", str(rows), "--dir", str(directory), "--batch", str(args.batch))
            fig["import_s"] = round(time.perf_counter() - t, 1)
            print(f"imported {args.ids} in {fig['import_s']} s", file=sys.stderr)
        data = json.loads((directory / "devnet.json").read_text())
        node = data["nodes"][0]
        rss = PeakRss(node["pid"])
        if args.export_every != 0:
            fig["export"] = wait_export(node["http"], started, args.timeout)
            fig["export"]["validator_peak_rss_mb"] = rss.stop()
            rss = PeakRss(node["pid"])
            print(f"export: {json.dumps(fig['export'])}", file=sys.stderr)
        fig["validator_store_mb"] = dir_mb(Path(node["home"]) / "data" / "ledger.db")
        t = time.perf_counter()
        shutil.copytree(Path(node["home"]) / "data", work / "store-copy")
        fig["floor_copy_store_s"] = round(time.perf_counter() - t, 2)
        shutil.rmtree(work / "store-copy")
        fetchers = {} if args.fetchers is None else {"fetchers": args.fetchers}
        fig.update(fetchers)
        fig["state_sync"] = join(work, "by-state-sync", data["genesis"], node["http"], {"mode": "state", **fetchers},
                                 args.timeout)
        fig["state_sync"]["validator_peak_rss_mb"] = rss.stop()
        served = httpx.get(f"{node['http']}/v1/status", timeout=30).json()["state_exports"]["chunks_served"]
        fig["state_sync"]["chunks_from_export"] = served
        fig["load_avg_after_state_sync"] = round(os.getloadavg()[0], 2)
        print(f"state sync: {json.dumps(fig['state_sync'])}", file=sys.stderr)
        if not args.skip_replay:
            fig["replay"] = join(work, "by-replay", data["genesis"], node["http"], {"mode": "blocks"}, args.timeout)
            print(f"replay from genesis: {json.dumps(fig['replay'])}", file=sys.stderr)
        if args.history:
            fig["history"] = join(work, "by-history", data["genesis"], node["http"],
                                  {"mode": "state", "history": "full", **fetchers}, args.timeout, archive=True)
            print(f"state sync with full history: {json.dumps(fig['history'])}", file=sys.stderr)
    finally:
        if (directory / "devnet.json").exists():
            subprocess.run([sys.executable, "-m", "ledger.cli", "devnet", "down", "--dir", str(directory)],
                           capture_output=True, timeout=120)
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    fig["load_avg_after"] = round(os.getloadavg()[0], 2)
    fig["target_at_1m"] = {"state_sync_s": TARGET_STATE_SYNC_S}
    replay = fig.get("replay", {}).get("seconds", "not timed")
    print(f"at the head by state sync: {fig['state_sync']['seconds']} s; by replay from genesis: {replay} s; "
          f"copying the store: {fig['floor_copy_store_s']} s", file=sys.stderr)
    print(json.dumps(fig))


if __name__ == "__main__":
    main()
