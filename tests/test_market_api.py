"""The market over HTTP on one node: balances with proofs, supply, listings, offers, prices."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ledger.api.server import create_app
from ledger.codec import encode
from ledger.market.appraisals import Appraise
from ledger.market.credits import CreditBalance, CreditsIssue
from ledger.market.licences import LicenceBuy, LicenceOfferMake, compute_licence_offer_id
from ledger.market.trading import MarketList, MarketOffer, MarketRoyalty, OfferRef, compute_offer_id
from ledger.members import MemberSetRoles
from ledger.nft.assets import AssetMint
from ledger.verifier import verify_document
from tests.nodeutil import Home, make_home
from tests.test_nft_api import ok

HASH = hashlib.sha256(b"meta").digest()
DAY = 86_400_000


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return make_home(tmp_path)


@pytest.fixture
def client(home: Home) -> Iterator[TestClient]:
    with TestClient(create_app(home.path)) as c:
        yield c


def test_an_offer_accepted_over_http_with_proven_balances_and_prices(client: TestClient, home: Home) -> None:
    ok(client, home.admin, "member.roles", MemberSetRoles(home.admin.id, ("admin", "appraiser", "treasury")))
    ok(client, home.admin, "credits.issue", CreditsIssue(home.org2.id, 1000))
    ok(client, home.org1, "asset.mint", AssetMint("D-1", "data", "https://meta/d", HASH, "", ""))
    ok(client, home.org1, "market.royalty", MarketRoyalty("D-1", 250))
    now = client.get("/v1/blocks/latest").json()["header"]["timestamp"]
    ok(client, home.org1, "market.list", MarketList("D-1", 900, now + DAY))
    offer = compute_offer_id(bytes.fromhex(ok(client, home.org2, "market.offer",
                                              MarketOffer("D-1", 400, now + DAY))["tx_id"]))

    shown = client.get("/v1/market/listings/D-1").json()
    assert shown["buyable"] and shown["listing"]["price"] == 900 and shown["open_offers"] == [offer]
    assert shown["royalty"] == {"token": "D-1", "creator": home.org1.id, "bps": 250}
    assert client.get(f"/v1/market/offers/{offer}").json()["status"] == "open"
    held = client.get(f"/v1/credits/{home.org2.id}").json()
    assert (held["available"], held["held"]) == (600, 400)

    ok(client, home.org1, "market.accept", OfferRef(offer))
    assert client.get(f"/v1/market/offers/{offer}").json()["status"] == "accepted"
    shown = client.get("/v1/market/listings/D-1").json()
    assert shown["listing"] is None and not shown["buyable"] and shown["open_offers"] == []
    prices = client.get("/v1/market/prices", params={"token": "D-1"}).json()
    assert [(s["price"], s["via"], s["royalty"]) for s in prices["sales"]] == [(400, "offer", 0)]  # the creator sold
    assert prices["windows"]["all"]["last"] == 400
    assert client.get("/v1/market/prices", params={"token": "D-1", "kind": "model"}).json()["windows"]["all"][
        "count"] == 0
    assert client.get("/v1/credits").json() == {"height": prices["height"], "issued": 1000, "withdrawn": 0,
                                                "outstanding": 1000}

    # Each balance is proven: the proof's value is the answer's record, checked against the genesis alone.
    for key, expected in ((home.org1, CreditBalance(400, 0)), (home.org2, CreditBalance(600, 0))):
        body = client.get(f"/v1/credits/{key.id}", params={"proof": "true"}).json()
        verdict = verify_document(body["proof"], home.genesis)
        assert (body["available"], body["held"]) == (expected.available, expected.held)
        assert verdict.present and verdict.record == encode(expected).hex()
    # A member with no credits gets zeros, and a proof of absence.
    body = client.get(f"/v1/credits/{'0' * 40}", params={"proof": "true"}).json()
    assert (body["available"], body["held"]) == (0, 0) and not verify_document(body["proof"], home.genesis).present

    # org2, the owner now, sells a licence to org1; the offer and the purpose's prices show it.
    made = ok(client, home.org2, "market.licence_offer", LicenceOfferMake(
        "D-1", "", ("analytics/v2",), DAY, False, "", b"", 30, 1, now + DAY, 0))
    licence_offer = compute_licence_offer_id(bytes.fromhex(made["tx_id"]))
    ok(client, home.org1, "market.licence_buy", LicenceBuy(licence_offer, 30))
    shown = client.get(f"/v1/market/licence-offers/{licence_offer}", params={"proof": "true"}).json()
    assert (shown["status"], shown["offer"]["sold"]) == ("sold_out", 1)
    assert verify_document(shown["proof"], home.genesis).present
    by_purpose = client.get("/v1/market/prices", params={"purpose": "analytics/v2"}).json()
    assert [(s["price"], s["via"]) for s in by_purpose["sales"]] == [(30, "licence")]
    assert client.get("/v1/market/prices", params={"purpose": "analytics"}).json()["sales"] == []

    # Appraisals, newest first, each proven.
    for value in (500, 650):
        ok(client, home.admin, "market.appraise", Appraise("D-1", value, "income approach", now, HASH))
    body = client.get("/v1/market/appraisals/D-1", params={"proof": "true", "limit": 1}).json()
    assert body["total"] == 2 and [a["value"] for a in body["appraisals"]] == [650]
    assert len(verify_document(body["proof"], home.genesis).state.keys) == 2  # the count and the one listed

    assert client.get(f"/v1/market/offers/{'0' * 64}").status_code == 404
    assert client.get(f"/v1/market/licence-offers/{'0' * 64}").status_code == 404
    assert client.get("/v1/market/listings/NOPE").status_code == 404
