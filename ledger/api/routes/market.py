"""Settlement credits, listings, offers and prices.

A balance, a listing or an offer is read at any committed `height` (default: the head); `proof=true` adds the
state proof of the keys the answer rests on (docs/proofs.md), `anchor=true` the path to the latest Ethereum
anchor. A balance no one has written reads as zero, and its proof is a proof of absence. The price statistics
are read at the head from the aggregates the state keeps per scope and UTC day (`ledger.market.prices`) and the
sales' time indexes (their closed chunks, and each scope's open chunk in its live record; the sales themselves
are state records, sixteen to a record: `ledger.market.sales`).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Iterator
from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, Path, Query, Request

from ledger.api.deps import NodeDep, header_at
from ledger.api.errors import ApiError
from ledger.api.params import HEX64, MAX_HEIGHT, MEMBER_ID, TOKEN_ID, charge
from ledger.codec import to_plain
from ledger.market.appraisals import appraisal_count, appraisal_key, get_appraisal
from ledger.market.appraisals import count_key as appraisal_count_key
from ledger.market.credits import balance_key, get_balance, get_supply
from ledger.market.licences import get_licence_offer, licence_offer_key
from ledger.market.licences import status_at as licence_offer_status
from ledger.market.prices import ALL_SCOPES, WindowReader, kind_scope, partial_day, purpose_scope, token_scope
from ledger.market.private_offers import get_private_offer, private_offer_key
from ledger.market.sales import (
    ALL_PREFIXES,
    WINDOWS,
    Sale,
    get_sale,
    index_entries,
    kind_prefix,
    open_entries,
    purpose_prefix,
    time_start,
    token_prefix,
    window_stats,
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
from ledger.state import StateView
from ledger.store import NS, Store

router = APIRouter(tags=["market"])
MAX_OFFERS = 100  # open offers a listing answer names
MAX_SCAN = 100_000  # sale index entries a price window reads (the part of its first day before midnight)
SCAN_SLICE = 2_000  # entries read between two turns of the event loop
# A query pays one read token (about a cached answer's cost, ~26 µs) per ENTRIES_PER_TOKEN index entries, per
# RECORDS_PER_TOKEN aggregate records and per PAIRS_PER_TOKEN histogram pairs merged: measured on this code at
# about 1.3 µs an entry, 7.6 µs a record and 0.07 µs a pair.
ENTRIES_PER_TOKEN = 20
RECORDS_PER_TOKEN = 4
PAIRS_PER_TOKEN = 400
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


# The time indexes a query reads, each (its prefix, its scope: whose live price record holds its open chunk).
Indexes = tuple[tuple[bytes, bytes], ...]


def _index_entries(store: Store, view: StateView, prefix: bytes, scope: bytes, since_ms: int, until_ms: int
                   ) -> Iterator[tuple[int, int, int]]:
    """(time, seq, price) of the sales of one index at times in [since_ms, until_ms): its closed chunks under the
    latest state's `prefix`, then its open chunk, in the live price record of `scope` (`ledger.market.sales`). The
    live record is read first: the index then holds every sale before its open chunk; a chunk closed since (its
    first seq not below the open one's) is left to the next query."""
    first_open, newest = open_entries(view, scope)
    scan = NS.STATE_LATEST + prefix
    end = time_start(scan, until_ms)
    for key, value in store.iterate(scan, start=time_start(scan, since_ms)):
        entries = index_entries(key, value, scan)
        if key >= end or entries[0][1] >= first_open:
            break
        yield from entries
    yield from (entry for entry in newest if since_ms <= entry[0] < until_ms)


def _index_prices(store: Store, view: StateView, indexes: Indexes, since_ms: int, until_ms: int) -> Iterator[int]:
    """The prices of the sales of `indexes` at times in [since_ms, until_ms), in (time, seq) order (several
    indexes: all token sales, every kind's, merged)."""
    scans = [_index_entries(store, view, prefix, scope, since_ms, until_ms) for prefix, scope in indexes]
    for _, _, price in scans[0] if len(scans) == 1 else heapq.merge(*scans):
        yield price


async def _partial_day(store: Store, view: StateView, indexes: Indexes, since_ms: int) -> list[int] | None:
    """The prices of `since_ms`'s day at or after it (`ledger.market.prices.partial_day`), letting the loop run
    consensus messages every SCAN_SLICE entries; None past MAX_SCAN (a flood that day)."""
    span = partial_day(since_ms)
    out: list[int] = []
    for price in () if span is None else _index_prices(store, view, indexes, *span):
        if len(out) >= MAX_SCAN:
            return None
        out.append(price)
        if len(out) % SCAN_SLICE == 0:
            await asyncio.sleep(0)
    return out


async def read_windows(store: Store, view: StateView, scopes: tuple[bytes, ...], prefixes: tuple[bytes, ...],
                       now_ms: int) -> tuple[dict[str, dict[str, Any] | None], float]:
    """Each window of WINDOWS ending at `now_ms` (None: its partial day held over MAX_SCAN sales), and what the
    reads cost in read tokens. Several scopes (and their indexes, in the same order) are read as one: all token
    sales."""
    reader = WindowReader(view, scopes)
    indexes = tuple(zip(prefixes, scopes, strict=True))
    windows: dict[str, dict[str, Any] | None] = {}
    scanned = 0
    for name, length in WINDOWS.items():
        since = None if length is None else now_ms - length
        partial = [] if since is None else await _partial_day(store, view, indexes, since)
        scanned += MAX_SCAN if partial is None else len(partial)
        windows[name] = None if partial is None else reader.window(since, now_ms, partial)
    cost = (scanned / ENTRIES_PER_TOKEN + reader.cost.records / RECORDS_PER_TOKEN
            + reader.cost.pairs / PAIRS_PER_TOKEN)
    return windows, cost


def _latest_sales(store: Store, view: StateView, scopes: tuple[bytes, ...], prefixes: tuple[bytes, ...],
                  count: int) -> list[Sale]:
    """The latest `count` sales of the indexes `prefixes` (merged; their scopes in the same order), newest first."""
    def newest_first(prefix: bytes, scope: bytes) -> Iterator[tuple[int, int, int]]:
        first_open, newest = open_entries(view, scope)  # first: see `_index_entries`
        yield from reversed(newest)
        scan = NS.STATE_LATEST + prefix
        for key, value in store.iterate(scan, reverse=True):
            entries = index_entries(key, value, scan)
            if entries[0][1] < first_open:  # (a chunk closed since the live record was read is in `newest`)
                yield from reversed(entries)

    scans = [newest_first(prefix, scope) for prefix, scope in zip(prefixes, scopes, strict=True)]
    merged = heapq.merge(*scans, reverse=True)  # (time, seq): newest first across indexes
    found = (get_sale(view, seq) for _, seq, _ in merged)
    return [s for s in itertools.islice(found, count) if s is not None]


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
    The windows are read from per-day aggregates (`ledger.market.prices`) and, for the part of a window's first
    day after its start, from the sales themselves: a window whose part holds over 100,000 sales is null
    (`truncated`). A query costs one read token per 20 sales, 4 aggregate records or 400 histogram
    entries read."""
    scopes: tuple[bytes, ...]
    prefixes: tuple[bytes, ...]
    if purpose is not None:
        token = kind = None
        scopes, prefixes = (purpose_scope(purpose),), (purpose_prefix(purpose),)
    elif token is not None:
        scopes, prefixes = (token_scope(token),), (token_prefix(token),)
    elif kind is not None:
        scopes, prefixes = (kind_scope(kind),), (kind_prefix(kind),)
    else:
        scopes, prefixes = ALL_SCOPES, ALL_PREFIXES
    head, view, store = node.chain.head, node.chain.latest, node.chain.store
    # Both token and kind: the token's sales, if it is of that kind (kinds never change).
    mismatch = token is not None and kind is not None and (
        (asset := get_asset(view, token)) is None or asset.kind != kind)
    if mismatch:
        windows: dict[str, Any] = {name: window_stats([]) for name in WINDOWS}
        latest: list[Sale] = []
    else:
        windows, cost = await read_windows(store, view, scopes, prefixes, head.timestamp)
        # The client pays for what the query read beyond the one token the request itself took.
        charge(request, cost)
        latest = _latest_sales(store, view, scopes, prefixes, recent) if recent else []
    return {"height": head.height, "at": head.timestamp, "token": token, "kind": kind, "purpose": purpose,
            "windows": windows, "truncated": any(w is None for w in windows.values()),
            "sales": [to_plain(s) for s in latest]}
