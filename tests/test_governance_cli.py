"""`ledger governance` on a real devnet with three admins and a threshold of two: one admin alone cannot
remove another, two can; `governance list` shows the proposal; its state is proven against genesis."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ledger.codec import decode, from_plain
from ledger.crypto import SigningKey
from ledger.genesis import load_genesis
from ledger.governance import Proposal
from ledger.proofs import verify_state_proof
from tests.devnetutil import devnet_down, devnet_up, ledger

pytestmark = pytest.mark.slow


@pytest.fixture
def net(tmp_path: Path) -> Iterator[dict[str, Any]]:
    data = devnet_up(tmp_path / "devnet", 1, "--admins", "3", "--approvals", "2")
    yield data
    devnet_down(data)


def test_two_of_three_admins_remove_an_admin_and_one_alone_cannot(net: dict[str, Any]) -> None:
    d, url, keys = net["dir"], net["nodes"][0]["http"], net["keys"]
    assert keys["admin"] == keys["admin1"] and {"admin2", "admin3"} <= set(keys)
    admin3 = SigningKey.load(keys["admin3"]).id
    assert httpx.get(f"{url}/v1/governance").json()["approvals"] == 2

    def active(member: str) -> bool:
        return bool(httpx.get(f"{url}/v1/members/{member}").json()["active"])

    # admin1 (the default admin) alone: a proposal, and admin3 stays.
    out = json.loads(ledger("member", "remove", "admin3", "--dir", d).stdout)
    proposal_id = out["proposal"]
    assert (out["status"], out["approvals"]) == ("open", "1 of 2") and active(admin3)
    again = ledger("governance", "approve", proposal_id[:10], "--key", "admin1", "--dir", d, check=False)
    assert again.returncode == 1 and "already_exists" in again.stderr and active(admin3)
    listed = ledger("governance", "list", "--dir", d).stdout
    row = next(line for line in listed.splitlines() if proposal_id[:12] in line)
    assert "member.remove" in row and "1/2" in row and "open" in row and admin3 in row

    # A second admin's approval runs it.
    done = json.loads(ledger("governance", "approve", proposal_id[:10], "--key", "admin2", "--dir", d).stdout)
    assert (done["status"], done["approvals"]) == ("executed", "2 of 2") and not active(admin3)
    body = httpx.get(f"{url}/v1/governance/proposals/{proposal_id}", params={"proof": "true"}).json()
    proven = verify_state_proof(body["proof"], load_genesis(net["genesis"]))
    value = proven.values[proven.keys[0]]
    assert value is not None and decode(Proposal, value) == from_plain(Proposal, body["proposal"])
    assert body["proposal"]["status"] == "executed"

    # Two admins left at a threshold of two: removing either is refused outright.
    refused = ledger("member", "remove", "admin2", "--dir", d, check=False)
    assert refused.returncode == 1 and "fewer than the 2" in refused.stderr
    assert active(SigningKey.load(keys["admin2"]).id)
    # A top-level prefix proposed by admin2, rejected by admin1: it can no longer pass.
    prefix = json.loads(ledger("id", "prefix", "77", "--owner", "org1", "--key", "admin2", "--dir", d).stdout)
    rejected = json.loads(ledger("governance", "reject", prefix["proposal"], "--dir", d).stdout)
    assert rejected["status"] == "rejected"
    assert httpx.get(f"{url}/v1/prefixes/77").status_code == 404
    assert "rejected" in ledger("governance", "list", "--status", "rejected", "--dir", d).stdout


def test_the_anchoring_settings_change_only_when_two_admins_approve(net: dict[str, Any]) -> None:
    d = net["dir"]
    contract, submitters = "0x" + "ab" * 20, ["0x" + "01" * 20, "0x" + "02" * 20]
    assert json.loads(ledger("anchoring", "show", "--dir", d).stdout)["settings"] is None  # --ethereum none

    # admin1 alone: a proposal; nothing certified yet.
    args = ["anchoring", "set", "--eth-chain-id", "11155111", "--contract", contract.upper().replace("0X", "0x"),
            "--submitter", submitters[0], "--submitter", submitters[1], "--dir", d]
    out = json.loads(ledger(*args).stdout)
    assert (out["status"], out["approvals"], out["contract"]) == ("open", "1 of 2", contract)
    assert json.loads(ledger("anchoring", "show", "--dir", d).stdout)["settings"] is None

    # admin2 approves: the settings are certified state from that block on.
    done = json.loads(ledger("governance", "approve", out["proposal"][:10], "--key", "admin2", "--dir", d).stdout)
    assert done["status"] == "executed"
    shown = json.loads(ledger("anchoring", "show", "--dir", d).stdout)
    assert shown["settings"] == {"eth_chain_id": 11155111, "contract": contract, "submitters": submitters}

    bad = ledger("anchoring", "set", "--eth-chain-id", "1", "--contract", "0x12", "--submitter", submitters[0],
                 "--dir", d, check=False)
    assert bad.returncode == 2 and "not an Ethereum address" in bad.stderr
