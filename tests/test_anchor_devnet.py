"""Anchoring on a real 4-node devnet with a real Anvil (`ledger devnet up --ethereum anvil`): anchors take effect
with f+1 attestations, survive an Anvil restart, and one lying validator (its own Ethereum key and its own
ledger key) neither stops anchoring nor gets a fake anchor into `/v1/anchors` or a proof."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devnet import launcher
from devnet.ethereum import ANVIL, start_anvil
from devnet.processes import any_free_port, is_alive, stop_pid
from devnet.record import load_devnet, save_devnet
from ledger.client import LedgerClient, Signer
from ledger.crypto import SigningKey
from ledger.resolver.registry import IdRegister, PrefixCreate, ValueSpec
from tests.devnetutil import wait_until

pytestmark = pytest.mark.skipif(
    not os.access(ANVIL, os.X_OK), reason="Anvil binary absent: run `make install`"
)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    directory = tmp_path_factory.mktemp("anchor-devnet")
    try:
        data = launcher.up(directory, 4, base_port=any_free_port(), ethereum="anvil")
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
    record = httpx.get(f"{urls[2]}/v1/anchors/{h}").json()
    assert record["block_hash"] == block_hash and record["contract"] == eth["anchor_contract"].lower()
    submitter = w3.to_checksum_address(record["submitter"])
    assert contract.functions.rootAt(submitter, h).call().hex() == block_hash
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

    # Every Anchored event holds the ledger's own block hash, and no submitter anchored a height twice.
    logs = contract.events.Anchored.get_logs(from_block=0)
    slots = [(e["args"]["submitter"], int(e["args"]["height"])) for e in logs]
    assert len(slots) == len(set(slots)) and len(slots) >= 2
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

    # The proof cannot choose its anchor's contract, chain, transaction, block or submitter: each is the one the
    # ledger certified as effective (offline already).
    for field, value in (("contract", "0x" + "11" * 20), ("eth_chain_id", 1), ("tx_hash", "ab" * 32),
                         ("eth_block", answer["proof"]["anchor"]["eth_block"] + 1), ("submitter", "0x" + "22" * 20)):
        wrong = json.loads(json.dumps(answer))
        wrong["proof"]["anchor"][field] = value
        code, out = verify(wrong)
        assert code == 1 and out["reason"] == "anchor_record", (field, out)

    # `--rpc` asks only the contract the genesis file certifies: against a genesis naming another contract
    # (same validators: the proof itself still verifies offline) the anchor is refused before any RPC call.
    other = json.loads(Path(genesis).read_text())
    other["anchoring"]["contract"] = "0x" + "66" * 20
    other_genesis = tmp_path / "other-genesis.json"
    other_genesis.write_text(json.dumps(other))
    f = tmp_path / "answer.json"
    f.write_text(json.dumps(answer))
    assert ledger_main(["verify", str(f), "--genesis", str(other_genesis)]) == 0
    capsys.readouterr()
    assert ledger_main(["verify", str(f), "--genesis", str(other_genesis), "--rpc", rpc]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["reason"] == "anchor_not_certified" and "66" * 20 in out["message"]

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


def _next_nonce(client: LedgerClient, key: SigningKey, chain_id: str) -> int:
    """A validator's next nonce, read from the refusal of a replayed one (validators are not members)."""
    from ledger.tx import make_tx

    result = client.submit([make_tx(key, chain_id, 1, "anchor.attest", _fake_claim(1, "00" * 32, ""))], wait=False)[0]
    if result.get("accepted"):
        return 2
    return int(str(result["message"]).rsplit("next is ", 1)[1].rstrip(")"))


def _fake_claim(height: int, block_hash: str, contract: str, submitter: str = "0x" + "77" * 20) -> Any:
    from ledger.anchor.records import AnchorRecord

    return AnchorRecord(height, bytes.fromhex(block_hash), 31337, contract or "0x" + "66" * 20,
                        b"\x42" * 32, 1, submitter)


def test_one_lying_validator_neither_stops_anchoring_nor_gets_a_fake_anchor_cited(
        net: tuple[Path, dict[str, Any]]) -> None:
    from ledger.anchor import contract as ac
    from ledger.tx import make_tx

    directory, data = net
    eth = data["ethereum"]
    urls = [n["http"] for n in data["nodes"]]
    liar_home = Path(data["nodes"][3]["home"])
    client = LedgerClient(urls[0])
    chain_id = client.status()["chain_id"]
    org1 = SigningKey.load(data["keys"]["org1"])
    with contextlib.suppress(Exception):  # another test in this module created it already
        Signer(SigningKey.load(data["keys"]["admin"]), client).send("prefix.create", PrefixCreate("88.300", org1.id))
    signer = Signer(org1, client)

    # With its own Ethereum key, the liar anchors the largest height there is, and a false root just above the head.
    w3 = ac.connect(eth["rpc"])
    liar = ac.load_key_file(liar_home / "eth.key")
    contract = ac.anchor_contract(w3, eth["anchor_contract"])
    head = client.status()["height"]
    ac.submit_anchor(w3, liar, contract, 2**64 - 1, b"\x66" * 32)
    ac.submit_anchor(w3, liar, contract, head + 2, b"\x66" * 32)

    # The liar's node stops (its key is the liar's alone now: no nonce race with its own honest service); with
    # its own ledger key, it attests fake anchors: a false root, a contract of its own, and the true block hash
    # at a real height with a transaction Ethereum never saw (one vote of the f+1 = 2 needed).
    liar_key = SigningKey.load(liar_home / "node.pem")
    stop_pid(int(data["nodes"][3]["pid"]))
    urls = urls[:3]
    _load(urls[0], signer, 900, 3)
    target = client.status()["height"] - 1
    true_hash = httpx.get(f"{urls[0]}/v1/blocks/{target}").json()["hash"]
    settings = httpx.get(f"{urls[0]}/v1/anchors").json()["settings"]
    nonce = _next_nonce(client, liar_key, chain_id)
    fakes = [_fake_claim(target, "66" * 32, settings["contract"], settings["submitters"][3]),
             _fake_claim(target, true_hash, "0x" + "66" * 20, settings["submitters"][3]),
             _fake_claim(target, true_hash, settings["contract"], settings["submitters"][3])]
    results = client.submit([make_tx(liar_key, chain_id, nonce + i, "anchor.attest", f) for i, f in enumerate(fakes)],
                            wait=True)
    reasons = [r.get("reason") for r in results]
    assert reasons[:2] == ["invalid_value", "invalid_value"] and results[2].get("ok") is True, results
    votes = httpx.get(f"{urls[1]}/v1/anchors/{target}/votes").json()
    assert any(v["tx_hash"] == "0x" + "42" * 32 for v in votes["votes"]) and votes["effective"] is None

    # Honest anchoring goes on past both the huge height and the fake vote.
    _load(urls[0], signer, 910, 12)
    goal = client.status()["height"]
    wait_until(lambda: all(_anchoring(u)["last_anchored_height"] >= goal for u in urls), 60,
               "honest anchors above the liar's")

    # No node cites the fake: not at the target height, not as the latest, not in a proof.
    for u in urls:
        rec = httpx.get(f"{u}/v1/anchors/{target}").json()
        assert rec.get("tx_hash") != "0x" + "42" * 32 and rec.get("submitter") != "0x" + "77" * 20
        latest = httpx.get(f"{u}/v1/anchors/latest").json()
        assert latest["height"] < 2**63 and latest["contract"] == settings["contract"]
    answer = LedgerClient(urls[2]).resolve("88.300/e900", height=target, proof=True)
    cited = answer["proof"]["anchor"]
    assert cited["height"] >= target and cited["tx_hash"] != "42" * 32 and cited["contract"] == settings["contract"]
    print(f"anchored to height {goal} past the liar's height 2^64-1 and its fake vote at {target}")


def test_a_running_validator_that_lies_about_anchors_in_test_mode(net: tuple[Path, dict[str, Any]]) -> None:
    """Node 3 restarted as `tests/lying_anchor_node.py`: a real validator (it keeps ordering and committing)
    whose anchoring service attests a fake anchor of every new block and anchors a huge height with its own key."""
    import subprocess
    import sys

    from devnet.processes import wait_healthy
    from tests.lying_anchor_node import FAKE_TX, HUGE, HUGE_ROOT

    directory, data = net
    node = data["nodes"][3]
    if is_alive(node.get("pid")):
        stop_pid(int(node["pid"]))
    log = directory / "logs" / "lying.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tests.lying_anchor_node", "--home", node["home"]],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                cwd=Path(__file__).resolve().parent.parent)
    try:
        wait_healthy(node["http"], proc, log)
        urls = [n["http"] for n in data["nodes"]]
        client = LedgerClient(urls[0])
        org1 = SigningKey.load(data["keys"]["org1"])
        with contextlib.suppress(Exception):  # another test in this module created it already
            Signer(SigningKey.load(data["keys"]["admin"]), client).send("prefix.create",
                                                                        PrefixCreate("88.300", org1.id))
        signer = Signer(org1, client)
        start = client.status()["height"]
        _load(urls[0], signer, 2000, 25)
        goal = client.status()["height"]

        # The liar lied (its fake votes are in the ledger) and honest anchoring went on past them, on every node,
        # the liar's own included: it commits the same effective anchors as everyone.
        def lied() -> bool:
            pages = [httpx.get(f"{urls[0]}/v1/anchors/{h}/votes").json() for h in range(start, goal)]
            votes = [v for page in pages for v in page["votes"]]
            return any(v["tx_hash"] == "0x" + FAKE_TX.hex() and v["validator"] == node["id"] for v in votes)

        wait_until(lied, 60, "the liar's fake votes in the ledger")
        wait_until(lambda: all(_anchoring(u)["last_anchored_height"] >= goal for u in urls), 90,
                   "honest anchors above the liar's lies, on every node")
        w3, contract = _contract(data)
        liar_address = w3.to_checksum_address(_anchoring(urls[3])["submitter"])
        wait_until(lambda: contract.functions.rootAt(liar_address, HUGE).call() == HUGE_ROOT, 30,
                   "the liar's huge height on the contract")
        for u in urls:
            for h in range(start, goal + 1):
                r = httpx.get(f"{u}/v1/anchors/{h}")
                assert r.status_code == 404 or r.json()["tx_hash"] != "0x" + FAKE_TX.hex(), (u, h)
        # The liar's proof cites an honest anchor at or above the one its status names: anchoring goes on
        # (the attestations are blocks too), so a later anchor may take effect between the two requests.
        anchored = _anchoring(urls[3])["last_anchored_height"]
        answer = LedgerClient(urls[3]).resolve("88.300/e2000", height=anchored, proof=True)
        cited = answer["proof"]["anchor"]
        wait_until(lambda: httpx.get(f"{urls[0]}/v1/anchors/{cited['height']}").status_code == 200, 30,
                   "node0 holding the anchor the liar's proof cites")
        record = httpx.get(f"{urls[0]}/v1/anchors/{cited['height']}").json()
        assert cited["height"] >= anchored and cited["tx_hash"] != FAKE_TX.hex(), (cited, anchored)
        assert "0x" + cited["tx_hash"] == record["tx_hash"], (cited, record)
        assert cited["submitter"] == record["submitter"], (cited, record)
        print(f"anchored to height {anchored} beside a validator lying since height {start}")
    finally:
        stop_pid(proc.pid)


def test_add_node_attests_as_a_certified_submitter_and_remove_node_drops_the_submitter(
        net: tuple[Path, dict[str, Any]]) -> None:
    """`ledger devnet add-node` on the anchoring devnet (run last: it changes the set): the new node has an
    Ethereum key file of its own, named by its config, the admins certify its address, and it attests.
    Then `ledger devnet remove-node` takes node 3 out and drops its address from the certified submitters."""
    import json
    import stat

    from devnet.processes import start_node, wait_healthy
    from tests.devnetutil import ledger

    directory, data = net
    # Node 3, stopped by the tests before, runs again as an honest validator (from its own home and config).
    node3 = data["nodes"][3]
    if not is_alive(node3.get("pid")):
        proc = start_node(node3["home"], directory / "logs")
        wait_healthy(node3["http"], proc, directory / "logs" / f"{Path(node3['home']).name}.log")
        saved = load_devnet(directory)
        saved["nodes"][3]["pid"] = node3["pid"] = proc.pid
        save_devnet(directory, saved)
    added = json.loads(ledger("devnet", "add-node", "--dir", str(directory), "--timeout", "120").stdout)
    home = Path(added["home"])
    config = json.loads((home / "config.json").read_text())
    key_file = home / config["ethereum"]["key_file"]
    assert config["ethereum"]["key_file"] == "eth.key" and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert config["ethereum"]["contract"] == data["ethereum"]["anchor_contract"]
    urls = [n["http"] for n in data["nodes"][:3]] + [added["http"]]
    certified = httpx.get(f"{urls[0]}/v1/anchors", timeout=5).json()["settings"]["submitters"]
    assert added["submitter"] in certified and added["submitter_certified_at"] is not None

    client = LedgerClient(urls[0])
    org1 = SigningKey.load(data["keys"]["org1"])
    with contextlib.suppress(Exception):  # another test in this module created it already
        Signer(SigningKey.load(data["keys"]["admin"]), client).send("prefix.create", PrefixCreate("88.300", org1.id))
    signer = Signer(org1, client)
    batch = 0

    def attested_by_it() -> bool:
        nonlocal batch
        batch += 1
        _load(urls[0], signer, 5000 + 10 * batch, 3)
        return _anchoring(added["http"])["attestations_sent"] > 0

    # It reads the contract's events on its own RPC and attests them. Its own turn to submit comes once
    # in five anchors: waiting for it cost minutes here, and the turn's rotation over the set of each
    # height is tested in tests/test_validator_set_follow.py.
    wait_until(attested_by_it, 120, "an attestation from the added validator", interval=2.0)
    status = _anchoring(added["http"])
    assert status["submitter_certified"] is True and status["last_error"] is None
    print(f"added validator (submitter {added['submitter']}) sent {status['attestations_sent']} attestations")

    # `ledger devnet remove-node` takes node 3 out: its address is no longer a certified submitter, and the
    # devnet no longer counts it.
    gone = data["nodes"][3]
    gone_address = _submitter_of_home(Path(gone["home"]))
    removed = json.loads(ledger("devnet", "remove-node", gone["id"], "--dir", str(directory)).stdout)
    assert removed["submitter_dropped"] == gone_address and removed["submitter_dropped_at"] is not None
    certified = httpx.get(f"{urls[0]}/v1/anchors", timeout=5).json()["settings"]["submitters"]
    assert gone_address not in certified and added["submitter"] in certified
    listed = load_devnet(directory)
    assert gone["id"] not in [n["id"] for n in listed["nodes"]] and listed["removed"][0]["id"] == gone["id"]
    assert not is_alive(gone["pid"])


def _submitter_of_home(home: Path) -> str:
    from ledger.anchor.contract import load_key_file

    return str(load_key_file(home / "eth.key").address).lower()
