"""State module: trading asset tokens for settlement credits: listings, offers with escrow, royalties.

Theory of operation. The market owns its records and asks the others for the rest: the token moves through
`ledger.nft.assets.sell`, credits through `ledger.market.credits` (`pay`, `hold`, `release`, `pay_held`), and
each sale is recorded by `ledger.market.sales.record_sale`, all inside the one transaction that trades, so a
sale moves the credits and the token together or, if any step refuses, nothing at all.

Keys (each a state key, provable like any record):
- `market/l/<token>`: the token's `Listing` (at most one; a new listing by the owner replaces it).
- `market/o/<id>`: an `Offer`, id = sha256("offer:" || the offering tx id) in hex; `market/ot/<token>/<id>`
  indexes the token's open offers.
- `market/r/<token>`: the token's `Royalty` (ERC-2981): basis points of every later sale's price, paid to its
  creator (the minter). Set by `market.royalty` only as the token's next act after its mint (the CLI's
  `asset mint --royalty` sends both), never changed: a buyer can rely on it.
- `market/exp/<hour>` (an `ExpiryQueue`: how many offers expire in that hour, how many were handled),
  `market/exp/<hour>/<n>` (the n-th such offer's id) and `market/exp-hours` (the hours with a queue, sorted;
  at most one per hour of MAX_TERM_MS): the expiry queue. Queuing an offer writes one entry, whatever the
  hour holds already. At the start of every block (a `TimedHook`) the offers of each hour that has wholly
  passed are expired and their escrow returned to their buyers, at most SWEEP_LIMIT a block (the rest next
  block). An offer is refused from its exact expiry on; its buyer can take the escrow back at once with
  `market.withdraw_offer`.

Rules (one check per line, each raising a typed `TxRejected`):
- market.list (TOKEN, PRICE, EXPIRES): by the owner; the token is not burned, locked or leased; a listing
  remembers the token's event count, so any later event (a transfer, a lease, a lock...) makes it stale.
- market.unlist (TOKEN): by the lister or the token's owner.
- market.buy (TOKEN, PRICE): PRICE is the listed price (so a seller cannot raise it under a buyer's feet);
  the listing is neither stale nor expired; the buyer has PRICE available. Seller gets PRICE - royalty.
- market.offer (TOKEN, PRICE, EXPIRES): by anyone but the owner; PRICE goes into escrow.
- market.accept (OFFER): by the token's owner, before the offer expires; paid out of the escrow.
- market.withdraw_offer (OFFER): by its buyer, while open; the escrow returns.
- Prices are 1 to MAX_AMOUNT credits; expiries lie in the future, at most MAX_TERM_MS ahead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from ledger.codec import encode
from ledger.crypto import sha256
from ledger.market import credits
from ledger.market.sales import record_sale
from ledger.nft.assets import Asset, get_asset, sale_refusal, sell
from ledger.state import Handler, Overlay, StateView, TxContext, get_record
from ledger.tx import Reject, TxRejected, register_kind

HOUR_MS = 3_600_000
MAX_TERM_MS = 90 * 24 * HOUR_MS  # the furthest expiry of a listing or an offer
SWEEP_LIMIT = 1000  # expired offers closed at the start of one block
MAX_BPS = 10_000
HOURS_KEY = b"market/exp-hours"

OPEN, ACCEPTED, WITHDRAWN, EXPIRED = "open", "accepted", "withdrawn", "expired"


@dataclass(frozen=True)
class Listing:
    token: str
    seller: str
    price: int
    expires: int  # ms, block time from which it cannot be bought
    asset_events: int  # the token's event count when listed: any later event makes the listing stale
    height: int
    listed_at: int  # ms


@dataclass(frozen=True)
class Offer:
    id: str
    token: str
    buyer: str
    price: int  # held in the buyer's escrow while open
    expires: int  # ms
    status: str  # open, accepted, withdrawn or expired
    height: int
    created_at: int  # ms
    closed_height: int  # 0 while open


@dataclass(frozen=True)
class Royalty:
    token: str
    creator: str
    bps: int  # basis points of the price, 1 to 10,000


@dataclass(frozen=True)
class ExpiryQueue:
    queued: int  # offers queued in this hour (entries 1..queued)
    swept: int  # entries already handled (a sweep cut short by SWEEP_LIMIT goes on from here)


@dataclass(frozen=True)
class MarketList:
    token: str
    price: int
    expires: int  # ms


@dataclass(frozen=True)
class MarketUnlist:
    token: str


@dataclass(frozen=True)
class MarketBuy:
    token: str
    price: int  # the listed price the buyer agrees to


@dataclass(frozen=True)
class MarketOffer:
    token: str
    price: int
    expires: int  # ms


@dataclass(frozen=True)
class OfferRef:
    offer: str  # the offer id


@dataclass(frozen=True)
class MarketRoyalty:
    token: str
    bps: int


# --- keys and queries ------------------------------------------------------------------------------


def listing_key(token: str) -> bytes:
    return b"market/l/" + token.encode()


def offer_key(offer_id: str) -> bytes:
    return b"market/o/" + offer_id.encode()


def token_offers_prefix(token: str) -> bytes:
    return b"market/ot/" + token.encode() + b"/"


def royalty_key(token: str) -> bytes:
    return b"market/r/" + token.encode()


def hour_key(hour: int) -> bytes:
    return b"market/exp/" + f"{hour:012d}".encode()


def hour_entry_key(hour: int, n: int) -> bytes:
    return hour_key(hour) + f"/{n:08d}".encode()


def compute_offer_id(tx_id: bytes) -> str:
    return sha256(b"offer:" + tx_id).hex()


def get_listing(view: StateView, token: str) -> Listing | None:
    return get_record(view, Listing, listing_key(token))


def get_offer(view: StateView, offer_id: str) -> Offer | None:
    return get_record(view, Offer, offer_key(offer_id))


def get_royalty(view: StateView, token: str) -> Royalty | None:
    return get_record(view, Royalty, royalty_key(token))


def listing_refusal(view: StateView, listing: Listing, at_ms: int) -> TxRejected | None:
    """Why `listing` cannot be bought at block time `at_ms`, or None."""
    asset = get_asset(view, listing.token)
    if asset is None or asset.owner != listing.seller or asset.events != listing.asset_events:
        return TxRejected(Reject.INACTIVE, f"the listing of {listing.token!r} is stale: the token changed since")
    if at_ms >= listing.expires:
        return TxRejected(Reject.EXPIRED, f"the listing of {listing.token!r} expired at {listing.expires}")
    return sale_refusal(asset, at_ms)


def royalty_of(view: StateView, token: str, seller: str, price: int) -> tuple[str, int]:
    """(creator, credits) of the royalty a sale of `token` by `seller` at `price` pays (rounded down; none
    when the creator sells)."""
    royalty = get_royalty(view, token)
    if royalty is None or royalty.creator == seller:
        return "", 0
    return royalty.creator, price * royalty.bps // MAX_BPS


# --- helpers -------------------------------------------------------------------------------------


def _token(ctx: TxContext, token: str) -> Asset:
    asset = get_asset(ctx.state, token)
    # The token exists.
    if asset is None:
        raise TxRejected(Reject.NOT_FOUND, f"no asset {token!r}")
    # It is not burned.
    if asset.burned:
        raise TxRejected(Reject.INACTIVE, f"asset {token!r} is burned")
    return asset


def _check_terms(ctx: TxContext, price: int, expires: int) -> None:
    credits.check_amount(price, "price")
    # The expiry lies ahead.
    if expires <= ctx.timestamp:
        raise TxRejected(Reject.EXPIRED, f"expiry {expires} is not after block time {ctx.timestamp}")
    # ... but not too far: escrow is not locked up for years.
    if expires > ctx.timestamp + MAX_TERM_MS:
        raise TxRejected(Reject.INVALID_VALUE, f"expiry is more than {MAX_TERM_MS // (24 * HOUR_MS)} days ahead")


def _settle(ctx: TxContext, asset: Asset, seller: str, buyer: str, price: int, via: str) -> None:
    """Pay the seller and the creator's royalty (out of escrow for an offer), move the token, record the sale."""
    creator, royalty = royalty_of(ctx.state, asset.id, seller, price)
    pay = credits.pay_held if via == "offer" else credits.pay
    pay(ctx, buyer, seller, price - royalty)
    if royalty:
        pay(ctx, buyer, creator, royalty)
    sell(ctx, asset.id, seller, buyer, f"sold for {price} credits ({via})")
    if ctx.state.get(listing_key(asset.id)) is not None:
        ctx.delete(listing_key(asset.id))
    record_sale(ctx, asset.id, asset.kind, price, royalty, seller, buyer, via)


def _close_offer(ctx: TxContext, offer: Offer, status: str) -> None:
    ctx.put(offer_key(offer.id), replace(offer, status=status, closed_height=ctx.height))
    ctx.delete(token_offers_prefix(offer.token) + offer.id.encode())


def _queue_expiry(ctx: TxContext, offer: Offer) -> None:
    """Append the offer to its hour's queue: one entry key each, so queuing costs the same however full the hour."""
    hour = offer.expires // HOUR_MS
    queue = get_record(ctx.state, ExpiryQueue, hour_key(hour)) or ExpiryQueue(0, 0)
    ctx.put(hour_entry_key(hour, queue.queued + 1), offer.id)
    ctx.put(hour_key(hour), replace(queue, queued=queue.queued + 1))
    hours = get_record(ctx.state, tuple[int, ...], HOURS_KEY) or ()
    if hour not in hours:
        ctx.put(HOURS_KEY, tuple(sorted((*hours, hour))))


# --- handlers ------------------------------------------------------------------------------------


def process_list(ctx: TxContext, p: MarketList) -> None:
    asset = _token(ctx, p.token)
    # Only the owner lists.
    if asset.owner != ctx.sender:
        raise TxRejected(Reject.UNAUTHORIZED, f"only the owner lists {p.token!r}")
    refusal = sale_refusal(asset, ctx.timestamp)
    # A locked or leased token is not for sale.
    if refusal is not None:
        raise refusal
    _check_terms(ctx, p.price, p.expires)
    ctx.put(listing_key(p.token), Listing(p.token, ctx.sender, p.price, p.expires, asset.events, ctx.height,
                                          ctx.timestamp))


def process_unlist(ctx: TxContext, p: MarketUnlist) -> None:
    listing = get_listing(ctx.state, p.token)
    # The token is listed.
    if listing is None:
        raise TxRejected(Reject.NOT_FOUND, f"{p.token!r} is not listed")
    asset = get_asset(ctx.state, p.token)
    # Only the lister or the token's owner removes the listing.
    if ctx.sender != listing.seller and (asset is None or ctx.sender != asset.owner):
        raise TxRejected(Reject.UNAUTHORIZED, f"only the lister or the owner unlists {p.token!r}")
    ctx.delete(listing_key(p.token))


def process_buy(ctx: TxContext, p: MarketBuy) -> None:
    listing = get_listing(ctx.state, p.token)
    # The token is listed.
    if listing is None:
        raise TxRejected(Reject.NOT_FOUND, f"{p.token!r} is not listed")
    refusal = listing_refusal(ctx.state, listing, ctx.timestamp)
    # The listing still stands: same owner, no event since, not expired, token neither locked nor leased.
    if refusal is not None:
        raise refusal
    # The buyer pays the price it saw.
    if p.price != listing.price:
        raise TxRejected(Reject.INVALID_VALUE, f"{p.token!r} is listed at {listing.price}, not {p.price}")
    # Nobody buys from itself.
    if ctx.sender == listing.seller:
        raise TxRejected(Reject.INVALID_VALUE, f"{ctx.sender} already owns {p.token!r}")
    available = credits.get_balance(ctx.state, ctx.sender).available
    # The buyer can pay the whole price.
    if available < listing.price:
        raise TxRejected(Reject.INSUFFICIENT_CREDITS,
                         f"{ctx.sender} has {available} credits available, {listing.price} needed")
    _settle(ctx, _token(ctx, p.token), listing.seller, ctx.sender, listing.price, "listing")


def process_offer(ctx: TxContext, p: MarketOffer) -> None:
    asset = _token(ctx, p.token)
    # The owner does not bid on its own token.
    if asset.owner == ctx.sender:
        raise TxRejected(Reject.INVALID_VALUE, f"{ctx.sender} already owns {p.token!r}")
    _check_terms(ctx, p.price, p.expires)
    credits.hold(ctx, ctx.sender, p.price)
    offer = Offer(compute_offer_id(ctx.tx_id), p.token, ctx.sender, p.price, p.expires, OPEN, ctx.height,
                  ctx.timestamp, 0)
    ctx.put(offer_key(offer.id), offer)
    ctx.state.put(token_offers_prefix(p.token) + offer.id.encode(), encode(offer.id))
    _queue_expiry(ctx, offer)


def _open_offer(ctx: TxContext, offer_id: str) -> Offer:
    offer = get_offer(ctx.state, offer_id)
    # The offer exists.
    if offer is None:
        raise TxRejected(Reject.NOT_FOUND, f"no offer {offer_id}")
    # It is still open.
    if offer.status != OPEN:
        raise TxRejected(Reject.INACTIVE, f"offer {offer_id} is {offer.status}")
    return offer


def process_accept(ctx: TxContext, p: OfferRef) -> None:
    offer = _open_offer(ctx, p.offer)
    asset = _token(ctx, offer.token)
    # Only the token's owner accepts.
    if asset.owner != ctx.sender:
        raise TxRejected(Reject.UNAUTHORIZED, f"only the owner of {offer.token!r} accepts offers for it")
    # The offer has not expired.
    if ctx.timestamp >= offer.expires:
        raise TxRejected(Reject.EXPIRED, f"offer {offer.id} expired at {offer.expires}")
    _settle(ctx, asset, ctx.sender, offer.buyer, offer.price, "offer")
    _close_offer(ctx, offer, ACCEPTED)


def process_withdraw_offer(ctx: TxContext, p: OfferRef) -> None:
    offer = _open_offer(ctx, p.offer)
    # Only its buyer withdraws an offer.
    if offer.buyer != ctx.sender:
        raise TxRejected(Reject.UNAUTHORIZED, f"only {offer.buyer} withdraws offer {offer.id}")
    credits.release(ctx, offer.buyer, offer.price)
    _close_offer(ctx, offer, WITHDRAWN)


def set_royalty(ctx: TxContext, token: str, creator: str, bps: int) -> None:
    """Set the royalty of a token being minted (`asset.mint` with `royalty_bps`; `ledger.nft.assets`)."""
    # Basis points: 1 to 10,000 (100 %).
    if not 1 <= bps <= MAX_BPS:
        raise TxRejected(Reject.INVALID_VALUE, f"royalty must be 1 to {MAX_BPS} basis points")
    ctx.put(royalty_key(token), Royalty(token, creator, bps))


def process_royalty(ctx: TxContext, p: MarketRoyalty) -> None:
    asset = _token(ctx, p.token)
    # Only the token's creator sets its royalty.
    if ctx.sender != asset.minter:
        raise TxRejected(Reject.UNAUTHORIZED, f"only the minter of {p.token!r} sets its royalty")
    # A royalty is set once, for good.
    if get_royalty(ctx.state, p.token) is not None:
        raise TxRejected(Reject.ALREADY_EXISTS, f"{p.token!r} has a royalty already")
    # ... and only as the token's first act after its mint (so no holder's terms change later).
    if asset.events != 1:
        raise TxRejected(Reject.INVALID_VALUE, f"a royalty is set right after the mint; {p.token!r} has changed since")
    # Basis points: 1 to 10,000 (100 %).
    if not 1 <= p.bps <= MAX_BPS:
        raise TxRejected(Reject.INVALID_VALUE, f"royalty must be 1 to {MAX_BPS} basis points")
    ctx.put(royalty_key(p.token), Royalty(p.token, asset.minter, p.bps))


class MarketModule:
    """The trading transactions, and the expiry of offers at the start of each block (`ledger.state.TimedHook`)."""

    handlers: Mapping[str, Handler] = {
        "market.list": process_list,
        "market.unlist": process_unlist,
        "market.buy": process_buy,
        "market.offer": process_offer,
        "market.accept": process_accept,
        "market.withdraw_offer": process_withdraw_offer,
        "market.royalty": process_royalty,
    }

    def begin_block_at(self, state: Overlay, height: int, timestamp: int) -> None:
        hours = get_record(state, tuple[int, ...], HOURS_KEY) or ()
        current = timestamp // HOUR_MS
        if not hours or hours[0] >= current:
            return  # the common case: one read, nothing due
        ctx = TxContext(state, "", (), height, timestamp, b"")
        budget = SWEEP_LIMIT
        remaining = list(hours)
        while remaining and remaining[0] < current and budget > 0:
            hour = remaining[0]
            queue = get_record(state, ExpiryQueue, hour_key(hour)) or ExpiryQueue(0, 0)
            last = min(queue.queued, queue.swept + budget)
            for n in range(queue.swept + 1, last + 1):
                offer = get_offer(state, get_record(state, str, hour_entry_key(hour, n)) or "")
                if offer is not None and offer.status == OPEN:
                    credits.release(ctx, offer.buyer, offer.price)
                    _close_offer(ctx, offer, EXPIRED)
                state.delete(hour_entry_key(hour, n))
            budget -= last - queue.swept
            if last < queue.queued:  # the budget ran out inside this hour: go on from here next block
                ctx.put(hour_key(hour), replace(queue, swept=last))
                break
            state.delete(hour_key(hour))
            remaining.pop(0)
        if remaining:
            ctx.put(HOURS_KEY, tuple(remaining))
        else:
            state.delete(HOURS_KEY)


register_kind("market.list", MarketList)
register_kind("market.unlist", MarketUnlist)
register_kind("market.buy", MarketBuy)
register_kind("market.offer", MarketOffer)
register_kind("market.accept", OfferRef)
register_kind("market.withdraw_offer", OfferRef)
register_kind("market.royalty", MarketRoyalty)
