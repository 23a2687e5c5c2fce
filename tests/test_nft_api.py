"""HTTP API of assets, provenance, licences and the rights check, on a real in-process node."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from fastapi.testclient import TestClient

from ledger.api.server import create_app
from ledger.codec import encode
from ledger.crypto import SigningKey
from ledger.genesis import Genesis
from ledger.nft.assets import AssetMint, AssetTransfer
from ledger.nft.rights import LicenceGrant, LicenceRevoke, compute_licence_id
from ledger.resolver.registry import IdRegister, ValueSpec
from ledger.tx import make_tx
from ledger.verifier import verify_document
from tests.nodeutil import CHAIN_ID, Home, make_home

DAY = 86_400_000
HASH = hashlib.sha256(b"meta").digest()


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return make_home(tmp_path, prefixes=(("88.100.1", "org1"),))


@pytest.fixture
def client(home: Home) -> Iterator[TestClient]:
    with TestClient(create_app(home.path)) as c:
        yield c


def send(client: TestClient, key: SigningKey, kind: str, payload: Any) -> dict[str, Any]:
    nonce = client.get(f"/v1/members/{key.id}").json()["nonce"] + 1
    raw = encode(make_tx(key, CHAIN_ID, nonce, kind, payload))
    r = client.post("/v1/tx?wait=true", content=msgpack.packb([raw], use_bin_type=True),
                    headers={"content-type": "application/msgpack"})
    result: dict[str, Any] = r.json()["results"][0]
    assert result["status"] == "committed", result
    return result


def ok(client: TestClient, key: SigningKey, kind: str, payload: Any) -> dict[str, Any]:
    result = send(client, key, kind, payload)
    assert result["ok"], result
    return result


def test_asset_lifecycle_over_http(client: TestClient, home: Home) -> None:
    handle = "88.100.1/EQ-2024-000123"
    ok(client, home.org1, "id.register", IdRegister(handle, (ValueSpec(1, "URL", "https://twin/1"),)))
    ok(client, home.org1, "asset.mint", AssetMint("EQ-1", "equipment", "https://meta/1", HASH, "", handle))
    refused = send(client, home.org2, "asset.mint", AssetMint("EQ-2", "equipment", "https://m", HASH, "", handle))
    assert (refused["ok"], refused["reason"]) == (False, "unauthorized")
    ok(client, home.org1, "asset.transfer", AssetTransfer("EQ-1", home.org2.id))

    body = client.get("/v1/assets/EQ-1", params={"proof": "true"}).json()
    assert body["asset"]["owner"] == home.org2.id and body["asset"]["sha256"] == HASH.hex()
    assert body["asset"]["identifier"] == handle and body["user_of"] == ""
    assert verify_document(body, home.genesis).present

    hist = client.get("/v1/assets/EQ-1/history").json()["history"]
    assert [(e["event"], e["actor"]) for e in hist] == [("mint", home.org1.id), ("transfer", home.org1.id)]
    assert all(len(e["tx_id"]) == 64 and e["height"] > 0 and e["timestamp"] > 0 for e in hist)

    # Resolving the nameplate returns the token.
    record = client.get(f"/v1/resolve/{handle}").json()["record"]
    assert ("NFT", "EQ-1") in [(v["type"], v["value"]) for v in record["values"]]

    ok(client, home.org2, "asset.mint", AssetMint("D-1", "data", "https://meta/d", HASH, "", ""))
    listed = client.get("/v1/assets", params={"owner": home.org2.id}).json()["assets"]
    assert [a["id"] for a in listed] == ["D-1", "EQ-1"]
    assert [a["id"] for a in client.get("/v1/assets", params={"owner": home.org2.id, "kind": "data"}).json()[
        "assets"]] == ["D-1"]
    assert [a["id"] for a in client.get("/v1/assets", params={"kind": "equipment"}).json()["assets"]] == ["EQ-1"]
    assert client.get("/v1/assets", params={"owner": home.org1.id}).json()["assets"] == []


def test_asset_errors_are_json(client: TestClient) -> None:
    r = client.get("/v1/assets/NOPE")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    assert client.get("/v1/assets/NOPE/history").status_code == 404
    assert client.get("/v1/licences/" + "ab" * 32).json()["error"] == "not_found"
    # Ids and kinds of the wrong shape are refused as the OpenAPI document says they are.
    assert client.get("/v1/licences/abc").json()["error"] == "malformed"
    assert client.get("/v1/assets", params={"kind": "car"}).json()["error"] == "malformed"
    assert client.get("/v1/assets").status_code == 200  # every live token, paged
    r = client.get("/v1/rights/check", params={"token": "X", "holder": "Y", "purpose": "p", "at": "yesterday"})
    assert r.status_code == 400 and r.json()["error"] == "malformed"
    r = client.get("/v1/rights/check", params={"token": "X"})
    assert r.status_code == 400 and r.json()["error"] == "malformed"


def test_licences_and_rights_check_with_proof(client: TestClient, home: Home) -> None:
    genesis: Genesis = home.genesis
    ok(client, home.org2, "asset.mint", AssetMint("D-1", "data", "https://meta/d", HASH, "", ""))
    now = client.get("/v1/blocks/latest").json()["header"]["timestamp"]
    until = now + 30 * DAY
    # org1 is the holder here (tests.nodeutil has admin, org1, org2).
    res = ok(client, home.org2, "licence.grant",
             LicenceGrant("D-1", "", home.org1.id, ("analytics",), 0, until, True, "https://terms", HASH))
    lid = compute_licence_id(bytes.fromhex(res["tx_id"]))
    lic = client.get(f"/v1/licences/{lid}", params={"proof": "true"}).json()
    assert lic["licence"]["holder"] == home.org1.id and lic["active"] is True
    assert verify_document(lic, genesis).state.keys[0] == f"licence/{lid}".encode()

    params = {"token": "D-1", "holder": home.org1.id, "purpose": "analytics"}
    d = client.get("/v1/rights/check", params=params).json()
    assert (d["allowed"], d["reason"], d["licence_id"]) == (True, "allowed", lid)
    assert verify_document(d, genesis).kind == "rights-check"  # decided again from the proven records
    assert client.get("/v1/rights/check", params={**params, "purpose": "resale"}).json()["allowed"] is False
    late = client.get("/v1/rights/check", params={**params, "at": str(until)}).json()
    assert (late["allowed"], late["reason"]) == (False, "expired")
    iso = client.get("/v1/rights/check", params={**params, "at": "2000-01-01T00:00:00Z"}).json()
    assert (iso["at"], iso["reason"]) == (946684800000, "not_yet_valid")

    sub = ok(client, home.org1, "licence.grant",
             LicenceGrant("D-1", lid, home.admin.id, ("analytics",), 0, until, False, "", b""))
    sub_id = compute_licence_id(bytes.fromhex(sub["tx_id"]))
    assert client.get("/v1/rights/check", params={**params, "holder": home.admin.id}).json()["allowed"] is True
    ok(client, home.org2, "licence.revoke", LicenceRevoke(lid))
    for holder in (home.org1.id, home.admin.id):
        d = client.get("/v1/rights/check", params={**params, "holder": holder}).json()
        assert d["allowed"] is False and d["reason"] in ("revoked", "ancestor_revoked")
    assert client.get(f"/v1/licences/{sub_id}").json()["inactive_reason"] == "ancestor_revoked"
    none = client.get("/v1/rights/check", params={**params, "holder": home.org2.id}).json()
    assert (none["allowed"], none["reason"], none["licence_id"]) == (False, "no_licence", None)
    # A denial is proven too: the proof shows the holder has no licence on the token.
    assert verify_document(none, genesis).kind == "rights-check"


# --- the `ledger asset` / `ledger rights` commands against a real devnet node ---------------------


@pytest.mark.slow
def test_cli_done_when_steps_on_one_node(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys
    from datetime import UTC, datetime, timedelta

    from tests.devnetutil import devnet_down, devnet_up

    def ledger(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "ledger.cli", *args, *(() if args[0] == "devnet" else
                               ("--dir", d))], capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"ledger {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    net = devnet_up(tmp_path / "devnet", 1)
    d = net["dir"]
    try:
        meta = hashlib.sha256(b"pump metadata").hexdigest()
        # 1. The admin gives 88.100.1 to org1; org1 registers and mints equipment bound to it; org2 is refused.
        ledger("id", "prefix", "88.100.1", "--owner", "org1", "--key", f"{d}/keys/admin.pem")
        ledger("id", "register", "88.100.1/EQ-2024-000123", "--url", "https://twin.example/EQ-123")
        ledger("asset", "mint", "PUMP-1", "--kind", "equipment", "--identifier", "88.100.1/EQ-2024-000123",
               "--uri", "https://meta.example/pump-1.json", "--hash", meta)
        bad = ledger("asset", "mint", "PUMP-2", "--kind", "equipment", "--identifier", "88.100.1/EQ-2024-000123",
                     "--uri", "https://m", "--hash", meta, "--key", "org2", check=False)
        assert bad.returncode == 1 and "unauthorized" in bad.stderr
        bad = ledger("id", "register", "88.100.1/EQ-X", "--url", "https://x", "--key", f"{d}/keys/org2.pem",
                     check=False)
        assert bad.returncode == 1 and "unauthorized" in bad.stderr
        resolved = json.loads(ledger("resolve", "88.100.1/EQ-2024-000123").stdout)
        assert ("NFT", "PUMP-1") in [(v["type"], v["value"]) for v in resolved["record"]["values"]]
        # 2. org1 transfers to org2; `asset show` gives the owner and a two-event history.
        ledger("asset", "transfer", "PUMP-1", "--to", "org2")
        shown = json.loads(ledger("asset", "show", "PUMP-1").stdout)
        org2 = json.loads((Path(d) / "devnet.json").read_text())["keys"]["org2"]
        assert shown["owner"] == SigningKey.load(org2).id
        assert [e["event"] for e in shown["history"]] == ["mint", "transfer"]
        # 3. org2 mints a data token and licenses org3 for one purpose for 30 days, sublicensable.
        ledger("asset", "mint", "DATA-1", "--kind", "data", "--uri", "https://meta.example/d.json", "--hash", meta,
               "--key", "org2")
        until = datetime.now(UTC) + timedelta(days=30)
        lic = json.loads(ledger("rights", "grant", "DATA-1", "--to", "org3", "--purpose", "analytics", "--until",
                                until.isoformat(), "--sublicensable", "--key", "org2").stdout)["licence_id"]
        assert ledger("rights", "check", "DATA-1", "--holder", "org3", "--purpose", "analytics").returncode == 0
        other = ledger("rights", "check", "DATA-1", "--holder", "org3", "--purpose", "training", check=False)
        assert other.returncode == 1 and json.loads(other.stdout)["reason"] == "purpose_not_granted"
        later = (until + timedelta(days=1)).isoformat()
        late = ledger("rights", "check", "DATA-1", "--holder", "org3", "--purpose", "analytics", "--at", later,
                      check=False)
        assert late.returncode == 1 and json.loads(late.stdout)["reason"] == "expired"
        # 4. org3 sublicenses to org1; revoking org3's licence denies both.
        ledger("rights", "grant", "DATA-1", "--to", "org1", "--purpose", "analytics", "--until", until.isoformat(),
               "--parent", lic, "--key", "org3")
        assert ledger("rights", "check", "DATA-1", "--holder", "org1", "--purpose", "analytics").returncode == 0
        ledger("rights", "revoke", lic, "--key", "org2")
        for holder in ("org3", "org1"):
            denied = ledger("rights", "check", "DATA-1", "--holder", holder, "--purpose", "analytics", check=False)
            assert denied.returncode == 1, denied.stdout
    finally:
        devnet_down(net)
