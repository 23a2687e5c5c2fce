"""The OpenAPI document (`/openapi.json`, shown at `/docs`): FastAPI's, plus what it cannot infer.

- Every operation lists the errors it may answer, in their real shape (`Error`; the Handle route's
  `responseCode` shape is its own): 400 for a request the node refuses (FastAPI's default 422 is
  never sent: validation errors are 400 here), 404, 413 for bodies over `http.limits.max_body_bytes`,
  429 with `Retry-After` when the client's rate budget is spent.
- Links name the operations a response leads to (a submitted transaction's status, a block, a
  token's history), so schema-driven clients and fuzzers can follow them.
Caps (page sizes, batch sizes) are stated on the parameters themselves (`maximum`, `maxItems`) and
in each operation's description.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

ERROR_SCHEMA = {
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "string", "description": "a stable reason (`malformed`, `not_found`, ...)"},
                   "message": {"type": "string"}},
}
_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
_RETRY_AFTER = {"Retry-After": {"description": "seconds until the client may ask again",
                                "schema": {"type": "integer", "minimum": 1}}}
_COMMON = {
    "400": {"description": "malformed request (reason `malformed`, `invalid_identifier`, ...)", "content": _ERROR},
    "404": {"description": "not found", "content": _ERROR},
    "429": {"description": "the client's rate budget is spent (reason `rate_limited`)", "content": _ERROR,
            "headers": _RETRY_AFTER},
    "431": {"description": "request line and headers over the node's limit (`http.limits.max_header_bytes`)",
            "content": _ERROR},
}
_BODY_TOO_LARGE = {"description": "request body over the node's limit (reason `oversized`)", "content": _ERROR}

# (method, path) -> {link name: (target method, target path, parameters)}; `$response.body#/x` picks a field.
LINKS: dict[tuple[str, str], dict[str, tuple[str, str, dict[str, str]]]] = {
    ("post", "/v1/tx"): {"TxStatus": ("get", "/v1/tx/{tx_id}", {"tx_id": "$response.body#/tx_id"})},
    ("get", "/v1/tx/{tx_id}"): {"Block": ("get", "/v1/blocks/{height}", {"height": "$response.body#/height"})},
    ("get", "/v1/status"): {"HeadBlock": ("get", "/v1/blocks/{height}", {"height": "$response.body#/height"})},
    ("get", "/v1/blocks/latest"): {"Block": ("get", "/v1/blocks/{height}", {"height": "$response.body#/height"})},
    ("get", "/v1/blocks"): {"NewestBlock": ("get", "/v1/blocks/{height}",
                                            {"height": "$response.body#/blocks/0/height"})},
    ("get", "/v1/anchors/latest"): {"Block": ("get", "/v1/blocks/{height}", {"height": "$response.body#/height"})},
    ("get", "/v1/resolve/{identifier}"): {
        "History": ("get", "/v1/resolve/{identifier}/history", {"identifier": "$response.body#/identifier"}),
        "Qr": ("get", "/v1/qr/{identifier}", {"identifier": "$request.path.identifier"})},
    ("get", "/v1/assets/{token}"): {
        "History": ("get", "/v1/assets/{token}/history", {"token": "$request.path.token"}),
        "Licences": ("get", "/v1/assets/{token}/licences", {"token": "$request.path.token"}),
        "Listing": ("get", "/v1/market/listings/{token}", {"token": "$request.path.token"})},
    ("get", "/v1/market/listings/{token}"): {
        "Offer": ("get", "/v1/market/offers/{offer_id}", {"offer_id": "$response.body#/open_offers/0"}),
        "Prices": ("get", "/v1/market/prices", {"token": "$request.path.token"})},
    ("get", "/v1/assets/{token}/licences"): {
        "Licence": ("get", "/v1/licences/{licence_id}", {"licence_id": "$response.body#/licences/0/id"})},
    ("get", "/v1/members"): {"Member": ("get", "/v1/members/{member_id}", {"member_id": "$response.body#/id"})},
}


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, description=app.description,
                                   routes=app.routes)
            _complete(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _complete(document: dict[str, Any]) -> None:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas["Error"] = ERROR_SCHEMA
    operation_ids = {(method, path): op["operationId"] for path, item in document["paths"].items()
                     for method, op in item.items()}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status, response in _COMMON.items():
                responses.setdefault(status, response)
            if "requestBody" in operation:
                responses.setdefault("413", _BODY_TOO_LARGE)
            links = LINKS.get((method, path))
            if links:
                ok = next(s for s in ("200", "202") if s in responses)
                responses[ok]["links"] = {
                    name: {"operationId": operation_ids[(target_method, target_path)], "parameters": parameters}
                    for name, (target_method, target_path, parameters) in links.items()
                }
