"""Settlement credits and token trading in the state machine: issue, withdraw, transfer, listings, offers with
escrow, royalties, expiry, the sale record and the price statistics."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from ledger.codec import encode
from ledger.crypto import SigningKey
from ledger.governance import ProposalVote, compute_proposal_id, get_proposal
from ledger.market import trading
from ledger.market.appraisals import Appraise, appraisal_count, get_appraisal
from ledger.market.credits import MAX_SUPPLY, CreditBalance, CreditsIssue, CreditsTransfer, CreditsWithdraw
from ledger.market.sales import get_sale, price_stats, sale_count
from ledger.market.trading import (
    MarketBuy,
    MarketList,
    MarketOffer,
    MarketRoyalty,
    MarketUnlist,
    OfferRef,
    compute_offer_id,
    get_listing,
    get_offer,
    get_royalty,
)
from ledger.members import MemberSetRoles
from ledger.nft.assets import (
    AssetLease,
    AssetLock,
    AssetTransfer,
    AssetUnlock,
    get_asset,
    get_history,
    kind_index_prefix,
    owner_index_prefix,
)
from ledger.state import Overlay, get_nonce
from ledger.tx import make_tx
from tests.market_ledger import ADMIN2, CHAIN, DAY, HOUR, ORG1, ORG2, ORG3, TREASURY, MarketLedger, mint


@pytest.fixture
def ledger() -> MarketLedger:
    return MarketLedger()


def funded(ledger: MarketLedger, amount: int = 1000) -> MarketLedger:
    ledger.ok(TREASURY, "credits.issue", CreditsIssue(ORG2.id, amount))
    return ledger


# --- credits ---------------------------------------------------------------------------------------


def test_the_treasury_issues_and_withdraws_and_holders_transfer(ledger: MarketLedger) -> None:
    funded(ledger, 1000)
    ledger.ok(ORG2, "credits.transfer", CreditsTransfer(ORG3.id, 300))
    ledger.ok(TREASURY, "credits.withdraw", CreditsWithdraw(ORG3.id, 100))
    assert (ledger.balance(ORG2), ledger.balance(ORG3)) == (CreditBalance(700, 0), CreditBalance(200, 0))
    assert ledger.outstanding() == 900


@pytest.mark.parametrize(("key", "kind", "payload", "reason"), [
    (ORG1, "credits.issue", CreditsIssue(ORG1.id, 5), "unauthorized"),  # no treasury role
    (ADMIN2, "credits.issue", CreditsIssue(ORG1.id, 5), "unauthorized"),  # an admin, but no treasury
    (TREASURY, "credits.issue", CreditsIssue(ORG1.id, 0), "invalid_value"),
    (TREASURY, "credits.issue", CreditsIssue(ORG1.id, MAX_SUPPLY + 1), "invalid_value"),
    (TREASURY, "credits.issue", CreditsIssue("f" * 40, 5), "not_found"),
    (TREASURY, "credits.withdraw", CreditsWithdraw(ORG2.id, 1001), "insufficient_credits"),
    (ORG2, "credits.withdraw", CreditsWithdraw(ORG2.id, 1), "unauthorized"),
    (ORG2, "credits.transfer", CreditsTransfer(ORG3.id, 1001), "insufficient_credits"),
    (ORG2, "credits.transfer", CreditsTransfer(ORG3.id, -1), "invalid_value"),
    (ORG2, "credits.transfer", CreditsTransfer(ORG2.id, 1), "invalid_value"),
    (ORG2, "credits.transfer", CreditsTransfer("f" * 40, 1), "not_found"),
])
def test_bad_credit_moves_are_refused_and_change_nothing(ledger: MarketLedger, key: object, kind: str,
                                                          payload: object, reason: str) -> None:
    funded(ledger, 1000)
    ledger.refused(key, kind, payload, reason)  # type: ignore[arg-type]


def test_the_supply_never_passes_its_cap(ledger: MarketLedger) -> None:
    ledger.ok(TREASURY, "credits.issue", CreditsIssue(ORG1.id, MAX_SUPPLY))
    assert "more than" in ledger.refused(TREASURY, "credits.issue", CreditsIssue(ORG2.id, 1), "invalid_value")


def test_with_two_approvals_an_issue_waits_for_the_second_admin_and_its_proposer_must_stay_treasury() -> None:
    ledger = MarketLedger(approvals=2)
    first = ledger.ok(TREASURY, "credits.issue", CreditsIssue(ORG2.id, 500))
    assert ledger.balance(ORG2) == CreditBalance(0, 0)
    ledger.ok(ADMIN2, "governance.approve", ProposalVote(compute_proposal_id(first.tx_id)))
    assert ledger.balance(ORG2) == CreditBalance(500, 0) and ledger.outstanding() == 500
    # A proposal whose proposer lost the treasury role meanwhile cannot run.
    second = ledger.ok(TREASURY, "credits.issue", CreditsIssue(ORG2.id, 500))
    drop = ledger.ok(TREASURY, "member.roles", MemberSetRoles(TREASURY.id, ("admin",)))
    ledger.ok(ADMIN2, "governance.approve", ProposalVote(compute_proposal_id(drop.tx_id)))
    assert "treasury" in ledger.refused(ADMIN2, "governance.approve", ProposalVote(compute_proposal_id(second.tx_id)),
                                        "unauthorized")
    proposal = get_proposal(ledger.state, compute_proposal_id(second.tx_id))
    assert proposal is not None and proposal.status == "open" and ledger.outstanding() == 500


# --- listings and sales ----------------------------------------------------------------------------


def test_the_issue_walk_through_pays_seller_and_royalty_exactly(ledger: MarketLedger) -> None:
    funded(ledger, 1000)
    ledger.ok(ORG1, "asset.mint", mint("D-1"))
    ledger.ok(ORG1, "market.royalty", MarketRoyalty("D-1", 500))
    ledger.ok(ORG1, "market.list", MarketList("D-1", 200, ledger.time + DAY))
    ledger.ok(ORG2, "market.buy", MarketBuy("D-1", 200))
    ledger.ok(ORG2, "market.list", MarketList("D-1", 300, ledger.time + DAY))
    ledger.ok(TREASURY, "credits.issue", CreditsIssue(ORG3.id, 300))
    ledger.ok(ORG3, "market.buy", MarketBuy("D-1", 300))
    assert ledger.balance(ORG1).available == 200 + 15
    assert ledger.balance(ORG2).available == 1000 - 200 + 285
    assert ledger.balance(ORG3).available == 0
    assert ledger.asset("D-1").owner == ORG3.id and get_listing(ledger.state, "D-1") is None
    sales = [get_sale(ledger.state, n) for n in (1, 2)]
    assert [(s.price, s.royalty, s.via) for s in sales if s] == [(200, 0, "listing"), (300, 15, "listing")]
    assert [(e.event, e.to_member) for e in get_history(ledger.state, "D-1")][1:] == [
        ("transfer", ORG2.id), ("transfer", ORG3.id)]


def test_a_purchase_without_enough_credits_is_refused_and_moves_nothing(ledger: MarketLedger) -> None:
    funded(ledger, 100)
    ledger.ok(ORG1, "asset.mint", mint("D-1"))
    ledger.ok(ORG1, "market.list", MarketList("D-1", 200, ledger.time + DAY))
    assert "100 credits available, 200 needed" in ledger.refused(ORG2, "market.buy", MarketBuy("D-1", 200),
                                                                 "insufficient_credits")
    assert ledger.asset("D-1").owner == ORG1.id and sale_count(ledger.state) == 0


def test_a_listing_is_bought_only_as_listed(ledger: MarketLedger) -> None:
    funded(ledger, 1000)
    ledger.ok(ORG1, "asset.mint", mint("D-1"))
    ledger.refused(ORG2, "market.list", MarketList("D-1", 10, ledger.time + DAY), "unauthorized")
    ledger.refused(ORG1, "market.list", MarketList("D-1", 0, ledger.time + DAY), "invalid_value")
    ledger.refused(ORG1, "market.list", MarketList("D-1", 10, ledger.time), "expired")
    ledger.refused(ORG1, "market.list", MarketList("D-1", 10, ledger.time + 91 * DAY), "invalid_value")
    ledger.refused(ORG2, "market.buy", MarketBuy("D-1", 10), "not_found")
    ledger.ok(ORG1, "market.list", MarketList("D-1", 10, ledger.time + HOUR))
    # The seller raised nothing under the buyer: the buyer's price must be the listed one.
    assert "listed at 10, not 9" in ledger.refused(ORG2, "market.buy", MarketBuy("D-1", 9), "invalid_value")
    ledger.refused(ORG1, "market.buy", MarketBuy("D-1", 10), "invalid_value")  # from itself
    ledger.refused(ORG3, "market.unlist", MarketUnlist("D-1"), "unauthorized")
    ledger.advance(HOUR)
    ledger.refused(ORG2, "market.buy", MarketBuy("D-1", 10), "expired")
    ledger.ok(ORG1, "market.unlist", MarketUnlist("D-1"))
    assert get_listing(ledger.state, "D-1") is None


def test_a_listing_made_stale_by_a_transfer_cannot_be_bought_even_after_the_token_returns(
        ledger: MarketLedger) -> None:
    funded(ledger, 1000)
    ledger.ok(ORG1, "asset.mint", mint("D-1"))
    ledger.ok(ORG1, "market.list", MarketList("D-1", 10, ledger.time + DAY))
    ledger.ok(ORG1, "asset.transfer", AssetTransfer("D-1", ORG3.id))
    ledger.ok(ORG3, "asset.transfer", AssetTransfer("D-1", ORG1.id))
    assert "stale" in ledger.refused(ORG2, "market.buy", MarketBuy("D-1", 10), "inactive")


def test_locked_or_leased_tokens_are_neither_listed_nor_sold(ledger: MarketLedger) -> None:
    funded(ledger, 1000)
    ledger.ok(ORG1, "asset.mint", mint("D-1"))
    ledger.ok(ORG1, "asset.lock", AssetLock("D-1"))
    ledger.refused(ORG1, "market.list", MarketList("D-1", 10, ledger.time + DAY), "locked")
    ledger.ok(ORG1, "asset.unlock", AssetUnlock("D-1"))
    ledger.ok(ORG1, "asset.lease", AssetLease("D-1", ORG3.id, ledger.time + HOUR))
    assert "leased" in ledger.refused(ORG1, "market.list", MarketList("D-1", 10, ledger.time + DAY), "locked")
    # An offer may wait out the lease, but cannot be accepted during it.
    offer = ledger.ok(ORG2, "market.offer", MarketOffer("D-1", 50, ledger.time + DAY))
    ledger.refused(ORG1, "market.accept", OfferRef(compute_offer_id(offer.tx_id)), "locked")
    ledger.advance(HOUR)
    ledger.ok(ORG1, "market.accept", OfferRef(compute_offer_id(offer.tx_id)))
    assert ledger.asset("D-1").owner == ORG2.id


# --- offers and escrow -----------------------------------------------------------------------------


def test_an_offer_holds_escrow_until_accepted_and_pays_out_of_it_with_the_royalty(ledger: MarketLedger) -> None:
    funded(ledger, 1000)
    ledger.ok(ORG1, "asset.mint", mint("D-1", owner=ORG3.id))  # org1 creates it for org3
    ledger.ok(ORG1, "market.royalty", MarketRoyalty("D-1", 1000))
    offer = compute_offer_id(ledger.ok(ORG2, "market.offer", MarketOffer("D-1", 400, ledger.time + DAY)).tx_id)
    assert ledger.balance(ORG2) == CreditBalance(600, 400)
    # Escrow cannot be spent twice.
    ledger.refused(ORG2, "credits.transfer", CreditsTransfer(ORG1.id, 601), "insufficient_credits")
    ledger.refused(ORG2, "market.accept", OfferRef(offer), "unauthorized")  # only the owner accepts
    ledger.ok(ORG3, "market.accept", OfferRef(offer))
    assert (ledger.balance(ORG2), ledger.balance(ORG3), ledger.balance(ORG1)) == (
        CreditBalance(600, 0), CreditBalance(360, 0), CreditBalance(40, 0))
    found = get_offer(ledger.state, offer)
    assert ledger.asset("D-1").owner == ORG2.id and found is not None and found.status == "accepted"
    ledger.refused(ORG3, "market.accept", OfferRef(offer), "inactive")


def test_a_withdrawn_offer_returns_its_escrow_and_only_its_buyer_withdraws(ledger: MarketLedger) -> None:
    funded(ledger, 1000)
    ledger.ok(ORG1, "asset.mint", mint("D-1"))
    ledger.refused(ORG1, "market.offer", MarketOffer("D-1", 5, ledger.time + DAY), "invalid_value")  # own token
    ledger.refused(ORG2, "market.offer", MarketOffer("D-1", 1001, ledger.time + DAY), "insufficient_credits")
    offer = compute_offer_id(ledger.ok(ORG2, "market.offer", MarketOffer("D-1", 400, ledger.time + DAY)).tx_id)
    ledger.refused(ORG1, "market.withdraw_offer", OfferRef(offer), "unauthorized")
    ledger.ok(ORG2, "market.withdraw_offer", OfferRef(offer))
    assert ledger.balance(ORG2) == CreditBalance(1000, 0)
    ledger.refused(ORG1, "market.accept", OfferRef(offer), "inactive")


def test_an_expired_offer_cannot_be_accepted_and_its_escrow_returns_once_its_hour_has_passed(
        ledger: MarketLedger) -> None:
    funded(ledger, 1000)
    ledger.ok(ORG1, "asset.mint", mint("D-1"))
    expires = (ledger.time // HOUR + 2) * HOUR + 1000  # a second into an hour two hours ahead
    offer = compute_offer_id(ledger.ok(ORG2, "market.offer", MarketOffer("D-1", 400, expires)).tx_id)
    ledger.advance(expires - ledger.time)
    ledger.refused(ORG1, "market.accept", OfferRef(offer), "expired")
    assert ledger.balance(ORG2) == CreditBalance(600, 400)  # its hour is not over
    ledger.advance(HOUR)
    found = get_offer(ledger.state, offer)
    assert ledger.balance(ORG2) == CreditBalance(1000, 0) and found is not None and found.status == "expired"


# --- royalties -------------------------------------------------------------------------------------


def test_a_royalty_is_set_once_by_the_minter_right_after_the_mint(ledger: MarketLedger) -> None:
    ledger.ok(ORG1, "asset.mint", mint("D-1"))
    ledger.refused(ORG2, "market.royalty", MarketRoyalty("D-1", 500), "unauthorized")
    ledger.refused(ORG1, "market.royalty", MarketRoyalty("D-1", 10_001), "invalid_value")
    ledger.refused(ORG1, "market.royalty", MarketRoyalty("D-1", 0), "invalid_value")
    ledger.refused(ORG1, "market.royalty", MarketRoyalty("X", 500), "not_found")
    ledger.ok(ORG1, "market.royalty", MarketRoyalty("D-1", 10_000))
    ledger.refused(ORG1, "market.royalty", MarketRoyalty("D-1", 1), "already_exists")
    ledger.ok(ORG1, "asset.mint", mint("D-2"))
    ledger.ok(ORG1, "asset.transfer", AssetTransfer("D-2", ORG2.id))
    ledger.refused(ORG1, "market.royalty", MarketRoyalty("D-2", 500), "invalid_value")


def test_a_mint_sets_the_royalty_itself_for_good_and_a_refused_one_mints_nothing(ledger: MarketLedger) -> None:
    funded(ledger, 1000)
    ledger.refused(ORG1, "asset.mint", replace(mint("D-1"), royalty_bps=10_001), "invalid_value")
    assert get_asset(ledger.state, "D-1") is None and get_royalty(ledger.state, "D-1") is None
    ledger.ok(ORG1, "asset.mint", replace(mint("D-1", owner=ORG3.id), royalty_bps=500))
    royalty = get_royalty(ledger.state, "D-1")
    assert royalty is not None and (royalty.creator, royalty.bps) == (ORG1.id, 500)  # the minter, not the owner
    ledger.refused(ORG1, "market.royalty", MarketRoyalty("D-1", 100), "already_exists")
    ledger.ok(ORG3, "market.list", MarketList("D-1", 200, ledger.time + DAY))
    ledger.ok(ORG2, "market.buy", MarketBuy("D-1", 200))
    assert ledger.balance(ORG1).available == 10 and ledger.balance(ORG3).available == 190
    # A mint without a royalty encodes as it did before the field: its transaction id is unchanged.
    assert encode(mint("D-2")) == encode(AssetMintBefore(*(getattr(mint("D-2"), f) for f in (
        "id", "kind", "uri", "sha256", "owner", "identifier"))))


@dataclass(frozen=True)
class AssetMintBefore:  # asset.mint's payload before it had royalty_bps
    id: str
    kind: str
    uri: str
    sha256: bytes
    owner: str
    identifier: str


# --- prices ----------------------------------------------------------------------------------------


def test_price_statistics_over_windows() -> None:
    now = 100 * DAY
    entries = [(now - 40 * DAY, 1000), (now - 3 * DAY, 10), (now - 2 * DAY, 20), (now - HOUR, 30), (now, 50)]
    stats = price_stats(entries, now)
    assert stats["24h"] == {"count": 2, "volume": 80, "last": 50, "median": 40, "vwap": 40.0}
    assert stats["7d"] == {"count": 4, "volume": 110, "last": 50, "median": 25, "vwap": 27.5}
    assert stats["all"]["median"] == 30 and stats["all"]["count"] == 5
    assert price_stats([], now)["30d"] == {"count": 0, "volume": 0, "last": None, "median": None, "vwap": None}


def test_expiry_returns_at_most_the_sweep_limit_a_block_and_goes_on_in_the_next(
        ledger: MarketLedger, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trading, "SWEEP_LIMIT", 2)
    funded(ledger, 1000)
    ledger.ok(ORG1, "asset.mint", mint("D-1"))
    expires = (ledger.time // HOUR + 2) * HOUR
    offers = [compute_offer_id(ledger.ok(ORG2, "market.offer", MarketOffer("D-1", 10 + n, expires)).tx_id)
              for n in range(5)]
    ledger.advance(expires + HOUR - ledger.time)  # the hour has passed: the first two expire
    held = [ledger.balance(ORG2).held]
    for _ in range(3):
        ledger.advance(1000)
        held.append(ledger.balance(ORG2).held)
    assert held == [12 + 13 + 14, 14, 0, 0]
    assert all((o := get_offer(ledger.state, i)) is not None and o.status == "expired" for i in offers)
    assert ledger.balance(ORG2) == CreditBalance(1000, 0)
    assert not [k for k in ledger.state.changes if k.startswith(b"market/exp") and ledger.state.changes[k]]


# --- appraisals ------------------------------------------------------------------------------------


def test_appraisers_record_appraisals_that_only_accumulate(ledger: MarketLedger) -> None:
    ledger.ok(ORG1, "asset.mint", mint("D-1"))
    evidence = bytes(range(32))
    ledger.refused(ORG1, "market.appraise", Appraise("D-1", 100, "cost", ledger.time, evidence), "unauthorized")
    ledger.refused(TREASURY, "market.appraise", Appraise("X", 100, "cost", ledger.time, evidence), "not_found")
    ledger.refused(TREASURY, "market.appraise", Appraise("D-1", 0, "cost", ledger.time, evidence), "invalid_value")
    ledger.refused(TREASURY, "market.appraise", Appraise("D-1", 100, "", ledger.time, evidence), "invalid_value")
    ledger.refused(TREASURY, "market.appraise", Appraise("D-1", 100, "cost", ledger.time + DAY, evidence),
                   "invalid_value")
    ledger.refused(TREASURY, "market.appraise", Appraise("D-1", 100, "cost", ledger.time, b"x"), "invalid_value")
    ledger.ok(TREASURY, "market.appraise", Appraise("D-1", 100, "cost", ledger.time, evidence))
    ledger.ok(TREASURY, "market.appraise", Appraise("D-1", 140, "income", ledger.time, evidence))
    found = [get_appraisal(ledger.state, "D-1", n) for n in (1, 2)]
    assert appraisal_count(ledger.state, "D-1") == 2
    assert [(a.value, a.method, a.appraiser) for a in found if a] == [(100, "cost", TREASURY.id),
                                                                     (140, "income", TREASURY.id)]


def _written_by(ledger: MarketLedger, key: SigningKey, kind: str, payload: object) -> dict[bytes, bytes | None]:
    """The state keys one transaction writes (in a block of its own), then applied to the ledger."""
    ledger.height += 1
    ledger.time += 1000
    tx = make_tx(key, CHAIN, get_nonce(ledger.state, key.id) + 1, kind, payload)
    block = Overlay(ledger.state)
    [result] = ledger.machine.execute_block(block, [encode(tx)], ledger.height, ledger.time, prev_hash=bytes(32))
    assert result.ok, result.message
    block.merge_into(ledger.state)
    return block.changes


def test_a_sale_and_a_transfer_move_the_owner_index_entry_and_leave_the_kind_entry_unwritten(
        ledger: MarketLedger) -> None:
    funded(ledger)
    ledger.ok(ORG1, "asset.mint", mint("D-1"))
    ledger.ok(ORG1, "market.list", MarketList("D-1", 100, ledger.time + DAY))
    sold = _written_by(ledger, ORG2, "market.buy", MarketBuy("D-1", 100))
    moved = _written_by(ledger, ORG2, "asset.transfer", AssetTransfer("D-1", ORG3.id))
    for changes, old, new in ((sold, ORG1, ORG2), (moved, ORG2, ORG3)):
        assert changes[owner_index_prefix(old.id) + b"D-1"] is None
        assert changes[owner_index_prefix(new.id) + b"D-1"] is not None
        assert kind_index_prefix("data") + b"D-1" not in changes  # a kind never changes: nothing to rewrite
    assert ledger.state.get(kind_index_prefix("data") + b"D-1") is not None
