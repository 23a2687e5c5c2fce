"""Anchoring on a real 4-node devnet with a real Anvil (`ledger devnet up --ethereum anvil`)."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devnet import launcher
from devnet.ethereum import ANVIL, start_anvil
from devnet.processes import is_alive
from devnet.record import load_devnet, save_devnet
from ledger.client import LedgerClient, Signer
from ledger.crypto import SigningKey
from ledger.resolver.registry import IdRegister, PrefixCreate, ValueSpec
from tests.devnetutil import wait_until

pytestmark = pytest.mark.skipif(
    not os.access(ANVIL, os.X_OK), reason="Anvil binary absent: run `make install`"
)


def _base_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1]) % 20_000 + 20_000


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    directory = tmp_path_factory.mktemp("anchor-devnet")
    try:
        data = launcher.up(directory, 4, base_port=_base_port(), ethereum="anvil")
        yield directory, data
    finally:
        launcher.down(directory)
        data = load_devnet(directory)
        assert not is_alive(data["ethereum"]["anvil_pid"])


def _anchoring(url: str) -> dict[str, Any]:
    result: dict[str, Any] = httpx.get(f"{url}/v1/status", timeout=5).json()["anchoring"]
    return result


def _contract(data: dict[str, Any]) -> Any:
    from ledger.anchor import contract as ac

    w3 = ac.connect(data["ethereum"]["rpc"])
    return w3, ac.anchor_contract(w3, data["ethereum"]["anchor_contract"])


def _load(url: str, signer: Signer, start: int, count: int) -> None:
    client = signer.client
    for n in range(start, start + count):
        client.submit([signer.sign("id.register", IdRegister(f"88.300/e{n}", (ValueSpec(1, "URL", "u"),)))],
                      wait=True)


def test_devnet_anchors_survives_anvil_restart(net: tuple[Path, dict[str, Any]]) -> None:
    directory, data = net
    eth = data["ethereum"]
    assert eth["rpc"] and eth["chain_id"] == 31337 and eth["anchor_contract"] and eth["anvil_pid"]
    urls = [n["http"] for n in data["nodes"]]
    client = LedgerClient(urls[0])
    admin = Signer(SigningKey.load(data["keys"]["admin"]), client)
    org1 = SigningKey.load(data["keys"]["org1"])
    admin.send("prefix.create", PrefixCreate("88.300", org1.id))
    signer = Signer(org1, client)
    _load(urls[0], signer, 0, 12)

    # Within the devnet's interval (10 blocks / 5 s) every node reports an anchored height.
    first = wait_until(lambda: all(_anchoring(u)["last_anchored_height"] for u in urls) and _anchoring(urls[0]),
                       40, "a recorded anchor on every node")
    h = first["last_anchored_height"]
    w3, contract = _contract(data)
    block_hash = httpx.get(f"{urls[0]}/v1/blocks/{h}").json()["hash"]
    assert contract.functions.rootAt(h).call().hex() == block_hash
    record = httpx.get(f"{urls[2]}/v1/anchors/{h}").json()
    assert record["block_hash"] == block_hash and record["contract"] == eth["anchor_contract"]
    receipt = w3.eth.get_transaction_receipt(record["tx_hash"])
    assert receipt["blockNumber"] == record["eth_block"]
    print(f"anchor gas used: {receipt['gasUsed']}")

    # Anvil dies (state dumped every second); the ledger goes on; anchoring reports the error.
    time.sleep(1.5)
    os.kill(eth["anvil_pid"], signal.SIGKILL)
    _load(urls[0], signer, 100, 12)
    wait_until(lambda: any(_anchoring(u)["last_error"] for u in urls), 30, "an anchoring error while Anvil is down")
    target = httpx.get(f"{urls[0]}/v1/status").json()["height"]

    # Anvil comes back on the same port with its state: anchoring resumes past the outage.
    port = int(str(eth["rpc"]).rsplit(":", 1)[1])
    pid, rpc = start_anvil(directory, port)
    saved = load_devnet(directory)
    saved["ethereum"]["anvil_pid"] = pid
    save_devnet(directory, saved)
    assert rpc == eth["rpc"]
    wait_until(lambda: _anchoring(urls[0])["last_anchored_height"] >= target, 45, "anchoring after the restart")
    w3, contract = _contract(data)
    assert contract.functions.latest().call()[0] >= target

    # No double anchors: each Anchored event names a new, higher height whose root is the ledger's block.
    logs = contract.events.Anchored.get_logs(from_block=0)
    heights = [int(e["args"]["height"]) for e in logs]
    assert heights == sorted(set(heights)) and len(heights) >= 2
    later = w3.eth.get_transaction_receipt(logs[-1]["transactionHash"])["gasUsed"]
    print(f"gas of a later anchor: {later}")
    assert later <= 55_000
    for e in logs:
        hh = int(e["args"]["height"])
        assert bytes(e["args"]["root"]).hex() == httpx.get(f"{urls[1]}/v1/blocks/{hh}").json()["hash"]


def test_proof_reaches_the_chain(net: tuple[Path, dict[str, Any]], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from ledger.cli import main as ledger_main

    directory, data = net
    url = data["nodes"][1]["http"]
    client = LedgerClient(url)
    org1 = SigningKey.load(data["keys"]["org1"])
    try:
        admin = Signer(SigningKey.load(data["keys"]["admin"]), client)
        admin.send("prefix.create", PrefixCreate("88.300", org1.id))
    except Exception:  # the other test in this module created it already
        pass
    signer = Signer(org1, client)
    client.submit([signer.sign("id.register", IdRegister("88.300/proof-1", (ValueSpec(1, "URL", "u"),)))], wait=True)
    height = httpx.get(f"{url}/v1/status").json()["height"]
    _load(url, signer, 500, 3)  # more blocks, so the anchor lies above the record's block
    # The receipt of an anchor above the record's block is recorded in the ledger (what proofs use).
    wait_until(lambda: httpx.get(f"{url}/v1/anchors/latest", timeout=5).json().get("height", 0) > height, 60,
               "a recorded anchor above the record's block")

    answer = client.resolve("88.300/proof-1", height=height, proof=True)
    assert answer["proof"]["anchor"]["height"] > height and answer["proof"]["anchor"]["history_proof"]
    genesis = data["genesis"]
    rpc = data["ethereum"]["rpc"]

    def verify(doc: Any, *extra: str) -> tuple[int, Any]:
        f = tmp_path / "answer.json"
        f.write_text(json.dumps(doc))
        code = ledger_main(["verify", str(f), "--genesis", genesis, *extra])
        return code, json.loads(capsys.readouterr().out)

    code, out = verify(answer, "--rpc", rpc)
    assert code == 0 and out["anchor"]["checked_on_chain"] is True
    code, out = verify(answer)
    assert code == 0 and out["anchor"]["checked_on_chain"] is False

    wrong_contract = json.loads(json.dumps(answer))
    wrong_contract["proof"]["anchor"]["contract"] = "0x" + "11" * 20
    code, out = verify(wrong_contract, "--rpc", rpc)
    assert code == 1 and out["reason"] == "anchor_on_chain" and "no contract" in out["message"]

    wrong_chain = json.loads(json.dumps(answer))
    wrong_chain["proof"]["anchor"]["eth_chain_id"] = 1
    code, out = verify(wrong_chain, "--rpc", rpc)
    assert code == 1 and out["reason"] == "anchor_on_chain" and "chain" in out["message"]

    # The anchoring transaction and its block are claims about Ethereum too: checked with --rpc.
    for field, value in (("tx_hash", "ab" * 32), ("eth_block", answer["proof"]["anchor"]["eth_block"] + 1)):
        wrong = json.loads(json.dumps(answer))
        wrong["proof"]["anchor"][field] = value
        assert verify(wrong)[0] == 0  # offline nothing can tell; the verdict says checked_on_chain false
        code, out = verify(wrong, "--rpc", rpc)
        assert code == 1 and out["reason"] == "anchor_on_chain", (field, out)

    broken_path = json.loads(json.dumps(answer))
    broken_path["proof"]["anchor"]["history_proof"][0] = "00" * 32
    code, out = verify(broken_path)
    assert code == 1 and out["reason"] == "anchor_history"

    # As a user would: `ledger resolve ID --proof` (no height: as of the latest anchor), then verify on chain.
    assert ledger_main(["resolve", "88.300/proof-1", "--proof", "--node", url]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["proof"]["anchor"] is not None
    code, out = verify(printed, "--rpc", rpc)
    assert code == 0 and out["present"] and out["anchor"]["checked_on_chain"] is True
    # An unknown identifier: exit 1, and the printed proof of absence verifies, on chain too.
    assert ledger_main(["resolve", "88.300/never-registered", "--proof", "--node", url]) == 1
    absent = json.loads(capsys.readouterr().out)
    code, out = verify(absent, "--rpc", rpc)
    assert code == 0 and out["present"] is False and out["anchor"]["checked_on_chain"] is True, out
