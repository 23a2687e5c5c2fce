"""Property tests of the market: over random sequences of every kind that moves credits or tokens (issue,
withdraw, transfer, list, unlist, buy, offer, accept, withdraw an offer, expiry, licence offers and purchases,
and the token's own transfer, lease and lock), credits are conserved (all balances = issued - withdrawn,
escrow = the open offers), no balance is negative, and a failed transaction moves nothing."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.crypto import SigningKey
from ledger.market.credits import CreditsIssue, CreditsTransfer, CreditsWithdraw, balance_key, get_balance
from ledger.market.licences import LicenceBuy, LicenceOfferMake, compute_licence_offer_id, get_licence_offer
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
)
from ledger.nft.assets import AssetLease, AssetLock, AssetTransfer, AssetUnlock
from ledger.state import nonce_key
from tests.market_ledger import ADMIN2, HOUR, ORG1, ORG2, ORG3, TREASURY, MarketLedger, mint

KEYS = (TREASURY, ADMIN2, ORG1, ORG2, ORG3)
TOKENS = ("T-0", "T-1", "T-2")

# Mostly the party a step needs (the token's owner, the treasury, the offer's buyer), so that trades happen;
# otherwise anyone.
actor = st.one_of(st.just(None), st.just(None), st.just(None), st.sampled_from(KEYS))
member = st.sampled_from(KEYS)
token = st.sampled_from(TOKENS)
amount = st.one_of(st.integers(min_value=1, max_value=150), st.integers(min_value=-1, max_value=700))
# Expiries relative to now, some already past.
term = st.one_of(st.integers(min_value=HOUR, max_value=5 * HOUR), st.integers(min_value=-HOUR, max_value=HOUR))
pick = st.integers(min_value=0, max_value=20)  # which offer made so far

steps = st.one_of(
    st.tuples(st.just("issue"), actor, member, amount),
    st.tuples(st.just("withdraw"), actor, member, amount),
    st.tuples(st.just("transfer"), actor, member, amount),
    st.tuples(st.just("list"), actor, token, amount, term),
    st.tuples(st.just("unlist"), actor, token),
    st.tuples(st.just("buy"), actor, token, st.booleans()),
    st.tuples(st.just("offer"), actor, token, amount, term),
    st.tuples(st.just("accept"), actor, pick),
    st.tuples(st.just("withdraw_offer"), actor, pick),
    st.tuples(st.just("licence_offer"), actor, token, amount, term),
    st.tuples(st.just("licence_buy"), actor, pick, st.booleans()),
    st.tuples(st.just("give"), actor, token, member),
    st.tuples(st.just("lease"), actor, token, member),
    st.tuples(st.just("lock"), actor, token),
    st.tuples(st.just("unlock"), actor, token),
)
waits = st.one_of(st.just(0), st.integers(min_value=0, max_value=2 * HOUR))


def build(ledger: MarketLedger, step: tuple[Any, ...], offers: list[str], licence_offers: list[str]
          ) -> tuple[SigningKey, str, Any]:
    """The transaction of a drawn step: (sender, kind, payload)."""
    name, key, *rest = step
    now = ledger.time
    listed = [t for t in TOKENS if get_listing(ledger.state, t) is not None]
    if name == "buy" and listed:  # mostly a token that is listed
        rest[0] = listed[ledger.height % len(listed)] if key is None else rest[0]
        step = (name, key, *rest)
    if key is None:
        key = right_party(ledger, step, offers)
    if name == "issue":
        return key, "credits.issue", CreditsIssue(rest[0].id, rest[1])
    if name == "withdraw":
        return key, "credits.withdraw", CreditsWithdraw(rest[0].id, rest[1])
    if name == "transfer":
        return key, "credits.transfer", CreditsTransfer(rest[0].id, rest[1])
    if name == "list":
        return key, "market.list", MarketList(rest[0], rest[1], now + rest[2])
    if name == "unlist":
        return key, "market.unlist", MarketUnlist(rest[0])
    if name == "buy":
        listing = get_listing(ledger.state, rest[0])
        price = (listing.price if listing else 1) + (0 if rest[1] else 1)  # sometimes the wrong price
        return key, "market.buy", MarketBuy(rest[0], price)
    if name == "offer":
        return key, "market.offer", MarketOffer(rest[0], rest[1], now + rest[2])
    if name in ("accept", "withdraw_offer"):
        offer = offers[rest[0] % len(offers)] if offers else "0" * 64
        return key, f"market.{name}", OfferRef(offer)
    if name == "licence_offer":
        return key, "market.licence_offer", LicenceOfferMake(rest[0], "", ("analytics",), HOUR, False, "", b"",
                                                             rest[1], 2, now + rest[2], 0)
    if name == "licence_buy":
        offer_id = licence_offers[rest[0] % len(licence_offers)] if licence_offers else "0" * 64
        found = get_licence_offer(ledger.state, offer_id)
        return key, "market.licence_buy", LicenceBuy(offer_id, (found.price if found else 1) + (0 if rest[1] else 1))
    if name == "give":
        return key, "asset.transfer", AssetTransfer(rest[0], rest[1].id)
    if name == "lease":
        return key, "asset.lease", AssetLease(rest[0], rest[1].id, now + HOUR)
    if name == "lock":
        return key, "asset.lock", AssetLock(rest[0])
    return key, "asset.unlock", AssetUnlock(rest[0])


def right_party(ledger: MarketLedger, step: tuple[Any, ...], offers: list[str]) -> SigningKey:
    name, _, *rest = step
    by_id = {k.id: k for k in KEYS}
    if name in ("issue", "withdraw"):
        return TREASURY
    if name in ("accept", "withdraw_offer"):
        offer = get_offer(ledger.state, offers[rest[0] % len(offers)]) if offers else None
        if offer is None:
            return ORG1
        holder = offer.buyer if name == "withdraw_offer" else ledger.asset(offer.token).owner
        return by_id.get(holder, ORG1)
    if name == "licence_buy":
        return (ORG1, ORG2, ORG3)[ledger.height % 3]
    if name in ("transfer", "buy", "offer"):
        # A trader other than the token's owner, in turn.
        owner = ledger.asset(rest[0]).owner if name != "transfer" else ""
        traders = [k for k in (ORG1, ORG2, ORG3) if k.id != owner]
        return traders[ledger.height % len(traders)]
    return by_id.get(ledger.asset(rest[0]).owner, ORG1)


def check_conservation(ledger: MarketLedger, offers: list[str]) -> None:
    balances = [get_balance(ledger.state, k.id) for k in KEYS]
    # No balance is negative.
    assert all(b.available >= 0 and b.held >= 0 for b in balances)
    # Every credit is someone's: the balances add up to what was issued and not withdrawn.
    assert sum(b.available + b.held for b in balances) == ledger.outstanding()
    # What each member holds in escrow is exactly its open offers.
    for k in KEYS:
        open_offers = [get_offer(ledger.state, o) for o in offers]
        promised = sum(o.price for o in open_offers if o is not None and o.status == "open" and o.buyer == k.id)
        assert get_balance(ledger.state, k.id).held == promised


@settings(max_examples=80)
@given(st.lists(st.tuples(waits, steps), min_size=20, max_size=60))
def test_credits_are_conserved_and_failed_transactions_move_nothing(run: list[tuple[int, tuple[Any, ...]]]) -> None:
    ledger = MarketLedger()
    for n, owner in enumerate((ORG1, ORG2, ORG3)):
        ledger.ok(ORG1, "asset.mint", mint(TOKENS[n], owner.id))
    ledger.ok(ORG1, "market.royalty", MarketRoyalty(TOKENS[2], 750))
    for k in (ORG1, ORG2, ORG3):
        ledger.ok(TREASURY, "credits.issue", CreditsIssue(k.id, 500))
    offers: list[str] = []
    licence_offers: list[str] = []
    for wait, step in run:
        ledger.advance(wait)  # hooks run: offers whose hour has passed expire
        check_conservation(ledger, offers)
        key, kind, payload = build(ledger, step, offers, licence_offers)
        before = dict(ledger.state.changes)
        result = ledger.send(key, kind, payload, advance_ms=0)
        if result.ok and kind == "market.offer":
            offers.append(compute_offer_id(result.tx_id))
        if result.ok and kind == "market.licence_offer":
            licence_offers.append(compute_licence_offer_id(result.tx_id))
        if not result.ok:
            after = dict(ledger.state.changes)
            changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
            assert changed <= {nonce_key(key.id)}, (kind, result.reason, changed)
        check_conservation(ledger, offers)
    # Every balance key belongs to a member the test knows (no credits leaked to a stranger).
    known = {balance_key(k.id) for k in KEYS}
    assert {k for k in ledger.state.changes if k.startswith(b"credits/b/")} <= known
