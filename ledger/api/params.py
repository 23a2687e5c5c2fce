"""The shapes of path and query parameters, stated once for the routes and so for the OpenAPI
document: a schema-driven client then sends what the node accepts."""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request

from ledger.api.guard import CLIENT_KEY
from ledger.api.limits import Client

HEX64 = r"^[0-9a-fA-F]{64}$"  # transaction ids, licence ids
MEMBER_ID = r"^[0-9a-f]{40}$"
PREFIX = r"^(?:(?:[A-Za-z0-9][A-Za-z0-9-]*)(?:\.[A-Za-z0-9][A-Za-z0-9-]*)*|gs1:[0-9]{4,12})$"  # check_prefix
HANDLE_PREFIX = r"^(?:(?:[A-Za-z0-9][A-Za-z0-9-]*)(?:\.[A-Za-z0-9][A-Za-z0-9-]*)*|gs1(?::[0-9]{4,12})?)$"  # or gs1/...
HANDLE_SUFFIX = r"^[^:\\\x00-\x1f\x7f]+$"  # no ':' (Handle clients read index:handle), no backslash
IDENTIFIER = r"^[^\x00-\x1f\x7f]+$"  # every form ledger.resolver.identifiers parses; printable
IDENTIFIER_MAX = 2048
TOKEN_ID = r"^[A-Za-z0-9._:-]{1,128}$"
TIME = (r"^(?:[0-9]{1,15}|(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"
        r"-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
        r"(?:[T ](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)?"
        r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?)?)$")
TIME_DESCRIPTION = "milliseconds since the Unix epoch, or ISO 8601 (a time without zone is UTC)"
MAX_HEIGHT = 2**63 - 1

# Characters kept as they are when a request's text goes into a response header: a URI's reserved and
# unreserved characters and existing escapes. Anything else (non-ASCII, quotes, angle brackets,
# controls) is percent-encoded, so no request can make the node write an invalid header.
_HEADER_SAFE = "!#$%&'()*+,/:;=?@[]~-._"


def header_uri(text: str) -> str:
    return quote(text, safe=_HEADER_SAFE)


def charge(request: Request, tokens: float) -> None:
    """Take `tokens` more from the client's read budget for a request whose cost shows only in its
    body (a batch); the debt delays the client's next requests (`ledger.api.limits.Bucket.charge`)."""
    client: Client | None = request.scope.get(CLIENT_KEY)
    if client is not None and not client.exempt and tokens > 0:
        client.reads.charge(tokens)
