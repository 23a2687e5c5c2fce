"""Resolution at scale: latency, node restart time and memory with 1,000 and with 1,000,000 identifiers.

On a one-node devnet without anchoring (`ledger devnet up --nodes 1 --ethereum none --detach`),
identifiers are registered with the bulk import (`ledger id import FILE.csv`) in steps (default: up to
1,000, then up to --ids, default 1,000,000).
After each step it measures:

* the import rate (rows/s) of that step, and the peak memory of the node and of the import client;
* Handle-API resolution latency p50/p99 of random registered identifiers, with a light sequential
  keep-alive client (`--concurrency` 1 by default, so the figure is latency, not saturation):
  `?auth=true` bypasses the node's answer cache, so the state is really read; the plain route is
  measured on the same identifiers once they are in the cache. Rounds alternate with a second one-node
  devnet that holds 1,000 identifiers throughout (the reference), so "within 20% of the latency with
  1,000" is a comparison under the same machine load: the ratio is the median of the rounds' ratios;
* resident memory of the node (VmRSS and VmHWM, and VmRSS split into RssAnon and RssFile);
* restart time: the node is stopped (SIGTERM, then in a second round SIGKILL), started again as
  `ledger devnet up` does, and timed until /healthz answers with the height it had;
* latency and memory again after the restart.

The issue's targets, at the largest step: latency within 20% of the latency with 1,000, start under
10 s, resident memory under 1 GB. The last line printed is one JSON object with all figures. Everything
runs on this machine, so other load on it shows in the figures: the 1-minute load average is printed.

    .venv/bin/python bench/resolve_scale_bench.py [--ids 1000000] [--samples 1000] [--rounds 7] [--batch 500]
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import os
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from devnet.processes import is_alive, start_node, stop_pid
from devnet.record import load_devnet, save_devnet
from ledger.benchmark import proc_memory_mb

PREFIX = "88.100.1"
REFERENCE_IDS = 1000
TARGET_LATENCY_RATIO = 1.2
TARGET_START_S = 10.0
TARGET_RSS_MB = 1024.0


def handle(n: int) -> str:
    return f"{PREFIX}/EQ-{n:08d}"


def ledger(*args: str, stderr_to: Path | None = None) -> str:
    err = stderr_to.open("ab") if stderr_to is not None else subprocess.PIPE
    try:
        proc = subprocess.run([sys.executable, "-m", "ledger.cli", *args], stdout=subprocess.PIPE, stderr=err,
                              timeout=6 * 3600)
    finally:
        if stderr_to is not None:
            err.close()  # type: ignore[union-attr]
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace") if proc.stderr else f"see {stderr_to}"
        raise SystemExit(f"ledger {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout.decode()}\n{detail}")
    return proc.stdout.decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- measurements ----------------------------------------------------------------------------------


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a process, and VmRSS split into private (RssAnon) and file-backed (RssFile:
    LevelDB maps its table files, so pages it read count as resident until unmapped), in MB."""
    return {name: round(proc_memory_mb(pid, name), 1) for name in ("VmRSS", "VmHWM", "RssAnon", "RssFile")}


class PeakMemory:
    """Samples a process's memory every `interval` s in a thread; `peak` holds the largest of each figure."""

    def __init__(self, pid: int, interval: float = 1.0) -> None:
        self.pid = pid
        self.interval = interval
        self.peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                now = memory_mb(self.pid)
            except OSError:
                return
            for k, v in now.items():
                self.peak[k] = max(v, self.peak.get(k, 0.0))

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def percentile(sorted_ms: list[float], p: float) -> float:
    return round(sorted_ms[min(len(sorted_ms) - 1, int(len(sorted_ms) * p))], 3)


def timed_gets(url: str, paths: list[str], concurrency: int) -> list[float]:
    """Latency (ms) of each GET, over `concurrency` keep-alive connections; every answer must be 200."""
    host = urlsplit(url)
    chunks = [paths[i::concurrency] for i in range(concurrency)]
    results: list[list[float]] = [[] for _ in chunks]
    errors: list[str] = []

    def worker(i: int) -> None:
        conn = http.client.HTTPConnection(host.hostname or "127.0.0.1", host.port, timeout=30)
        try:
            for path in chunks[i]:
                t = time.perf_counter()
                conn.request("GET", path, headers={"Accept": "application/json"})
                resp = conn.getresponse()
                resp.read()
                results[i].append((time.perf_counter() - t) * 1000)
                if resp.status != 200:
                    errors.append(f"{path}: HTTP {resp.status}")
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"{len(errors)} failed resolutions, first: {errors[0]}")
    return sorted(x for r in results for x in r)


def latency_round(url: str, registered: int, samples: int, concurrency: int, rng: random.Random) -> dict[str, float]:
    """p50/p99 over `samples` random registered identifiers: `?auth=true` (cache bypassed), then the
    plain route on the same identifiers once they are in the answer cache."""
    base = [f"/api/handles/{handle(rng.randrange(registered))}" for _ in range(samples)]
    timed_gets(url, base[:100], concurrency)  # warm the connection and the code paths
    uncached = timed_gets(url, [p + "?auth=true" for p in base], concurrency)
    timed_gets(url, base, concurrency)  # fill the answer cache with these identifiers
    cached = timed_gets(url, base, concurrency)
    return {"uncached_p50_ms": percentile(uncached, 0.5), "uncached_p99_ms": percentile(uncached, 0.99),
            "cached_p50_ms": percentile(cached, 0.5), "cached_p99_ms": percentile(cached, 0.99)}


def latency(node: tuple[str, int], ref: tuple[str, int], args: argparse.Namespace,
            rng: random.Random) -> dict[str, Any]:
    """Rounds alternate (ABBA) between the node and the reference node (1,000 identifiers), so both see
    the same load on a shared machine, where a sub-millisecond round trip varies by tens of percent from
    minute to minute. Figures are medians over the rounds; `ratio` is the median of the per-round ratios
    node/reference."""
    rounds: dict[str, list[dict[str, float]]] = {"node": [], "ref": []}
    pair = [("ref", ref), ("node", node)]
    for _, (url, registered) in pair:  # a discarded round each: a just restarted node is cold
        latency_round(url, registered, args.samples, args.concurrency, rng)
    for i in range(args.rounds):
        for name, (url, registered) in pair if i % 2 else pair[::-1]:  # ABBA: no node is always second
            rounds[name].append(latency_round(url, registered, args.samples, args.concurrency, rng))
    keys = list(rounds["node"][0])
    out: dict[str, Any] = {k: round(statistics.median(r[k] for r in rounds["node"]), 3) for k in keys}
    out["reference"] = {k: round(statistics.median(r[k] for r in rounds["ref"]), 3) for k in keys}
    out["ratio"] = {k: round(statistics.median(n[k] / r[k] for n, r in zip(rounds["node"], rounds["ref"],
                                                                            strict=True)), 3) for k in keys}
    out.update(samples=args.samples, rounds=args.rounds, concurrency=args.concurrency)
    return out


def health_height(url: str) -> int | None:
    host = urlsplit(url)
    conn = http.client.HTTPConnection(host.hostname or "127.0.0.1", host.port, timeout=1)
    try:
        conn.request("GET", "/healthz")
        resp = conn.getresponse()
        body = resp.read()
        return int(json.loads(body)["height"]) if resp.status == 200 else None
    except (OSError, ValueError, KeyError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def restart(data: dict[str, Any], directory: Path, sig: signal.Signals, timeout: float = 120.0) -> dict[str, Any]:
    """Stop the node with `sig`, start it as `ledger devnet up` does, time until /healthz shows its height."""
    entry = data["nodes"][0]
    url, pid = entry["http"], int(entry["pid"])
    height = health_height(url)
    t0 = time.perf_counter()
    if sig == signal.SIGTERM:
        stop_pid(pid)  # SIGTERM, wait for the exit (SIGKILL after 15 s)
    else:
        os.kill(pid, sig)
        deadline = time.monotonic() + 30
        while is_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
    stop_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    proc = start_node(entry["home"], directory / "logs")
    entry["pid"] = proc.pid
    save_devnet(directory, data)  # so `ledger devnet down` stops the new process
    answered = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"restarted node exited with {proc.returncode}: see {directory / 'logs'}")
        seen = health_height(url)
        if seen is not None and answered is None:
            answered = time.perf_counter() - t1
        if seen is not None and height is not None and seen >= height:
            return {"signal": sig.name, "stop_s": round(stop_s, 3), "healthz_s": round(answered or 0.0, 3),
                    "height_back_s": round(time.perf_counter() - t1, 3), "height": seen}
        time.sleep(0.01)
    raise SystemExit(f"node not back at height {height} within {timeout:.0f} s")


# --- loading ---------------------------------------------------------------------------------------


def write_rows(path: Path, start: int, stop: int) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["identifier", "url"])
        w.writerows((handle(n), f"https://twin.example.com/eq/{n:08d}") for n in range(start, stop))


def import_step(directory: Path, start: int, stop: int, batch: int) -> dict[str, Any]:
    path = directory / f"ids-{start}-{stop}.csv"
    write_rows(path, start, stop)
    node_pid = int(load_devnet(directory)["nodes"][0]["pid"])
    t = time.perf_counter()
    with PeakMemory(node_pid) as node_memory:
        out = ledger("id", "import", str(path), "--dir", str(directory), "--batch", str(batch),
                     stderr_to=directory / "import.log")
    elapsed = time.perf_counter() - t
    summary = json.loads(out.strip().splitlines()[-1])
    if summary["imported"] + summary["skipped"] != stop - start or summary["failed"]:
        raise SystemExit(f"import of rows {start}-{stop} incomplete: {summary}")
    path.unlink()
    # The largest child so far: the import client (the other `ledger` commands are small).
    client_peak_mb = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
    return {"rows": stop - start, "seconds": round(elapsed, 1), "rows_per_s": round((stop - start) / elapsed, 1),
            "client_peak_rss_mb": client_peak_mb, "node_peak_mb": node_memory.peak}


def measure(data: dict[str, Any], directory: Path, registered: int, ref: tuple[str, int],
            args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    url = data["nodes"][0]["http"]
    pid = int(data["nodes"][0]["pid"])
    fig: dict[str, Any] = {"ids": registered, "load_1m": round(os.getloadavg()[0], 2)}
    fig["memory_after_import_mb"] = memory_mb(pid)
    fig["latency"] = latency((url, registered), ref, args, rng)
    fig["restarts"] = [restart(data, directory, signal.SIGTERM), restart(data, directory, signal.SIGKILL)]
    fig["latency_after_restart"] = latency((url, registered), ref, args, rng)
    fig["memory_after_restart_mb"] = memory_mb(int(data["nodes"][0]["pid"]))
    return fig


def report(fig: dict[str, Any]) -> None:
    lat, mem = fig["latency"], fig["memory_after_restart_mb"]
    starts = ", ".join(f"{r['signal']} {r['height_back_s']} s" for r in fig["restarts"])
    print(f"{fig['ids']:>9,} ids  import {fig['import']['rows_per_s']} rows/s  "
          f"auth=true p50 {lat['uncached_p50_ms']} p99 {lat['uncached_p99_ms']} ms (x{lat['ratio']['uncached_p50_ms']} "
          f"of 1,000)  cached p50 {lat['cached_p50_ms']} p99 {lat['cached_p99_ms']} ms "
          f"(x{lat['ratio']['cached_p50_ms']})  start ({starts})  RSS {fig['memory_after_import_mb']['VmRSS']} MB "
          f"after import, {mem['VmRSS']} MB after restart  load {fig['load_1m']}", file=sys.stderr, flush=True)


def verdict(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets at the largest step. Latency: node/reference ratios of the medians (the
    step-to-step ratio of the node's own figures is printed too, but mixes in load changes)."""
    first, last = steps[0], steps[-1]
    ratios = {k: max(last["latency"]["ratio"][k], last["latency_after_restart"]["ratio"][k])
              for k in last["latency"]["ratio"]}
    by_step = {k: round(last["latency"][k] / first["latency"][k], 3) for k in ratios}
    start = max(r["height_back_s"] for r in last["restarts"])
    rss = max(last["memory_after_import_mb"]["VmRSS"], last["memory_after_restart_mb"]["VmRSS"])
    return {
        "latency_ratio": ratios, "latency_ratio_to_first_step": by_step,
        "latency_ok": ratios["uncached_p50_ms"] <= TARGET_LATENCY_RATIO and ratios["cached_p50_ms"]
        <= TARGET_LATENCY_RATIO,
        "start_s": start, "start_ok": start < TARGET_START_S,
        "rss_mb": rss, "rss_ok": rss < TARGET_RSS_MB,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ids", type=int, default=1_000_000, help="identifiers registered at the last step")
    parser.add_argument("--steps", default="1000", help="earlier steps, comma-separated (default 1000)")
    parser.add_argument("--samples", type=int, default=1000, help="resolutions per round")
    parser.add_argument("--rounds", type=int, default=8, help="rounds per latency figure (median reported)")
    parser.add_argument("--concurrency", type=int, default=1, help="client connections for latency")
    parser.add_argument("--batch", type=int, default=500, help="`ledger id import --batch`")
    parser.add_argument("--dir", help="work directory (default: a new temporary one, removed at the end)")
    args = parser.parse_args()
    steps = sorted({int(s) for s in args.steps.split(",") if s} | {args.ids})
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="scale-bench-"))
    directory, ref_dir = work / "devnet", work / "reference"
    rng = random.Random(4)
    figures: list[dict[str, Any]] = []
    print(f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; import progress: {directory / 'import.log'}",
          file=sys.stderr)
    try:
        for d in (directory, ref_dir):
            ledger("devnet", "up", "--nodes", "1", "--ethereum", "none", "--dir", str(d), "--detach",
                   "--base-port", str(free_port()))
            ledger("id", "prefix", PREFIX, "--owner", "org1", "--dir", str(d))
        import_step(ref_dir, 0, REFERENCE_IDS, args.batch)
        ref = (load_devnet(ref_dir)["nodes"][0]["http"], REFERENCE_IDS)
        registered = 0
        for target in steps:
            imported = import_step(directory, registered, target, args.batch)
            registered = target
            fig = measure(load_devnet(directory), directory, registered, ref, args, rng)
            fig["import"] = imported
            fig["disk_mb"] = round(sum(p.stat().st_size for p in directory.rglob("*") if p.is_file()) / 2**20, 1)
            figures.append(fig)
            report(fig)
    finally:
        for d in (directory, ref_dir):
            if (d / "devnet.json").exists():
                subprocess.run([sys.executable, "-m", "ledger.cli", "devnet", "down", "--dir", str(d)],
                               capture_output=True, timeout=120)
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"steps": figures, "targets": verdict(figures)}))


if __name__ == "__main__":
    main()
