"""The explorer's pages: `index.html` for every page path, and the static files under `/web/`.

The files ship inside the package (`ledger/web/static`, package data) and are read once, at import;
each answer carries an ETag so a browser revalidates with one small request. Page paths are listed
one by one, so they can never shadow the API (`/v1/...`, `/api/...`, `/01/...`, `/healthz`, ...).
The HTML carries a Content-Security-Policy that lets the pages load and fetch from this node only.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from importlib.abc import Traversable

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ledger.api.errors import ApiError

router = APIRouter(include_in_schema=False)

PAGE_PATHS = ("/", "/resolve/{rest:path}", "/token/{rest:path}", "/block/{rest:path}", "/network", "/labels")
TYPES = {
    ".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
# The pages link to digital twins elsewhere: do not tell those sites which identifier was looked up.
COMMON_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "Cache-Control": "no-cache"}


def _load(folder: Traversable, prefix: str = "") -> dict[str, tuple[bytes, str, str]]:
    """{relative path: (body, content type, etag)} of every servable file under `folder`."""
    files: dict[str, tuple[bytes, str, str]] = {}
    for entry in folder.iterdir():
        name = prefix + entry.name
        if entry.is_dir():
            files.update(_load(entry, name + "/"))
            continue
        kind = TYPES.get(name[name.rfind("."):]) if "." in name else None
        if kind is not None:
            body = entry.read_bytes()
            files[name] = (body, kind, '"' + hashlib.sha256(body).hexdigest()[:20] + '"')
    return files


FILES = _load(resources.files("ledger.web") / "static")


def _serve(name: str, request: Request, extra: dict[str, str] | None = None) -> Response:
    found = FILES.get(name)
    if found is None:
        raise ApiError(404, "not_found", f"no file {name!r}")
    body, kind, etag = found
    headers = {**COMMON_HEADERS, "ETag": etag, **(extra or {})}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=kind, headers=headers)


async def page(request: Request) -> Response:
    """Every page is the same shell; its script reads the path and renders the page."""
    return _serve("index.html", request, {"Content-Security-Policy": CSP})


for _path in PAGE_PATHS:
    router.add_api_route(_path, page, methods=["GET"])


@router.get("/web/{name:path}")
async def static_file(name: str, request: Request) -> Response:
    return _serve(name, request)
