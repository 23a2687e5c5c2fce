"""What each peer validator has shown lately, for the explorer's network page (`GET /v1/network`).

A browser may talk only to the node that served it, so that node reports on its peers from what it
sees anyway: whether each direction of the link is up and when the peer was last heard (the
transport's own account: heartbeats count, so a quiet but live peer is seen as live), the highest
view and height the peer's consensus messages named, and the peer's head height as answered to a
probe. Nothing here feeds back into consensus; the numbers are the peer's own (signed but here
unchecked) claims, for monitoring only.

A probe is the catch-up request of `ledger.net.sync` for zero blocks: every node already answers it
with its head height, so no new message type is needed. Probes are sent only when someone asks
(`refresh`), at most once per `max_age`, and only to peers whose link is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ledger.codec import CodecError, decode, encode
from ledger.consensus.messages import (
    KIND_CHECKPOINT,
    KIND_VOTE,
    MalformedMessage,
    decode_body,
    decode_envelope,
)
from ledger.net.frames import TransportError
from ledger.net.link import LinkState
from ledger.net.sync import BlockBatch, BlockRequest

# A block's worth of consensus messages repeats the same view and height: look inside at most this
# often per peer, so tracking costs a clock read per message.
DECODE_INTERVAL_S = 0.2
PROBE = encode(BlockRequest(0, 0))  # "send me no blocks": the answer carries the peer's head height


@dataclass
class PeerSeen:
    last_seen: float | None = None  # wall time (s) of its last message or probe answer
    view: int | None = None  # highest view its consensus messages named
    height: int | None = None  # its head height: last probe answer, raised by later votes and checkpoints
    rtt_ms: float | None = None  # round trip of the last probe answer
    decoded_at: float = field(default=0.0, repr=False)  # monotonic time of the last look inside

    def to_json(self, now: float) -> dict[str, Any]:
        age = None if self.last_seen is None else max(0, round((now - self.last_seen) * 1000))
        return {"last_seen": None if self.last_seen is None else int(self.last_seen * 1000),
                "last_seen_ago_ms": age, "view": self.view, "height": self.height,
                "rtt_ms": None if self.rtt_ms is None else round(self.rtt_ms, 1)}


class PeerTracker:
    def __init__(self, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._monotonic = monotonic
        self._peers: dict[str, PeerSeen] = {}
        self._probing: asyncio.Task[None] | None = None
        self._probed_at = -1e9

    def seen(self, peer: str) -> PeerSeen:
        return self._peers.get(peer) or PeerSeen()

    def heard(self, peer: str, consensus: bytes | None = None) -> None:
        """A message from `peer` arrived; `consensus` is its body when it is a consensus message."""
        state = self._peers.setdefault(peer, PeerSeen())
        state.last_seen = self._clock()
        if consensus is None:
            return
        now = self._monotonic()
        if now - state.decoded_at < DECODE_INTERVAL_S:
            return
        state.decoded_at = now
        try:
            env = decode_envelope(consensus)
            body = decode_body(env)
        except MalformedMessage:
            return  # the replica counts and drops it; there is nothing to show
        # Every kind but a vote names the sender's current (or, for view changes, next) view; a vote
        # names its block's view, which may be older.
        if env.kind != KIND_VOTE and hasattr(body, "view"):
            state.view = max(state.view or 0, body.view)
        # A vote or checkpoint is sent for a block the sender holds as decided: it has that height.
        if env.kind in (KIND_VOTE, KIND_CHECKPOINT):
            state.height = max(state.height or 0, body.height)

    async def refresh(self, transport: Any, peers: Iterable[str], max_age: float = 1.0,
                      timeout: float = 1.0) -> None:
        """Probe `peers` for their head heights, unless a probe started less than `max_age` ago
        (callers arriving during a probe wait for it)."""
        if self._probing is None and self._monotonic() - self._probed_at >= max_age:
            self._probed_at = self._monotonic()
            self._probing = asyncio.create_task(self._probe_all(transport, list(peers), timeout))
        task = self._probing
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)

    async def _probe_all(self, transport: Any, peers: list[str], timeout: float) -> None:
        try:
            await asyncio.gather(*(self._probe(transport, p, timeout) for p in peers))
        finally:
            self._probing = None

    async def _probe(self, transport: Any, peer: str, timeout: float) -> None:
        started = self._monotonic()
        try:
            reply = decode(BlockBatch, await transport.request(peer, PROBE, timeout=timeout))
        except (TransportError, CodecError):
            return  # unreachable or garbled: its last_seen simply ages
        state = self._peers.setdefault(peer, PeerSeen())
        state.last_seen = self._clock()
        state.height = reply.head_height
        state.rtt_ms = (self._monotonic() - started) * 1000


def describe_peer(seen: PeerSeen, link: LinkState | None, now: float) -> dict[str, Any]:
    """A peer for `GET /v1/network`: what it showed (`seen`) and its links as the transport knows them.

    `connected` means both directions are up: this node's link to the peer (what it says reaches the
    peer) and the peer's link to this node. `last_seen` is the later of the peer's last message or
    probe answer and the last frame of any kind (heartbeats included) read from it. `connected_since`
    (ms) is when both directions were last up together, as the transport recorded it."""
    out = seen.to_json(now)
    if link is None:
        return {**out, "connected": False, "outgoing": False, "incoming": False, "connected_since": None}
    if link.last_heard is not None and (seen.last_seen is None or link.last_heard > seen.last_seen):
        out["last_seen"] = int(link.last_heard * 1000)
        out["last_seen_ago_ms"] = max(0, round((now - link.last_heard) * 1000))
    if link.rtt_ms is not None:
        out["rtt_ms"] = round(link.rtt_ms, 1)
    since = None if link.connected_since is None else int(link.connected_since * 1000)
    return {**out, "connected": link.connected, "outgoing": link.outgoing, "incoming": link.incoming,
            "connected_since": since}
