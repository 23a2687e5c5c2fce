"""Handle answers per second from one observer, side by side with a validator of the same devnet.

Steps: `ledger devnet up --nodes 4 --observers 1 --ethereum none --detach`, register --ids identifiers
through a validator, wait until the observer holds them, restart the validator node0 and the observer
with the benchmark's client exempt from rate limits (`http.limits.exempt`, as an operator would for a
load balancer), then load each in turn with `wrk` (--connections, --duration seconds) over random
identifiers, rounds alternating (--rounds):

* `GET /api/handles/88.100.1/EQ-n` (answers cached between commits);
* `GET /api/handles/...?proof=true&auth=true` (a state proof built per request).

Beside them, the ceiling measured in the same run: nginx (one worker) serving the same answers as
static files. Also the CPU time per answer of the server process (from /proc), steadier than rates on a
machine shared with other work. The last line printed is one JSON object with all figures.

On one machine every process shares the same cores, so this shows the per-observer figure; observers
on hosts of their own add their capacity (README: Observers).

    .venv/bin/python bench/observer_bench.py [--ids 1000] [--duration 8] [--rounds 2] [--connections 64]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from benchnet import MODES, restart_with_limits
from resolve_bench import free_port, ledger, load, nginx_pids, register, start_nginx, write_static


def wait_caught_up(observer: str, validator: str, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    target = httpx.get(f"{validator}/v1/status", timeout=10).json()["height"]
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{observer}/v1/status", timeout=10).json()["height"] >= target:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the observer did not reach height {target} within {timeout:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ids", type=int, default=1000, help="identifiers registered and resolved")
    ap.add_argument("--duration", type=int, default=8, help="seconds of load per measurement")
    ap.add_argument("--rounds", type=int, default=2, help="rounds, the order of validator and observer alternating")
    ap.add_argument("--connections", type=int, default=64)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="observer-bench-"))
    work.chmod(0o755)  # nginx workers run as an unprivileged user: they must read the static files
    directory = work / "devnet"
    print(f"load average at start: {os.getloadavg()}", file=sys.stderr)
    ledger("devnet", "up", "--nodes", "4", "--observers", "1", "--ethereum", "none", "--dir", str(directory),
           "--detach", "--base-port", str(free_port()))
    data = json.loads((directory / "devnet.json").read_text())
    validator, observer = data["nodes"][0], data["observers"][0]
    nginx = None
    try:
        print(f"registering {args.ids} identifiers...", file=sys.stderr)
        handles = register(validator["http"], data["keys"], args.ids)
        wait_caught_up(observer["http"], validator["http"])
        for node in (validator, observer):
            restart_with_limits(node, MODES["exempt"], directory / "logs")
        wait_caught_up(observer["http"], validator["http"])
        root = work / "static"
        write_static(validator["http"], handles, root)
        nginx = start_nginx(root, work, 1)
        paths = [f"/api/handles/{h}" for h in handles]
        with httpx.Client(base_url=observer["http"], timeout=30) as http:  # warm its answer cache as the
            for p in paths:  # validator's was by write_static, so both start with every answer cached
                http.get(p).raise_for_status()
        proof_paths = [p + "?proof=true&auth=true" for p in random.sample(paths, min(200, len(paths)))]
        runs: dict[str, list[dict[str, Any]]] = {}
        for r in range(args.rounds):
            order = [("validator", validator), ("observer", observer)]
            for name, node in order if r % 2 == 0 else reversed(order):
                for kind, ps in (("cached", paths), ("proof", proof_paths)):
                    result = load(node["http"], ps, work, args.connections, args.duration, f"{name}-{kind}",
                                  [node["pid"]])
                    runs.setdefault(f"{name} {kind}", []).append(result)
                    print(f"round {r + 1}: {name} {kind}: {result}", file=sys.stderr)
            if nginx is not None:
                result = load(nginx[1], paths, work, args.connections, args.duration, "nginx", nginx_pids(nginx[0].pid))
                runs.setdefault("nginx static", []).append(result)
                print(f"round {r + 1}: nginx: {result}", file=sys.stderr)
        load_end = os.getloadavg()
    finally:
        if nginx is not None:
            nginx[0].terminate()
        ledger("devnet", "down", "--dir", str(directory))
    print(f"\nload average at end: {load_end}; {os.cpu_count()} cores\n")
    print(f"{'server, answers':<24} {'answers/s per round':<30} {'median':>9} {'CPU us/answer':>14} {'p99 ms':>8}")
    summary: dict[str, Any] = {}
    for name, results in runs.items():
        rates = [x["rate"] for x in results]
        cpu = [x["cpu_us_per_answer"] for x in results if "cpu_us_per_answer" in x]
        p99 = [x["p99_ms"] for x in results if x.get("p99_ms") is not None]
        summary[name] = {"rates": rates, "median_rate": statistics.median(rates),
                         "cpu_us_per_answer": round(statistics.median(cpu), 1) if cpu else None,
                         "p99_ms": round(statistics.median(p99), 1) if p99 else None,
                         "errors": sum(x["errors"] for x in results)}
        s = summary[name]
        print(f"{name:<24} {' / '.join(f'{x:,.0f}' for x in rates):<30} {s['median_rate']:>9,.0f} "
              f"{s['cpu_us_per_answer'] or 0:>14} {s['p99_ms'] or 0:>8}")
    for kind in ("cached", "proof"):
        v, o = summary[f"validator {kind}"], summary[f"observer {kind}"]
        summary[f"observer/validator {kind}"] = round(o["median_rate"] / v["median_rate"], 2)
    summary["load_average_end"] = load_end
    print(json.dumps(summary))
    if any(s.get("errors") for s in summary.values() if isinstance(s, dict)):
        raise SystemExit("some answers were errors")


if __name__ == "__main__":
    main()
