"""LedgerAnchor contract on the in-process EthereumTester: artifact drift, every revert path, reads, events,
gas, and idempotent deployment (issue 6, items 1-3)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from eth_account import Account
from web3 import Web3
from web3.exceptions import ContractLogicError

from ledger.anchor import contract as ac
from ledger.crypto import KeyFileError

pytest.importorskip("eth_tester")
from eth_tester.exceptions import TransactionFailed  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONTRACTS = REPO / "contracts"
ZERO = "0x0000000000000000000000000000000000000000"
MAX_ANCHOR_GAS = 55_000
REVERTS = (TransactionFailed, ContractLogicError)


def _load_build_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("contracts_build", CONTRACTS / "build.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def root(n: int) -> bytes:
    return Web3.keccak(text=f"root-{n}")


# --------------------------------------------------------------------------------------------------
# Build: the committed artifact must be what the sources compile to
# --------------------------------------------------------------------------------------------------


def test_artifact_matches_fresh_compilation() -> None:
    build = _load_build_module()
    if not (CONTRACTS / "node_modules" / "solc").is_dir():
        pytest.skip("contracts/node_modules is absent: run `make install` (npm ci in contracts/) to check drift")
    if shutil.which("node") is None:
        pytest.skip("node is not on PATH")
    fresh = build.render(build.compile_artifact())
    committed = (CONTRACTS / "build" / "LedgerAnchor.json").read_text()
    assert fresh == committed, "contracts/build/LedgerAnchor.json is stale: run `make contracts` and commit it"
    # the check is sensitive: even a comment changes the artifact (metadata hash in the bytecode)
    edited = (CONTRACTS / "LedgerAnchor.sol").read_text() + "\n// edited\n"
    assert build.render(build.compile_artifact(edited)) != committed


def test_artifact_pins_compiler_settings() -> None:
    data = json.loads((CONTRACTS / "build" / "LedgerAnchor.json").read_text())
    assert data["settings"]["evmVersion"] in ("cancun", "prague")  # py-evm stops at Prague
    assert data["settings"]["optimizer"]["enabled"] is True
    pkg = json.loads((CONTRACTS / "package.json").read_text())
    deps = {**pkg.get("devDependencies", {}), **pkg.get("optionalDependencies", {})}
    for name in ("solc", "@foundry-rs/anvil-linux-amd64"):
        assert deps[name][0].isdigit(), f"{name} must be pinned to an exact version"
    assert data["compiler"]["version"].startswith(deps["solc"] + "+")
    assert (CONTRACTS / "package-lock.json").is_file()


# --------------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def artifact() -> ac.Artifact:
    return ac.load_artifact()


@pytest.fixture
def w3() -> Web3:
    return ac.connect(ac.TESTER_RPC)


@pytest.fixture
def accts(w3: Web3) -> list[str]:
    return list(w3.eth.accounts)


@pytest.fixture
def c(w3: Web3, accts: list[str], artifact: ac.Artifact) -> Any:
    """A fresh contract owned by accts[0], with accts[1] and accts[2] as submitters."""
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    receipt = w3.eth.wait_for_transaction_receipt(factory.constructor().transact({"from": accts[0]}))
    contract = w3.eth.contract(address=receipt["contractAddress"], abi=artifact.abi)
    for s in accts[1:3]:
        contract.functions.addSubmitter(s).transact({"from": accts[0]})
    return contract


def transact(w3: Web3, fn: Any, sender: str) -> Any:
    receipt = w3.eth.wait_for_transaction_receipt(fn.transact({"from": sender}))
    assert receipt["status"] == 1
    return receipt


def expect_revert(artifact: ac.Artifact, fn: Any, sender: str, error: str, *args: Any) -> None:
    """The call must revert with the given custom error, and the same transaction, mined, must fail."""
    with pytest.raises(REVERTS) as info:
        fn.call({"from": sender})
    data = ac.revert_data(info.value)
    assert data is not None, f"no revert data in {info.value!r}"
    decoded = ac.decode_revert(artifact.abi, data)
    assert decoded is not None, f"unknown revert data {data.hex()}"
    name, values = decoded
    assert name == error
    if args:
        assert values == args
    # sent with an explicit gas limit (no estimation), the transaction is mined and fails
    try:
        tx_hash = fn.transact({"from": sender, "gas": 200_000})
    except REVERTS:
        return
    assert fn.w3.eth.wait_for_transaction_receipt(tx_hash)["status"] == 0


# --------------------------------------------------------------------------------------------------
# Reads, anchoring, events, gas
# --------------------------------------------------------------------------------------------------


def test_initial_state(c: Any, accts: list[str]) -> None:
    assert c.functions.owner().call() == accts[0]
    assert c.functions.pendingOwner().call() == ZERO
    assert c.functions.hasAnchor().call() is False
    assert c.functions.latestHeight().call() == 0
    assert c.functions.latest().call() == [0, b"\x00" * 32]
    assert c.functions.rootAt(1).call() == b"\x00" * 32
    assert c.functions.isSubmitter(accts[1]).call() is True
    assert c.functions.isSubmitter(accts[0]).call() is False


def test_anchor_reads_and_events(w3: Web3, c: Any, accts: list[str]) -> None:
    for h, sender in ((3, accts[1]), (7, accts[2]), (10, accts[1])):
        receipt = transact(w3, c.functions.anchor(h, root(h)), sender)
        (ev,) = c.events.Anchored().process_receipt(receipt)
        assert ev["args"]["height"] == h
        assert ev["args"]["root"] == root(h)
        assert ev["args"]["submitter"] == sender
    assert c.functions.hasAnchor().call() is True
    assert c.functions.latestHeight().call() == 10
    assert c.functions.latest().call() == [10, root(10)]
    assert c.functions.rootAt(7).call() == root(7)
    assert c.functions.rootAt(5).call() == b"\x00" * 32
    assert ac.latest_anchor(c) == (10, root(10))

    # logs are findable by height: topics as 0x strings
    topic0 = Web3.keccak(text="Anchored(uint64,bytes32,address)").to_0x_hex()
    topic_h = "0x" + (7).to_bytes(32, "big").hex()
    logs = w3.eth.get_logs({"address": c.address, "fromBlock": 0, "toBlock": "latest", "topics": [topic0, topic_h]})
    assert len(logs) == 1
    assert c.events.Anchored().process_log(logs[0])["args"]["root"] == root(7)


def test_height_zero_then_increasing(w3: Web3, c: Any, accts: list[str], artifact: ac.Artifact) -> None:
    transact(w3, c.functions.anchor(0, root(0)), accts[1])
    assert c.functions.latest().call() == [0, root(0)]
    expect_revert(artifact, c.functions.anchor(0, root(99)), accts[1], "AlreadyAnchored", 0, root(0))
    transact(w3, c.functions.anchor(2**64 - 1, root(1)), accts[1])
    assert c.functions.latestHeight().call() == 2**64 - 1


def test_gas_per_anchor(w3: Web3, c: Any, accts: list[str], artifact: ac.Artifact) -> None:
    first = transact(w3, c.functions.anchor(100, root(100)), accts[1])["gasUsed"]
    later = []
    for h in (101, 150, 10_000, 2**40):
        later.append(transact(w3, c.functions.anchor(h, root(h)), accts[2])["gasUsed"])
    deployment = transact(w3, w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode).constructor(),
                          accts[0])["gasUsed"]
    print(f"\nLedgerAnchor gas on EthereumTester: first anchor {first}, later anchors {later}, "
          f"deployment {deployment}")
    assert max(later) <= MAX_ANCHOR_GAS
    assert first <= MAX_ANCHOR_GAS + 25_000
    assert deployment <= 600_000  # the README quotes it


# --------------------------------------------------------------------------------------------------
# Revert paths
# --------------------------------------------------------------------------------------------------


def test_non_submitter_cannot_anchor(c: Any, accts: list[str], artifact: ac.Artifact) -> None:
    expect_revert(artifact, c.functions.anchor(1, root(1)), accts[5], "NotSubmitter", accts[5])
    # not even the owner, unless it adds itself
    expect_revert(artifact, c.functions.anchor(1, root(1)), accts[0], "NotSubmitter", accts[0])


def test_zero_root_rejected(c: Any, accts: list[str], artifact: ac.Artifact) -> None:
    expect_revert(artifact, c.functions.anchor(1, b"\x00" * 32), accts[1], "ZeroRoot")


def test_reanchor_and_lower_heights_rejected(w3: Web3, c: Any, accts: list[str], artifact: ac.Artifact) -> None:
    transact(w3, c.functions.anchor(5, root(5)), accts[1])
    transact(w3, c.functions.anchor(9, root(9)), accts[1])
    # same height, by the same or another submitter, same or different root
    expect_revert(artifact, c.functions.anchor(9, root(9)), accts[1], "AlreadyAnchored", 9, root(9))
    expect_revert(artifact, c.functions.anchor(9, root(1)), accts[2], "AlreadyAnchored", 9, root(9))
    # an older anchored height
    expect_revert(artifact, c.functions.anchor(5, root(1)), accts[2], "AlreadyAnchored", 5, root(5))
    # a lower height never anchored
    expect_revert(artifact, c.functions.anchor(7, root(7)), accts[1], "HeightNotIncreasing", 7, 9)
    expect_revert(artifact, c.functions.anchor(0, root(7)), accts[1], "HeightNotIncreasing", 0, 9)
    assert c.functions.latest().call() == [9, root(9)]
    assert c.functions.rootAt(7).call() == b"\x00" * 32


def test_submitter_management(w3: Web3, c: Any, accts: list[str], artifact: ac.Artifact) -> None:
    owner, s1, outsider = accts[0], accts[1], accts[5]
    # non-owner cannot manage submitters
    expect_revert(artifact, c.functions.addSubmitter(outsider), outsider, "NotOwner", outsider)
    expect_revert(artifact, c.functions.addSubmitter(outsider), s1, "NotOwner", s1)
    expect_revert(artifact, c.functions.removeSubmitter(s1), outsider, "NotOwner", outsider)
    # owner-side errors
    expect_revert(artifact, c.functions.addSubmitter(ZERO), owner, "ZeroAddress")
    expect_revert(artifact, c.functions.addSubmitter(s1), owner, "AlreadySubmitter", s1)
    expect_revert(artifact, c.functions.removeSubmitter(outsider), owner, "UnknownSubmitter", outsider)

    receipt = transact(w3, c.functions.addSubmitter(outsider), owner)
    assert c.events.SubmitterAdded().process_receipt(receipt)[0]["args"]["submitter"] == outsider
    transact(w3, c.functions.anchor(1, root(1)), outsider)

    receipt = transact(w3, c.functions.removeSubmitter(s1), owner)
    assert c.events.SubmitterRemoved().process_receipt(receipt)[0]["args"]["submitter"] == s1
    assert c.functions.isSubmitter(s1).call() is False
    expect_revert(artifact, c.functions.anchor(2, root(2)), s1, "NotSubmitter", s1)


def test_ownership_transfer(w3: Web3, c: Any, accts: list[str], artifact: ac.Artifact) -> None:
    owner, new, other = accts[0], accts[6], accts[7]
    expect_revert(artifact, c.functions.transferOwnership(new), new, "NotOwner", new)
    # nobody can accept before a transfer starts
    expect_revert(artifact, c.functions.acceptOwnership(), new, "NotPendingOwner", new)

    receipt = transact(w3, c.functions.transferOwnership(new), owner)
    ev = c.events.OwnershipTransferStarted().process_receipt(receipt)[0]["args"]
    assert (ev["previousOwner"], ev["newOwner"]) == (owner, new)
    assert c.functions.pendingOwner().call() == new
    assert c.functions.owner().call() == owner  # two-step: not yet
    expect_revert(artifact, c.functions.acceptOwnership(), other, "NotPendingOwner", other)
    expect_revert(artifact, c.functions.acceptOwnership(), owner, "NotPendingOwner", owner)

    receipt = transact(w3, c.functions.acceptOwnership(), new)
    ev = c.events.OwnershipTransferred().process_receipt(receipt)[0]["args"]
    assert (ev["previousOwner"], ev["newOwner"]) == (owner, new)
    assert c.functions.owner().call() == new
    assert c.functions.pendingOwner().call() == ZERO
    # the old owner lost its rights, the new one has them
    expect_revert(artifact, c.functions.addSubmitter(other), owner, "NotOwner", owner)
    expect_revert(artifact, c.functions.transferOwnership(owner), owner, "NotOwner", owner)
    transact(w3, c.functions.addSubmitter(other), new)
    # accepting twice fails
    expect_revert(artifact, c.functions.acceptOwnership(), new, "NotPendingOwner", new)

    # a pending transfer can be cancelled with the zero address
    transact(w3, c.functions.transferOwnership(other), new)
    transact(w3, c.functions.transferOwnership(ZERO), new)
    expect_revert(artifact, c.functions.acceptOwnership(), other, "NotPendingOwner", other)
    assert c.functions.owner().call() == new


# --------------------------------------------------------------------------------------------------
# Keys and deployment
# --------------------------------------------------------------------------------------------------


def _key_file(tmp_path: Path, key_hex: str, mode: int = 0o600) -> Path:
    p = tmp_path / "deployer.key"
    p.write_text(key_hex + "\n")
    os.chmod(p, mode)
    return p


def _funded_account(w3: Web3) -> Any:
    acct = Account.create()
    ac._fund_from_tester(w3, acct.address)
    return acct


def test_key_file_rules(tmp_path: Path) -> None:
    acct = Account.create()
    key_hex = acct.key.hex()
    p = _key_file(tmp_path, "0x" + key_hex)
    assert ac.load_key_file(p).address == acct.address
    p.write_text(key_hex)  # without 0x
    assert ac.load_key_file(p).address == acct.address

    os.chmod(p, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600") as info:
        ac.load_key_file(p)
    assert key_hex not in str(info.value)

    os.chmod(p, 0o600)
    p.write_text(key_hex[:-2] + "zz")
    with pytest.raises(KeyFileError) as info:
        ac.load_key_file(p)
    assert key_hex[:-2] not in str(info.value)
    p.write_text("00" * 32)  # not a valid secp256k1 key
    with pytest.raises(KeyFileError):
        ac.load_key_file(p)
    with pytest.raises(KeyFileError):
        ac.load_key_file(tmp_path / "missing.key")


def test_deploy_command_reports_a_bad_key_file_plainly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(key=str(tmp_path / "missing.key"), rpc=ac.TESTER_RPC)
    assert ac.run_deploy(args) == 1
    assert capsys.readouterr().out.startswith(f"error: cannot read key file {tmp_path / 'missing.key'}")


def test_deploy_is_idempotent(w3: Web3, accts: list[str], artifact: ac.Artifact, tmp_path: Path) -> None:
    acct = _funded_account(w3)
    out = tmp_path / "deployment.json"
    s1, s2 = accts[3], accts[4]

    first = ac.deploy(w3, acct, submitters=[s1], out=out)
    assert not first.reused and first.added_submitters == [s1]
    d = json.loads(out.read_text())
    assert d["address"] == first.deployment.address
    assert d["chain_id"] == w3.eth.chain_id
    assert d["tx_hash"].startswith("0x") and len(d["tx_hash"]) == 66
    assert d["block_number"] >= 1
    assert d["code_hash"] == artifact.runtime_code_hash
    assert d["submitters"] == [s1]
    receipt = w3.eth.get_transaction_receipt(d["tx_hash"])
    assert receipt["contractAddress"] == d["address"]

    block_before = w3.eth.block_number
    again = ac.deploy(w3, acct, submitters=[s1], out=out)
    assert again.reused and again.added_submitters == []
    assert again.deployment.address == first.deployment.address
    assert w3.eth.block_number == block_before  # nothing sent

    more = ac.deploy(w3, acct, submitters=[s1, s2], out=out)
    assert more.reused and more.added_submitters == [s2]
    c = ac.anchor_contract(w3, more.deployment.address)
    assert c.functions.isSubmitter(s2).call()
    assert json.loads(out.read_text())["submitters"] == sorted([s1, s2])

    # the anchoring helpers work against the deployment, with a locally signed key
    sub = _funded_account(w3)
    ac.deploy(w3, acct, submitters=[sub.address], out=out)
    receipt = ac.submit_anchor(w3, sub, c, 42, root(42))
    assert receipt["gasUsed"] <= MAX_ANCHOR_GAS + 25_000
    assert ac.latest_anchor(c) == (42, root(42))
    with pytest.raises(REVERTS) as info:
        ac.submit_anchor(w3, sub, c, 42, root(43))
    data = ac.revert_data(info.value)
    assert data is not None and ac.decode_revert(artifact.abi, data) == ("AlreadyAnchored", (42, root(42)))


def test_deploy_stale_or_foreign_file(w3: Web3, accts: list[str], tmp_path: Path) -> None:
    acct = _funded_account(w3)
    out = tmp_path / "deployment.json"
    first = ac.deploy(w3, acct, out=out).deployment

    # another chain id: refuse to overwrite (it may record a real network), unless forced
    data = json.loads(out.read_text())
    data["chain_id"] = 11155111
    out.write_text(json.dumps(data))
    with pytest.raises(ac.AnchorContractError, match="another chain"):
        ac.deploy(w3, acct, out=out)
    forced = ac.deploy(w3, acct, out=out, force=True)
    assert not forced.reused and forced.deployment.chain_id == w3.eth.chain_id

    # same chain, but no contract at the recorded address (e.g. a restarted dev chain): redeploy
    data = json.loads(out.read_text())
    data["address"] = accts[9]
    out.write_text(json.dumps(data))
    fresh = ac.deploy(w3, acct, out=out)
    assert not fresh.reused and fresh.deployment.address not in (accts[9], first.address)

    # a key that is not the owner cannot add submitters on re-use
    stranger = _funded_account(w3)
    with pytest.raises(ac.AnchorContractError, match="owner"):
        ac.deploy(w3, stranger, submitters=[accts[5]], out=out)
    # ...but re-using without changes is fine
    assert ac.deploy(w3, stranger, out=out).reused


def test_deploy_cli_never_prints_key(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     caplog: pytest.LogCaptureFixture) -> None:
    deploy_script = CONTRACTS / "deploy.py"
    spec = importlib.util.spec_from_file_location("contracts_deploy", deploy_script)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    acct = Account.create()
    key_hex = acct.key.hex()
    key = _key_file(tmp_path, key_hex)
    out = tmp_path / "dep.json"
    sub = Account.create().address
    caplog.set_level("DEBUG")
    rc = mod.main(["--rpc", "tester", "--key", str(key), "--submitter", sub, "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.out + captured.err
    assert "deployed LedgerAnchor" in captured.out
    assert json.loads(out.read_text())["submitters"] == [sub]
    for text in (captured.out, captured.err, caplog.text):
        assert key_hex not in text and key_hex.upper() not in text

    # a world-readable key file is refused before anything happens
    os.chmod(key, 0o640)
    rc = mod.main(["--rpc", "tester", "--key", str(key), "--out", str(tmp_path / "other.json")])
    captured = capsys.readouterr()
    assert rc == 1 and "chmod 600" in captured.out
    assert not (tmp_path / "other.json").exists()
