"""State module: selling data-rights licences for credits.

Theory of operation. A `LicenceOffer` under `market/lo/<id>` (id = sha256("licence-offer:" || the offering tx
id) in hex) says: a licence on TOKEN for PURPOSES, valid DURATION_MS from its purchase, sublicensable or not,
at PRICE credits, at most MAX_SALES times, until EXPIRES. Its seller is the token's owner (the licences it
sells are roots of the token's tree) or the holder of a sublicensable licence PARENT (they are its
children). `market.licence_buy` pays the seller and has the rights module grant the licence
(`ledger.nft.rights.grant`, with the seller as grantor), in one transaction: the buyer has the licence and
the seller the credits, or neither. Each purchase is recorded as a sale (`ledger.market.sales`, indexed by
purpose).

Shares up the tree: an offer may set `resale_share_bps`; each licence sold through it then carries that share
itself (`Licence.resale_share_bps`; its grantor, the seller, is the beneficiary). When its holder later sells
sublicences of it, the holder pays that share of the price to the licence's grantor, who passes the share set
on its own licence up in turn (a share of what it received), and so on up the tree while shares are set and
amount to at least a credit. Licences granted directly (`licence.grant`) carry none. (Chains from before kept
the share in a `LicenceShare` under `market/lsh/<licence id>`; it is still read for a licence without one.)

The rights module checks, at every purchase, what it checks at a grant: the seller still owns the token (a
root) or still holds an active, sublicensable parent whose purposes and validity cover the licence.

Rules (one check per line, each raising a typed `TxRejected`):
- market.licence_offer: by the token's owner (no parent) or the parent's holder; purposes and terms as a
  grant takes them; a duration of 1 ms to MAX_DURATION_MS; price 1 to MAX_AMOUNT; 1 to MAX_SALES sales;
  expiry ahead, at most MAX_OFFER_TERM_MS.
- market.licence_buy (OFFER, PRICE): PRICE is the offer's; the offer is open, not expired, not sold out; the
  buyer is not the seller and has PRICE available.
- market.licence_withdraw (OFFER): by its seller; it closes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from ledger.crypto import sha256
from ledger.market import credits
from ledger.market.sales import record_sale
from ledger.nft.assets import get_asset
from ledger.nft.rights import MAX_PURPOSE_LEN, MAX_PURPOSES, LicenceGrant, check_grant, get_licence, grant
from ledger.state import Handler, StateView, TxContext, get_record
from ledger.tx import Reject, TxRejected, register_kind

DAY_MS = 86_400_000
MAX_DURATION_MS = 3650 * DAY_MS  # ten years
MAX_OFFER_TERM_MS = 365 * DAY_MS
MAX_SALES = 1_000_000
MAX_BPS = 10_000
OPEN, SOLD_OUT, WITHDRAWN = "open", "sold_out", "withdrawn"


@dataclass(frozen=True)
class LicenceOffer:
    id: str
    token: str
    seller: str
    parent: str  # "" when the seller sells root licences as the token's owner
    purposes: tuple[str, ...]  # sorted, unique
    duration_ms: int  # each licence sold is valid this long from its purchase
    sublicensable: bool
    terms_uri: str
    terms_hash: bytes
    price: int
    max_sales: int
    sold: int
    expires: int  # ms
    status: str  # open, sold_out or withdrawn (expired is derived from `expires`)
    height: int
    created_at: int  # ms
    resale_share_bps: int  # what each licence sold here passes up to the seller from its sublicences' sales


@dataclass(frozen=True)
class LicenceOfferMake:
    token: str
    parent: str
    purposes: tuple[str, ...]
    duration_ms: int
    sublicensable: bool
    terms_uri: str
    terms_hash: bytes
    price: int
    max_sales: int
    expires: int  # ms
    resale_share_bps: int  # 0 to 10,000: the share of its sublicences' sales a licence sold here passes up


@dataclass(frozen=True)
class LicenceShare:
    licence: str
    beneficiary: str  # who sold the licence, and is paid the share
    bps: int


@dataclass(frozen=True)
class LicenceBuy:
    offer: str
    price: int  # the offer's price, which the buyer agrees to


@dataclass(frozen=True)
class LicenceOfferRef:
    offer: str


def share_key(licence_id: str) -> bytes:
    return b"market/lsh/" + licence_id.encode()


def get_share(view: StateView, licence_id: str) -> LicenceShare | None:
    return get_record(view, LicenceShare, share_key(licence_id))


def licence_offer_key(offer_id: str) -> bytes:
    return b"market/lo/" + offer_id.encode()


def compute_licence_offer_id(tx_id: bytes) -> str:
    return sha256(b"licence-offer:" + tx_id).hex()


def get_licence_offer(view: StateView, offer_id: str) -> LicenceOffer | None:
    return get_record(view, LicenceOffer, licence_offer_key(offer_id))


def status_at(offer: LicenceOffer, at_ms: int) -> str:
    return "expired" if offer.status == OPEN and at_ms >= offer.expires else offer.status


def _terms(ctx: TxContext, p: LicenceOfferMake, valid_until: int) -> LicenceGrant:
    return LicenceGrant(p.token, p.parent, ctx.sender, p.purposes, 0, valid_until, p.sublicensable, p.terms_uri,
                        p.terms_hash)


def process_offer(ctx: TxContext, p: LicenceOfferMake) -> None:
    purposes = tuple(sorted(set(p.purposes)))
    # Purposes: as many and as long as a licence takes (the grant checks them again at each purchase).
    if not 0 < len(purposes) <= MAX_PURPOSES or any(not 0 < len(x) <= MAX_PURPOSE_LEN for x in purposes):
        raise TxRejected(Reject.INVALID_VALUE, f"a licence lists 1-{MAX_PURPOSES} purposes of 1-{MAX_PURPOSE_LEN} "
                                               "characters")
    # Each licence sold lasts a positive, bounded time.
    if not 0 < p.duration_ms <= MAX_DURATION_MS:
        raise TxRejected(Reject.INVALID_VALUE, f"duration must be 1 ms to {MAX_DURATION_MS // DAY_MS} days")
    credits.check_amount(p.price, "price")
    # A share is a part of the whole.
    if not 0 <= p.resale_share_bps <= MAX_BPS:
        raise TxRejected(Reject.INVALID_VALUE, f"resale_share_bps must be 0 to {MAX_BPS}")
    # A bounded, positive number of licences.
    if not 1 <= p.max_sales <= MAX_SALES:
        raise TxRejected(Reject.INVALID_VALUE, f"max_sales must be 1 to {MAX_SALES}")
    # The offer's expiry lies ahead, within a year.
    if not ctx.timestamp < p.expires <= ctx.timestamp + MAX_OFFER_TERM_MS:
        raise TxRejected(Reject.EXPIRED if p.expires <= ctx.timestamp else Reject.INVALID_VALUE,
                         f"expiry must lie after block time and at most {MAX_OFFER_TERM_MS // DAY_MS} days ahead")
    # The seller could grant this licence now (owner of the token, or holder of an active sublicensable
    # parent covering it): the rights module's checks of a grant, without the grant.
    check_grant(ctx, _terms(ctx, p, ctx.timestamp + p.duration_ms))
    offer = LicenceOffer(compute_licence_offer_id(ctx.tx_id), p.token, ctx.sender, p.parent, purposes, p.duration_ms,
                         p.sublicensable, p.terms_uri, p.terms_hash, p.price, p.max_sales, 0, p.expires, OPEN,
                         ctx.height, ctx.timestamp, p.resale_share_bps)
    ctx.put(licence_offer_key(offer.id), offer)


def _open(ctx: TxContext, offer_id: str) -> LicenceOffer:
    offer = get_licence_offer(ctx.state, offer_id)
    # The offer exists.
    if offer is None:
        raise TxRejected(Reject.NOT_FOUND, f"no licence offer {offer_id}")
    # It is open.
    if offer.status != OPEN:
        raise TxRejected(Reject.INACTIVE, f"licence offer {offer_id} is {offer.status}")
    return offer


def process_buy(ctx: TxContext, p: LicenceBuy) -> None:
    offer = _open(ctx, p.offer)
    # It has not expired.
    if ctx.timestamp >= offer.expires:
        raise TxRejected(Reject.EXPIRED, f"licence offer {offer.id} expired at {offer.expires}")
    # The buyer pays the price it saw.
    if p.price != offer.price:
        raise TxRejected(Reject.INVALID_VALUE, f"licence offer {offer.id} costs {offer.price}, not {p.price}")
    # Nobody buys from itself.
    if ctx.sender == offer.seller:
        raise TxRejected(Reject.INVALID_VALUE, "the seller does not buy its own licence offer")
    available = credits.get_balance(ctx.state, ctx.sender).available
    # The buyer can pay.
    if available < offer.price:
        raise TxRejected(Reject.INSUFFICIENT_CREDITS,
                         f"{ctx.sender} has {available} credits available, {offer.price} needed")
    credits.pay(ctx, ctx.sender, offer.seller, offer.price)
    # The rights module grants it as the seller would (and refuses if the seller no longer could).
    as_seller = replace(ctx, sender=offer.seller, roles=())
    licence = grant(as_seller, LicenceGrant(offer.token, offer.parent, ctx.sender, offer.purposes, 0,
                                            ctx.timestamp + offer.duration_ms, offer.sublicensable, offer.terms_uri,
                                            offer.terms_hash), offer.resale_share_bps)
    passed_up = _pay_shares(ctx, offer.seller, offer.parent, offer.price)
    sold = offer.sold + 1
    status = SOLD_OUT if sold >= offer.max_sales else OPEN
    ctx.put(licence_offer_key(offer.id), replace(offer, sold=sold, status=status))
    asset = get_asset(ctx.state, offer.token)
    record_sale(ctx, offer.token, asset.kind if asset is not None else "", offer.price, passed_up, offer.seller,
                ctx.sender, "licence", licence.id, offer.purposes)


def _pay_shares(ctx: TxContext, seller: str, parent: str, price: int) -> int:
    """Pass shares up the tree from a sale of a sublicence of `parent`: the seller pays the share set on its
    licence to whoever sold it that licence, who passes the share set on its own licence further up, and so
    on while shares are set and amount to a credit. What the seller passed up."""
    payer, amount, licence_id, first = seller, price, parent, 0
    while licence_id:
        licence = get_licence(ctx.state, licence_id)
        if licence is None:
            break
        beneficiary, bps = licence.grantor, licence.resale_share_bps
        if not bps and (old := get_share(ctx.state, licence_id)) is not None:  # a licence sold before the field
            beneficiary, bps = old.beneficiary, old.bps
        cut = amount * bps // MAX_BPS
        if cut == 0:
            break
        credits.pay(ctx, payer, beneficiary, cut)
        first = first or cut
        payer, amount, licence_id = beneficiary, cut, licence.parent
    return first


def process_withdraw(ctx: TxContext, p: LicenceOfferRef) -> None:
    offer = _open(ctx, p.offer)
    # Only its seller withdraws a licence offer.
    if ctx.sender != offer.seller:
        raise TxRejected(Reject.UNAUTHORIZED, f"only {offer.seller} withdraws licence offer {offer.id}")
    ctx.put(licence_offer_key(offer.id), replace(offer, status=WITHDRAWN))


class LicenceMarketModule:
    handlers: Mapping[str, Handler] = {
        "market.licence_offer": process_offer,
        "market.licence_buy": process_buy,
        "market.licence_withdraw": process_withdraw,
    }


register_kind("market.licence_offer", LicenceOfferMake)
register_kind("market.licence_buy", LicenceBuy)
register_kind("market.licence_withdraw", LicenceOfferRef)
