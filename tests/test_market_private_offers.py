"""Private licence offers: the price and terms sealed to the two parties, a salted commitment in state, the
licence granted to the named buyer only, with the commitment as its terms hash; no credits move."""

from __future__ import annotations

import os

import pytest

from ledger.codec import decode, encode
from ledger.market.credits import CreditsIssue
from ledger.market.private_offers import (
    PrivateLicenceBuy,
    PrivateLicenceOfferMake,
    PrivateTerms,
    compute_private_offer_id,
    get_private_offer,
    terms_associated_data,
    terms_commitment,
)
from ledger.market.sales import get_sale
from ledger.nft.rights import check, compute_licence_id, get_licence
from ledger.sealed import SealError, generate_key, open_sealed, seal
from tests.market_ledger import CHAIN, DAY, ORG1, ORG2, ORG3, TREASURY, MarketLedger, mint

SELLER_KEY, BUYER_KEY, OTHER_KEY = generate_key(), generate_key(), generate_key()


@pytest.fixture
def ledger() -> MarketLedger:
    ledger = MarketLedger()
    ledger.ok(ORG1, "asset.mint", mint("D-1"))
    ledger.ok(TREASURY, "credits.issue", CreditsIssue(ORG2.id, 100))
    return ledger


def private_offer(ledger: MarketLedger, terms: PrivateTerms, buyer: str = ORG2.id) -> PrivateLicenceOfferMake:
    sealed = seal(encode(terms), [SELLER_KEY[1], BUYER_KEY[1]], terms_associated_data(CHAIN, "D-1", ORG1.id, buyer))
    return PrivateLicenceOfferMake("D-1", "", buyer, ("analytics",), 30 * DAY, False, ledger.time + DAY,
                                   terms_commitment(terms), sealed)


def test_a_private_offer_keeps_price_and_terms_off_the_state_and_grants_the_named_buyer(ledger: MarketLedger) -> None:
    terms = PrivateTerms(4321, "exclusive use in EU-WEST, audit yearly", os.urandom(32))
    before = dict(ledger.state.changes)
    made = ledger.ok(ORG1, "market.licence_offer_private", private_offer(ledger, terms))
    offer_id = compute_private_offer_id(made.tx_id)
    written = [v for k, v in ledger.state.changes.items() if before.get(k) != v and v is not None]
    assert not any(terms.terms.encode() in v or encode(4321) in v for v in written)
    offer = get_private_offer(ledger.state, offer_id)
    assert offer is not None and offer.buyer == ORG2.id and offer.commitment == terms_commitment(terms)
    ledger.refused(ORG3, "market.licence_buy_private", PrivateLicenceBuy(offer_id), "unauthorized")
    balances = (ledger.balance(ORG1), ledger.balance(ORG2))
    bought = ledger.ok(ORG2, "market.licence_buy_private", PrivateLicenceBuy(offer_id))
    assert check(ledger.state, "D-1", ORG2.id, "analytics", ledger.time).allowed
    licence = get_licence(ledger.state, compute_licence_id(bought.tx_id))
    assert licence is not None and licence.terms_hash == terms_commitment(terms)
    assert (ledger.balance(ORG1), ledger.balance(ORG2)) == balances  # no credits move: they would show the price
    assert get_sale(ledger.state, 1) is None  # nor does a sale record
    ledger.refused(ORG2, "market.licence_buy_private", PrivateLicenceBuy(offer_id), "inactive")


def test_only_the_two_parties_open_the_sealed_terms_and_only_as_this_offers(ledger: MarketLedger) -> None:
    terms = PrivateTerms(99, "terms", os.urandom(32))
    payload = private_offer(ledger, terms)
    bound = terms_associated_data(CHAIN, "D-1", ORG1.id, ORG2.id)
    for private, _ in (SELLER_KEY, BUYER_KEY):
        assert decode(PrivateTerms, open_sealed(payload.sealed_terms, private, bound)) == terms
    with pytest.raises(SealError):
        open_sealed(payload.sealed_terms, OTHER_KEY[0], bound)
    with pytest.raises(SealError):  # presented as the terms of another buyer's offer
        open_sealed(payload.sealed_terms, BUYER_KEY[0], terms_associated_data(CHAIN, "D-1", ORG1.id, ORG3.id))


def test_a_private_offer_is_refused_for_a_non_owner_itself_as_buyer_or_a_bad_commitment(ledger: MarketLedger) -> None:
    terms = PrivateTerms(1, "t", bytes(32))
    ledger.refused(ORG3, "market.licence_offer_private", private_offer(ledger, terms), "unauthorized")
    ledger.refused(ORG1, "market.licence_offer_private", private_offer(ledger, terms, buyer=ORG1.id),
                   "invalid_value")
    bad = private_offer(ledger, terms)
    ledger.refused(ORG1, "market.licence_offer_private",
                   PrivateLicenceOfferMake(*[getattr(bad, f) for f in ("token", "parent", "buyer", "purposes",
                                                                       "duration_ms", "sublicensable", "expires")],
                                           b"short", bad.sealed_terms), "invalid_value")
