"""GS1 Digital Link resolver: GET /01/{gtin}[/...] (link types: see ledger.resolver.resolution).

- `Accept: application/linkset+json`, `linkType=all` or `linkType=linkset` -> 200 with the RFC 9264
  linkset (content type application/linkset+json);
- otherwise the links selected by `linkType` (default link when absent): one -> 307 to it with the
  request's query string appended, several -> 300 with their linkset, none -> 404;
- every answer carries `Link: <this path?linkType=linkset>; rel="application/linkset"`;
- errors are JSON `{"error", "message"}`.

What goes from the request (path, query) or a record (link targets) into a header is percent-encoded
where it is not URI text (`header_uri`): a crafted path cannot make the node write an invalid header.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from ledger.api.deps import NodeDep
from ledger.api.params import IDENTIFIER_MAX, header_uri
from ledger.resolver.identifiers import InvalidIdentifier
from ledger.resolver.resolution import LINKSET_WORDS, anchor_uri, linkset, resolve_text, select_links

router = APIRouter(tags=["gs1"])
LINKSET_TYPE = "application/linkset+json"


def _base(request: Request) -> str:
    return header_uri(str(request.base_url).rstrip("/"))


def _json(body: dict[str, Any], status: int, headers: dict[str, str], media_type: str = "application/json") -> Response:
    return Response(json.dumps(body), status_code=status, headers=headers, media_type=media_type)


_LINKSET = {LINKSET_TYPE: {"schema": {"type": "object", "required": ["linkset"]}}}
_JSON = {"application/json": {"schema": {"type": "object"}}}


@router.get(
    "/01/{rest:path}",
    responses={
        200: {"description": "the item's linkset (RFC 9264)", "content": _LINKSET},
        300: {"description": "several links match: their linkset", "content": _LINKSET},
        307: {"description": "redirect to the selected link", "content": _JSON,
              "headers": {"Location": {"schema": {"type": "string"}}}},
        404: {"description": "no such item or link type", "content": _JSON},
    },
)
async def gs1_resolve(
    rest: Annotated[str, Path(pattern=r"^[0-9]{8,14}(?:/[^\x00-\x1f\x7f]*)?$", max_length=IDENTIFIER_MAX // 2,
                              description="the GTIN, then qualifiers such as 21/{serial}")],
    request: Request, node: NodeDep,
    linkType: Annotated[str | None, Query(max_length=256, description=(  # noqa: N803
        "a GS1 link type (`gs1:pip`, `https://gs1.org/voc/pip`), `all` or `linkset`"))] = None,
) -> Response:
    """Resolve a GS1 Digital Link path `/01/{gtin}[/21/{serial}...]`."""
    path = request.url.path
    headers = {"Link": f'<{_base(request)}{header_uri(path)}?linkType=linkset>; rel="application/linkset"; '
                       f'type="{LINKSET_TYPE}"'}
    query = request.url.query
    try:
        found = resolve_text(node.chain.latest, path + (f"?{query}" if query else ""), fallback=True)
    except InvalidIdentifier as exc:
        return _json({"error": "invalid_identifier", "message": str(exc)}, 400, headers)
    record, ident = found.record, found.ident
    if record is None or ident is None:
        return _json({"error": "not_found", "message": f"{found.key} is not registered"}, 404, headers)
    anchor = anchor_uri(ident, _base(request))
    want_linkset = (linkType is not None and linkType.strip().lower() in LINKSET_WORDS) or (
        LINKSET_TYPE in request.headers.get("accept", ""))
    if want_linkset:
        return _json(linkset(record, anchor), 200, headers, LINKSET_TYPE)
    links = select_links(record, linkType)
    if not links:
        return _json({"error": "not_found", "message": f"{found.key} has no link of type {linkType or 'default'}",
                      **linkset(record, anchor)}, 404, headers)
    if len(links) > 1:
        return _json(linkset(record, anchor, links), 300, headers, LINKSET_TYPE)
    href = links[0].href
    if query:
        href += ("&" if "?" in href else "?") + query
    href = header_uri(href)
    return JSONResponse({"location": href}, status_code=307, headers={**headers, "Location": href})
