"""Private data on a real 4-validator devnet with an observer: a collection of org1 and org2 (node1, node2,
and the observer, named org1's); node0 (admin) and node3 (org3) are non-members. The plaintext reaches only
the member nodes, is read only by a member's signed request, and after a purge is in no file of any home,
while the commitment's proof still verifies. And a private licence offer through the CLI: its terms open for
the buyer only and are in no node's files."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ledger.client import LedgerClient, Signer
from ledger.codec import decode, encode
from ledger.crypto import SigningKey
from ledger.nft.assets import AssetMint
from ledger.private.module import EncKeySet
from ledger.private.reads import MEMBER_HEADER, NODE_KEY_HEADER, REQUEST_HEADER, sign_fetch, sign_read
from ledger.private.records import PrivateEntry
from ledger.private.service import FETCH, FetchRequest
from ledger.sealed import generate_key, public_of
from tests.devnetutil import devnet_down, devnet_up, ledger, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def net4(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data = devnet_up(tmp_path_factory.mktemp("private") / "devnet", 4, "--observers", "1")
    try:
        yield data
    finally:
        devnet_down(data)


def homes_holding(data: dict[str, Any], needle: bytes) -> list[str]:
    """The files under the nodes' homes that contain `needle` (LevelDB tables and logs included)."""
    found = []
    for node in data["nodes"] + data["observers"]:
        for root, _, files in os.walk(node["home"]):
            for name in files:
                path = Path(root) / name
                try:
                    if needle in path.read_bytes():
                        found.append(str(path))
                except OSError:  # a file LevelDB removed meanwhile
                    continue
    return found


def read_headers(data: dict[str, Any], member: str, collection: str, key: str) -> dict[str, str]:
    signer = SigningKey.load(data["keys"][member])
    token = sign_read(signer, signer.id, data["chain_id"], collection, key, time.time_ns() // 1_000_000)
    return {MEMBER_HEADER: signer.id, REQUEST_HEADER: token}


def signed_read(data: dict[str, Any], node: int, member: str, collection: str, key: str) -> httpx.Response:
    return httpx.get(f"{data['nodes'][node]['http']}/v1/private/{collection}/{key}",
                     headers=read_headers(data, member, collection, key), timeout=10)


def test_private_data_reaches_only_member_nodes_and_a_purge_removes_it_everywhere(net4: dict[str, Any],
                                                                                   tmp_path: Path) -> None:
    d = ["--dir", net4["dir"]]
    secret = b"PRIVATE-TERMS-" + os.urandom(16).hex().encode()
    value_file = tmp_path / "terms.txt"
    value_file.write_bytes(secret)
    observer = net4["observers"][0]
    ledger("collection", "node-org", observer["id"], "org1", *d)  # an observer of org1, fetching over HTTP
    ledger("collection", "create", "deals", "--members", "org1,org2", *d)
    put = json.loads(ledger("private", "put", "deals", "k1", "--file", str(value_file), "--key", "org1", *d).stdout)
    assert put["status"] == "committed" and put["ok"]
    assert put["node"] in (net4["nodes"][1]["http"], net4["nodes"][2]["http"])

    # Both member nodes serve it to a member's signed request (one got it from the client, the other by fetching).
    for node in (1, 2):
        answer = wait_until(lambda n=node: signed_read(net4, n, "org2", "deals", "k1").json().get("value"), 15,
                            f"node{node} to serve the private entry")
        assert answer == base64.b64encode(secret).decode()
    observed = wait_until(lambda: httpx.get(f"{observer['http']}/v1/private/deals/k1", timeout=10, headers=read_headers(
        net4, "org1", "deals", "k1")).json().get("value"), 15, "the observer of org1 to fetch the private entry")
    assert observed == base64.b64encode(secret).decode()
    got = json.loads(ledger("private", "get", "deals", "k1", "--key", "org1", *d).stdout)
    assert got["commitment"] == put["commitment"]
    # Sealed to the reader's registered X25519 key, the value crosses plain HTTP unreadable.
    private, public = generate_key()
    (tmp_path / "org2.x25519").write_text(private.hex())
    Signer(SigningKey.load(net4["keys"]["org2"]), LedgerClient(net4["nodes"][0]["http"])).send(
        "member.enc_key", EncKeySet(public))
    sealed = json.loads(ledger("private", "get", "deals", "k1", "--key", "org2", "--enc-key",
                               str(tmp_path / "org2.x25519"), "--out", str(tmp_path / "out.bin"), *d).stdout)
    assert (tmp_path / "out.bin").read_bytes() == secret and sealed["commitment"] == put["commitment"]
    raw = httpx.get(f"{net4['nodes'][1]['http']}/v1/private/deals/k1", params={"sealed": "true"}, timeout=10,
                    headers=read_headers(net4, "org2", "deals", "k1"))
    assert raw.status_code == 200 and "value" not in raw.json()
    assert secret not in raw.content and base64.b64encode(secret) not in raw.content

    # A non-member's signed request, an unsigned one and a replayed one get 403.
    assert signed_read(net4, 1, "org3", "deals", "k1").status_code == 403
    assert httpx.get(f"{net4['nodes'][1]['http']}/v1/private/deals/k1", timeout=10).status_code == 403
    signer = SigningKey.load(net4["keys"]["org2"])
    token = sign_read(signer, signer.id, net4["chain_id"], "deals", "k1", time.time_ns() // 1_000_000)
    headers = {MEMBER_HEADER: signer.id, REQUEST_HEADER: token}
    url = f"{net4['nodes'][2]['http']}/v1/private/deals/k1"
    assert httpx.get(url, headers=headers, timeout=10).status_code == 200
    assert httpx.get(url, headers=headers, timeout=10).status_code == 403
    # A put sent to a non-member node is refused by the CLI before anything is sent.
    refused = ledger("private", "put", "deals", "k2", "--file", str(value_file), "--key", "org1",
                     "--node", net4["nodes"][3]["http"], *d, check=False)
    assert refused.returncode != 0 and "not of a member organisation" in refused.stderr

    # The member nodes hold it on disk; no file under the non-members' homes contains it.
    holders = homes_holding(net4, secret)
    assert holders and all(any(f"/{home}/" in p for home in ("node1", "node2", "obs0")) for p in holders), holders
    assert any("/obs0/" in p for p in holders)
    # A node of no member organisation asking over HTTP gets nothing; a request not signed by its key, 403.
    fetch = bytes([FETCH]) + encode(FetchRequest("deals", "k1", bytes.fromhex(put["commitment"])))
    stranger, reply = SigningKey.generate(), generate_key()[1]
    token = sign_fetch(stranger, net4["chain_id"], reply, fetch, time.time_ns() // 1_000_000)
    for key, status in ((stranger.public_key, 404), (SigningKey.generate().public_key, 403)):
        r = httpx.post(f"{net4['nodes'][1]['http']}/v1/private-fetch", timeout=10,
                       json={"request": fetch.hex(), "reply_key": reply.hex()},
                       headers={NODE_KEY_HEADER: key.hex(), REQUEST_HEADER: token})
        assert r.status_code == status, r.text

    ledger("private", "purge", "deals", "k1", "--key", "org2", *d)
    wait_until(lambda: not homes_holding(net4, secret), 15, "the plaintext to leave every home",
               explain=lambda: str(homes_holding(net4, secret)))
    assert signed_read(net4, 1, "org1", "deals", "k1").status_code == 404

    # The commitment stays, and its proof verifies offline.
    proof_file = tmp_path / "proof.json"
    proof_file.write_text(ledger("private", "proof", "deals", "k1", *d).stdout)
    verdict = json.loads(ledger("verify", str(proof_file), "--genesis", net4["genesis"]).stdout)
    assert verdict["valid"]
    entry = decode(PrivateEntry, bytes.fromhex(json.loads(proof_file.read_text())["entries"][0]["value"]))
    assert entry.purged and entry.commitment.hex() == put["commitment"]


def test_a_private_licence_offer_opens_for_its_buyer_only_and_its_terms_are_in_no_home(net4: dict[str, Any],
                                                                                      tmp_path: Path) -> None:
    d = ["--dir", net4["dir"]]

    def out(*args: str) -> Any:
        return json.loads(ledger(*args, *d).stdout)

    # Set up through the SDK (the CLI's own commands are what this test is about): org1 and org3 register
    # encryption keys, org1 mints the token; org2 registers its key through the CLI.
    url = net4["nodes"][0]["http"]
    signers = {org: Signer(SigningKey.load(net4["keys"][org]), LedgerClient(url)) for org in ("org1", "org3")}
    for org, member in signers.items():
        private, public = generate_key()
        (tmp_path / f"{org}.x25519").write_text(private.hex())
        member.send("member.enc_key", EncKeySet(public))
    signers["org1"].send("asset.mint", AssetMint("P-1", "data", "https://d.example/p1", hashlib.sha256(b"p1").digest(),
                                                 "", ""))
    registered = out("member", "enc-key", "--generate", str(tmp_path / "org2.x25519"), "--key", "org2")
    org2 = SigningKey.load(net4["keys"]["org2"]).id
    assert httpx.get(f"{url}/v1/members/{org2}/enc-key", timeout=10).json()["enc_public_key"] == public_of(
        bytes.fromhex((tmp_path / "org2.x25519").read_text())).hex() == registered["enc_public_key"]
    assert (tmp_path / "org2.x25519").stat().st_mode & 0o077 == 0
    terms = "audit yearly " + os.urandom(8).hex()
    made = out("market", "licence-offer", "P-1", "--purpose", "analytics", "--days", "30", "--price", "7777",
               "--private", "--buyer", "org2", "--terms", terms, "--key", "org1")
    opened = out("market", "licence-terms", made["offer_id"], "--enc-key", str(tmp_path / "org2.x25519"))
    assert (opened["price"], opened["terms"], opened["matches_commitment"]) == (7777, terms, True)
    other = ledger("market", "licence-terms", made["offer_id"], "--enc-key", str(tmp_path / "org3.x25519"), *d,
                   check=False)
    assert other.returncode != 0 and "cannot open" in other.stderr
    refused = ledger("market", "licence-buy", made["offer_id"], "--private", "--key", "org3", *d, check=False)
    assert refused.returncode != 0 and "unauthorized" in refused.stderr
    out("market", "licence-buy", made["offer_id"], "--private", "--key", "org2")
    assert ledger("rights", "check", "P-1", "--holder", "org2", "--purpose", "analytics", *d).returncode == 0
    assert not homes_holding(net4, terms.encode())
