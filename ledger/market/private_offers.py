"""State module: private licence offers, whose price and terms stay off the public state.

Theory of operation. A private offer names its one buyer. Its price and terms are sealed by the seller's
client to the seller's and the buyer's registered X25519 keys (`ledger.sealed`, `member.enc_key`); the
sealed bytes travel in the offering transaction's payload (in the block, readable only with one of those
two keys) and are never state. The state record `market/lop/<id>` (id = sha256("private-licence-offer:" ||
the offering tx id) in hex) holds the token, seller, buyer, purposes, duration, expiry and a salted
commitment to the terms: `sha256("ledger/private-terms/v1" || canonical([price, terms, salt]))`.

`market.licence_buy_private` (by the named buyer) has the rights module grant the licence, with the
commitment as its `terms_hash`, so the licence binds the private terms and either party can later prove
them by showing salt and terms. No credits move: a payment of the price on the ledger would publish it in
the balances (the difference of two proven balances is the price), so the parties settle it between
themselves (or by a `credits transfer`, which then is public). For the same reason no sale record is
written: the price statistics hold public prices only.

Rules:
- market.licence_offer_private: the seller could grant the licence now (as for a public offer); the buyer is an
  active member other than the seller; a duration of 1 ms to MAX_DURATION_MS; expiry ahead, at most
  MAX_OFFER_TERM_MS; a 32-byte commitment; sealed terms of at most MAX_SEALED_BYTES.
- market.licence_buy_private (OFFER): by the named buyer; the offer is open and not expired; it closes (sold_out).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from ledger.codec import encode
from ledger.crypto import sha256
from ledger.market.licences import MAX_DURATION_MS, MAX_OFFER_TERM_MS, OPEN, SOLD_OUT
from ledger.members import get_member
from ledger.nft.rights import MAX_PURPOSE_LEN, MAX_PURPOSES, LicenceGrant, grant
from ledger.state import Handler, Overlay, StateView, TxContext, get_record
from ledger.tx import Reject, TxRejected, register_kind

DOMAIN_TERMS = b"ledger/private-terms/v1"
MAX_SEALED_BYTES = 16 * 1024


@dataclass(frozen=True)
class PrivateTerms:
    """What the sealed box holds (and the commitment covers, with the salt)."""

    price: int
    terms: str
    salt: bytes


@dataclass(frozen=True)
class PrivateLicenceOffer:
    id: str
    token: str
    seller: str
    parent: str
    buyer: str
    purposes: tuple[str, ...]
    duration_ms: int
    sublicensable: bool
    commitment: bytes
    expires: int  # ms
    status: str  # open or sold_out (expired is derived from `expires`)
    height: int
    created_at: int  # ms
    tx_id: str  # hex: the offering transaction, whose payload carries the sealed terms


@dataclass(frozen=True)
class PrivateLicenceOfferMake:
    token: str
    parent: str
    buyer: str  # member id
    purposes: tuple[str, ...]
    duration_ms: int
    sublicensable: bool
    expires: int  # ms
    commitment: bytes
    sealed_terms: bytes  # ledger.sealed box of PrivateTerms, to the seller's and the buyer's encryption keys


@dataclass(frozen=True)
class PrivateLicenceBuy:
    offer: str


def terms_commitment(terms: PrivateTerms) -> bytes:
    return sha256(DOMAIN_TERMS + encode(terms))


def terms_associated_data(chain_id: str, token: str, seller: str, buyer: str) -> bytes:
    """What a sealed box of terms is bound to: it opens only as terms of this offer's parties and token."""
    return encode((chain_id, token, seller, buyer))


def private_offer_key(offer_id: str) -> bytes:
    return b"market/lop/" + offer_id.encode()


def compute_private_offer_id(tx_id: bytes) -> str:
    return sha256(b"private-licence-offer:" + tx_id).hex()


def get_private_offer(view: StateView, offer_id: str) -> PrivateLicenceOffer | None:
    return get_record(view, PrivateLicenceOffer, private_offer_key(offer_id))


def process_offer(ctx: TxContext, p: PrivateLicenceOfferMake) -> None:
    purposes = tuple(sorted(set(p.purposes)))
    # Purposes: as many and as long as a licence takes.
    if not 0 < len(purposes) <= MAX_PURPOSES or any(not 0 < len(x) <= MAX_PURPOSE_LEN for x in purposes):
        raise TxRejected(Reject.INVALID_VALUE, f"a licence lists 1-{MAX_PURPOSES} purposes of 1-{MAX_PURPOSE_LEN} "
                                               "characters")
    # Each licence lasts a positive, bounded time.
    if not 0 < p.duration_ms <= MAX_DURATION_MS:
        raise TxRejected(Reject.INVALID_VALUE, "duration out of range")
    # The offer's expiry lies ahead, within a year.
    if not ctx.timestamp < p.expires <= ctx.timestamp + MAX_OFFER_TERM_MS:
        raise TxRejected(Reject.EXPIRED if p.expires <= ctx.timestamp else Reject.INVALID_VALUE,
                         "expiry must lie after block time and at most 365 days ahead")
    # The commitment is a sha256 hash; the sealed terms are bounded.
    if len(p.commitment) != 32:
        raise TxRejected(Reject.INVALID_VALUE, "a commitment is 32 bytes")
    if not 0 < len(p.sealed_terms) <= MAX_SEALED_BYTES:
        raise TxRejected(Reject.INVALID_VALUE, f"sealed terms are 1-{MAX_SEALED_BYTES} bytes")
    buyer = get_member(ctx.state, p.buyer)
    # The buyer is another active member.
    if buyer is None or not buyer.active or p.buyer == ctx.sender:
        raise TxRejected(Reject.INVALID_VALUE, f"the buyer {p.buyer!r} must be another active member")
    # The seller could grant this licence now (tried on a scratch overlay, whose writes are dropped).
    trial = replace(ctx, state=Overlay(ctx.state))
    grant(trial, LicenceGrant(p.token, p.parent, p.buyer, purposes, 0, ctx.timestamp + p.duration_ms,
                              p.sublicensable, "", p.commitment))
    offer = PrivateLicenceOffer(compute_private_offer_id(ctx.tx_id), p.token, ctx.sender, p.parent, p.buyer,
                                purposes, p.duration_ms, p.sublicensable, p.commitment, p.expires, OPEN, ctx.height,
                                ctx.timestamp, ctx.tx_id.hex())
    ctx.put(private_offer_key(offer.id), offer)


def process_buy(ctx: TxContext, p: PrivateLicenceBuy) -> None:
    offer = get_private_offer(ctx.state, p.offer)
    # The offer exists and is open.
    if offer is None:
        raise TxRejected(Reject.NOT_FOUND, f"no private licence offer {p.offer}")
    if offer.status != OPEN:
        raise TxRejected(Reject.INACTIVE, f"private licence offer {offer.id} is {offer.status}")
    # It has not expired.
    if ctx.timestamp >= offer.expires:
        raise TxRejected(Reject.EXPIRED, f"private licence offer {offer.id} expired at {offer.expires}")
    # Only the buyer it names takes it.
    if ctx.sender != offer.buyer:
        raise TxRejected(Reject.UNAUTHORIZED, f"private licence offer {offer.id} is made to {offer.buyer}")
    as_seller = replace(ctx, sender=offer.seller, roles=())
    grant(as_seller, LicenceGrant(offer.token, offer.parent, ctx.sender, offer.purposes, 0,
                                  ctx.timestamp + offer.duration_ms, offer.sublicensable, "", offer.commitment))
    ctx.put(private_offer_key(offer.id), replace(offer, status=SOLD_OUT))


class PrivateLicenceModule:
    handlers: Mapping[str, Handler] = {
        "market.licence_offer_private": process_offer,
        "market.licence_buy_private": process_buy,
    }


register_kind("market.licence_offer_private", PrivateLicenceOfferMake)
register_kind("market.licence_buy_private", PrivateLicenceBuy)
