"""Handle.Net REST answers as plain bytes, without the web framework.

`answer` is the whole of `GET /api/handles/{prefix}/{suffix}`: the FastAPI route (which documents it
in OpenAPI) calls it, and so does the cache middleware on a miss, straight from the ASGI scope, so
the hot route never pays for routing, dependency injection and response classes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from ledger.node import Node
from ledger.proofs import build_state_proof
from ledger.resolver.handle_format import filter_values, handle_values
from ledger.resolver.identifiers import InvalidIdentifier
from ledger.resolver.proofs import handle_lookup

JSON_TYPE = "application/json"
JSONP_TYPE = "application/javascript"
_CALLBACK_RE = re.compile(r"[A-Za-z_$][A-Za-z0-9_$.]{0,63}")
# The spellings pydantic (hence the FastAPI route) accepts for a boolean query parameter.
_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})


@dataclass(frozen=True)
class HandleQuery:
    index: list[str] = field(default_factory=list)
    type: list[str] = field(default_factory=list)
    callback: str | None = None
    proof: bool = False


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    media_type: str


def _flag(value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def parse_query(query: bytes) -> HandleQuery:
    """The query string of a Handle request. Raises ValueError where the route would answer 400."""
    index: list[str] = []
    types: list[str] = []
    callback: str | None = None
    proof = False
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if name == "index":
            index.append(value)
        elif name == "type":
            types.append(value)
        elif name == "callback":
            callback = value
        elif name == "proof":
            proof = _flag(value)
        elif name in ("auth", "publicOnly"):
            _flag(value)  # validated like the route does; no effect on a ledger
    return HandleQuery(index, types, callback, proof)


def _encode(body: dict[str, Any], status: int, callback: str | None) -> Answer:
    if callback is not None and _CALLBACK_RE.fullmatch(callback):
        return Answer(status, f"{callback}({json.dumps(body)});".encode(), JSONP_TYPE)
    # Byte for byte what Starlette's JSONResponse renders.
    text = json.dumps(body, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))
    return Answer(status, text.encode(), JSON_TYPE)


def answer(node: Node, handle: str, query: HandleQuery) -> Answer:
    """The Handle.Net answer. `handle` in it is the storage key (the canonical form of a GS1 key asked for
    as `gs1:<company prefix>/...`). With `proof=true` it carries a proof of the record (or of its absence)
    and of the prefix records that decide the HS_ADMIN value, and names the filter that selected the values
    (docs/proofs.md)."""
    chain = node.chain
    try:
        # A Handle is stored as given; a GS1 key (gs1/01/<gtin>/21/<serial>, gs1:<cp>/01/...) under its
        # canonical key, owned by its longest registered gs1:<digits> prefix.
        key, owner_prefix, registered, record, keys = handle_lookup(chain.latest, handle)
    except InvalidIdentifier as exc:
        return _encode({"responseCode": 102, "handle": handle, "message": str(exc)}, 400, query.callback)
    try:
        indexes = [int(i) for i in query.index]
    except ValueError:
        return _encode({"responseCode": 202, "handle": handle, "message": "index must be an integer"}, 400,
                       query.callback)
    if not registered:
        message = f"prefix {owner_prefix} is not homed on this ledger"
        return _encode({"responseCode": 301, "handle": handle, "message": message}, 400, query.callback)
    # proof=true adds a top-level proof of the record (or of its absence) against a certified header.
    extra: dict[str, Any] = {"proof": build_state_proof(chain, keys)} if query.proof else {}
    if record is None:
        return _encode({"responseCode": 100, "handle": key, **extra}, 404, query.callback)
    if query.proof and (indexes or query.type):
        extra["filter"] = {"index": indexes, "type": list(query.type)}
    values = filter_values(handle_values(record, owner_prefix), indexes, query.type)
    if not values:
        return _encode({"responseCode": 200, "handle": key, **extra}, 200, query.callback)
    return _encode({"responseCode": 1, "handle": key, "values": values, **extra}, 200, query.callback)
