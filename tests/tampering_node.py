"""A node in test mode that serves tampered answers, for the browser tests only.

`python -m tests.tampering_node --home HOME` runs the node of HOME as `ledger node run` does, behind an ASGI
layer that rewrites every JSON answer of `GET /v1/resolve/...` carrying a record: the record's first value
becomes the text in the environment variable LEDGER_TEST_TAMPER (when it is set). The switch lives here,
in the tests, and nowhere in the product: no configuration of a real node can turn it on. The node itself
(consensus, storage, proofs) is the real one; only what it tells the browser is a lie.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn

from ledger.api.server import create_app
from ledger.config import NodeConfig

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

SWITCH = "LEDGER_TEST_TAMPER"


def tamper(body: bytes, lie: str) -> bytes:
    """The answer with its record's first value replaced by `lie` (other answers unchanged)."""
    try:
        doc = json.loads(body)
    except ValueError:
        return body
    record = doc.get("record") if isinstance(doc, dict) else None
    if not isinstance(record, dict) or not record.get("values"):
        return body
    record["values"][0]["value"] = lie
    return json.dumps(doc, separators=(",", ":")).encode()


def tampering(app: App) -> App:
    """Wrap `app` so that resolution answers are tampered with while the switch is set."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        lie = os.environ.get(SWITCH)
        if lie is None or scope["type"] != "http" or not scope["path"].startswith("/v1/resolve/") \
                or scope["path"].endswith("/history"):
            await app(scope, receive, send)
            return
        start: Message = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = tamper(b"".join(chunks), lie)
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

        await app(scope, receive, capture)

    return wrapped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", required=True)
    args = parser.parse_args()
    config = NodeConfig.load(args.home)
    uvicorn.run(tampering(create_app(args.home)), host=config.http.host, port=config.http.port, log_level="warning")


if __name__ == "__main__":
    main()
