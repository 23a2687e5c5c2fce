"""Wide-area links on one host: the delaying relays (devnet.faultproxy with `delay_ms`), the chart that
`ledger bench --plot` draws, and `ledger bench --link-delay-ms` on a real 4-validator devnet."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from devnet.launcher import _delay_links
from devnet.processes import any_free_port, is_alive
from devnet.record import DevnetError
from ledger.benchmark import committed_count, latency_series, rate_series
from ledger.chart import PALETTE, Panel, draw, nice_ticks
from ledger.client import LedgerClient, Signer
from ledger.crypto import SigningKey
from ledger.resolver.registry import PrefixCreate
from tests.devnetutil import devnet_down, devnet_up, ledger


@given(st.floats(0, 1e9, allow_nan=False))
def test_ticks_cover_the_data_in_round_steps(high: float) -> None:
    ticks = nice_ticks(high)
    assert ticks[0] == 0 and ticks[-1] >= high and len(ticks) <= 12, ticks
    step = ticks[1] - ticks[0]
    assert all(abs((b - a) - step) <= 1e-9 * max(1.0, b) for a, b in zip(ticks, ticks[1:], strict=False)), ticks
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert any(abs(mantissa - m) < 1e-6 for m in (1, 2, 5)), step


def test_rates_and_latencies_come_from_samples_and_requests() -> None:
    metrics = "# HELP x\nledger_tx_committed_total 90.0\nledger_tx_failed_total 10.0\nledger_tx_admitted_total 7.0\n"
    assert committed_count(metrics) == 100
    assert rate_series([(10.0, 0), (10.5, 100), (11.5, 400)], origin=10.0) == [(0.5, 200.0), (1.5, 300.0)]
    done = [(10.2, 0.1), (10.7, 0.3), (10.9, 0.2), (12.1, 1.0)]
    assert latency_series(done, origin=10.0) == [(0.5, 200.0), (2.5, 1000.0)]


def test_the_chart_draws_one_coloured_line_per_node(tmp_path: Path) -> None:
    path = tmp_path / "run.png"
    series = {f"node{i}": [(t, 100.0 * (i + 1) + t) for t in range(10)] for i in range(4)}
    draw(path, [Panel("tx/s", series), Panel("latency, ms", {"node0": [(1, 5.0)]})], "seconds", "a run")
    with Image.open(path) as png:
        assert png.format == "PNG" and png.size == (1000, 2 * 330 + 40), (png.format, png.size)
        image = png.convert("RGB")
    colours = {c for _, c in image.getcolors(1 << 20) or []}
    for hex_colour in PALETTE[:4]:
        rgb = tuple(int(hex_colour[k:k + 2], 16) for k in (1, 3, 5))
        assert rgb in colours, hex_colour


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        with server:
            conn, _ = server.accept()
            with conn:
                while data := conn.recv(65536):
                    conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    yield port


def _relay(port: int, delay_ms: float) -> tuple[subprocess.Popen[str], int]:
    proxy = subprocess.Popen([sys.executable, "-m", "devnet.faultproxy"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, bufsize=1)
    assert proxy.stdin is not None and proxy.stdout is not None
    proxy.stdin.write(json.dumps({"routes": [[0, 1, port]], "delay_ms": delay_ms}) + "\n")
    proxy.stdin.flush()
    return proxy, json.loads(proxy.stdout.readline())["ports"][0]


def test_a_delayed_relay_adds_the_delay_each_way_and_keeps_the_bytes_in_order(echo_port: int) -> None:
    proxy, port = _relay(echo_port, delay_ms=100)
    try:
        with socket.create_connection(("127.0.0.1", port)) as s:
            started = time.monotonic()
            s.sendall(b"ping")
            assert s.recv(4) == b"ping"
            round_trip = time.monotonic() - started
            # Many small writes in a row: delivered whole and in order, the delay paid once, not per write.
            sent = b"".join(b"%06d" % n for n in range(5000))
            for k in range(0, len(sent), 60):
                s.sendall(sent[k:k + 60])
            got = b""
            while len(got) < len(sent):
                got += s.recv(65536)
        # 100 ms there (relay -> echo) and 100 ms back; asyncio runs a timer up to its clock's resolution early.
        assert round_trip >= 0.2 - 2 * 0.001, round_trip
        assert got == sent
    finally:
        proxy.kill()
        proxy.wait()


@pytest.mark.slow
def test_bench_open_loop_over_delayed_links_commits_everything_slower_than_the_delays_and_draws_the_run(
    tmp_path: Path,
) -> None:
    png = tmp_path / "bench.png"
    # An open loop: 6 requests of 50, one every 1/12 s, several in flight over 100 ms links.
    done = ledger("bench", "--nodes", "4", "--txs", "300", "--clients", "2", "--batch", "50", "--rate", "600",
                  "--link-delay-ms", "100", "--eager-inflight", "2", "--open-tables", "300", "--table-mb", "4",
                  "--plot", str(png),
                  "--base-port", str(any_free_port()))
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["committed"] == 300 and result["failed"] == 0, result
    assert result["load"] == "open loop" and result["offered_tx_per_s"] == 600 and result["requests"] == 6, result
    assert result["schedule_s"] == 0.5 and set(result["send_lag"]) == {"p50_ms", "p99_ms", "max_ms", "late"}
    assert result["node0_blocks"]["blocks"] > 0 and result["links"] == "relays", result
    assert (result["link_delay_ms"], result["eager_inflight"], result["open_tables"], result["table_mb"]) == (
        100, 2, 300, 4)  # as the nodes' config.json said
    # A commit takes at least three one-way trips (pre-prepare, prepare, commit), each delayed 100 ms.
    assert result["p50_ms"] >= 300, result
    image = Image.open(png)
    assert image.size[0] == 1000 and image.size[1] > 600


def _commit_seconds(data: dict[str, Any], name: str) -> float:
    """Seconds from submitting one prefix creation to the view-0 primary until it answered committed."""
    with LedgerClient(data["nodes"][0]["http"]) as client:
        admin = Signer(SigningKey.load(data["keys"]["admin"]), client)
        started = time.monotonic()
        result = admin.send("prefix.create", PrefixCreate(name, admin.key.id))
        elapsed = time.monotonic() - started
    assert result["status"] == "committed" and result["ok"], result
    return elapsed


def test_devnet_up_delays_the_peer_links_and_keeps_its_relays_across_down_and_up(tmp_path: Path) -> None:
    directory = tmp_path / "devnet"
    data = devnet_up(directory, 4, "--link-delay-ms", "100")
    try:
        spec = json.loads((directory / "links.json").read_text())
        assert data["links"]["delay_ms"] == 100 and is_alive(data["links"]["pid"])
        # Every validator dials every peer at a relay, never at the peer itself.
        for node in data["nodes"]:
            config = json.loads((Path(node["home"]) / "config.json").read_text())
            assert {p["port"] for p in config["peers"]} <= set(spec["listen"]), config["peers"]
            assert len(config["peers"]) == 3
        # A commit takes at least three one-way trips (pre-prepare, prepare, commit), each 100 ms late.
        assert _commit_seconds(data, "88.901") >= 0.3

        relays = data["links"]["pid"]
        ledger("devnet", "down", "--dir", str(directory))
        assert not is_alive(relays), "devnet down left the relays running"
        # Up again, with another delay: the same relay ports (the configs still name them), a new process.
        data = devnet_up(directory, 4, "--link-delay-ms", "0")
        assert data["links"]["delay_ms"] == 0 and is_alive(data["links"]["pid"])
        assert json.loads((directory / "links.json").read_text())["listen"] == spec["listen"]
        _commit_seconds(data, "88.902")
    finally:
        devnet_down(data)


def test_a_devnet_running_with_direct_links_is_not_rewired_under_its_nodes(tmp_path: Path) -> None:
    data = {"nodes": [{"pid": os.getpid(), "home": str(tmp_path), "http": "http://127.0.0.1:1"}]}
    with pytest.raises(DevnetError, match="devnet down"):
        _delay_links(tmp_path, data, 50.0, tmp_path / "logs")
    assert "links" not in data
    _delay_links(tmp_path, data, 0.0, tmp_path / "logs")  # no delay asked: nothing to wire, nothing refused
