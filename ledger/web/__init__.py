"""The web resolver and ledger explorer that every node serves at `/`.

The pages are static files in `static/` (HTML, CSS and JavaScript modules, no build step) that
read only this node's public JSON API; `ledger.api.routes.web` serves them. Page URLs are paths
(`/resolve/<identifier>?height=H`, `/token/<id>`, `/block/<h>`, `/network`, `/labels`), so an
answer can be linked to, bookmarked and printed as a QR code.
"""

from __future__ import annotations

from urllib.parse import quote

from ledger.resolver.identifiers import InvalidIdentifier
from ledger.resolver.registry import storage_key

RESOLVE_PAGE = "/resolve/"


def answer_page_url(text: str, base: str) -> str:
    """The URL of the answer page for identifier `text` (any accepted form) on `base`.

    The page path holds the storage key, one percent-encoded path segment per key segment, so a
    GS1 key's own `%` escapes survive the round trip through the browser's address bar.
    Raises InvalidIdentifier.
    """
    if not base.startswith(("http://", "https://")):
        raise InvalidIdentifier("base must be an http(s) URL")
    key, _ = storage_key(text)
    return f"{base.rstrip('/')}{RESOLVE_PAGE}{quote(key, safe='/')}"
