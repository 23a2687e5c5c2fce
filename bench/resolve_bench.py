"""Benchmark of the hot read path: Handle-API resolutions from one node against nginx serving the
same JSON answers as static files, on the same machine, in the same run.

Steps: start a one-node devnet (`ledger devnet up --nodes 1 --ethereum none --detach`), register N
identifiers, fetch each Handle answer once from the node and write it as a static file, start nginx on those files
(`worker_processes` = --nginx-workers, default 1: one process against the node's one process), then
load both with `wrk` at --connections (default 64) for --duration seconds over random identifiers:

* node: `GET /api/handles/88.100.1/EQ-n` (cached encoded answers);
* nginx: the same paths, static files;
* proofs: `GET /api/handles/...?proof=true&auth=true` (auth=true bypasses the cache, so every answer
  builds its state proof) and, for reference, `?proof=true` from the cache.

HTTP limits (`http.limits`, issue 13), measured side by side in the same run, rounds alternating
(`--modes`, `--rounds`): `exempt` (rate limits on, the benchmark's client allowed by configuration),
`off` (no rate limits), `budget` (rate limits on and the client charged per request, within a budget
it cannot spend), and with `--before-src` the code before them. nginx is measured in every round;
each ratio is against its own round's nginx. Beside the rates, the server's CPU time per answer
(from /proc, all its processes): on a machine shared with other work the rates swing with the
load, the CPU cost of an answer much less, so nginx's CPU per answer over the node's is the steadier
ratio.

Needs the Debian packages `nginx` and `wrk` (`apt-get install nginx wrk`); without nginx the nginx
figures are skipped with a message; without wrk a bounded asyncio/httpx client is used instead.
The last line printed is one JSON object with all figures.

    .venv/bin/python bench/resolve_bench.py [--ids 1000] [--duration 10] [--connections 64] [--modes exempt,off]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from benchnet import MODES, cpu_seconds, restart_with_limits

from devnet.processes import stop_pid
from ledger.client import LedgerClient, Signer
from ledger.crypto import SigningKey
from ledger.resolver.registry import IdRegister, PrefixCreate, ValueSpec

PREFIX = "88.100.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ledger(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "ledger.cli", *args], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise SystemExit(f"ledger {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def register(url: str, keys: dict[str, str], ids: int) -> list[str]:
    """The admin creates PREFIX for org1, which registers `ids` identifiers through `url`."""
    with LedgerClient(url) as client:
        org1_key = SigningKey.load(keys["org1"])
        Signer(SigningKey.load(keys["admin"]), client).send("prefix.create", PrefixCreate(PREFIX, org1_key.id))
        org1 = Signer(org1_key, client)
        handles = [f"{PREFIX}/EQ-{n:07d}" for n in range(ids)]
        for start in range(0, ids, 500):
            txs = [org1.sign("id.register", IdRegister(h, (ValueSpec(1, "URL", f"https://twin.example/{h}"),
                                                           ValueSpec(2, "EMAIL", "ops@example.com"))))
                   for h in handles[start:start + 500]]
            results = client.submit(txs, wait=True, timeout=120)
            assert all(r.get("ok") for r in results), results[:3]
    return handles


def setup_node(directory: Path, ids: int) -> tuple[dict[str, Any], list[str]]:
    ledger("devnet", "up", "--nodes", "1", "--ethereum", "none", "--dir", str(directory), "--detach",
           "--base-port", str(free_port()))
    data = json.loads((directory / "devnet.json").read_text())
    return data["nodes"][0], register(data["nodes"][0]["http"], data["keys"], ids)


def write_static(url: str, handles: list[str], root: Path) -> None:
    with httpx.Client(base_url=url) as http:
        for h in handles:
            r = http.get(f"/api/handles/{h}")
            r.raise_for_status()
            target = root / "api" / "handles" / h
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(r.content)


def start_nginx(root: Path, workdir: Path, workers: int) -> tuple[subprocess.Popen[bytes], str] | None:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        print("nginx not found (apt-get install nginx): skipping the nginx comparison", file=sys.stderr)
        return None
    port = free_port()
    conf = workdir / "nginx.conf"
    conf.write_text(f"""
worker_processes {workers};
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    default_type application/json;
    client_body_temp_path {workdir}/tmp-body;
    proxy_temp_path {workdir}/tmp-proxy;
    fastcgi_temp_path {workdir}/tmp-fastcgi;
    uwsgi_temp_path {workdir}/tmp-uwsgi;
    scgi_temp_path {workdir}/tmp-scgi;
    open_file_cache max=200000 inactive=60s;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ try_files $uri =404; }}
    }}
}}
""")
    proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(workdir)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return proc, f"http://127.0.0.1:{port}"
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    print("nginx did not start: skipping the nginx comparison", file=sys.stderr)
    return None


WRK_SCRIPT = """
local paths = {}
for line in io.lines("%s") do paths[#paths + 1] = line end
math.randomseed(os.time())
request = function()
  return wrk.format("GET", paths[math.random(#paths)], {["Accept"] = "application/json"})
end
"""


def _seconds(value: str, unit: str) -> float:
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def run_wrk(base: str, paths: list[str], workdir: Path, connections: int, duration: int, name: str) -> dict[str, Any]:
    path_file = workdir / f"{name}.paths"
    path_file.write_text("\n".join(paths) + "\n")
    script = workdir / f"{name}.lua"
    script.write_text(WRK_SCRIPT % path_file)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), base],
        capture_output=True, text=True, timeout=duration + 60,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s|m)\b", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {"rate": round(rate, 1), "p99_ms": round(_seconds(*p99.groups()) * 1000, 2) if p99 else None,
            "errors": int(non2xx.group(1)) if non2xx else 0}


async def _client_load(base: str, paths: list[str], connections: int, duration: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    stop = time.monotonic() + duration

    async def worker(http: httpx.AsyncClient) -> None:
        nonlocal errors
        while time.monotonic() < stop:
            t = time.perf_counter()
            r = await http.get(random.choice(paths))
            latencies.append(time.perf_counter() - t)
            errors += r.status_code >= 400

    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as http:
        await asyncio.gather(*(worker(http) for _ in range(connections)))
    latencies.sort()
    return {"rate": round(len(latencies) / duration, 1),
            "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2) if latencies else None, "errors": errors}


def load(base: str, paths: list[str], workdir: Path, connections: int, duration: int, name: str,
         server_pids: list[int] | None = None) -> dict[str, Any]:
    """Load `base` with `paths`; with `server_pids`, also the server's CPU time per answer (all its
    processes), which a machine shared with other work changes far less than the rate."""
    cpu0 = sum(cpu_seconds(p) for p in server_pids or [])
    if shutil.which("wrk"):
        result = run_wrk(base, paths, workdir, connections, duration, name)
    else:
        result = asyncio.run(_client_load(base, paths, connections, duration))
    if server_pids and result["rate"]:
        cpu = sum(cpu_seconds(p) for p in server_pids) - cpu0
        result["cpu_us_per_answer"] = round(cpu / (result["rate"] * duration) * 1e6, 1)
    return result


def nginx_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [master, *(int(c) for c in children)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ids", type=int, default=1000)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--nginx-workers", type=int, default=1)
    parser.add_argument("--modes", default="exempt,off", help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--proofs", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--before-src", type=Path, help="a tree of the code before HTTP limits (e.g. "
                        "`git archive d7cc7fd | tar -x -C DIR`): adds mode `before`, its node on the same data")
    args = parser.parse_args()
    modes = args.modes.split(",") + (["before"] if args.before_src else [])
    work = Path(tempfile.mkdtemp(prefix="resolve-bench-"))
    work.chmod(0o755)  # nginx workers run as an unprivileged user: they must read the static files
    devnet_dir = work / "devnet"
    tool = "wrk" if shutil.which("wrk") else "httpx"
    print(f"load generator: {tool}, {args.connections} connections, {args.duration}s per run, {os.cpu_count()} cores",
          file=sys.stderr)
    node_record: dict[str, Any] | None = None
    nginx = None
    try:
        node_record, handles = setup_node(devnet_dir, args.ids)
        url = node_record["http"]
        paths = [f"/api/handles/{h}" for h in handles]
        root = work / "static"
        write_static(url, handles, root)
        result: dict[str, Any] = {"ids": args.ids, "connections": args.connections, "duration_s": args.duration,
                                  "load_generator": tool, "nginx_workers": args.nginx_workers, "rounds": []}
        nginx = start_nginx(root, work, args.nginx_workers)
        if nginx is not None and httpx.get(nginx[1] + paths[0]).content != httpx.get(url + paths[0]).content:
            raise SystemExit("nginx does not serve the node's answer bytes: check its configuration")
        for round_ in range(args.rounds):
            entry: dict[str, Any] = {}
            if nginx is not None:
                ng = load(nginx[1], paths, work, args.connections, args.duration, "nginx", nginx_pids(nginx[0].pid))
                entry["nginx"] = ng
                print(f"round {round_}: nginx  {ng['rate']:>9.0f} answers/s  p99 {ng['p99_ms']} ms  "
                      f"{ng.get('cpu_us_per_answer')} CPU-us/answer", file=sys.stderr)
            for mode in (modes if round_ % 2 == 0 else modes[::-1]):  # alternate the order: no mode always last
                if mode == "before":
                    restart_with_limits(node_record, None, devnet_dir / "logs", args.before_src)
                else:
                    restart_with_limits(node_record, MODES[mode], devnet_dir / "logs")
                load(url, paths[:50], work, args.connections, 2, "warm")  # warm the node's answer cache
                load(url, paths, work, args.connections, 2, "warm")
                node = load(url, paths, work, args.connections, args.duration, "node", [node_record["pid"]])
                if "nginx" in entry:
                    node["ratio"] = round(node["rate"] / entry["nginx"]["rate"], 3)
                    if "cpu_us_per_answer" in node and "cpu_us_per_answer" in entry["nginx"]:
                        node["cpu_ratio"] = round(entry["nginx"]["cpu_us_per_answer"] / node["cpu_us_per_answer"], 3)
                entry[mode] = node
                print(f"round {round_}: {mode:<6} {node['rate']:>9.0f} answers/s  p99 {node['p99_ms']} ms  "
                      f"errors {node['errors']}  node/nginx {node.get('ratio')}  "
                      f"{node.get('cpu_us_per_answer')} CPU-us/answer (nginx/node {node.get('cpu_ratio')})",
                      file=sys.stderr)
            result["rounds"].append(entry)
        if args.proofs:
            restart_with_limits(node_record, MODES[modes[0]], devnet_dir / "logs")  # proofs: the first mode
            proofs = load(url, [p + "?proof=true&auth=true" for p in paths], work, args.connections, args.duration,
                          "proofs")
            print(f"proofs {proofs['rate']:>9.0f} answers/s  p99 {proofs['p99_ms']} ms (built per request, "
                  f"mode {modes[0]})", file=sys.stderr)
            result["proofs_uncached"] = proofs
            load(url, [p + "?proof=true" for p in paths[:200]], work, args.connections, 2, "proofs-warm")
            cached = load(url, [p + "?proof=true" for p in paths[:200]], work, args.connections, args.duration,
                          "proofs-cached")
            result["proofs_cached"] = cached
            print(f"proofs {cached['rate']:>9.0f} answers/s  p99 {cached['p99_ms']} ms (cached, 200 ids)",
                  file=sys.stderr)
    finally:
        if nginx is not None:
            nginx[0].terminate()
            nginx[0].wait(10)
        if node_record is not None:
            stop_pid(node_record["pid"])
        if (devnet_dir / "devnet.json").exists():
            subprocess.run([sys.executable, "-m", "ledger.cli", "devnet", "down", "--dir", str(devnet_dir)],
                           capture_output=True, timeout=60)
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
