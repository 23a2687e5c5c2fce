"""Consensus under a read flood (issue 13): registrations committing on a 4-validator devnet while
one validator is flooded with reads at the highest rate it accepts.

Steps: start a 4-node devnet (`ledger.devnet.launcher`, no anchoring); give the flooded node (the
primary by default: the worst case, every block starts there) the HTTP limits of `--limits`; one
member per other validator submits pre-signed `id.register` batches to its own node without pause
(msgpack, `wait=true`), for the whole run. Phases alternate: quiet, then flooded (wrk, 64
connections, as fast as it can, at a cached Handle answer or, with `--flood proof`, at proofs built
per request), `--rounds` times. Per phase: committed tx/s (answers received in the phase), commit
latency p50/p99 (request start to the committed answer), the flooded node's CPU share, the flood's
answered and refused (429) requests per second.

Targets: flooded phases commit at >= 50% of the quiet phases' rate, with commit p99 under 2 s.

    .venv/bin/python bench/flood_bench.py [--seconds 20] [--rounds 2] [--flood cached|proof] [--limits default|off]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from benchnet import MODES, cpu_seconds, restart_with_limits

from devnet import launcher
from devnet.processes import stop_pid
from ledger.bench_members import add_bench_members
from ledger.benchmark import _presign, proc_memory_mb
from ledger.client import LedgerClient, Signer
from ledger.crypto import SigningKey
from ledger.resolver.registry import IdRegister, PrefixCreate, ValueSpec

FLOOD_HANDLE = "88.100.77/FLOOD"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wrk(url: str, seconds: float, connections: int) -> dict[str, Any]:
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", url],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    total = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    requests = int(total.group(1)) if total else 0
    refused = int(non2xx.group(1)) if non2xx else 0
    return {"answered_per_s": round((requests - refused) / seconds, 1), "refused_per_s": round(refused / seconds, 1)}


class Load:
    """Each client submits its batches to its node, one after another, until told to stop."""

    def __init__(self, urls: list[str], bodies: list[list[bytes]]) -> None:
        self.done: list[tuple[float, float, int]] = []  # (answer time, latency, committed txs)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=pair, daemon=True)
                        for pair in zip(urls, bodies, strict=True)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def _run(self, url: str, bodies: list[bytes]) -> None:
        with httpx.Client(base_url=url, timeout=180) as http:
            for body in bodies:
                if self.stop.is_set():
                    return
                t0 = time.monotonic()
                try:
                    r = http.post("/v1/tx", content=body, params={"wait": "true", "timeout": "120"},
                                  headers={"content-type": "application/msgpack"})
                except httpx.HTTPError:
                    if self.stop.is_set():
                        return  # the devnet is going down
                    raise
                t1 = time.monotonic()
                ok = sum(1 for x in r.json().get("results", []) if x.get("status") == "committed" and x.get("ok"))
                with self.lock:
                    self.done.append((t1, t1 - t0, ok))

    def window(self, start: float, end: float) -> dict[str, Any]:
        with self.lock:
            inside = [d for d in self.done if start <= d[0] < end]
        committed = sum(d[2] for d in inside)
        latencies = sorted(d[1] for d in inside for _ in range(d[2]))
        return {"committed_tx_per_s": round(committed / (end - start), 1),
                "p50_ms": round(statistics.median(latencies) * 1000) if latencies else None,
                "p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))] * 1000) if latencies else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--flood", choices=("cached", "proof"), default="cached")
    parser.add_argument("--limits", choices=tuple(MODES), default="default",
                        help="the flooded node's HTTP limits (the flood comes from 127.0.0.1)")
    parser.add_argument("--target", choices=("primary", "backup"), default="primary")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--txs", type=int, default=150_000)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("needs wrk (apt-get install wrk)")
    directory = Path(tempfile.mkdtemp(prefix="flood-bench-"))
    log = sys.stderr
    flooded: dict[str, Any] | None = None
    load: Load | None = None
    try:
        net = launcher.up(directory, 4, base_port=free_port(), batch_size=2000, batch_wait_ms=30, ethereum="none")
        nodes = net["nodes"]
        primary = httpx.get(nodes[0]["http"] + "/v1/status").json()["primary"]
        index = next(i for i, n in enumerate(nodes) if (n["id"] == primary) == (args.target == "primary"))
        flooded = nodes[index]
        others = [n for n in nodes if n is not flooded]
        client = LedgerClient(flooded["http"])
        org1 = SigningKey.load(net["keys"]["org1"])
        Signer(SigningKey.load(net["keys"]["admin"]), client).send("prefix.create", PrefixCreate("88.100.77", org1.id))
        Signer(org1, client).send("id.register", IdRegister(FLOOD_HANDLE, (ValueSpec(1, "URL", "https://twin/f"),)))
        restart_with_limits(flooded, MODES[args.limits], directory / "logs")
        print(f"flooding node {index} ({args.target}) with {args.flood} reads; its limits: {args.limits}", file=log)
        keys = add_bench_members(net, len(others), "bench", "88.900", ("issuer", "registrar"))
        print(f"pre-signing {args.txs} registrations...", file=log)
        bodies = _presign(net, keys, args.txs, args.batch)
        target = f"{flooded['http']}/api/handles/{FLOOD_HANDLE}" + ("?proof=true&auth=true" if args.flood == "proof"
                                                                    else "")
        httpx.get(target)  # cached from now on (a plain answer)
        load = Load([n["http"] for n in others], bodies)
        load.start()
        time.sleep(5)  # past the start: connections, caches, the first blocks
        phases: list[dict[str, Any]] = []
        for round_ in range(args.rounds):
            for kind in ("quiet", "flood"):
                cpu0, start = cpu_seconds(flooded["pid"]), time.monotonic()
                flood = wrk(target, args.seconds, args.connections) if kind == "flood" else None
                if flood is None:
                    time.sleep(args.seconds)
                end = time.monotonic()
                phase = {"round": round_, "phase": kind, **load.window(start, end),
                         "flooded_node_cpu_pct": round(100 * (cpu_seconds(flooded["pid"]) - cpu0) / (end - start)),
                         "flooded_node_rss_mb": round(proc_memory_mb(flooded["pid"])),
                         **({"flood": flood} if flood else {})}
                phases.append(phase)
                print(json.dumps(phase), file=log)
        quiet = statistics.mean(p["committed_tx_per_s"] for p in phases if p["phase"] == "quiet")
        flooded_rate = statistics.mean(p["committed_tx_per_s"] for p in phases if p["phase"] == "flood")
        result = {
            "flood": args.flood, "limits": args.limits, "target": args.target, "seconds": args.seconds,
            "cores": os.cpu_count(), "load_average": os.getloadavg()[0], "phases": phases,
            "quiet_tx_per_s": round(quiet, 1), "flood_tx_per_s": round(flooded_rate, 1),
            "share": round(flooded_rate / quiet, 3) if quiet else None,
            "flood_p99_ms": max((p["p99_ms"] or 0) for p in phases if p["phase"] == "flood"),
        }
        print(f"commits under the flood: {result['share']:.0%} of quiet ({result['flood_tx_per_s']} / "
              f"{result['quiet_tx_per_s']} tx/s), commit p99 under the flood {result['flood_p99_ms']} ms", file=log)
        print(json.dumps(result))
    finally:
        if load is not None:
            load.stop.set()
            time.sleep(0.5)
        if flooded is not None:
            stop_pid(flooded["pid"])
        launcher.down(directory)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
