"""Resident memory of a node under the HTTP attacks of issue 13 (target: under 400 MB each), beside
the same node's memory at rest, measured in the same run.

One node (`ledger devnet up --nodes 1`), default HTTP limits except that 127.0.0.3 is exempt from
rate limits (so that what holds the cache and pipelining attackers is the cache's design and
backpressure, not the rate limit). Memory is sampled from /proc every 20 ms during each attack:
- a chunked `POST /v1/tx` of 200 MB, sent as fast as the node reads it (the answer must be 413);
- a client pipelining `GET`s of a 45 KB cached answer for 10 s and never reading;
- 1,000 connections sending a request's headers a byte every 100 ms (`header_timeout_s`, 10 s);
- 100,000 `GET`s of one Handle with distinct unknown parameters, then 10,000 of unknown Handles.
After each, a normal client's request must be answered.

    .venv/bin/python bench/attack_bench.py [--before-src DIR]

`--before-src DIR` runs the node from another tree (e.g. `git archive d7cc7fd | tar -x -C DIR`, the
code before these limits), to show what the attacks did to it.
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from benchnet import restart_with_limits

from devnet.processes import stop_pid
from ledger.benchmark import proc_memory_mb
from ledger.client import LedgerClient, Signer
from ledger.crypto import SigningKey
from ledger.resolver.registry import IdRegister, PrefixCreate, ValueSpec

BIG = "88.100.1/BIG"


def ledger(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "ledger.cli", *args], check=True, capture_output=True, timeout=300)


def peak_rss(pid: int, attack: Callable[[], Any]) -> tuple[float, Any]:
    peak = proc_memory_mb(pid)
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.wait(0.02):
            peak = max(peak, proc_memory_mb(pid))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        outcome = attack()
    finally:
        stop.set()
        sampler.join()
    return max(peak, proc_memory_mb(pid)), outcome


def request(path: str) -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: node\r\n\r\n" % path.encode()


def chunked_body(address: tuple[str, int]) -> str:
    chunk = b"%x\r\n%s\r\n" % (65536, b"[" * 65536)
    with socket.create_connection(address, timeout=60) as sock:
        sock.sendall(b"POST /v1/tx HTTP/1.1\r\nHost: node\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(200 * 16):
            sock.sendall(chunk)
        return sock.recv(4096).split(b"\r\n", 1)[0].decode()


def pipelining(address: tuple[str, int]) -> str:
    batch = request(f"/api/handles/{BIG}") * 1000
    sent = 0
    with socket.create_connection(address, source_address=("127.0.0.3", 0)) as sock:
        sock.setblocking(False)
        stop = time.monotonic() + 10
        while time.monotonic() < stop:
            try:
                sent += sock.send(batch[sent % len(batch):])
            except BlockingIOError:
                time.sleep(0.01)
    return f"sent {sent / 1e6:.1f} MB of requests ({sent // len(request(f'/api/handles/{BIG}'))} requests)"


def slow_headers(address: tuple[str, int]) -> str:
    selector = selectors.DefaultSelector()
    socks = []
    for _ in range(1000):
        sock = socket.create_connection(address)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        socks.append(sock)
    header = b"GET /v1/status HTTP/1.1\r\nHost: node\r\nX-Slow: " + b"a" * 1000
    open_ = set(socks)
    start = time.monotonic()
    offset = 0
    while open_ and time.monotonic() - start < 20:
        for sock in list(open_):
            try:
                sock.send(header[offset:offset + 1])
            except OSError:
                open_.discard(sock)
        offset += 1
        for key, _ in selector.select(timeout=0.1):
            try:
                data = key.fileobj.recv(4096)  # type: ignore[union-attr]
            except OSError:
                data = b""
            if not data or data.startswith(b"HTTP/1.1 503"):
                open_.discard(key.fileobj)
                selector.unregister(key.fileobj)
    for sock in socks:
        sock.close()
    return f"all closed by the node after {time.monotonic() - start:.1f} s" if not open_ else f"{len(open_)} still open"


def unknown_parameters(address: tuple[str, int]) -> str:
    statuses: dict[int, int] = {}
    with socket.create_connection(address, source_address=("127.0.0.3", 0), timeout=60) as sock:
        buffer = b""
        for start in range(0, 110_000, 250):
            paths = ([f"/api/handles/{BIG}?utm={n}&x{n}=1" for n in range(start, start + 250)] if start < 100_000
                     else [f"/api/handles/88.100.1/NOPE-{n}" for n in range(start, start + 250)])
            sock.sendall(b"".join(request(p) for p in paths))
            for _ in paths:  # read the answers, framed by content-length
                while b"\r\n\r\n" not in buffer:
                    buffer += sock.recv(1 << 20)
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
                while len(buffer) < length:
                    buffer += sock.recv(1 << 20)
                buffer = buffer[length:]
                status = int(head[9:12])
                statuses[status] = statuses.get(status, 0) + 1
    return f"answers by status: {statuses}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before-src", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="attack-bench-"))
    node: dict[str, Any] | None = None
    try:
        ledger("devnet", "up", "--nodes", "1", "--ethereum", "none", "--dir", str(work), "--detach")
        data = json.loads((work / "devnet.json").read_text())
        node = data["nodes"][0]
        if args.before_src:
            restart_with_limits(node, None, work / "logs", args.before_src)
        else:
            restart_with_limits(node, {"exempt": ["127.0.0.3"]}, work / "logs")
        url = node["http"]
        address = ("127.0.0.1", int(url.rsplit(":", 1)[1]))
        client = LedgerClient(url)
        org1 = SigningKey.load(data["keys"]["org1"])
        Signer(SigningKey.load(data["keys"]["admin"]), client).send("prefix.create", PrefixCreate("88.100.1", org1.id))
        values = tuple(ValueSpec(i + 1, "DESC", chr(97 + i) * 2000) for i in range(20))
        Signer(org1, client).send("id.register", IdRegister(BIG, values))
        httpx.get(f"{url}/api/handles/{BIG}")
        httpx.get(f"{url}/api/handles/{BIG}")
        rest = proc_memory_mb(node["pid"])
        print(f"node at rest: {rest:.0f} MB", file=sys.stderr)
        result: dict[str, Any] = {"rest_mb": round(rest)}
        for name, attack in (("chunked_200mb_body", chunked_body), ("pipelining_never_reading", pipelining),
                             ("slow_headers_1000", slow_headers), ("unknown_parameters_100k", unknown_parameters)):
            try:
                peak, outcome = peak_rss(node["pid"], lambda a=attack: a(address))  # type: ignore[misc]
            except OSError as exc:
                peak, outcome = proc_memory_mb(node["pid"]), f"failed: {exc}"
            try:
                answered = httpx.get(f"{url}/v1/status", timeout=10).status_code == 200
            except httpx.HTTPError:
                answered = False
            result[name] = {"peak_mb": round(peak), "outcome": outcome, "answers_after": answered}
            print(f"{name:<26} peak {peak:5.0f} MB  {outcome}; answers afterwards: {answered}", file=sys.stderr)
    finally:
        if node is not None:
            stop_pid(node["pid"])
        subprocess.run([sys.executable, "-m", "ledger.cli", "devnet", "down", "--dir", str(work)], capture_output=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
