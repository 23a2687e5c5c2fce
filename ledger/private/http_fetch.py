"""An observer's way to private data: the validators' HTTP, since it has no peer links.

A fetch is `POST /v1/private-fetch` with the same request a validator sends over a peer link, a one-time
X25519 public key, and the observer's node key and signature over both (`ledger.private.reads.sign_fetch`).
The validator answers only if the certified state makes the observer's node a member organisation's, and
seals its answer to the one-time key, so the value crosses plain HTTP unreadable. Every validator may be
asked: the request holds nothing secret, and the asker checks any answer against the commitment.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Sequence

import httpx

from ledger.codec import encode
from ledger.crypto import SigningKey
from ledger.private.reads import NODE_KEY_HEADER, REQUEST_HEADER, sign_fetch
from ledger.private.records import Collection
from ledger.sealed import SealError, generate_key, open_sealed
from ledger.state import StateView

log = logging.getLogger("ledger.private")

FETCH_PATH = "/v1/private-fetch"


def fetch_associated_data(chain_id: str, request: bytes) -> bytes:
    """What a sealed fetch answer is bound to: this request on this chain."""
    return encode(("private-fetch", chain_id, request))


class HttpSources:
    def __init__(self, key: SigningKey, chain_id: str, urls: Sequence[str]) -> None:
        self._key = key
        self._chain_id = chain_id
        self._urls = [u.rstrip("/") for u in urls]

    def candidates(self, view: StateView, collection: Collection) -> Sequence[str]:
        return self._urls

    async def request(self, source: str, payload: bytes, timeout: float) -> bytes | None:
        private, reply_key = generate_key()
        token = sign_fetch(self._key, self._chain_id, reply_key, payload, time.time_ns() // 1_000_000)
        try:
            async with httpx.AsyncClient(timeout=timeout) as client:
                body = {"request": payload.hex(), "reply_key": reply_key.hex()}
                r = await client.post(source + FETCH_PATH, json=body,
                                      headers={NODE_KEY_HEADER: self._key.public_key.hex(), REQUEST_HEADER: token})
            if r.status_code != 200:
                return None
            return open_sealed(base64.b64decode(r.json()["sealed"]), private,
                               fetch_associated_data(self._chain_id, payload))
        except (httpx.HTTPError, ValueError, KeyError, TypeError, SealError) as exc:
            log.info("private fetch from %s failed: %s", source, exc)
            return None
