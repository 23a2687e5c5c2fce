"""Settlement credits, listings, offers and prices.

A balance, a listing or an offer is read at any committed `height` (default: the head); `proof=true` adds the
state proof of the keys the answer rests on (docs/proofs.md), `anchor=true` the path to the latest Ethereum
anchor. A balance no one has written reads as zero, and its proof is a proof of absence. The price statistics
are computed from the sale record at the head (each sale is itself a state record: `market/s/<seq>`).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, Path, Query, Request

from ledger.api.deps import NodeDep, header_at
from ledger.api.errors import ApiError
from ledger.api.params import HEX64, MAX_HEIGHT, MEMBER_ID, TOKEN_ID, charge
from ledger.codec import decode, to_plain
from ledger.market.appraisals import appraisal_count, appraisal_key, get_appraisal
from ledger.market.appraisals import count_key as appraisal_count_key
from ledger.market.credits import balance_key, get_balance, get_supply
from ledger.market.licences import get_licence_offer, licence_offer_key
from ledger.market.licences import status_at as licence_offer_status
from ledger.market.private_offers import get_private_offer, private_offer_key
from ledger.market.sales import (
    ALL_PREFIX,
    DAY_MS,
    get_sale,
    index_entry,
    kind_prefix,
    price_stats,
    purpose_prefix,
    time_start,
    token_prefix,
)
from ledger.market.trading import (
    OPEN,
    get_listing,
    get_offer,
    get_royalty,
    listing_key,
    listing_refusal,
    offer_key,
    royalty_key,
    token_offers_prefix,
)
from ledger.nft.assets import KINDS, asset_key, get_asset
from ledger.nft.rights import MAX_PURPOSE_LEN
from ledger.proofs import build_state_proof
from ledger.store import NS, Store

router = APIRouter(tags=["market"])
MAX_OFFERS = 100  # open offers a listing answer names
MAX_SCAN = 100_000  # sale index entries one price query reads
SCAN_SLICE = 2_000  # entries read between two turns of the event loop
ENTRIES_PER_TOKEN = 20  # a query pays one read token per this many entries (about a cached answer's cost)
MAX_RECENT = 100
MAX_APPRAISALS = 100
Kind = Literal["equipment", "data", "model", "document"]
assert set(get_args(Kind)) == set(KINDS)  # noqa: S101 - the route's enum is the module's list
Height = Annotated[int | None, Query(ge=0, le=MAX_HEIGHT, description="a committed height (default: the head)")]


@router.get("/v1/credits")
async def supply(node: NodeDep) -> dict[str, Any]:
    """Credits ever issued and withdrawn by the treasury, and those outstanding (held by members), at the head."""
    total = get_supply(node.chain.latest)
    return {"height": node.chain.height, "issued": total.issued, "withdrawn": total.withdrawn,
            "outstanding": total.outstanding}


@router.get("/v1/credits/{member_id}")
async def balance(
    member_id: Annotated[str, Path(pattern=MEMBER_ID)], node: NodeDep, height: Height = None, proof: bool = False,
    anchor: bool = False,
) -> dict[str, Any]:
    """A member's credits as of `height`: `available` to spend and `held` in escrow for its open offers; with
    `proof=true`, the state proof of its balance record `credits/b/<member>` (absent: zero)."""
    at = header_at(node.chain, height)
    found = get_balance(node.chain.view_at(at.height), member_id)
    body: dict[str, Any] = {"height": at.height, "member": member_id, "available": found.available,
                            "held": found.held}
    if proof:
        body["proof"] = build_state_proof(node.chain, balance_key(member_id), at.height, anchor=anchor)
    return body


@router.get("/v1/market/listings/{token}")
async def listing(
    token: Annotated[str, Path(pattern=TOKEN_ID)], node: NodeDep, height: Height = None, proof: bool = False,
    anchor: bool = False,
) -> dict[str, Any]:
    """The token's listing (null when not listed) and whether it can be bought at that block's time (a listing
    goes stale once the token changes), its royalty, and the ids of its open offers (at most 100; not covered
    by the proof, which covers the listing, the royalty and the token)."""
    at = header_at(node.chain, height)
    view = node.chain.view_at(at.height)
    if get_asset(view, token) is None:
        raise ApiError(404, "not_found", f"no asset {token!r}" + ("" if height is None else f" at height {height}"))
    record = get_listing(view, token)
    refusal = None if record is None else listing_refusal(view, record, at.timestamp)
    royalty = get_royalty(view, token)
    prefix = NS.STATE_LATEST + token_offers_prefix(token)
    # The open-offer index is read at the head only (the store keeps no older indexes).
    offers = None if height is not None else [
        key[len(prefix):].decode() for key, _ in itertools.islice(node.chain.store.iterate(prefix), MAX_OFFERS)]
    body: dict[str, Any] = {
        "height": at.height, "token": token, "listing": None if record is None else to_plain(record),
        "buyable": record is not None and refusal is None,
        "not_buyable_reason": None if record is None or refusal is None else refusal.message,
        "royalty": None if royalty is None else to_plain(royalty), "open_offers": offers,
    }
    if proof:
        keys = [listing_key(token), royalty_key(token), asset_key(token)]
        body["proof"] = build_state_proof(node.chain, keys, at.height, anchor=anchor)
    return body


@router.get("/v1/market/offers/{offer_id}")
async def offer(
    offer_id: Annotated[str, Path(pattern=HEX64)], node: NodeDep, height: Height = None, proof: bool = False,
    anchor: bool = False,
) -> dict[str, Any]:
    """An offer as stored (`offer`, what the proof proves) and its status at that block's time: an open offer
    past its expiry reads `expired` (its escrow returns at the first block after the end of that hour)."""
    at = header_at(node.chain, height)
    record = get_offer(node.chain.view_at(at.height), offer_id.lower())
    if record is None:
        raise ApiError(404, "not_found", f"no offer {offer_id}" + ("" if height is None else f" at height {height}"))
    status = "expired" if record.status == OPEN and at.timestamp >= record.expires else record.status
    body: dict[str, Any] = {"height": at.height, "offer": to_plain(record), "status": status}
    if proof:
        body["proof"] = build_state_proof(node.chain, offer_key(record.id), at.height, anchor=anchor)
    return body


@router.get("/v1/market/licence-offers/{offer_id}")
async def licence_offer(
    offer_id: Annotated[str, Path(pattern=HEX64)], node: NodeDep, height: Height = None, proof: bool = False,
    anchor: bool = False,
) -> dict[str, Any]:
    """A licence offer as stored (`offer`: purposes, duration, price, sales made of at most `max_sales`) and its
    status at that block's time (open, sold_out, withdrawn or expired); with `proof=true`, its state proof."""
    at = header_at(node.chain, height)
    record = get_licence_offer(node.chain.view_at(at.height), offer_id.lower())
    if record is None:
        raise ApiError(404, "not_found", f"no licence offer {offer_id}" + ("" if height is None else
                                                                         f" at height {height}"))
    body: dict[str, Any] = {"height": at.height, "offer": to_plain(record),
                            "status": licence_offer_status(record, at.timestamp)}
    if proof:
        body["proof"] = build_state_proof(node.chain, licence_offer_key(record.id), at.height, anchor=anchor)
    return body


@router.get("/v1/market/private-licence-offers/{offer_id}")
async def private_licence_offer(
    offer_id: Annotated[str, Path(pattern=HEX64)], node: NodeDep, height: Height = None, proof: bool = False,
) -> dict[str, Any]:
    """A private licence offer as stored (`offer`: parties, purposes, duration, the commitment to the price and
    terms, the offering tx whose payload carries them sealed to the parties); with `proof=true`, its state proof."""
    at = header_at(node.chain, height)
    record = get_private_offer(node.chain.view_at(at.height), offer_id.lower())
    if record is None:
        raise ApiError(404, "not_found", f"no private licence offer {offer_id}")
    status = "expired" if record.status == OPEN and at.timestamp >= record.expires else record.status
    body: dict[str, Any] = {"height": at.height, "offer": to_plain(record), "status": status}
    if proof:
        body["proof"] = build_state_proof(node.chain, private_offer_key(record.id), at.height)
    return body


@router.get("/v1/market/appraisals/{token}")
async def appraisals(
    token: Annotated[str, Path(pattern=TOKEN_ID)], node: NodeDep, height: Height = None, proof: bool = False,
    limit: Annotated[int, Query(ge=1, le=MAX_APPRAISALS)] = 20,
) -> dict[str, Any]:
    """The token's appraisals as of `height`, newest first (at most `limit`, 100; `total` counts them all); with
    `proof=true`, the state proof of the count and of each appraisal listed."""
    at = header_at(node.chain, height)
    view = node.chain.view_at(at.height)
    total = appraisal_count(view, token)
    seqs = list(range(total, max(0, total - limit), -1))
    found = [get_appraisal(view, token, seq) for seq in seqs]
    body: dict[str, Any] = {"height": at.height, "token": token, "total": total,
                            "appraisals": [to_plain(a) for a in found if a is not None]}
    if proof:
        keys = [appraisal_count_key(token), *(appraisal_key(token, seq) for seq in seqs)]
        body["proof"] = build_state_proof(node.chain, keys, at.height)
    return body


def iter_sales(store: Store, prefix: bytes, since_ms: int) -> Iterator[tuple[int, int, int]]:
    """(time, seq, price) of the sales under the latest state's index `prefix` from `since_ms`, oldest first."""
    scan = NS.STATE_LATEST + prefix
    for key, value in store.iterate(scan, start=time_start(scan, since_ms)):
        timestamp, seq = index_entry(key, scan)
        yield timestamp, seq, decode(int, value, trusted=True)


def scan_sales(store: Store, prefix: bytes, since_ms: int) -> tuple[list[tuple[int, int, int]], bool]:
    """The first MAX_SCAN of `iter_sales`; True if that cap cut it short."""
    out = list(itertools.islice(iter_sales(store, prefix, since_ms), MAX_SCAN + 1))
    return out[:MAX_SCAN], len(out) > MAX_SCAN


async def _scan_yielding(store: Store, prefix: bytes, since_ms: int) -> tuple[list[tuple[int, int, int]], bool]:
    """`scan_sales`, letting the loop run consensus messages every SCAN_SLICE entries (a long scan would hold it)."""
    out: list[tuple[int, int, int]] = []
    for entry in iter_sales(store, prefix, since_ms):
        if len(out) >= MAX_SCAN:
            return out, True
        out.append(entry)
        if len(out) % SCAN_SLICE == 0:
            await asyncio.sleep(0)
    return out, False


@router.get("/v1/market/prices")
async def prices(
    request: Request, node: NodeDep, token: Annotated[str | None, Query(pattern=TOKEN_ID)] = None,
    kind: Kind | None = None,
    purpose: Annotated[str | None, Query(pattern=r"^[^\s\x00-\x1f\x7f]+$", max_length=MAX_PURPOSE_LEN,
                                         description="the licence sales for this purpose")] = None,
    recent: Annotated[int, Query(ge=0, le=MAX_RECENT, description="how many of the latest sales to list")] = 20,
) -> dict[str, Any]:
    """Price statistics of the token sales of one `token`, of one asset `kind` (both: the token's, if of that
    kind), or of all; or, with `purpose`, of the licences sold for that purpose (token and kind are then
    ignored): per window (24h, 7d, 30d,
    all, ending at the head block's time) the count, the volume (credits paid), the last price, the median
    and the volume-weighted average (each sale is one token); and the latest `recent` sales (at most 100).
    At most 100,000 sales are read: beyond that, only the 30-day windows are given (`truncated`). A query
    costs one read token per 20 sales read."""
    if purpose is not None:
        token = kind = None
        prefix = purpose_prefix(purpose)
    else:
        prefix = token_prefix(token) if token is not None else kind_prefix(kind) if kind is not None else ALL_PREFIX
    head = node.chain.head
    entries, truncated = await _scan_yielding(node.chain.store, prefix, 0)
    scanned = len(entries)
    if truncated:
        entries, _ = await _scan_yielding(node.chain.store, prefix, head.timestamp - 30 * DAY_MS)
        scanned += len(entries)
    # A scan costs the client in proportion to what it read (the request itself paid for one token).
    charge(request, scanned / ENTRIES_PER_TOKEN)
    if token is not None and kind is not None:  # both: the token's sales, if it is of that kind (kinds never change)
        asset = get_asset(node.chain.latest, token)
        entries = entries if asset is not None and asset.kind == kind else []
    stats = price_stats(((t, price) for t, _, price in entries), head.timestamp)
    windows: dict[str, Any] = {**stats, "all": None} if truncated else dict(stats)
    view = node.chain.latest
    latest = [get_sale(view, seq) for _, seq, _ in entries[-recent:]] if recent else []
    return {"height": head.height, "at": head.timestamp, "token": token, "kind": kind, "purpose": purpose,
            "windows": windows,
            "truncated": truncated, "sales": [to_plain(s) for s in reversed(latest) if s is not None]}
