"""A real node process for attack tests: its own home and HTTP limits, a Handle with a large answer,
and what the attacks measure (resident memory from /proc, source addresses of distinct clients)."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from devnet.processes import any_free_port, start_node, stop_pid, wait_healthy
from ledger.client import LedgerClient, Signer
from ledger.config import write_config
from ledger.resolver.registry import IdRegister, ValueSpec
from tests.nodeutil import make_home

PREFIX = "88.100.1"
BIG = f"{PREFIX}/BIG"  # 20 values of 2,000 characters: an answer of about 45 KB
SMALL = f"{PREFIX}/SMALL"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


@dataclass
class RssWatch:
    """The highest resident memory of a process, sampled every 20 ms while the block runs."""

    pid: int
    peak: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> RssWatch:
        self.start = rss_mb(self.pid)
        self.peak = self.start
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mb(self.pid))

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb(self.pid))


@dataclass
class AttackedNode:
    url: str
    address: tuple[str, int]
    pid: int
    home: Path

    def connect(self, source: str, timeout: float = 10.0) -> socket.socket:
        return socket.create_connection(self.address, timeout=timeout, source_address=(source, 0))

    def client(self, source: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, transport=httpx.HTTPTransport(local_address=source), timeout=10)

    def metric(self, name: str, label: str) -> float:
        """One sample of the node's /metrics (asked from a client of its own)."""
        with self.client("127.0.0.9") as http:
            text = http.get("/metrics").text
        for line in text.splitlines():
            if line.startswith(name + "{") and f'"{label}"' in line:
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def answers_normally(self) -> bool:
        with self.client("127.0.0.2") as http:
            r = http.get(f"/api/handles/{SMALL}")
            return r.status_code == 200 and r.json()["responseCode"] == 1


def start_attacked_node(tmp: Path, limits: dict[str, Any]) -> AttackedNode:
    home = make_home(tmp, prefixes=((PREFIX, "org1"),))
    port = any_free_port()
    config = json.loads((home.path / "config.json").read_text())
    config["http"] = {"host": "127.0.0.1", "port": port, "limits": limits}
    write_config(home.path, config)
    proc = start_node(home.path, tmp / "logs")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, tmp / "logs" / "node0.log")
        signer = Signer(home.org1, LedgerClient(url))
        big = tuple(ValueSpec(i + 1, "DESC", chr(ord("a") + i) * 2000) for i in range(20))
        signer.send("id.register", IdRegister(BIG, big))
        signer.send("id.register", IdRegister(SMALL, (ValueSpec(1, "URL", "https://twin.example/small"),)))
    except BaseException:
        stop_pid(proc.pid)
        raise
    return AttackedNode(url, ("127.0.0.1", port), proc.pid, home.path)


def get(path: str, close: bool = False) -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: node\r\n%s\r\n" % (path.encode(), b"Connection: close\r\n" if close else b"")


class Reader:
    """Whole responses (content-length framed) from a socket, in order, keeping what follows each."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _need(self, size: int) -> None:
        while len(self.buffer) < size:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError(f"closed after {self.buffer[:200]!r}")
            self.buffer += chunk

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            self._need(len(self.buffer) + 1)
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
        length = int(headers.get("content-length", "0"))
        self.buffer = rest
        self._need(length)
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(status_line.split()[1]), headers, body


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """The one response `sock` is sent (nothing may follow it)."""
    return Reader(sock).answer()


def wait_for(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
