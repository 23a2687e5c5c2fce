"""The Handle hot path of a real node process, spoken to over raw sockets: cache hits answered by the
connection itself must be the same HTTP as the routed answers, keep order when pipelined, honour
keep-alive and HTTP/1.0, and never be older than an acknowledged commit."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from ledger.client import LedgerClient, Signer
from ledger.crypto import SigningKey
from ledger.resolver.registry import IdRegister, IdValueSet, PrefixCreate, ValueSpec
from tests.devnetutil import devnet_down, devnet_up

pytestmark = pytest.mark.slow

HANDLE = "88.100.1/EQ-FAST"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data = devnet_up(Path(tmp_path_factory.mktemp("fastpath")) / "devnet", 1)
    client = LedgerClient(data["nodes"][0]["http"])
    org1 = SigningKey.load(data["keys"]["org1"])
    Signer(SigningKey.load(data["keys"]["admin"]), client).send("prefix.create", PrefixCreate("88.100.1", org1.id))
    signer = Signer(org1, client)
    signer.send("id.register", IdRegister(HANDLE, (ValueSpec(1, "URL", "https://twin.example/0"),)))
    data["signer"] = signer
    yield data
    devnet_down(data)


def _address(data: dict[str, Any]) -> tuple[str, int]:
    parts = urlsplit(data["nodes"][0]["http"])
    return parts.hostname or "127.0.0.1", parts.port or 80


class Answer:
    def __init__(self, head: bytes, body: bytes) -> None:
        status_line, *lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
        self.body = body


def _exchange(address: tuple[str, int], raw: bytes, answers: int) -> tuple[list[Answer], bool]:
    """Send `raw` (one or more requests) on one connection; read `answers` responses (content-length
    framed), and whether the server then closed the connection."""
    buffer = b""
    out: list[Answer] = []
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(raw)

        def need(predicate: Any) -> None:
            nonlocal buffer
            while not predicate(buffer):
                chunk = sock.recv(65536)
                if not chunk:
                    raise AssertionError(f"connection closed after {len(out)} of {answers} answers")
                buffer += chunk

        while len(out) < answers:
            need(lambda b: b"\r\n\r\n" in b)
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            length = Answer(head, b"").headers["content-length"]
            need(lambda b, n=int(length): len(b) >= n)
            out.append(Answer(head, buffer[:int(length)]))
            buffer = buffer[int(length):]
        sock.settimeout(0.5)  # what is left only tells whether the server closes the connection
        try:
            closed = buffer == b"" and sock.recv(1) == b""
        except TimeoutError:
            closed = False
    return out, closed


def _get(path: str, close: bool = False, version: bytes = b"1.1") -> bytes:
    extra = b"Connection: close\r\n" if close else b""
    return b"GET %s HTTP/%s\r\nHost: node\r\n%s\r\n" % (path.encode(), version, extra)


def test_hits_are_the_routed_answer_and_keep_pipelined_order(node: dict[str, Any]) -> None:
    address = _address(node)
    path = f"/api/handles/{HANDLE}?x=1"
    missing = "/api/handles/88.100.1/NOPE"
    routed, _ = _exchange(address, _get(path) + _get(missing), 2)  # misses: routed, and now cached
    # Hits, a routed request between them, and hits queued behind it: answered in request order.
    raw = _get(path) + _get(missing) + _get("/healthz") + _get(path) + _get(missing) + _get(path)
    responses, closed = _exchange(address, raw, 6)
    assert [r.status for r in responses] == [200, 404, 200, 200, 404, 200]
    assert not closed  # keep-alive
    bodies = [r.body for r in responses]
    assert bodies[0] == bodies[3] == bodies[5] == routed[0].body and b"https://twin.example/" in bodies[0]
    assert bodies[1] == bodies[4] == routed[1].body and b'"responseCode":100' in bodies[1]
    assert b'"height"' in bodies[2]  # /healthz, answered in its place in the pipeline
    for answer in responses:
        assert "date" in answer.headers and answer.headers["content-type"] == "application/json"
    # "Connection: close" on a hit: answered, then the connection is closed.
    responses, closed = _exchange(address, _get(path) + _get(path, close=True), 2)
    assert [r.body for r in responses] == [routed[0].body] * 2 and closed


def test_http_1_0_hit_closes_the_connection(node: dict[str, Any]) -> None:
    address = _address(node)
    path = f"/api/handles/{HANDLE}?v=10"
    httpx.get(node["nodes"][0]["http"] + path)  # fill the cache
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(_get(path, version=b"1.0"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk  # recv returns b"" only once the server closed
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"connection: close" in head.lower()
    assert b"https://twin.example/" in body


def test_a_hit_is_never_older_than_an_acknowledged_commit(node: dict[str, Any]) -> None:
    signer: Signer = node["signer"]
    url = node["nodes"][0]["http"]
    with httpx.Client(base_url=url) as http:
        for n in range(1, 8):
            for _ in range(3):  # the answer is cached now: later reads are hits
                http.get(f"/api/handles/{HANDLE}")
            signer.send("id.value_set", IdValueSet(HANDLE, ValueSpec(1, "URL", f"https://twin.example/{n}")))
            # The send returned after the commit was acknowledged: the very next read sees it.
            value = http.get(f"/api/handles/{HANDLE}").json()["values"][0]["data"]["value"]
            assert value == f"https://twin.example/{n}"
