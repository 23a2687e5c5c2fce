"""Asset tokens, their provenance, licences and the rights check (with a state proof of the deciding licence).

Like resolution answers, a token or a licence can be read at any committed `height` (default: the
head), `proof=true` adds a state proof, and `anchor=true` adds to the proof the path to the latest
Ethereum anchor at or above that height (null while none covers it: the head never is, since the
anchor's own receipt lands in a later block). See docs/proofs.md.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query

from ledger.api.deps import NodeDep, header_at
from ledger.api.errors import ApiError, time_param_ms
from ledger.api.params import HEX64, MAX_HEIGHT, MEMBER_ID, TIME, TIME_DESCRIPTION, TOKEN_ID
from ledger.codec import to_plain
from ledger.nft.assets import (
    AssetEvent,
    asset_key,
    get_asset,
    get_history,
    history_key,
    ids_from_index,
    kind_index_prefix,
    owner_index_prefix,
    user_of,
)
from ledger.nft.proofs import history_start
from ledger.nft.rights import MAX_PURPOSE_LEN, check, get_licence, inactive_reason
from ledger.proofs import RecordingView, build_state_proof
from ledger.state import get_record
from ledger.store import NS

router = APIRouter(tags=["assets"])
MAX_LIST = 1000
MAX_SCAN = 5000  # index keys a listing examines at most (burned tokens and other kinds are skipped)
MAX_HISTORY_PAGE = 1000

Token = Annotated[str, Path(pattern=TOKEN_ID)]
Height = Annotated[int | None, Query(ge=0, le=MAX_HEIGHT, description="a committed height (default: the head)")]
Kind = Literal["equipment", "data", "model", "document"]


@router.get("/v1/assets")
async def list_assets(
    node: NodeDep, owner: Annotated[str | None, Query(pattern=MEMBER_ID)] = None, kind: Kind | None = None,
    after: Annotated[str | None, Query(pattern=TOKEN_ID, description="the last token of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100,
) -> dict[str, Any]:
    """Live tokens (of `owner`, of `kind`, or all), in id order (burned tokens are not listed), paged:
    at most `limit` (1,000) tokens and 5,000 entries examined a page; `next_after` (null at the end)
    continues the listing."""
    if owner is not None:
        prefix = owner_index_prefix(owner)
    else:
        prefix = kind_index_prefix(kind) if kind is not None else asset_key("")
    scan = NS.STATE_LATEST + prefix
    begin = None if after is None else scan + after.encode() + b"\0"
    view = node.chain.latest
    assets: list[dict[str, Any]] = []
    following: str | None = None
    keys = (k[len(NS.STATE_LATEST):] for k, _ in node.chain.store.iterate(scan, start=begin))
    for examined, token in enumerate(ids_from_index(keys, prefix), start=1):
        if len(assets) >= limit or examined > MAX_SCAN:
            break
        following = token
        asset = get_asset(view, token)
        if asset is None or (kind is not None and asset.kind != kind):
            continue
        assets.append(to_plain(asset))
    else:
        following = None
    return {"height": node.chain.height, "owner": owner, "kind": kind, "assets": assets, "next_after": following}


def _at(height: int | None) -> str:
    return "" if height is None else f" at height {height}"


@router.get("/v1/assets/{token}")
async def asset(
    token: Token, node: NodeDep, height: Height = None, proof: bool = False, anchor: bool = False,
    history: bool = False,
) -> dict[str, Any]:
    """The token as of `height` (default: the head) and its ERC-4907 `user_of` at that block's time. With
    `history=true`, its provenance: the latest (at most 1,000) events, from `history_start`. With `proof=true`,
    a proof of the token and of every event listed (docs/proofs.md)."""
    at = header_at(node.chain, height)
    record = get_asset(node.chain.view_at(at.height), token)
    if record is None:
        raise ApiError(404, "not_found", f"no asset {token!r}" + _at(height))
    keys = [asset_key(token)]
    body: dict[str, Any] = {"height": at.height, "asset": to_plain(record), "user_of": user_of(record, at.timestamp)}
    if history:
        start = history_start(record.events)
        view = node.chain.view_at(at.height)
        events = [get_record(view, AssetEvent, history_key(token, seq)) for seq in range(start, record.events + 1)]
        body["history"] = [to_plain(e) for e in events]
        body["history_start"] = start
        keys += [history_key(token, seq) for seq in range(start, record.events + 1)]
    if proof:
        body["proof"] = build_state_proof(node.chain, keys, at.height, anchor=anchor)
    return body


@router.get("/v1/assets/{token}/history")
async def history(
    token: Token, node: NodeDep, start: Annotated[int, Query(ge=0, le=MAX_HEIGHT)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_HISTORY_PAGE)] = MAX_HISTORY_PAGE,
) -> dict[str, Any]:
    """The token's events, oldest first, paged with `start` and `limit` (at most 1,000 a page;
    `total` counts them all)."""
    view = node.chain.latest
    record = get_asset(view, token)
    if record is None:
        raise ApiError(404, "not_found", f"no asset {token!r}")
    events = [to_plain(e) for e in get_history(view, token, start, limit)]
    return {"id": token, "height": node.chain.height, "total": record.events, "start": start, "history": events}


@router.get("/v1/licences/{licence_id}")
async def licence(
    licence_id: Annotated[str, Path(pattern=HEX64)], node: NodeDep, height: Height = None, proof: bool = False,
    anchor: bool = False,
) -> dict[str, Any]:
    """A licence as of `height` and whether it is active at that block's time; with `proof=true`, a proof of
    the licence and of the ancestors its activity depends on."""
    at = header_at(node.chain, height)
    view = RecordingView(node.chain.view_at(at.height))
    record = get_licence(view, licence_id)
    if record is None:
        raise ApiError(404, "not_found", f"no licence {licence_id}" + _at(height))
    reason = inactive_reason(view, record, at.timestamp)
    extra: dict[str, Any] = {}
    if proof:
        extra["proof"] = build_state_proof(node.chain, view.keys, at.height, anchor=anchor)
    return {"height": at.height, "licence": to_plain(record), "active": reason == "",
            "inactive_reason": reason, **extra}


@router.get("/v1/rights/check")
async def rights_check(
    node: NodeDep, token: Annotated[str, Query(pattern=TOKEN_ID)], holder: Annotated[str, Query(pattern=MEMBER_ID)],
    purpose: Annotated[str, Query(pattern=r"^[^\s\x00-\x1f\x7f]+$", max_length=MAX_PURPOSE_LEN)],
    at: Annotated[str | None, Query(pattern=TIME, description=TIME_DESCRIPTION)] = None, proof: bool = True,
) -> dict[str, Any]:
    """May `holder` use `token` for `purpose` at `at` (ms or ISO 8601; default: now)? As of the head; the
    proof covers every record the decision read (the token, the holder, its licences and their ancestors),
    so a verifier decides again from them."""
    at_ms = time_param_ms(at, "at")
    height = node.chain.height
    view = RecordingView(node.chain.latest)
    decision = check(view, token, holder, purpose, at_ms)
    extra: dict[str, Any] = {}
    if proof:
        extra["proof"] = build_state_proof(node.chain, view.keys, height)
    return {
        "token": token, "holder": holder, "purpose": purpose, "at": at_ms, "height": height,
        "allowed": decision.allowed, "reason": decision.reason, "licence_id": decision.licence_id or None,
        **extra,
    }
