"""LedgerAnchor contract on the in-process EthereumTester: artifact drift, every revert path, reads, events,
gas, idempotent deployment (issue 6), and no submitter able to stop another (issue 12)."""

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


def test_bench_nft_artifact_matches_fresh_compilation() -> None:
    """The ERC-721 of bench/evm_compare.py, compiled with OpenZeppelin's sources from node_modules."""
    build = _load_build_module()
    if not (CONTRACTS / "node_modules" / "@openzeppelin" / "contracts").is_dir() or shutil.which("node") is None:
        pytest.skip("contracts/node_modules or node is absent: run `make install` (npm ci in contracts/)")
    fresh = build.compile_artifact(spec=build.BENCH_NFT)
    committed = (CONTRACTS / "build" / "BenchNFT.json").read_text()
    assert build.render(fresh) == committed, "contracts/build/BenchNFT.json is stale: run `make contracts`"
    pkg = json.loads((CONTRACTS / "package.json").read_text())
    assert fresh["npmPackages"] == {"@openzeppelin/contracts": pkg["devDependencies"]["@openzeppelin/contracts"]}
    assert "ERC721InvalidSender" in {e["name"] for e in fresh["abi"] if e["type"] == "error"}


def test_artifact_pins_compiler_settings() -> None:
    data = json.loads((CONTRACTS / "build" / "LedgerAnchor.json").read_text())
    assert data["settings"]["evmVersion"] in ("cancun", "prague")  # py-evm stops at Prague
    assert data["settings"]["optimizer"]["enabled"] is True
    pkg = json.loads((CONTRACTS / "package.json").read_text())
    deps = {**pkg.get("devDependencies", {}), **pkg.get("optionalDependencies", {})}
    for name in ("solc", "@foundry-rs/anvil-linux-amd64", "@openzeppelin/contracts"):
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
    """A fresh contract, deployed by accts[0] (which gains nothing by it: the contract has no owner)."""
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    receipt = w3.eth.wait_for_transaction_receipt(factory.constructor().transact({"from": accts[0]}))
    return w3.eth.contract(address=receipt["contractAddress"], abi=artifact.abi)


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


def test_the_contract_has_no_owner_and_no_allow_list(artifact: ac.Artifact) -> None:
    functions = sorted(i["name"] for i in artifact.abi if i["type"] == "function")
    assert functions == ["anchor", "rootAt"]


def test_anchor_reads_and_events(w3: Web3, c: Any, accts: list[str]) -> None:
    for h, sender in ((3, accts[1]), (7, accts[2]), (10, accts[1])):
        receipt = transact(w3, c.functions.anchor(h, root(h)), sender)
        (ev,) = c.events.Anchored().process_receipt(receipt)
        assert ev["args"]["height"] == h
        assert ev["args"]["root"] == root(h)
        assert ev["args"]["submitter"] == sender
    assert ac.root_at(c, accts[2], 7) == root(7)
    assert ac.root_at(c, accts[1], 7) == b"\x00" * 32  # another submitter's slot
    assert ac.root_at(c, accts[1], 5) == b"\x00" * 32

    # logs are findable by height and by submitter: topics as 0x strings
    topic0 = Web3.keccak(text="Anchored(uint64,bytes32,address)").to_0x_hex()
    topic_h = "0x" + (7).to_bytes(32, "big").hex()
    logs = w3.eth.get_logs({"address": c.address, "fromBlock": 0, "toBlock": "latest", "topics": [topic0, topic_h]})
    assert len(logs) == 1
    assert c.events.Anchored().process_log(logs[0])["args"]["root"] == root(7)
    topic_s = "0x" + bytes.fromhex(accts[1][2:]).rjust(32, b"\0").hex()
    logs = w3.eth.get_logs({"address": c.address, "fromBlock": 0, "toBlock": "latest",
                            "topics": [topic0, None, [topic_s]]})
    assert [c.events.Anchored().process_log(lg)["args"]["height"] for lg in logs] == [3, 10]


def test_one_submitter_anchoring_a_huge_height_does_not_stop_the_others(
        w3: Web3, c: Any, accts: list[str], artifact: ac.Artifact) -> None:
    rogue, honest = accts[1], accts[2]
    transact(w3, c.functions.anchor(2**64 - 1, root(666)), rogue)
    transact(w3, c.functions.anchor(5, root(666)), rogue)  # and a false root at a height honest ones use
    # Honest anchoring goes on, at any height, lower ones included, and the rogue's roots are its own.
    for h in (5, 6, 100):
        transact(w3, c.functions.anchor(h, root(h)), honest)
    assert ac.root_at(c, honest, 5) == root(5) and ac.root_at(c, rogue, 5) == root(666)
    # The rogue can fill only its own slots: it cannot overwrite them either.
    expect_revert(artifact, c.functions.anchor(2**64 - 1, root(1)), rogue, "AlreadyAnchored", rogue, 2**64 - 1,
                  root(666))


def test_gas_per_anchor(w3: Web3, c: Any, accts: list[str], artifact: ac.Artifact) -> None:
    first = transact(w3, c.functions.anchor(100, root(100)), accts[1])["gasUsed"]
    later = []
    for h in (101, 150, 10_000, 2**40, 2**64 - 1):
        later.append(transact(w3, c.functions.anchor(h, root(h)), accts[2])["gasUsed"])
    deployment = transact(w3, w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode).constructor(),
                          accts[0])["gasUsed"]
    print(f"\nLedgerAnchor gas on EthereumTester: first anchor {first}, later anchors {later}, "
          f"deployment {deployment}")
    assert max(first, *later) <= MAX_ANCHOR_GAS
    assert deployment <= 200_000  # the README quotes it


# --------------------------------------------------------------------------------------------------
# Revert paths
# --------------------------------------------------------------------------------------------------


def test_zero_root_rejected(c: Any, accts: list[str], artifact: ac.Artifact) -> None:
    expect_revert(artifact, c.functions.anchor(1, b"\x00" * 32), accts[1], "ZeroRoot")


def test_a_submitter_anchors_a_height_once(w3: Web3, c: Any, accts: list[str], artifact: ac.Artifact) -> None:
    transact(w3, c.functions.anchor(9, root(9)), accts[1])
    # the same submitter, same or another root: refused; another submitter: its own slot
    expect_revert(artifact, c.functions.anchor(9, root(9)), accts[1], "AlreadyAnchored", accts[1], 9, root(9))
    expect_revert(artifact, c.functions.anchor(9, root(1)), accts[1], "AlreadyAnchored", accts[1], 9, root(9))
    transact(w3, c.functions.anchor(9, root(1)), accts[2])
    # no order between heights: a lower height is fine, height 0 too
    transact(w3, c.functions.anchor(7, root(7)), accts[1])
    transact(w3, c.functions.anchor(0, root(0)), accts[1])
    assert [ac.root_at(c, accts[1], h) for h in (0, 7, 9)] == [root(0), root(7), root(9)]
    assert ac.root_at(c, accts[2], 9) == root(1)


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

    first = ac.deploy(w3, acct, out=out)
    assert not first.reused
    d = json.loads(out.read_text())
    assert d["address"] == first.deployment.address
    assert d["chain_id"] == w3.eth.chain_id
    assert d["tx_hash"].startswith("0x") and len(d["tx_hash"]) == 66
    assert d["block_number"] >= 1
    assert d["code_hash"] == artifact.runtime_code_hash
    receipt = w3.eth.get_transaction_receipt(d["tx_hash"])
    assert receipt["contractAddress"] == d["address"]

    block_before = w3.eth.block_number
    again = ac.deploy(w3, acct, out=out)
    assert again.reused and again.deployment.address == first.deployment.address
    assert w3.eth.block_number == block_before  # nothing sent

    # the anchoring helpers work against the deployment, with a locally signed key
    c = ac.anchor_contract(w3, first.deployment.address)
    sub = _funded_account(w3)
    receipt = ac.submit_anchor(w3, sub, c, 42, root(42))
    assert receipt["gasUsed"] <= MAX_ANCHOR_GAS
    assert ac.root_at(c, sub.address, 42) == root(42)
    with pytest.raises(REVERTS) as info:
        ac.submit_anchor(w3, sub, c, 42, root(43))
    data = ac.revert_data(info.value)
    assert data is not None
    assert ac.decode_revert(artifact.abi, data) == ("AlreadyAnchored", (sub.address, 42, root(42)))


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
    # any key may re-use it: there is nothing to own
    stranger = _funded_account(w3)
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
    caplog.set_level("DEBUG")
    rc = mod.main(["--rpc", "tester", "--key", str(key), "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.out + captured.err
    assert "deployed LedgerAnchor" in captured.out
    assert json.loads(out.read_text())["code_hash"] == ac.load_artifact().runtime_code_hash
    for text in (captured.out, captured.err, caplog.text):
        assert key_hex not in text and key_hex.upper() not in text

    # a world-readable key file is refused before anything happens
    os.chmod(key, 0o640)
    rc = mod.main(["--rpc", "tester", "--key", str(key), "--out", str(tmp_path / "other.json")])
    captured = capsys.readouterr()
    assert rc == 1 and "chmod 600" in captured.out
    assert not (tmp_path / "other.json").exists()
