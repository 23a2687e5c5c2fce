"""Native resolution: an identifier's record at any committed height, optionally with its proof.

Identifiers are accepted in every form `parse_identifier` accepts (Handle, GS1 Digital Link path or
URI, EPC URN, element string, canonical GS1 key) and answered under their storage key (`identifier`).
"""

from __future__ import annotations

import asyncio
import io
from typing import Annotated, Any

import segno
from fastapi import APIRouter, Body, Path, Query, Request
from fastapi.responses import Response
from segno import DataOverflowError

from ledger.api.deps import NodeDep
from ledger.api.errors import ApiError
from ledger.api.limits import PROOF_COST
from ledger.api.params import IDENTIFIER, IDENTIFIER_MAX, MAX_HEIGHT, charge, header_uri
from ledger.chaindb import ChainDB
from ledger.codec import to_plain
from ledger.resolver.identifiers import InvalidIdentifier
from ledger.resolver.proofs import NOT_FOUND, build_resolution_proof, not_registered_message
from ledger.resolver.registry import get_history
from ledger.resolver.resolution import Resolved, resolution_url, resolve_text
from ledger.web import answer_page_url

router = APIRouter(tags=["resolve"])

MAX_BATCH = 1000  # identifiers per request
MAX_PROOF_PAGE = 100  # proofs built per request: a batch with proof=true is answered in pages
MAX_HISTORY_PAGE = 1000
YIELD_EVERY_PROOFS = 5

IdentifierPath = Annotated[str, Path(pattern=IDENTIFIER, max_length=IDENTIFIER_MAX)]
Height = Annotated[int | None, Query(ge=0, le=MAX_HEIGHT, description="a committed height (default: the head)")]


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
async def history(
    identifier: IdentifierPath, node: NodeDep, height: Height = None,
    start: Annotated[int, Query(ge=0, le=MAX_HEIGHT)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_HISTORY_PAGE)] = MAX_HISTORY_PAGE,
) -> dict[str, Any]:
    """Every change of the record (oldest first) as of `height`: the change, the values after it, the
    height, tx id, block time (ms) and the member who made it; paged with `start` and `limit`
    (at most 1,000 entries a page)."""
    at = _height(node.chain, height)
    found = _lookup(node.chain, identifier, at)
    total, entries = get_history(node.chain.view_at(at), found.key, limit, start)
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
    identifier: IdentifierPath, node: NodeDep, height: Height = None, proof: bool = False, anchor: bool = False
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
    request: Request,
    node: NodeDep,
    identifiers: Annotated[list[Annotated[str, Body(max_length=IDENTIFIER_MAX)]], Body(max_length=MAX_BATCH)],
    height: Height = None,
    proof: bool = False,
    start: Annotated[int, Query(ge=0, lt=MAX_BATCH, description="the first identifier answered")] = 0,
) -> dict[str, Any]:
    """Resolve up to 1,000 identifiers (a JSON list of strings) at one height. Answers are in input order:
    `{identifier, height, record}` (record null when not registered, plus `proof` with `proof=true`), or
    `{input, error, message}` for an identifier that does not parse.

    Each answer costs the client's read budget one request (ten with a proof). With `proof=true` at
    most 100 identifiers are answered per request, from `start`: `next_start` (null at the end) says
    where the next page begins; the height stays the one of the first page when passed as `height`."""
    at = _height(node.chain, height)
    view = node.chain.view_at(at)
    page = identifiers[start:start + (MAX_PROOF_PAGE if proof else MAX_BATCH)]
    following = start + len(page) if start + len(page) < len(identifiers) else None
    unit = PROOF_COST if proof else 1.0
    charge(request, unit * len(page) - unit)  # the request itself paid for one
    out: list[dict[str, Any]] = []
    for n, text in enumerate(page, start=1):
        try:
            found = resolve_text(view, text)
        except InvalidIdentifier as exc:
            out.append({"input": text, "error": "invalid_identifier", "message": str(exc)})
            continue
        out.append(_answer(node, found, at, proof))
        if proof and n % YIELD_EVERY_PROOFS == 0:
            await asyncio.sleep(0)  # let consensus messages in between proofs (all are of height `at`)
    return {"height": at, "start": start, "next_start": following, "results": out}


@router.get("/v1/qr/{identifier:path}", response_class=Response,
            responses={200: {"content": {"image/svg+xml": {}}, "description": "an SVG QR code"}})
async def qr(
    identifier: IdentifierPath, request: Request, scale: Annotated[int, Query(ge=1, le=20)] = 4,
    base: Annotated[str | None, Query(pattern=r"^https?://[^\x00-\x20\x7f]{1,200}$")] = None, page: bool = False,
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
    try:
        code = segno.make(url, micro=False)
    except DataOverflowError as exc:
        raise ApiError(400, "too_long", "the resolution URL is too long for a QR code") from exc
    code.save(svg, kind="svg", scale=scale, xmldecl=False)
    return Response(svg.getvalue(), media_type="image/svg+xml", headers={"X-Resolution-URL": header_uri(url)})
