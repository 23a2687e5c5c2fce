"""Selling data-rights licences for credits: offers by the owner (roots) and by a sublicensable holder
(children), purchases that pay and grant together, sold-out, expired and withdrawn offers, the sale record."""

from __future__ import annotations

import time
from dataclasses import replace

import msgpack
import pytest

from ledger.benchmark import _market_batches
from ledger.codec import CodecError, decode, encode
from ledger.market.credits import CreditBalance, CreditsIssue
from ledger.market.licences import (
    LicenceBuy,
    LicenceOfferMake,
    LicenceOfferRef,
    LicenceShare,
    compute_licence_offer_id,
    get_licence_offer,
    share_key,
)
from ledger.market.sales import get_sale
from ledger.nft.assets import AssetTransfer
from ledger.nft.rights import Licence, LicenceGrant, check, compute_licence_id, get_licence
from ledger.tx import decode_tx
from tests.market_ledger import CHAIN, DAY, ORG1, ORG2, ORG3, TREASURY, MarketLedger, mint


@pytest.fixture
def ledger() -> MarketLedger:
    ledger = MarketLedger()
    ledger.ok(ORG1, "asset.mint", mint("D-1"))
    for key in (ORG2, ORG3):
        ledger.ok(TREASURY, "credits.issue", CreditsIssue(key.id, 100))
    return ledger


def offer(ledger: MarketLedger, parent: str = "", price: int = 40, max_sales: int = 2,
          purposes: tuple[str, ...] = ("analytics",), days: int = 30, share: int = 0) -> LicenceOfferMake:
    return LicenceOfferMake("D-1", parent, purposes, days * DAY, True, "", b"", price, max_sales, ledger.time + DAY,
                            share)


def test_buying_a_licence_pays_and_grants_together_until_sold_out(ledger: MarketLedger) -> None:
    made = ledger.ok(ORG1, "market.licence_offer", offer(ledger))
    offer_id = compute_licence_offer_id(made.tx_id)
    ledger.refused(ORG2, "market.licence_buy", LicenceBuy(offer_id, 39), "invalid_value")
    bought = ledger.ok(ORG2, "market.licence_buy", LicenceBuy(offer_id, 40))
    assert check(ledger.state, "D-1", ORG2.id, "analytics", ledger.time).allowed
    assert not check(ledger.state, "D-1", ORG2.id, "marketing", ledger.time).allowed
    assert not check(ledger.state, "D-1", ORG2.id, "analytics", ledger.time + 31 * DAY).allowed
    assert (ledger.balance(ORG1), ledger.balance(ORG2)) == (CreditBalance(40, 0), CreditBalance(60, 0))
    sale = get_sale(ledger.state, 1)
    assert sale is not None and (sale.via, sale.licence, sale.purposes) == (
        "licence", compute_licence_id(bought.tx_id), ("analytics",))
    ledger.ok(ORG3, "market.licence_buy", LicenceBuy(offer_id, 40))
    found = get_licence_offer(ledger.state, offer_id)
    assert found is not None and (found.sold, found.status) == (2, "sold_out")
    ledger.refused(ORG2, "market.licence_buy", LicenceBuy(offer_id, 40), "inactive")


def test_a_licence_offer_is_refused_where_a_grant_would_be(ledger: MarketLedger) -> None:
    ledger.refused(ORG2, "market.licence_offer", offer(ledger), "unauthorized")  # not the owner
    ledger.refused(ORG1, "market.licence_offer", offer(ledger, price=0), "invalid_value")
    ledger.refused(ORG1, "market.licence_offer", offer(ledger, max_sales=0), "invalid_value")
    ledger.refused(ORG1, "market.licence_offer", offer(ledger, purposes=()), "invalid_value")
    ledger.refused(ORG1, "market.licence_offer", offer(ledger, days=0), "invalid_value")


def test_a_root_offer_goes_stale_when_the_token_is_sold_and_a_buyer_without_credits_gets_nothing(
        ledger: MarketLedger) -> None:
    offer_id = compute_licence_offer_id(ledger.ok(ORG1, "market.licence_offer", offer(ledger, price=150)).tx_id)
    assert "100 credits available" in ledger.refused(ORG2, "market.licence_buy", LicenceBuy(offer_id, 150),
                                                     "insufficient_credits")
    ledger.ok(TREASURY, "credits.issue", CreditsIssue(ORG2.id, 100))
    ledger.ok(ORG1, "asset.transfer", AssetTransfer("D-1", ORG3.id))
    assert "owner" in ledger.refused(ORG2, "market.licence_buy", LicenceBuy(offer_id, 150), "unauthorized")
    assert not check(ledger.state, "D-1", ORG2.id, "analytics", ledger.time).allowed


def test_a_holder_sells_sublicences_within_its_licence_and_withdraws_its_offer(ledger: MarketLedger) -> None:
    root = ledger.ok(ORG1, "licence.grant", LicenceGrant("D-1", "", ORG2.id, ("analytics", "training"), 0,
                                                          ledger.time + 10 * DAY, True, "", b""))
    parent = compute_licence_id(root.tx_id)
    ledger.refused(ORG2, "market.licence_offer", offer(ledger, parent, purposes=("marketing",)), "exceeds_parent")
    ledger.refused(ORG2, "market.licence_offer", offer(ledger, parent, days=11), "exceeds_parent")
    offer_id = compute_licence_offer_id(ledger.ok(ORG2, "market.licence_offer", offer(ledger, parent, days=5)).tx_id)
    ledger.ok(ORG3, "market.licence_buy", LicenceBuy(offer_id, 40))
    assert check(ledger.state, "D-1", ORG3.id, "analytics", ledger.time).allowed
    assert ledger.balance(ORG2).available == 140
    ledger.refused(ORG1, "market.licence_withdraw", LicenceOfferRef(offer_id), "unauthorized")
    ledger.ok(ORG2, "market.licence_withdraw", LicenceOfferRef(offer_id))
    ledger.refused(ORG3, "market.licence_buy", LicenceBuy(offer_id, 40), "inactive")


def test_an_expired_licence_offer_sells_nothing(ledger: MarketLedger) -> None:
    offer_id = compute_licence_offer_id(ledger.ok(ORG1, "market.licence_offer", offer(ledger)).tx_id)
    ledger.advance(DAY)
    ledger.refused(ORG2, "market.licence_buy", LicenceBuy(offer_id, 40), "expired")


def test_sublicences_sold_further_pass_shares_up_the_tree(ledger: MarketLedger) -> None:
    ledger.ok(TREASURY, "credits.issue", CreditsIssue(TREASURY.id, 5000))
    ledger.ok(TREASURY, "credits.issue", CreditsIssue(ORG3.id, 2000))
    ledger.refused(ORG1, "market.licence_offer", offer(ledger, share=10_001), "invalid_value")
    # org1 sells org2 a root licence that passes 10% up; org2 sells org3 a sublicence that passes 5% up.
    root_offer = compute_licence_offer_id(ledger.ok(ORG1, "market.licence_offer", offer(ledger, share=1000)).tx_id)
    root = compute_licence_id(ledger.ok(ORG2, "market.licence_buy", LicenceBuy(root_offer, 40)).tx_id)
    sub_offer = compute_licence_offer_id(ledger.ok(ORG2, "market.licence_offer",
                                                   offer(ledger, root, price=1000, days=5, share=500)).tx_id)
    sub = compute_licence_id(ledger.ok(ORG3, "market.licence_buy", LicenceBuy(sub_offer, 1000)).tx_id)
    assert ledger.balance(ORG2).available == 60 + 1000 - 100 and ledger.balance(ORG1).available == 40 + 100
    # org3 sells a sub-sublicence for 2,000: 5% (100) to org2, which passes 10% of that (10) to org1.
    leaf_offer = compute_licence_offer_id(ledger.ok(ORG3, "market.licence_offer",
                                                    offer(ledger, sub, price=2000, days=2)).tx_id)
    ledger.ok(TREASURY, "market.licence_buy", LicenceBuy(leaf_offer, 2000))
    assert ledger.balance(ORG3).available == 2000 + 100 - 1000 + 2000 - 100
    assert ledger.balance(ORG2).available == 960 + 100 - 10
    assert ledger.balance(ORG1).available == 140 + 10
    sale = get_sale(ledger.state, 3)
    assert sale is not None and (sale.price, sale.royalty) == (2000, 100)
    # Each licence carries the share it was sold with; its grantor is who the share is paid to.
    found = [get_licence(ledger.state, i) for i in (root, sub)]
    assert [(lic.grantor, lic.resale_share_bps) for lic in found if lic] == [(ORG1.id, 1000), (ORG2.id, 500)]
    assert not [k for k in ledger.state.changes if k.startswith(b"market/lsh/")]  # no share record of its own


def test_a_licence_sold_before_licences_carried_their_share_still_passes_its_share_record_up(
        ledger: MarketLedger) -> None:
    ledger.ok(TREASURY, "credits.issue", CreditsIssue(ORG3.id, 1000))
    root_offer = compute_licence_offer_id(ledger.ok(ORG1, "market.licence_offer", offer(ledger)).tx_id)
    root = compute_licence_id(ledger.ok(ORG2, "market.licence_buy", LicenceBuy(root_offer, 40)).tx_id)
    # As an older chain stored it: the licence without a share, the share in a record of its own.
    lic = get_licence(ledger.state, root)
    assert lic is not None and lic.resale_share_bps == 0
    assert encode(lic) == encode(replace(lic, resale_share_bps=0))
    ledger.state.put(share_key(root), encode(LicenceShare(root, ORG1.id, 2500)))
    sub_offer = compute_licence_offer_id(ledger.ok(ORG2, "market.licence_offer",
                                                   offer(ledger, root, price=400, days=5)).tx_id)
    ledger.ok(ORG3, "market.licence_buy", LicenceBuy(sub_offer, 400))
    assert ledger.balance(ORG1).available == 40 + 100  # 25% of 400
    assert ledger.balance(ORG2).available == 60 + 300


def test_a_licence_record_from_before_the_share_field_decodes_with_the_same_bytes() -> None:
    fields = ("L-1", "D-1", "", 0, "org1", "org2", ["analytics"], 1, 2, True, "", "", b"", 3, 4, False, "", 0, 0)
    old = msgpack.packb(list(fields), use_bin_type=True)  # the 19 fields a licence had before
    lic = decode(Licence, old)
    assert lic.resale_share_bps == 0 and encode(lic) == old
    with_share = encode(replace(lic, resale_share_bps=700))
    assert decode(Licence, with_share).resale_share_bps == 700
    assert with_share[3:] == old[3:] + encode(700)  # the same fields, and one more
    with pytest.raises(CodecError):  # the default written out is not canonical: one encoding per licence
        decode(Licence, msgpack.packb([*fields, 0], use_bin_type=True))


def test_the_benchmarks_market_workload_commits_every_transaction() -> None:
    """`ledger bench --workload market`: each batch, executed as a block after the one before, succeeds whole
    (a purchase always finds what the batch before listed and offered)."""
    ledger = MarketLedger()
    ledger.time = int(time.time() * 1000)  # the workload's expiries are a month from the wall clock
    ledger.ok(TREASURY, "credits.issue", CreditsIssue(ORG2.id, 10**6))
    batches = _market_batches({"chain_id": CHAIN}, ORG1, ORG2, ORG3.id, 0, 60, 12)
    assert sum(len(b) for b in batches) == 60
    kinds = set()
    for raws in batches:
        ledger.height += 1
        ledger.time += 1000
        results = ledger.machine.execute_block(ledger.state, raws, ledger.height, ledger.time, prev_hash=bytes(32))
        assert all(r.ok for r in results), [(r.reason, r.message) for r in results if not r.ok]
        kinds |= {decode_tx(raw).kind for raw in raws}
    assert {"market.buy", "market.licence_buy", "market.list", "market.licence_offer"} <= kinds
    # Batches of 12: 2 fresh tokens (8 transactions) and the 2 of the batch before bought (4); the 6th is cut
    # to 4, so batches 2 to 5 bought 8 tokens and 8 licences.
    assert ledger.balance(ORG1).available == 8 * (100 + 10)
