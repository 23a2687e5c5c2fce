"""An observer's link to the validators over their public HTTP: certified blocks in, writes out.

An observer (`"role": "observer"` in config.json) is a node that never votes: no key in any
validator set, no peer links, no consensus messages sent or accepted, no governance step to join.
It follows the chain by polling validators for certified blocks (`GET /v1/sync/blocks`, the same
`BlockRequest`/`BlockBatch` as catch-up over peer links) and applies them through the node's own
catch-up (`Node.catch_up_over`, hence `Driver.catch_up` and `LedgerApp.apply_certified`): every
certificate is checked against the validator set at its block's height, and every block is
re-executed to the header's state root. No validator is trusted: one that serves a bad block is
passed over (asked last from then on, until it serves a good one) and the next is asked; one that
is down or slow costs a timeout. Why HTTP and not peer links: the validators' HTTP is public and
already bounded per client (`ledger.api.guard`), so an observer needs nothing from the validators'
configuration, and a hostile "observer" can do nothing it could not already do as a web client;
over peer links the validators would have to admit non-validator keys into the consensus port.

Writes (`POST /v1/tx`) are forwarded as they came to a validator, and its answer returned as it
is; a validator that cannot be reached is passed over for the next (re-sending the same signed
bytes is safe: nonces let a transaction commit once, and a second copy is answered `duplicate`).
An answer saying the transactions committed (`?wait=true`) is held until this observer holds their
block (polling at once, at most 10 s): a client then reads its own write, and its next nonce, here.

State owned here: the validators' URLs in order of preference and what each last showed (claimed
head, when it last answered, errors, bad blocks). The node asks for `claims()` (readiness) and
`status()`; the HTTP layer asks for `forward`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from ledger.codec import CodecError, decode
from ledger.config import ObserverSettings
from ledger.net.sync import BlockBatch, BlockRequest
from ledger.tasks import cancel_and_wait

log = logging.getLogger("ledger.observer")

SYNC_PATH = "/v1/sync/blocks"
MSGPACK = "application/msgpack"
READ_YOUR_WRITES_S = 10.0  # a committed write's answer waits this long at most for the observer to hold its block
CLAIM_FRESH_S = 30.0  # a validator's claimed head counts for readiness this long after it answered
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "te", "upgrade",
               "proxy-connection", "trailer", "content-encoding", "date", "server"}

RequestFn = Callable[[str, bytes], Awaitable[bytes | None]]


class FollowingNode(Protocol):
    """What the follower needs of the node it feeds."""

    def committed_height(self) -> int:
        """The height of the last block on disk."""
        ...

    async def catch_up_over(self, peers: Sequence[str], request: RequestFn,
                            on_invalid: Callable[[str, int, str], None]) -> None:
        """Fetch certified blocks from `peers` in turn with `request`, check and apply them in order;
        `on_invalid(peer, height, why)` for a block that fails its checks."""
        ...


@dataclass
class Upstream:
    """One validator as this observer knows it."""

    url: str
    id: str | None = None  # the validator id its /v1/status names (unchecked; for the network page only)
    head: int | None = None  # the head height it last claimed (unchecked: readiness takes f+1 claims)
    answered_at: float | None = None  # monotonic time of its last well-formed answer
    errors: int = 0  # requests that failed (unreachable, timeout, garbled answer)
    bad_blocks: int = 0  # blocks it served that failed their checks
    demoted: bool = False  # served a bad block last time: asked after the others

    def to_json(self, now: float) -> dict[str, Any]:
        return {"url": self.url, "id": self.id, "head": self.head, "errors": self.errors, "bad_blocks": self.bad_blocks,
                "answered_ago_s": None if self.answered_at is None else round(now - self.answered_at, 1)}


@dataclass(frozen=True)
class Forwarded:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class NoValidatorReachable(RuntimeError):
    pass


class Follower:
    def __init__(self, node: FollowingNode, settings: ObserverSettings,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._node = node
        self._settings = settings
        self._clock = clock
        self._upstreams = [Upstream(url) for url in settings.validators]
        self._by_url = {u.url: u for u in self._upstreams}
        self._http: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()  # set: poll now (a forwarded write committed)
        self.rounds = 0

    # --- lifecycle (the node starts and stops it, like anchoring) ----------------------------------

    def start(self) -> None:
        self._http = httpx.AsyncClient(timeout=self._settings.request_timeout_s,
                                       limits=httpx.Limits(max_connections=32, max_keepalive_connections=8))
        self._task = asyncio.create_task(self._follow(), name="observer-follow")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        if self._http is not None:
            await self._http.aclose()

    def status(self) -> dict[str, Any]:
        now = self._clock()
        return {"validators": [u.to_json(now) for u in self._upstreams], "rounds": self.rounds}

    def gauges(self) -> dict[str, int]:
        """For /metrics (`ledger_observer{what=...}`)."""
        return {"validators_answering": len(self.reachable()), "bad_blocks": sum(u.bad_blocks for u in self._upstreams),
                "request_errors": sum(u.errors for u in self._upstreams)}

    def claims(self) -> list[int]:
        """The heads the validators claimed lately (for readiness; unchecked, see `ledger.health`)."""
        now = self._clock()
        return [u.head for u in self._upstreams
                if u.head is not None and u.answered_at is not None and now - u.answered_at <= CLAIM_FRESH_S]

    def reachable(self) -> list[str]:
        now = self._clock()
        return [u.url for u in self._upstreams if u.answered_at is not None and now - u.answered_at <= CLAIM_FRESH_S]

    # --- following -----------------------------------------------------------------------------------

    def seen(self, validator_id: str) -> dict[str, Any] | None:
        """A validator as this observer sees it, for `GET /v1/network` (None if no URL named it)."""
        now, wall = self._clock(), time.time()
        for u in self._upstreams:
            if u.id == validator_id:
                fresh = u.answered_at is not None and now - u.answered_at <= CLAIM_FRESH_S
                ago = None if u.answered_at is None else max(0, round((now - u.answered_at) * 1000))
                return {"last_seen": None if ago is None else int(wall * 1000) - ago, "last_seen_ago_ms": ago,
                        "view": None, "height": u.head, "rtt_ms": None, "connected": fresh, "outgoing": fresh,
                        "incoming": False, "connected_since": None, "url": u.url}  # polls, not a link
        return None

    def order(self) -> list[str]:
        """Validators in the order to ask them: as configured, those that last served a bad block last."""
        return [u.url for u in sorted(self._upstreams, key=lambda u: u.demoted)]

    async def _follow(self) -> None:
        poll = self._settings.poll_ms / 1000
        while True:
            try:
                await self._node.catch_up_over(self.order(), self._request, self._on_invalid)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not stop following; the node stops itself on a disk error
                log.exception("following the validators failed")
            self.rounds += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), poll)
            self._wake.clear()

    async def wait_for_height(self, height: int, timeout: float = READ_YOUR_WRITES_S) -> bool:
        """Poll at once and wait (at most `timeout` s) until this observer holds block `height`."""
        deadline = self._clock() + timeout
        while self._node.committed_height() < height:
            if self._clock() >= deadline:
                return False
            self._wake.set()
            await asyncio.sleep(0.01)
        return True

    async def _request(self, url: str, payload: bytes) -> bytes | None:
        """One block request to validator `url` (the payload is an encoded BlockRequest)."""
        assert self._http is not None
        up = self._by_url[url]
        try:
            req = decode(BlockRequest, payload)
            r = await self._http.get(url + SYNC_PATH, params={"from": req.from_height, "max": req.max_blocks})
            if r.status_code != 200:
                raise httpx.HTTPStatusError(f"answered {r.status_code}", request=r.request, response=r)
            batch = decode(BlockBatch, r.content)
        except (httpx.HTTPError, CodecError) as exc:
            up.errors += 1
            log.info("block request to %s failed: %s", url, exc)
            return None
        up.head, up.answered_at = batch.head_height, self._clock()
        if up.id is None:
            await self._learn_id(up)
        if batch.blocks and up.demoted:
            up.demoted = False  # it serves blocks again; a bad one demotes it again
        return r.content

    async def _learn_id(self, up: Upstream) -> None:
        assert self._http is not None
        try:
            node_id = (await self._http.get(up.url + "/v1/status")).json().get("node_id")
        except (httpx.HTTPError, ValueError, AttributeError):
            return
        up.id = node_id if isinstance(node_id, str) else None

    def _on_invalid(self, url: str, height: int, why: str) -> None:
        up = self._by_url[url]
        up.bad_blocks += 1
        up.demoted = True
        log.warning("validator %s served a block %d that failed its checks (%s): asking another", url, height, why)

    # --- writes ------------------------------------------------------------------------------------

    async def forward(self, method: str, path_and_query: str, headers: Sequence[tuple[str, str]],
                      body: bytes) -> Forwarded:
        """Send a write to a validator, in order of preference, passing over one that cannot be reached;
        its answer comes back as it is."""
        assert self._http is not None
        sent = [(k, v) for k, v in headers if k.lower() not in HOP_HEADERS]
        failures = []
        for url in self.order():
            try:
                r = await self._http.request(method, url + path_and_query, headers=sent, content=body,
                                             timeout=self._settings.forward_timeout_s)
            except httpx.HTTPError as exc:
                self._by_url[url].errors += 1
                failures.append(f"{url}: {type(exc).__name__}")
                continue
            kept = [(k, v) for k, v in r.headers.items() if k.lower() not in HOP_HEADERS]
            height = committed_at(r.content) if r.status_code == 200 else None
            if height is not None:  # read your writes: answer once this observer's reads show the commit
                await self.wait_for_height(height)
            return Forwarded(r.status_code, kept, r.content)
        raise NoValidatorReachable("no validator answered: " + "; ".join(failures))


def committed_at(body: bytes) -> int | None:
    """The highest height a `POST /v1/tx?wait=true` answer says its transactions committed at, if any."""
    try:
        answer = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(answer, dict):
        return None
    results = answer.get("results")
    items: list[Any] = results if isinstance(results, list) else [answer]
    heights = [i["height"] for i in items if isinstance(i, dict) and isinstance(i.get("height"), int)]
    return max(heights) if heights else None
