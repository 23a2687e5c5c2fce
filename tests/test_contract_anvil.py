"""LedgerAnchor against a real Anvil node (from the pinned npm package), started and stopped by pid."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from web3 import Web3
from web3.exceptions import ContractLogicError

from devnet.ethereum import ANVIL, DEV_CHAIN_ID, anvil_running
from ledger.anchor import contract as ac

REPO = Path(__file__).resolve().parents[1]
DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"  # Anvil's first dev account
ANVIL_CHAIN_ID = DEV_CHAIN_ID
MAX_ANCHOR_GAS = 55_000

pytestmark = pytest.mark.skipif(
    not os.access(ANVIL, os.X_OK), reason="Anvil binary absent: run `make install` (npm ci in contracts/)"
)


@pytest.fixture(scope="module")
def anvil_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with anvil_running(tmp_path_factory.mktemp("anvil") / "anvil.log") as url:
        yield url


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    p = tmp_path / "dev.key"
    p.write_text(DEV_KEY + "\n")
    os.chmod(p, 0o600)
    return p


def test_deploy_anchor_redeploy_on_anvil(anvil_url: str, key_file: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    w3 = ac.connect(anvil_url)
    assert w3.eth.chain_id == ANVIL_CHAIN_ID
    deployer = ac.load_key_file(key_file)
    honest, rogue = Account.create(), Account.create()
    # fund the submitters from the dev account (locally signed, like any other network)
    for account in (honest, rogue):
        ac.send_transaction(w3, deployer, {"to": account.address, "value": Web3.to_wei(1, "ether")})

    out = tmp_path / "deployment.json"
    args = argparse.Namespace(rpc=anvil_url, key=str(key_file), out=str(out), artifact=None, force=False,
                              timeout=60.0)
    assert ac.run_deploy(args) == 0
    printed = capsys.readouterr().out
    assert "deployed LedgerAnchor" in printed
    assert DEV_KEY.removeprefix("0x") not in printed
    dep = json.loads(out.read_text())
    assert dep["chain_id"] == ANVIL_CHAIN_ID
    assert dep["code_hash"] == ac.load_artifact().runtime_code_hash
    c = ac.anchor_contract(w3, dep["address"])

    # One submitter anchors the largest height there is (with the old contract, every later anchor failed).
    ac.submit_anchor(w3, rogue, c, 2**64 - 1, Web3.keccak(text="rogue"))
    gas = []
    for h in (1, 2, 5, 9):
        receipt = ac.submit_anchor(w3, honest, c, h, Web3.keccak(text=f"anvil-{h}"))
        gas.append(receipt["gasUsed"])
        (ev,) = c.events.Anchored().process_receipt(receipt)
        assert ev["args"]["height"] == h and ev["args"]["submitter"] == honest.address
    with capsys.disabled():
        print(f"\nLedgerAnchor gas on Anvil: anchors {gas}")
    assert max(gas) <= MAX_ANCHOR_GAS
    assert ac.root_at(c, honest.address, 5) == Web3.keccak(text="anvil-5")
    assert ac.root_at(c, rogue.address, 5) == b"\x00" * 32

    # reverts surface as ContractLogicError (custom error data) on Anvil
    with pytest.raises(ContractLogicError) as info:
        ac.submit_anchor(w3, honest, c, 9, Web3.keccak(text="again"))
    data = ac.revert_data(info.value)
    assert data is not None
    assert ac.decode_revert(c.abi, data) == ("AlreadyAnchored", (honest.address, 9, Web3.keccak(text="anvil-9")))

    # logs by topic (0x strings)
    topic0 = Web3.keccak(text="Anchored(uint64,bytes32,address)").to_0x_hex()
    logs = w3.eth.get_logs({"address": c.address, "fromBlock": 0, "toBlock": "latest", "topics": [topic0]})
    assert [c.events.Anchored().process_log(lg)["args"]["height"] for lg in logs] == [2**64 - 1, 1, 2, 5, 9]

    # re-running the deployment re-uses the contract (through the script, as a user would run it)
    block_before = w3.eth.block_number
    proc = subprocess.run(
        [sys.executable, str(REPO / "contracts" / "deploy.py"), "--rpc", anvil_url, "--key", str(key_file),
         "--out", str(out)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "re-used LedgerAnchor" in proc.stdout
    assert DEV_KEY.removeprefix("0x") not in proc.stdout + proc.stderr
    assert w3.eth.block_number == block_before
    assert json.loads(out.read_text())["address"] == dep["address"]
