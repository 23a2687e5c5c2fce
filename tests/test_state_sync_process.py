"""State sync on real processes: a devnet of 4 validators holding 500 identifiers, and nodes joining it.

A new observer state-syncs past a lying peer (a test-only proxy in front of a real validator that changes
a byte in every state chunk it passes on): it refuses those chunks, takes them from the others, and ends at
the head with their block hash and state root. A new validator joins by `ledger devnet add-node
--state-sync` and votes. An observer killed with -9 during its sync resumes and finishes. An observer with
full history, killed with -9 while it fetches the blocks below its snapshot, resumes, replays their state and
then answers block 1, an old transaction and a proof below its snapshot like a validator. One devnet.
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
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from devnet.processes import any_free_port, stop_pid
from ledger.client import LedgerClient, Signer
from ledger.codec import decode, encode
from ledger.config import write_config
from ledger.crypto import SigningKey
from ledger.resolver.registry import IdRegister, PrefixCreate, ValueSpec
from ledger.snapshot.offer import StateChunk
from tests.devnetutil import devnet_down, devnet_up, ledger, wait_until

WAIT_S = 120.0  # generous: the machine is shared
PREFIX = "88.300"
IDS = 500


def register(url: str, keys: dict[str, str], prefix: str, count: int) -> None:
    with LedgerClient(url) as client:
        org1_key = SigningKey.load(keys["org1"])
        Signer(SigningKey.load(keys["admin"]), client).send("prefix.create", PrefixCreate(prefix, org1_key.id))
        org1 = Signer(org1_key, client)
        for start in range(0, count, 500):
            txs = [org1.sign("id.register", IdRegister(f"{prefix}/S-{n}", (ValueSpec(1, "URL", f"https://x/{n}"),)))
                   for n in range(start, min(start + 500, count))]
            assert all(r.get("ok") for r in client.submit(txs, wait=True, timeout=120))


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data = devnet_up(tmp_path_factory.mktemp("statesync") / "devnet", 4)
    try:
        register(data["nodes"][0]["http"], data["keys"], PREFIX, IDS)
        yield data
    finally:
        devnet_down(data)


def get(url: str, path: str) -> Any:
    return httpx.get(url + path, timeout=10.0).json()


def at_head_with(node: str, validator: str) -> bool:
    """`node` holds `validator`'s head block, with the same hash and state root."""
    height = get(validator, "/v1/status")["height"]
    if get(node, "/v1/status")["height"] < height:
        return False
    mine, theirs = get(node, f"/v1/blocks/{height}"), get(validator, f"/v1/blocks/{height}")
    return bool(mine["hash"] == theirs["hash"] and mine["header"]["state_root"] == theirs["header"]["state_root"])


class LyingPeer(BaseHTTPRequestHandler):
    """Passes requests to a real validator; in each state chunk it answers, one byte of the last node changed."""

    upstream = ""
    corrupted = 0

    def do_GET(self) -> None:  # noqa: N802 - the http.server interface
        r = httpx.get(self.upstream + self.path, timeout=10.0)
        body = r.content
        if self.path.startswith("/v1/sync/state") and r.status_code == 200:
            nodes = list(decode(StateChunk, body).nodes)
            last = bytearray(nodes[-1])
            last[len(last) // 2] ^= 0x40
            nodes[-1] = bytes(last)
            body = encode(StateChunk(tuple(nodes)))
            type(self).corrupted += 1
        self.send_response(r.status_code)
        self.send_header("content-type", r.headers.get("content-type", "application/octet-stream"))
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def start_observer(devnet: dict[str, Any], home: Path, sources: list[str], chunk_bytes: int = 1 << 20
                   ) -> tuple[subprocess.Popen[bytes], str]:
    if not (home / "node.pem").exists():
        SigningKey.generate().save(home / "node.pem")
        write_config(home, {"genesis": os.path.relpath(devnet["genesis"], home), "http": {"port": any_free_port()},
                            "role": "observer", "verify_threads": 1,
                            "observer": {"validators": [n["http"] for n in devnet["nodes"][1:3]]},
                            "sync": {"mode": "state", "sources": sources, "chunk_bytes": chunk_bytes}})
    port = json.loads((home / "config.json").read_text())["http"]["port"]
    with open(home / "node.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "ledger.cli", "node", "run", "--home", str(home)],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, f"http://127.0.0.1:{port}"


def test_a_new_observer_state_syncs_past_a_lying_peer(devnet: dict[str, Any], tmp_path: Path) -> None:
    honest = [n["http"] for n in devnet["nodes"][1:3]]
    LyingPeer.upstream = devnet["nodes"][3]["http"]
    liar = ThreadingHTTPServer(("127.0.0.1", 0), LyingPeer)
    threading.Thread(target=liar.serve_forever, daemon=True).start()
    liar_url = f"http://127.0.0.1:{liar.server_port}"
    proc, url = start_observer(devnet, tmp_path / "observer", [liar_url, *honest])  # the liar is asked first
    try:
        wait_until(lambda: at_head_with(url, honest[0]), WAIT_S, "the observer to reach the head")
        report = get(url, "/v1/status")["state_sync"]
        assert LyingPeer.corrupted >= 1
        by_url = {s["url"]: s for s in report["sources"]}
        assert by_url[liar_url]["refused"] >= 1 and all(by_url[u]["refused"] == 0 for u in honest)
        metrics = httpx.get(url + "/metrics", timeout=10.0).text
        assert re.search(r'ledger_state_sync\{what="refused"\} [1-9]', metrics)
        assert "refused a state chunk" in (tmp_path / "observer" / "node.log").read_text()
        # Below the snapshot: a clear answer naming the oldest block held.
        base = get(url, "/v1/status")["oldest_height"]
        assert base == report["height"] > 1
        old = httpx.get(f"{url}/v1/blocks/1", timeout=10.0)
        assert old.status_code == 410 and old.json()["oldest"] == base
        assert f"from {base} on" in old.json()["message"]
        listed = httpx.get(f"{url}/v1/blocks?until=1", timeout=10.0)  # the explorer's list, at a time before it
        assert listed.status_code == 410 and listed.json()["oldest"] == base
        # Its answers carry proofs that verify with only the genesis file.
        proof = ledger("resolve", f"{PREFIX}/S-7", "--proof", "--node", url).stdout
        (tmp_path / "proof.json").write_text(proof)
        assert json.loads(ledger("verify", str(tmp_path / "proof.json"), "--genesis", devnet["genesis"]).stdout
                          )["valid"] is True
        # It follows the blocks after the snapshot like any observer.
        register(honest[0], devnet["keys"], "88.301", 3)
        wait_until(lambda: at_head_with(url, honest[0]), WAIT_S, "the observer to follow new blocks")
        assert get(url, "/api/handles/88.301/S-2")["responseCode"] == 1
    finally:
        stop_pid(proc.pid)
        liar.shutdown()


def test_a_validator_added_by_state_sync_votes(devnet: dict[str, Any]) -> None:
    entry = json.loads(ledger("devnet", "add-node", "--state-sync", "--dir", devnet["dir"], "--timeout", "120").stdout)
    url = entry["http"]
    status = get(url, "/v1/status")
    assert status["oldest_height"] > 1 and status["state_sync"]["refused"] == 0
    assert status["node_id"] in status["validators"] or entry["active_from"] > status["height"]
    # Blocks go on being certified with it in the set: a write through the new node commits everywhere.
    register(url, devnet["keys"], "88.302", 2)
    for node in devnet["nodes"]:
        wait_until(lambda n=node: at_head_with(url, n["http"]), WAIT_S, f"{node['http']} and the new node to agree")
    votes = get(url, "/v1/blocks/latest")["certificate"]["signatures"]
    assert len(votes) >= 3


class StallingPeer(BaseHTTPRequestHandler):
    """Passes requests to a real validator until it has passed `chunks` state chunks; then holds the next one
    until `release` is set (the test kills the syncing node meanwhile: a kill in the middle, every time)."""

    upstream = ""
    held_path = "/v1/sync/state"
    chunks = 20  # requests of `held_path` passed before one is held
    passed = 0
    release = threading.Event()

    def do_GET(self) -> None:  # noqa: N802 - the http.server interface
        cls = type(self)
        if self.path.startswith(cls.held_path):
            if cls.passed >= cls.chunks:
                cls.release.wait(WAIT_S)
                self.send_error(503)
                return
            cls.passed += 1
        r = httpx.get(self.upstream + self.path, timeout=10.0)
        self.send_response(r.status_code)
        self.send_header("content-type", r.headers.get("content-type", "application/octet-stream"))
        self.send_header("content-length", str(len(r.content)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(r.content)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_an_observer_killed_during_state_sync_resumes_and_finishes(devnet: dict[str, Any], tmp_path: Path) -> None:
    home = tmp_path / "observer"
    honest = [n["http"] for n in devnet["nodes"][:3]]
    StallingPeer.upstream = honest[0]
    stalling = ThreadingHTTPServer(("127.0.0.1", 0), StallingPeer)
    threading.Thread(target=stalling.serve_forever, daemon=True).start()
    proc, url = start_observer(devnet, home, [f"http://127.0.0.1:{stalling.server_port}"], chunk_bytes=1024)
    try:
        wait_until(lambda: StallingPeer.passed >= StallingPeer.chunks, WAIT_S, "the sync to be under way")
        time.sleep(0.5)  # the last chunk passed is written (it waits on the next one)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert (home / "data" / "ledger.db.state-sync").exists() and not (home / "data" / "ledger.db").exists()
        config = json.loads((home / "config.json").read_text())
        write_config(home, {**config, "sync": {**config["sync"], "sources": honest}})
        proc, url = start_observer(devnet, home, [])
        wait_until(lambda: at_head_with(url, honest[0]), WAIT_S, "the restarted observer to finish and reach the head")
        report = get(url, "/v1/status")["state_sync"]
        assert report["resumed"] is True
        assert get(url, f"/api/handles/{PREFIX}/S-{IDS - 1}")["responseCode"] == 1
    finally:
        stop_pid(proc.pid)
        StallingPeer.release.set()
        stalling.shutdown()


def test_a_pruning_observer_refuses_dropped_heights_and_answers_the_kept_ones(devnet: dict[str, Any],
                                                                              tmp_path: Path) -> None:
    """A node with `prune` (here an observer replaying the chain; the devnet does not anchor, so only the last
    heights are kept) prunes as it commits: an old height is refused naming the oldest kept, recent ones answer."""
    home, validator = tmp_path / "pruning", devnet["nodes"][1]["http"]
    for n in range(3):  # a few blocks beyond the ones that registered S-3, so its height can be dropped
        register(validator, devnet["keys"], f"88.31{n}", 1)
    SigningKey.generate().save(home / "node.pem")
    port = any_free_port()
    write_config(home, {"genesis": os.path.relpath(devnet["genesis"], home), "http": {"port": port},
                        "role": "observer", "verify_threads": 1, "observer": {"validators": [validator]},
                        "prune": {"keep_heights": 2, "every_blocks": 1}})
    url = f"http://127.0.0.1:{port}"
    with open(home / "node.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "ledger.cli", "node", "run", "--home", str(home)],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: at_head_with(url, validator), WAIT_S, "the pruning observer to reach the head")
        head = wait_until(lambda: (get(url, "/v1/status").get("state_kept") or {}).get("from") ==
                          get(url, "/v1/status")["height"] - 1 and get(url, "/v1/status")["height"], WAIT_S,
                          "a pruning round at the head")
        path = f"/v1/resolve/{PREFIX}/S-3"
        old = httpx.get(f"{url}{path}?height=2", timeout=10.0)
        assert old.status_code == 410, (old.text, get(url, "/v1/status"))
        assert old.json()["oldest"] == head - 1
        assert f"from {head - 1} on" in old.json()["message"]
        # Market and governance reads of a pruned height answer 410 too, not a failed read of deleted nodes.
        member = SigningKey.load(devnet["keys"]["org1"]).id
        for read in (f"/v1/credits/{member}?height=2", f"/v1/governance/proposals/{'00' * 32}?height=2"):
            answer = httpx.get(f"{url}{read}", timeout=10.0)
            assert answer.status_code == 410 and answer.json()["oldest"] == head - 1, (read, answer.text)
        recent = httpx.get(f"{url}{path}?height={head - 1}&proof=true", timeout=10.0)
        assert recent.status_code == 200
        assert recent.json() == httpx.get(f"{validator}{path}?height={head - 1}&proof=true", timeout=10.0).json()
        assert "pruned the state below height" in (home / "node.log").read_text()
    finally:
        stop_pid(proc.pid)


class StallingBlocks(StallingPeer):
    """A StallingPeer for block requests (the history fetch's: the observer follows its validators directly):
    holds the third."""

    held_path = "/v1/sync/blocks"
    chunks = 2
    passed = 0
    release = threading.Event()


def test_an_observer_with_full_history_killed_while_fetching_resumes_and_answers_old_heights(
        devnet: dict[str, Any], tmp_path: Path) -> None:
    validator = devnet["nodes"][1]["http"]
    for n in range(4):  # blocks enough below the snapshot for several batches of 2
        register(validator, devnet["keys"], f"88.32{n}", 1)
    StallingBlocks.upstream = validator
    stalling = ThreadingHTTPServer(("127.0.0.1", 0), StallingBlocks)
    threading.Thread(target=stalling.serve_forever, daemon=True).start()
    home = tmp_path / "archive"
    SigningKey.generate().save(home / "node.pem")
    write_config(home, {"genesis": os.path.relpath(devnet["genesis"], home), "http": {"port": any_free_port()},
                        "role": "observer", "verify_threads": 1, "observer": {"validators": [validator]},
                        "sync": {"mode": "state", "sources": [f"http://127.0.0.1:{stalling.server_port}"],
                                 "history": "full", "history_batch": 2}})
    proc, url = start_observer(devnet, home, [])
    try:
        wait_until(lambda: StallingBlocks.passed >= StallingBlocks.chunks, WAIT_S, "the history fetch to be under way")
        status = wait_until(lambda: (s := get(url, "/v1/status"))["oldest_block"] == s["oldest_height"] - 4 and s,
                            WAIT_S, "two batches to be written")
        base = status["oldest_height"]
        assert status["history"]["state"] == "fetching" and status["history"]["blocks_from"] == base - 4
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        config = json.loads((home / "config.json").read_text())
        write_config(home, {**config, "sync": {**config["sync"], "sources": [validator]}})
        proc, url = start_observer(devnet, home, [])
        history = wait_until(lambda: (h := get(url, "/v1/status")["history"])["state"] == "done" and h, WAIT_S,
                             "the restarted observer to hold every block and replay their state")
        assert history["started_from"] == base - 4 and history["fetched"] == base - 5  # nothing lost or fetched twice
        status = get(url, "/v1/status")
        assert (status["oldest_block"], status["oldest_height"], status["archive"]) == (0, 0, True)
        assert history["refused"] == 0 and history["replayed_to"] == base - 1
        for height in (0, 1, base - 1):
            assert get(url, f"/v1/blocks/{height}") == get(validator, f"/v1/blocks/{height}")
        old_tx = get(validator, "/v1/blocks/1")["txs"][0]["tx_id"]
        assert get(url, f"/v1/tx/{old_tx}") == get(validator, f"/v1/tx/{old_tx}")
        # The state of a height below the snapshot, with a proof, as a validator answers it.
        path = f"/v1/resolve/{PREFIX}/S-3?height={base - 1}&proof=true"
        assert get(url, path) == get(validator, path)
        assert re.search(r'ledger_history\{what="state_from"\} 0', httpx.get(url + "/metrics", timeout=10.0).text)
        assert "an archive node" in (home / "node.log").read_text()
    finally:
        stop_pid(proc.pid)
        StallingBlocks.release.set()
        stalling.shutdown()
