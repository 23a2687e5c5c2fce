"""JSON routes behind the explorer pages, each useful on its own: the network as this node sees it,
block activity, recent blocks (and the block at a time), a token's licence tree, nameplate labels."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from ledger.api.activity import ChainActivity
from ledger.api.deps import NodeDep
from ledger.api.errors import ApiError, time_param_ms
from ledger.api.params import IDENTIFIER_MAX, MAX_HEIGHT, PREFIX, TIME, TIME_DESCRIPTION, TOKEN_ID, charge
from ledger.chain import compute_block_hash
from ledger.chaindb import ChainDB
from ledger.codec import to_plain
from ledger.crypto import derive_id
from ledger.evidence import evidence_count
from ledger.genesis import genesis_to_plain
from ledger.members import get_member
from ledger.net.peers import describe_peer
from ledger.nft.assets import get_asset
from ledger.nft.rights import inactive_reason, licences_of
from ledger.node import Node
from ledger.resolver.identifiers import InvalidIdentifier, check_prefix
from ledger.resolver.registry import get_prefix, owning_prefix
from ledger.resolver.resolution import resolve_text
from ledger.store import NS
from ledger.web import answer_page_url

router = APIRouter(tags=["explorer"])

MAX_BLOCK_LIST = 100
MAX_LABELS = 200
MAX_SCAN = 2000  # keys a labels page examines at most (many may belong to longer prefixes)
MAX_LICENCE_PAGE = 1000
MAX_WINDOW_S = 900


def _member_name(view: Any, member_id: str) -> str | None:
    member = get_member(view, member_id) if member_id else None
    return None if member is None else member.name


# --- genesis ---------------------------------------------------------------------------------------


@router.get("/v1/genesis")
async def genesis(node: NodeDep) -> dict[str, Any]:
    """This node's genesis file, the trust root of every proof (docs/proofs.md). Taking it from a node means
    trusting that node once: compare its hash (shown by the explorer, and block 0's `prev_hash`) with the one
    your consortium publishes."""
    return genesis_to_plain(node.genesis)


# --- network ---------------------------------------------------------------------------------------


@router.get("/v1/network")
async def network(node: NodeDep) -> dict[str, Any]:
    """Every validator as this node sees it: itself from its own state; each peer from its links
    (`connected`: both directions up; `outgoing`, `incoming`; `connected_since`: since when, in ms, as
    the transport recorded it), when it was last heard (heartbeats
    included), its recent messages and a probe of its head height (see `ledger.net.peers`). `lag` is
    this node's height minus the validator's (negative when it is ahead); `primary` is the primary
    of this node's view; `equivocations` counts the equivocations of that validator recorded in the
    ledger (`/v1/evidence`). On an observer, a validator is `connected` while it answers the observer's
    polls, and `height` is the head it last claimed."""
    transport = node.transport
    connected = set(transport.connected_peers()) if transport is not None else set()
    if transport is not None:
        await node.peer_info.refresh(transport, sorted(connected))
    head, now = node.chain.height, time.time()
    validators = []
    names = {derive_id(v.public_key): v.name for v in node.genesis.validators}
    for v in node.chain.validators_at(head + 1):  # the set of the next block (genesis's until a change)
        vid = v.id
        is_self = vid == node.key.id
        followed = node.follower.seen(vid) if node.follower is not None else None
        seen = ({"last_seen": int(now * 1000), "last_seen_ago_ms": 0, "view": node.replica.view, "height": head,
                 "rtt_ms": None, "connected": True, "outgoing": True, "incoming": True,
                 "connected_since": None} if is_self else
                followed if followed is not None else
                describe_peer(node.peer_info.seen(vid), transport.link_state(vid) if transport else None, now))
        validators.append({
            "id": vid, "name": names.get(vid, f"{v.host}:{v.port}" if v.host else vid[:8]), "self": is_self,
            "primary": None if node.observer else vid == node.replica.primary, **seen,
            "lag": None if seen["height"] is None else head - seen["height"],
            "equivocations": evidence_count(node.chain.latest, vid),
        })
    status = node.status()  # (an observer takes part in no view: view and primary are null)
    return {"node_id": node.key.id, "role": status["role"], "chain_id": node.chain.chain_id, "height": head,
            "view": status["view"], "primary": status["primary"], "validators": validators}


def _activity(request: Request, node: Node) -> ChainActivity:
    """The app's ChainActivity, started on first use: read back from the chain, then kept up to date
    by a commit listener (both here, between two awaits, so no block falls in between)."""
    activity: ChainActivity | None = getattr(request.app.state, "chain_activity", None)
    if activity is None:
        activity = ChainActivity()
        activity.backfill(node.chain)
        node.add_commit_listener(activity.on_commit)
        request.app.state.chain_activity = activity
    return activity


@router.get("/v1/activity")
async def activity(
    request: Request, node: NodeDep,
    window_s: Annotated[int, Query(ge=10, le=MAX_WINDOW_S)] = 300,
    bucket_s: Annotated[int, Query(ge=1, le=60)] = 5,
) -> dict[str, Any]:
    """Committed transactions per second and mean block time, per `bucket_s` over the last `window_s`."""
    now_ms = time.time_ns() // 1_000_000
    series = _activity(request, node).series(now_ms, window_s * 1000, bucket_s * 1000)
    return {"now": now_ms, "height": node.chain.height, "bucket_ms": bucket_s * 1000, "buckets": series}


# --- blocks ----------------------------------------------------------------------------------------


def _timestamp(chain: ChainDB, height: int) -> int:
    block = chain.get_block(height)
    if block is None:
        raise ApiError(500, "internal", f"block {height} is missing from the store")
    return block.header.timestamp


def _height_at(chain: ChainDB, at_ms: int, top: int) -> int:
    """The highest height <= `top` whose block time is <= `at_ms` (-1 if none): block times never
    decrease along the chain, so a binary search finds it."""
    lo, hi = chain.blocks_from, top  # a state-synced node holds blocks from its base on (or older ones fetched)
    if top < lo:
        return -1
    if _timestamp(chain, lo) > at_ms:
        if lo > 0:  # the block wanted lies below the oldest held
            chain.require_held(lo - 1)
        return -1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _timestamp(chain, mid) <= at_ms:
            lo = mid
        else:
            hi = mid - 1
    return lo


@router.get("/v1/blocks")
async def list_blocks(
    node: NodeDep, before: Annotated[int | None, Query(ge=0, le=MAX_HEIGHT)] = None,
    until: Annotated[str | None, Query(pattern=TIME, description=TIME_DESCRIPTION)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_BLOCK_LIST)] = 20,
) -> dict[str, Any]:
    """Block summaries, newest first, at or below height `before` (default: the head) and, with `until`
    (ms or ISO 8601), with block time at or before it: `?until=T&limit=1` gives the ledger's height at T."""
    chain = node.chain
    top = chain.height if before is None else min(before, chain.height)
    if until is not None:
        top = _height_at(chain, time_param_ms(until, "until"), top)
    out = []
    for height in range(top, max(top - limit, -1), -1):
        block = chain.get_block(height)
        if block is None:
            continue
        h = block.header
        out.append({"height": height, "hash": compute_block_hash(h).hex(), "timestamp": h.timestamp, "view": h.view,
                    "proposer": h.proposer, "tx_count": len(block.txs)})
    last = top - limit
    return {"head": chain.height, "blocks": out, "next_before": last if last >= 0 and out else None}


# --- licences --------------------------------------------------------------------------------------


@router.get("/v1/assets/{token}/licences")
async def token_licences(
    token: Annotated[str, Path(pattern=TOKEN_ID)], node: NodeDep,
    at: Annotated[str | None, Query(pattern=TIME, description=TIME_DESCRIPTION)] = None,
    start: Annotated[int, Query(ge=0, le=MAX_HEIGHT)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_LICENCE_PAGE)] = MAX_LICENCE_PAGE,
) -> dict[str, Any]:
    """Every licence on `token` (the whole ERC-5218 tree: roots have no `parent`), each with `active`
    and `inactive_reason` (revoked, expired, not_yet_valid, ancestor_...) at `at` (default: now);
    in grant order, paged with `start` and `limit` (at most 1,000 a page; `total` counts them all)."""
    view = node.chain.latest
    if get_asset(view, token) is None:
        raise ApiError(404, "not_found", f"no asset {token!r}")
    at_ms = time_param_ms(at, "at")
    licences = []
    tree = licences_of(view, token)
    for lic in tree[start:start + limit]:
        reason = inactive_reason(view, lic, at_ms)
        licences.append({**to_plain(lic), "active": reason == "", "inactive_reason": reason,
                         "holder_name": _member_name(view, lic.holder),
                         "grantor_name": _member_name(view, lic.grantor)})
    return {"token": token, "height": node.chain.height, "at": at_ms, "total": len(tree), "start": start,
            "licences": licences}


# --- labels ----------------------------------------------------------------------------------------


def _keys_under(node: Node, prefix: str, after: str | None, limit: int) -> tuple[list[str], str | None]:
    """Up to `limit` registered identifiers under `prefix` in key order after `after`, and the key to
    continue after (None at the end). A gs1:<digits> prefix lists the GTIN (01) items it owns.
    A page examines at most MAX_SCAN keys: keys owned by a longer registered prefix are skipped, and
    a page that met too many of them ends early (with fewer labels, and the key to continue after)."""
    view = node.chain.latest
    gs1 = prefix.startswith("gs1:")
    scans = ([f"id/gs1/01/{d}{prefix[4:]}".encode() for d in range(10)] if gs1 else [f"id/{prefix}/".encode()])
    begin = None if after is None else NS.STATE_LATEST + b"id/" + after.encode() + b"\0"  # just after `after`
    out: list[str] = []
    examined = 0
    previous = after or ""
    for scan in scans:
        for raw_key, _ in node.chain.store.iterate(NS.STATE_LATEST + scan, start=begin):
            key = raw_key[len(NS.STATE_LATEST) + 3:].decode()
            if len(out) == limit:
                return out, out[-1]
            examined += 1
            if examined > MAX_SCAN:
                return out, previous
            previous = key
            if gs1 and owning_prefix(view, key)[1] != prefix:
                continue  # owned by a longer registered company prefix
            out.append(key)
    return out, None


def _label(view: Any, text: str, base: str) -> dict[str, Any]:
    try:
        found = resolve_text(view, text)
        url = answer_page_url(found.key, base)
    except InvalidIdentifier as exc:
        return {"input": text, "error": "invalid_identifier", "message": str(exc)}
    owner = found.prefix_record.owner if found.prefix_record is not None else None
    return {"input": text, "identifier": found.key, "registered": found.record is not None, "prefix": found.prefix,
            "holder": owner, "holder_name": _member_name(view, owner or ""), "url": url}


@router.get("/v1/labels")
async def labels(
    request: Request, node: NodeDep,
    identifier: Annotated[list[str] | None, Query(max_length=MAX_LABELS)] = None,
    prefix: Annotated[str | None, Query(pattern=PREFIX, max_length=128)] = None,
    after: Annotated[str | None, Query(max_length=IDENTIFIER_MAX)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LABELS)] = 50,
) -> dict[str, Any]:
    """What a nameplate shows, per identifier (given as `identifier=`, repeated, at most 200, or every
    identifier under `prefix`, paged with `after` and `limit`: at most 200 labels and 2,000 keys
    examined a page; `next_after` continues): its key, the holder organisation (owner of its prefix,
    with member name) and `url`, the answer page the label's QR code encodes
    (`/v1/qr/{identifier}.svg?page=true`). Each label costs the client's read budget one request."""
    view = node.chain.latest
    base = str(request.base_url).rstrip("/")
    following = None
    if prefix is not None:
        try:
            check_prefix(prefix)
        except InvalidIdentifier as exc:
            raise ApiError(400, "invalid_identifier", str(exc)) from exc
        if get_prefix(view, prefix) is None:
            raise ApiError(404, "not_found", f"prefix {prefix} is not registered on this ledger")
        texts, following = _keys_under(node, prefix, after, limit)
    else:
        texts = identifier or []  # nothing asked, nothing to print
    charge(request, len(texts) - 1)
    return {"height": node.chain.height, "prefix": prefix, "next_after": following,
            "labels": [_label(view, t, base) for t in texts]}
