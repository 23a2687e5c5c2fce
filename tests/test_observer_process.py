"""Observer nodes on a real devnet: 4 validators and an observer, real processes on real sockets.

The observer serves reads and proofs that verify with only the genesis file, forwards writes, comes
back after kill -9 and catches up; an observer fed blocks with forged certificates by a lying
validator refuses them and takes the blocks from another. One devnet for the module.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from devnet import launcher
from devnet.processes import any_free_port, stop_pid
from ledger.chain import ValidatorSignature
from ledger.client import LedgerClient, Signer
from ledger.codec import decode, encode
from ledger.config import write_config
from ledger.crypto import SigningKey
from ledger.net.sync import BlockBatch
from ledger.resolver.registry import IdRegister, PrefixCreate, ValueSpec
from tests.devnetutil import devnet_down, devnet_up, ledger, wait_until

WAIT_S = 90.0  # generous: the machine is shared


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data = devnet_up(tmp_path_factory.mktemp("observer") / "devnet", 4, "--observers", "1")
    try:
        yield data
    finally:
        devnet_down(data)


def get(url: str, path: str) -> Any:
    return httpx.get(url + path, timeout=10.0).json()


def write(devnet: dict[str, Any], node: str, prefix: str, handles: list[str]) -> int:
    """Create `prefix` for org1 and register `handles` under it through `node`; the height of the last."""
    with LedgerClient(node) as client:
        admin = Signer(SigningKey.load(devnet["keys"]["admin"]), client)
        org1_key = SigningKey.load(devnet["keys"]["org1"])
        height = int(admin.send("prefix.create", PrefixCreate(prefix, org1_key.id))["height"])
        org1 = Signer(org1_key, client)
        for h in handles:
            height = int(org1.send("id.register", IdRegister(h, (ValueSpec(1, "URL", f"https://twin.example/{h}"),)))
                         ["height"])
    return height


def caught_up(observer: str, validator: str) -> bool:
    """The observer is ready and holds the validator's block at the validator's height."""
    target = get(validator, "/v1/status")["height"]
    if httpx.get(observer + "/readyz", timeout=10.0).status_code != 200:
        return False
    mine = get(observer, "/v1/status")
    return bool(mine["height"] >= target and get(observer, f"/v1/blocks/{target}")["hash"]
                == get(validator, f"/v1/blocks/{target}")["hash"])


def test_observer_serves_reads_with_proofs_and_forwards_writes(devnet: dict[str, Any], tmp_path: Path) -> None:
    observer = devnet["observers"][0]["http"]
    validator = devnet["nodes"][0]["http"]
    # Sent to the observer, committed by the validators (the observer holds no vote)...
    write(devnet, observer, "88.100.7", ["88.100.7/OBS-1"])
    assert get(validator, "/api/handles/88.100.7/OBS-1")["responseCode"] == 1
    # ...and answered by the observer from its own copy of the chain, at once: a write acknowledged as
    # committed through an observer is answered only once the observer holds its block.
    answer = get(observer, "/api/handles/88.100.7/OBS-1")
    assert answer["responseCode"] == 1
    assert answer["values"][0]["data"]["value"] == "https://twin.example/88.100.7/OBS-1"
    wait_until(lambda: caught_up(observer, validator), WAIT_S, "the observer to reach the validators' head")
    proof = ledger("resolve", "88.100.7/OBS-1", "--proof", "--node", observer).stdout
    (tmp_path / "proof.json").write_text(proof)
    verified = ledger("verify", str(tmp_path / "proof.json"), "--genesis", devnet["genesis"])
    assert json.loads(verified.stdout)["valid"] is True
    status = get(observer, "/v1/status")
    assert status["role"] == "observer" and status["view"] is None
    assert status["node_id"] not in status["validators"]  # never in a quorum
    assert httpx.get(observer + "/healthz", timeout=10.0).status_code == 200
    assert httpx.get(validator + "/readyz", timeout=10.0).json()["ready"] is True
    # The explorer's network page on the observer: each validator as answering its polls, no view of its own.
    def all_answering() -> dict[str, Any] | None:
        network: dict[str, Any] = get(observer, "/v1/network")
        return network if all(v["connected"] and v["height"] is not None for v in network["validators"]) else None

    network = wait_until(all_answering, WAIT_S, "the observer's network page to show every validator answering")
    assert network["role"] == "observer" and network["view"] is None and network["primary"] is None
    rows = launcher.status(Path(devnet["dir"]))  # what `ledger devnet status` shows
    assert [(r["node"], r["role"], r["health"]) for r in rows][-1] == ("obs0", "observer", "ok")


def test_observer_killed_with_sigkill_comes_back_and_catches_up(devnet: dict[str, Any]) -> None:
    entry = devnet["observers"][0]
    observer, validator = entry["http"], devnet["nodes"][1]["http"]
    pid = json.loads(Path(devnet["dir"], "devnet.json").read_text())["observers"][0]["pid"]
    os.kill(pid, signal.SIGKILL)
    write(devnet, validator, "88.100.8", [f"88.100.8/K-{i}" for i in range(3)])  # the chain moves on meanwhile
    launcher.up(Path(devnet["dir"]))  # what `ledger devnet up` does: restarts what is not running, the observer
    wait_until(lambda: caught_up(observer, validator), WAIT_S, "the restarted observer to catch up")
    assert get(observer, "/api/handles/88.100.8/K-2")["responseCode"] == 1


DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana-dashboard.json"


def test_every_metric_the_grafana_dashboard_plots_is_exported(devnet: dict[str, Any]) -> None:
    exprs = [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]]
    wanted = {re.sub(r"_(bucket|sum|count)$", "", m) for e in exprs for m in re.findall(r"\bledger_[a-z_]+", e)}
    exported: set[str] = set()
    for url in (devnet["nodes"][0]["http"], devnet["observers"][0]["http"]):
        text = httpx.get(url + "/metrics", timeout=10.0).text
        exported |= set(re.findall(r"^# TYPE (\S+)", text, re.M))
    assert "ledger_observer" in wanted and "ledger_consensus_total" in wanted
    assert wanted <= exported, f"plotted but not exported: {sorted(wanted - exported)}"


class LyingValidator(BaseHTTPRequestHandler):
    """Answers block requests with a real validator's blocks whose certificates carry a forged signature."""

    upstream = ""
    served = 0

    def do_GET(self) -> None:  # noqa: N802 - the http.server interface
        r = httpx.get(self.upstream + self.path, timeout=10.0)
        body = r.content
        if self.path.startswith("/v1/sync/blocks") and r.status_code == 200:
            batch = decode(BlockBatch, body)
            forged = []
            for entry in batch.blocks:
                sigs = entry.certificate.signatures
                bad = ValidatorSignature(sigs[0].validator, bytes(64))
                forged.append(replace(entry, certificate=replace(entry.certificate, signatures=(bad, *sigs[1:]))))
                type(self).served += 1
            body = encode(replace(batch, blocks=tuple(forged)))
        self.send_response(r.status_code)
        self.send_header("content-type", r.headers.get("content-type", "application/octet-stream"))
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the observer stopped meanwhile
            self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 - writes it passes on as they are
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        r = httpx.post(self.upstream + self.path, content=body, timeout=60.0,
                       headers={"content-type": self.headers.get("content-type", "application/json")})
        self.send_response(r.status_code)
        self.send_header("content-type", r.headers.get("content-type", "application/json"))
        self.send_header("content-length", str(len(r.content)))
        self.end_headers()
        self.wfile.write(r.content)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_observer_refuses_blocks_with_forged_certificates_and_asks_another_and_shows_writes_at_once(
        devnet: dict[str, Any], tmp_path: Path) -> None:
    honest = devnet["nodes"][2]["http"]
    LyingValidator.upstream = devnet["nodes"][3]["http"]
    liar = ThreadingHTTPServer(("127.0.0.1", 0), LyingValidator)
    threading.Thread(target=liar.serve_forever, daemon=True).start()
    home = tmp_path / "observer"
    SigningKey.generate().save(home / "node.pem")
    port = any_free_port()
    write_config(home, {"genesis": os.path.relpath(devnet["genesis"], home), "http": {"port": port},
                        "role": "observer", "verify_threads": 1,
                        # Polling seldom: only read-your-writes makes a write through it visible at once.
                        "observer": {"validators": [f"http://127.0.0.1:{liar.server_port}", honest],
                                     "poll_ms": 5000}})
    url = f"http://127.0.0.1:{port}"
    with open(tmp_path / "observer.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "ledger.cli", "node", "run", "--home", str(home)],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        write(devnet, honest, "88.100.6", [])
        wait_until(lambda: caught_up(url, honest), WAIT_S, "the observer to reach the head through the honest one")
        lying, other = get(url, "/v1/status")["observer"]["validators"]
        assert LyingValidator.served > 0  # it was asked first (as configured) and served forgeries...
        assert lying["bad_blocks"] >= 1 and other["bad_blocks"] == 0  # ...which were refused
        height = get(honest, "/v1/status")["height"]
        for h in range(1, height + 1):  # every block the observer holds carries the validators' certificate
            assert get(url, f"/v1/blocks/{h}")["certificate"] == get(honest, f"/v1/blocks/{h}")["certificate"]
        # A write through the observer, answered as committed, is read back from it at once.
        committed = write(devnet, url, "88.100.5", ["88.100.5/RYW-1"])
        assert get(url, "/v1/status")["height"] >= committed
        assert get(url, "/api/handles/88.100.5/RYW-1")["responseCode"] == 1
    finally:
        stop_pid(proc.pid)
        liar.shutdown()
