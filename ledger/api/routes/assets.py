"""Asset tokens, their provenance, licences and the rights check (with a state proof of the deciding licence).

Like resolution answers, a token or a licence can be read at any committed `height` (default: the
head), `proof=true` adds a state proof, and `anchor=true` adds to the proof the path to the latest
Ethereum anchor at or above that height (null while none covers it: the head never is, since the
anchor's own receipt lands in a later block). See docs/proofs.md.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from ledger.api.deps import NodeDep
from ledger.api.errors import ApiError, time_param_ms
from ledger.chain import BlockHeader
from ledger.chaindb import ChainDB
from ledger.codec import to_plain
from ledger.nft.assets import (
    KINDS,
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
from ledger.nft.rights import check, get_licence, inactive_reason
from ledger.proofs import RecordingView, build_state_proof
from ledger.state import get_record
from ledger.store import NS

router = APIRouter(tags=["assets"])
MAX_LIST = 1000


@router.get("/v1/assets")
async def list_assets(
    node: NodeDep, owner: str | None = None, kind: str | None = None,
    limit: int = Query(100, ge=1, le=MAX_LIST),
) -> dict[str, Any]:
    """Live tokens by owner and/or kind, in id order (burned tokens are not listed)."""
    if kind is not None and kind not in KINDS:
        raise ApiError(400, "invalid_value", f"unknown kind {kind!r}; known: {list(KINDS)}")
    if owner is None and kind is None:
        raise ApiError(400, "malformed", "give owner and/or kind")
    prefix = owner_index_prefix(owner) if owner is not None else kind_index_prefix(kind or "")
    scan = NS.STATE_LATEST + prefix
    view = node.chain.latest
    assets = []
    for token in ids_from_index((k[len(NS.STATE_LATEST):] for k, _ in node.chain.store.iterate(scan)), prefix):
        asset = get_asset(view, token)
        if asset is None or (kind is not None and asset.kind != kind):
            continue
        assets.append(to_plain(asset))
        if len(assets) >= limit:
            break
    return {"height": node.chain.height, "owner": owner, "kind": kind, "assets": assets}


def _header_at(chain: ChainDB, height: int | None) -> BlockHeader:
    """The header of committed block `height` (default: the head); 404 beyond the head."""
    head = chain.head
    if height is None or height == head.height:
        return head
    block = chain.get_block(height) if 0 <= height < head.height else None
    if block is None:
        raise ApiError(404, "not_found", f"no committed block at height {height} (head is {head.height})")
    return block.header


def _at(height: int | None) -> str:
    return "" if height is None else f" at height {height}"


@router.get("/v1/assets/{token}")
async def asset(
    token: str, node: NodeDep, height: int | None = None, proof: bool = False, anchor: bool = False,
    history: bool = False,
) -> dict[str, Any]:
    """The token as of `height` (default: the head) and its ERC-4907 `user_of` at that block's time. With
    `history=true`, its provenance: the latest (at most 1,000) events, from `history_start`. With `proof=true`,
    a proof of the token and of every event listed (docs/proofs.md)."""
    at = _header_at(node.chain, height)
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
async def history(token: str, node: NodeDep) -> dict[str, Any]:
    view = node.chain.latest
    if get_asset(view, token) is None:
        raise ApiError(404, "not_found", f"no asset {token!r}")
    return {"id": token, "height": node.chain.height, "history": [to_plain(e) for e in get_history(view, token)]}


@router.get("/v1/licences/{licence_id}")
async def licence(
    licence_id: str, node: NodeDep, height: int | None = None, proof: bool = False, anchor: bool = False
) -> dict[str, Any]:
    """A licence as of `height` and whether it is active at that block's time; with `proof=true`, a proof of
    the licence and of the ancestors its activity depends on."""
    at = _header_at(node.chain, height)
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
    node: NodeDep, token: str, holder: str, purpose: str, at: str | None = None, proof: bool = True
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
