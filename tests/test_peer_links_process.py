"""Peer links between real node processes on real sockets, attacked and faulted.

One 4-validator devnet for the module, with a man-in-the-middle TCP proxy on node0's link to
node1 (node0's config names the proxy as node1's address). The tests run in file order on it:
the proxy reads and then alters the traffic; plaintext and `openssl s_client` knock on a peer
port; 200 slow connections from another address sit on a validator's port while a validator is
killed and restarted; a validator is paused and resumed. The reconnection times are printed.
Keys at rest are checked on a node of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devnet import launcher
from devnet.definition import load_definition
from devnet.processes import any_free_port, is_alive, start_node, wait_healthy
from ledger.client import LedgerClient, Signer
from ledger.crypto import SigningKey
from ledger.keyfiles import ENV_PASSPHRASE
from ledger.resolver.registry import IdRegister, PrefixCreate, ValueSpec
from tests.devnetutil import devnet_down, devnet_up, wait_until
from tests.nodeutil import make_home

pytestmark = pytest.mark.slow

MARKER = "MITM-CANARY-7d1f"  # in every identifier and URL registered through the proxied link


class Proxy:
    """A TCP relay run on a thread of its own, recording what passes and, when told, meddling:
    in mode `flip` it flips a bit in every encrypted TLS record the dialer sends (record type 23:
    the dialer's last handshake messages and all its frames), and `silence_existing` stops
    forwarding on the connections it has without closing them."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = any_free_port()
        self.mode = "forward"
        self.seen = bytearray()  # both directions, the first 8 MiB
        self.flipped = 0
        self.connections = 0
        self._live: list[dict[str, Any]] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(5)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def silence_existing(self) -> None:
        for conn in list(self._live):
            conn["silent"] = True

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(asyncio.start_server(self._relay, "127.0.0.1", self.port))
        self._ready.set()
        self._loop.run_forever()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self.connections += 1
        conn = {"silent": False}
        self._live.append(conn)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, from_dialer: bool) -> None:
            with contextlib.suppress(ConnectionError, OSError, asyncio.IncompleteReadError):
                while True:  # one TLS record at a time: 5-byte header (type, version, length), body
                    header = await src.readexactly(5)
                    body = bytearray(await src.readexactly(int.from_bytes(header[3:5], "big")))
                    if conn["silent"]:
                        continue
                    if len(self.seen) < 8 << 20:
                        self.seen += header + body
                    if from_dialer and self.mode == "flip" and header[0] == 23 and body:
                        body[len(body) // 2] ^= 0x01
                        self.flipped += 1
                    dst.write(header + body)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))
        self._live.remove(conn)


def network(node: dict[str, Any]) -> dict[str, dict[str, Any]]:
    body = httpx.get(f"{node['http']}/v1/network", timeout=2).json()
    return {v["id"]: v for v in body["validators"]}


def counters(node: dict[str, Any], family: str) -> dict[str, float]:
    text = httpx.get(f"{node['http']}/metrics", timeout=2).text
    return {m[1]: float(m[2]) for m in re.finditer(rf'^{family}_total{{event="(\w+)"}} (\S+)$', text, re.M)} | {
        m[1]: float(m[2]) for m in re.finditer(rf'^{family}{{event="(\w+)"}} (\S+)$', text, re.M)}


def all_linked(nodes: list[dict[str, Any]]) -> bool:
    """Every live node sees every other with both directions of its links up."""
    try:
        return all(all(v["connected"] for v in network(n).values()) for n in nodes)
    except (httpx.HTTPError, ValueError):
        return False


def seconds_until(cond: Any, timeout: float, what: str) -> float:
    started = time.monotonic()
    wait_until(cond, timeout, what, interval=0.05)
    return time.monotonic() - started


class Devnet:
    def __init__(self, directory: Path) -> None:
        definition = load_definition().with_overrides(nodes=4, http_base_port=any_free_port())
        created = launcher.create(directory, definition)
        self.dir = directory
        node0, node1 = (Path(n["home"]) for n in created["nodes"][:2])
        node1_port = json.loads((node1 / "config.json").read_text())["p2p"]["port"]
        self.proxy = Proxy(node1_port)
        config = json.loads((node0 / "config.json").read_text())
        for peer in config["peers"]:
            if peer["port"] == node1_port:
                peer["port"] = self.proxy.port  # node0 reaches node1 only through the proxy
        (node0 / "config.json").write_text(json.dumps(config))
        self.proxy.start()
        self.data = devnet_up(directory, 4)
        self.nodes: list[dict[str, Any]] = self.data["nodes"]
        self.p2p = [json.loads((Path(n["home"]) / "config.json").read_text())["p2p"]["port"] for n in self.nodes]
        self.client = LedgerClient(self.nodes[0]["http"], timeout=10)
        self.org1 = Signer(SigningKey.load(self.data["keys"]["org1"]), self.client)
        admin = Signer(SigningKey.load(self.data["keys"]["admin"]), self.client)
        admin.send("prefix.create", PrefixCreate("88.100.1", self.org1.key.id))
        self.n = 0

    def register(self, count: int = 5) -> list[str]:
        """Registrations through node0 (the primary of view 0, whose blocks cross the proxy to node1)."""
        handles = [f"88.100.1/{MARKER}-{self.n + i}" for i in range(count)]
        self.n += count
        txs = [self.org1.sign("id.register", IdRegister(h, (ValueSpec(1, "URL", f"https://{MARKER}.example/{h}"),)))
               for h in handles]
        results = self.client.submit(txs, wait=True, timeout=20)
        assert all(r.get("ok") for r in results), results
        return handles

    def same_head_everywhere(self) -> None:
        def agree() -> bool:
            heads = {(s["height"], s["block_hash"]) for s in
                     (httpx.get(f"{n['http']}/v1/status", timeout=2).json() for n in self.nodes)}
            return len(heads) == 1
        wait_until(agree, 20, "every node on one head")

    def stop(self) -> None:
        for n in self.nodes:
            if is_alive(n.get("pid")):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(n["pid"], signal.SIGCONT)
        devnet_down(self.data)
        self.proxy.stop()


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    net = Devnet(tmp_path_factory.mktemp("links") / "devnet")
    try:
        wait_until(lambda: all_linked(net.nodes), 30, "all links up")
        yield net
    finally:
        net.stop()


def report(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with capsys.disabled():
        print(f"\n[peer links] {text}", file=sys.stderr)


def test_a_man_in_the_middle_sees_only_tls_and_what_it_alters_is_never_accepted(
    devnet: Devnet, capsys: pytest.CaptureFixture[str]
) -> None:
    node0, node1 = devnet.nodes[:2]
    assert httpx.get(f"{node0['http']}/v1/status").json()["primary"] == node0["id"]  # its blocks cross the proxy
    handles = devnet.register(20)
    wait_until(lambda: httpx.get(f"{node1['http']}/api/handles/{handles[-1]}").json()["responseCode"] == 1, 10,
               "node1 to commit the block node0 proposed")
    assert devnet.proxy.connections >= 1 and len(devnet.proxy.seen) > 20 * len(MARKER)
    seen = bytes(devnet.proxy.seen)
    assert MARKER.encode() not in seen and b"88.100.1" not in seen  # nothing of the ledger's in the clear
    assert seen[:3] == b"\x16\x03\x01"  # it begins with a TLS ClientHello

    before = counters(node1, "ledger_transport")
    replica_before = counters(node1, "ledger_consensus")
    devnet.proxy.mode = "flip"
    wait_until(lambda: counters(node1, "ledger_transport")["tls_failures"] > before["tls_failures"], 10,
               "an altered record to break node0's link to node1")
    devnet.register()  # node0, node2 and node3 keep committing meanwhile
    # the meddling goes on: every new connection breaks at its first altered record, in or after the handshake
    time.sleep(1.5)
    assert not network(node1)[node0["id"]]["incoming"] and not network(node0)[node1["id"]]["outgoing"]
    assert counters(node1, "ledger_transport")["handshake_failures"] > before["handshake_failures"]
    devnet.proxy.mode = "forward"
    back = seconds_until(lambda: network(node1)[node0["id"]]["incoming"] and network(node0)[node1["id"]]["outgoing"],
                         10, "node0's link to node1 back once the proxy stops meddling")
    report(capsys, f"after the proxy stopped altering bytes, node0 -> node1 was up again in {back:.2f} s")
    after = counters(node1, "ledger_transport")
    # an altered record fails TLS authentication: no altered frame ever reached the frame parser...
    assert after["malformed_frames"] == before["malformed_frames"]
    assert after["oversized_frames"] == before["oversized_frames"]
    # ...nor consensus (a forged or garbled consensus message would be dropped and counted there)
    replica_after = counters(node1, "ledger_consensus")
    for reason in ("dropped_malformed", "dropped_bad_signature", "dropped_sender_mismatch", "dropped_non_validator"):
        assert replica_after.get(reason, 0) == replica_before.get(reason, 0), reason
    assert back < 3.0
    handles += devnet.register()
    devnet.same_head_everywhere()
    for node in devnet.nodes:
        with httpx.Client(base_url=node["http"], timeout=5) as http:
            assert all(http.get(f"/api/handles/{h}").json()["responseCode"] == 1 for h in handles)


def test_a_link_that_dies_silently_comes_back(devnet: Devnet, capsys: pytest.CaptureFixture[str]) -> None:
    node0, node1 = devnet.nodes[:2]
    def dead() -> int:  # either end may notice first; the other then sees its link replaced
        return sum(counters(n, "ledger_transport")["links_dead"] for n in (node0, node1))

    lost_before = dead()
    devnet.proxy.silence_existing()  # the connection stays open; nothing crosses it any more
    back = seconds_until(lambda: dead() > lost_before
                         and network(node1)[node0["id"]]["incoming"] and network(node0)[node1["id"]]["outgoing"],
                         10, "the silent link noticed and replaced")
    report(capsys, f"a silently dead link (node0 -> node1) was noticed and up again in {back:.2f} s")
    assert back < 3.0
    devnet.register()


def test_plaintext_gets_nothing_and_openssl_sees_tls_13(devnet: Devnet, capsys: pytest.CaptureFixture[str]) -> None:
    port = devnet.p2p[1]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(64))
        received = b""
        with contextlib.suppress(TimeoutError, ConnectionError):
            while chunk := sock.recv(4096):
                received += chunk
    assert received == b"" or received[0] == 0x15  # nothing, or at most a TLS alert record
    openssl = shutil.which("openssl")
    if openssl is None:
        report(capsys, "SKIPPED the openssl s_client check: no `openssl` binary on this machine")
        pytest.skip("no openssl binary")
    out = subprocess.run([openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-alpn", "ledger-p2p/2"],
                         input="", capture_output=True, text=True, timeout=20).stdout
    assert re.search(r"New, TLSv1\.3, Cipher is TLS_", out), out
    assert "Peer signature type: ed25519" in out or "Peer signature type: Ed25519" in out
    assert f"subject=CN = {devnet.nodes[1]['id']}" in out


def test_slow_connections_from_one_address_do_not_keep_a_restarted_validator_out(
    devnet: Devnet, capsys: pytest.CaptureFixture[str]
) -> None:
    node2, node3 = devnet.nodes[2:]
    slow: list[socket.socket] = []
    try:
        for _ in range(200):  # from another address, each trickling the start of a ClientHello
            s = socket.socket()
            s.bind(("127.0.0.2", 0))
            s.connect(("127.0.0.1", devnet.p2p[2]))
            s.sendall(b"\x16\x03")
            slow.append(s)
        wait_until(lambda: counters(node2, "ledger_transport")["handshakes_evicted"] >= 190, 10,
                   "node2 pushing out the slow connections")
        os.kill(node3["pid"], signal.SIGKILL)
        wait_until(lambda: not is_alive(node3["pid"]), 10, "node3 to die")
        started = time.monotonic()
        proc = start_node(node3["home"], devnet.dir / "logs")
        node3["pid"] = proc.pid
        devnet.data["extra_pids"].append(proc.pid)
        wait_healthy(node3["http"], proc, devnet.dir / "logs" / "node3.log")
        healthy = time.monotonic() - started
        linked = seconds_until(lambda: all_linked(devnet.nodes), 10, "every link up after the restart")
        report(capsys, f"kill -9 + restart of node3 (200 slow connections on node2): serving HTTP after "
                       f"{healthy:.2f} s, every link up {linked:.2f} s later")
        assert linked < 3.0
    finally:
        for s in slow:
            s.close()
    devnet.register()


def test_a_paused_validator_is_linked_again_soon_after_it_resumes(
    devnet: Devnet, capsys: pytest.CaptureFixture[str]
) -> None:
    node3 = devnet.nodes[3]
    os.kill(node3["pid"], signal.SIGSTOP)
    try:
        wait_until(lambda: not network(devnet.nodes[0])[node3["id"]]["connected"], 10, "node3's links declared dead")
        devnet.register()  # the other three commit without it
    finally:
        os.kill(node3["pid"], signal.SIGCONT)
    linked = seconds_until(lambda: all_linked(devnet.nodes), 10, "every link up after SIGCONT")
    report(capsys, f"SIGSTOP then SIGCONT of node3: every link up {linked:.2f} s after it resumed")
    assert linked < 3.0
    devnet.register()
    devnet.same_head_everywhere()


# --- keys at rest ----------------------------------------------------------------------------------


def node_run(home: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "ledger.cli", "node", "run", "--home", str(home)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_an_encrypted_node_key_starts_with_its_passphrase_and_not_without(tmp_path: Path) -> None:
    port = any_free_port()
    home = make_home(tmp_path, port=port)
    home.validator.save(home.path / "node.pem", b"factory floor 7")
    env = {k: v for k, v in os.environ.items() if k != ENV_PASSPHRASE}
    refused = node_run(home.path, env)
    output, _ = refused.communicate(timeout=60)
    assert refused.returncode == 2
    assert f"is encrypted: set its passphrase in the environment variable {ENV_PASSPHRASE}" in output
    wrong = node_run(home.path, {**env, ENV_PASSPHRASE: "factory floor 8"})
    output, _ = wrong.communicate(timeout=60)
    assert wrong.returncode == 2 and "wrong passphrase" in output
    node = node_run(home.path, {**env, ENV_PASSPHRASE: "factory floor 7"})
    try:
        wait_until(lambda: httpx.get(f"http://127.0.0.1:{port}/v1/status", timeout=1).json()["node_id"]
                   == home.validator.id, 60, "the node with its decrypted key")
    finally:
        node.terminate()
        node.communicate(timeout=30)


def test_a_node_key_others_can_read_stops_the_node_saying_how_to_fix_it(tmp_path: Path) -> None:
    home = make_home(tmp_path, port=any_free_port())
    key = home.path / "node.pem"
    key.chmod(0o644)
    proc = node_run(home.path, dict(os.environ))
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2 and f"Restrict it with `chmod 600 {key}`" in output
    assert not (home.path / "data").exists()  # refused before anything was opened
