"""Heartbeats and dead-link detection for the peer links (`ledger.net.transport` runs one watcher).

Every `interval` the watcher sends a PING on each outgoing link (the listener answers with a PONG
on the same connection, so both ends hear from each other on every connection) and closes every
link, in either direction, it has heard nothing on (not a frame, not a piece of a long frame) for
`dead_after`. Silence is counted only while this node itself was running on time: when the watcher
wakes far too late (this process was paused, or its loop blocked), silence is counted afresh from
that moment, so a node coming back from a pause does not drop links whose peers' frames it simply
has not read yet.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable, Iterable

from ledger.net.frames import FrameType, encode_frame
from ledger.net.link import Link

log = logging.getLogger("ledger.net")

PING_BODY = struct.Struct(">Q")  # the sender's loop time in nanoseconds, echoed in the PONG


def round_trip(pong_body: bytes, now: float) -> float | None:
    """Seconds since the PING that a PONG echoes (loop time `now`), None for a malformed echo."""
    if len(pong_body) != 1 + PING_BODY.size:
        return None
    (sent_ns,) = PING_BODY.unpack_from(pong_body, 1)
    return max(0.0, now - sent_ns / 1e9)


class HeartbeatWatcher:
    """Pings the outgoing links and closes silent ones; `metrics` is the transport's counter map."""

    def __init__(
        self, interval: float, dead_after: float, metrics: dict[str, int],
        outgoing: Callable[[], Iterable[Link]], every_link: Callable[[], Iterable[Link]],
        write: Callable[[Link, bytes], None],
    ) -> None:
        self._interval = interval
        self._dead_after = dead_after
        self._metrics = metrics
        self._outgoing = outgoing
        self._every_link = every_link
        self._write = write
        self._awake_since = 0.0  # loop time this node last resumed after a stall

    async def run(self) -> None:
        """Every interval: ping each outgoing link, close every link silent for `dead_after`."""
        loop = asyncio.get_running_loop()
        interval = self._interval
        # Woken this much late, this node was paused or its loop blocked: what its peers sent meanwhile
        # is unread, so their silence proves nothing yet. Below it, a live peer's frames (one per
        # interval) are at most interval + this apart: less than dead_after, so no live link is closed.
        stall = max(interval, self._dead_after - 2 * interval)
        due = loop.time() + interval
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            now = loop.time()
            if now - due > stall:
                self._awake_since = now
            due = now + interval
            ping = encode_frame(FrameType.PING, PING_BODY.pack(int(now * 1e9)))
            for link in list(self._outgoing()):
                if not link.writer.is_closing():
                    self._metrics["heartbeats_sent"] += 1
                    self._write(link, ping)
            for link in list(self._every_link()):
                silent = now - max(link.last_heard, self._awake_since)
                if silent > self._dead_after and not link.closed:
                    self._metrics["links_dead"] += 1
                    log.warning("closing the link with %s: silent for %.1f s", link.peer_id[:8], silent)
                    link.abort()
