"""Native resolution: an identifier's record at any committed height, optionally with its proof.

Identifiers are accepted in every form `parse_identifier` accepts (Handle, GS1 Digital Link path or
URI, EPC URN, element string, canonical GS1 key) and answered under their storage key (`identifier`).
"""

from __future__ import annotations

import io
from typing import Annotated, Any

import segno
from fastapi import APIRouter, Body, Request
from fastapi.responses import Response

from ledger.api.deps import NodeDep
from ledger.api.errors import ApiError
from ledger.chaindb import ChainDB
from ledger.codec import to_plain
from ledger.resolver.identifiers import InvalidIdentifier
from ledger.resolver.proofs import NOT_FOUND, build_resolution_proof, not_registered_message
from ledger.resolver.registry import get_history
from ledger.resolver.resolution import Resolved, resolution_url, resolve_text
from ledger.web import answer_page_url

router = APIRouter(tags=["resolve"])

MAX_BATCH = 1000
MAX_HISTORY_PAGE = 1000


def _height(chain: ChainDB, height: int | None) -> int:
    head = chain.height
    if height is not None and not 0 <= height <= head:
        raise ApiError(404, "not_found", f"no committed block at height {height} (head is {head})")
    return head if height is None else height


def _lookup(chain: ChainDB, identifier: str, at: int) -> Resolved:
    try:
        return resolve_text(chain.view_at(at), identifier)
    except InvalidIdentifier as exc:
        raise ApiError(400, "invalid_identifier", str(exc), identifier=identifier) from exc


@router.get("/v1/resolve/{identifier:path}/history")
async def history(identifier: str, node: NodeDep, height: int | None = None, start: int = 0,
                  limit: int = MAX_HISTORY_PAGE) -> dict[str, Any]:
    """Every change of the record (oldest first) as of `height`: the change, the values after it, the
    height, tx id, block time (ms) and the member who made it; paged with `start` and `limit`."""
    at = _height(node.chain, height)
    found = _lookup(node.chain, identifier, at)
    total, entries = get_history(node.chain.view_at(at), found.key, max(1, min(limit, MAX_HISTORY_PAGE)), start)
    if total == 0:
        raise ApiError(404, "not_found", f"{found.key} has no history", identifier=found.key, height=at)
    return {"identifier": found.key, "height": at, "total": total, "start": start,
            "history": [to_plain(e) for e in entries]}


def _answer(node: Any, found: Resolved, at: int, proof: bool, anchor: bool = False) -> dict[str, Any]:
    """The native answer (docs/proofs.md): every field is proven by the proof, except what `unproven` holds:
    the identifier as asked, when it was another form of the storage key."""
    body: dict[str, Any] = {"identifier": found.key, "height": at,
                            "record": None if found.record is None else to_plain(found.record)}
    if found.key != found.text:
        body["unproven"] = {"input": found.text}
    if proof:
        body["proof"] = build_resolution_proof(node.chain, found.key, at, anchor=anchor)
    return body


@router.get("/v1/resolve/{identifier:path}")
async def resolve(
    identifier: str, node: NodeDep, height: int | None = None, proof: bool = False, anchor: bool = False
) -> dict[str, Any]:
    """The record of `identifier` as of `height` (default: the head); `proof=true` adds a state proof
    (also for an identifier that does not exist: then it proves the absence); with `anchor=true` the
    proof also carries the path to the latest Ethereum anchor covering that height (null if none yet)."""
    at = _height(node.chain, height)
    found = _lookup(node.chain, identifier, at)
    body = _answer(node, found, at, proof, anchor and proof)
    if found.record is None:
        body.pop("record")
        raise ApiError(404, NOT_FOUND, not_registered_message(found.key), **body)
    return body


@router.post("/v1/resolve")
async def resolve_batch(
    node: NodeDep,
    identifiers: Annotated[list[str], Body(max_length=MAX_BATCH)],
    height: int | None = None,
    proof: bool = False,
) -> dict[str, Any]:
    """Resolve up to 1000 identifiers (a JSON list of strings) at one height. Answers are in input order:
    `{identifier, height, record}` (record null when not registered, plus `proof` with `proof=true`), or
    `{input, error, message}` for an identifier that does not parse."""
    at = _height(node.chain, height)
    view = node.chain.view_at(at)
    out: list[dict[str, Any]] = []
    for text in identifiers:
        try:
            found = resolve_text(view, text)
        except InvalidIdentifier as exc:
            out.append({"input": text, "error": "invalid_identifier", "message": str(exc)})
            continue
        out.append(_answer(node, found, at, proof))
    return {"height": at, "results": out}


@router.get("/v1/qr/{identifier:path}", response_class=Response,
            responses={200: {"content": {"image/svg+xml": {}}, "description": "an SVG QR code"}})
async def qr(
    identifier: str, request: Request, scale: int = 4, base: str | None = None, page: bool = False
) -> Response:
    """A QR code (SVG) of the identifier's resolution URL: its GS1 Digital Link URI for GS1 items, its
    Handle REST URL otherwise, on this node (or on `base`, e.g. https://id.example.com). With `page=true`
    it encodes the web answer page instead (`/resolve/{identifier}`, what a phone's browser shows).
    The path ends in `.svg`."""
    if not identifier.endswith(".svg"):
        raise ApiError(404, "not_found", "QR codes are served as /v1/qr/{identifier}.svg")
    try:
        encode_url = answer_page_url if page else resolution_url
        url = encode_url(identifier[:-4], base or str(request.base_url).rstrip("/"))
    except InvalidIdentifier as exc:
        raise ApiError(400, "invalid_identifier", str(exc)) from exc
    # A standalone SVG document (with its xmlns): `svg_inline` output does not display as an <img>.
    svg = io.BytesIO()
    segno.make(url, micro=False).save(svg, kind="svg", scale=max(1, min(scale, 20)), xmldecl=False)
    return Response(svg.getvalue(), media_type="image/svg+xml", headers={"X-Resolution-URL": url})
