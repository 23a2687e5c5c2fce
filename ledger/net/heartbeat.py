"""Heartbeats and dead-link detection for the peer links (`ledger.net.transport` runs one watcher).

Every `interval` the watcher sends a PING on each outgoing link (the listener answers with a PONG
on the same connection, so both ends hear from each other on every connection) and closes every
link, in either direction, it has heard nothing on (not a frame, not a piece of a long frame) for
`dead_after`. Silence is counted only while this node itself was running on time: when the watcher
wakes far too late (this process was paused, or its loop blocked), silence is counted afresh from
that moment, so a node coming back from a pause does not drop links whose peers' frames it simply
has not read yet.

A peer's loop blocks too (executing a large block on a large state takes seconds), and it cannot
answer meanwhile. So each PING and PONG also says how long the sender's own loop was blocked at most
in the last `STALL_MEMORY` seconds (the watcher sees it: it wakes that late), and a link is closed
only after `dead_after` plus what its peer announced, capped at `MAX_STALL_ALLOWANCE` times
`dead_after`: a busy peer keeps its links, and a peer that lies about its stalls gains at most that
much patience for its own links. A peer whose frames stop for another reason (a middlebox silenced
the link) announced nothing unusual before, and is closed as before. Older peers' 8-byte bodies
announce nothing.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections import deque
from collections.abc import Callable, Iterable

from ledger.net.frames import FrameType, encode_frame
from ledger.net.link import Link

log = logging.getLogger("ledger.net")

ECHO = struct.Struct(">Q")  # a PING's sender's loop time in nanoseconds, which the PONG echoes
STALL = struct.Struct(">I")  # after it, in both: the sender's longest recent loop stall, milliseconds
STALL_MEMORY = 60.0  # seconds a stall of this node's loop is announced after it happened
STALL_HISTORY = 16  # stalls remembered
MAX_STALL_ALLOWANCE = 4  # a peer's announced stall extends its links' silence by at most this x dead_after
STALL_MAX_MS = 2**32 - 1


def round_trip(pong_body: bytes, now: float) -> float | None:
    """Seconds since the PING that a PONG (frame body, type byte first) echoes, at loop time `now`; None
    for a malformed echo."""
    if len(pong_body) not in (1 + ECHO.size, 1 + ECHO.size + STALL.size):
        return None
    (sent_ns,) = ECHO.unpack_from(pong_body, 1)
    return max(0.0, now - sent_ns / 1e9)


def announced_stall(body: bytes) -> float:
    """Seconds of loop stall a PING or PONG (frame body, type byte first) announces; 0 if none (an older
    peer's body, or a malformed one)."""
    if len(body) != 1 + ECHO.size + STALL.size:
        return 0.0
    (ms,) = STALL.unpack_from(body, 1 + ECHO.size)
    return ms / 1000


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
        self._stalls: deque[tuple[float, float]] = deque(maxlen=STALL_HISTORY)  # (loop time, seconds blocked)
        self._peer_stalls: dict[str, float] = {}  # peer id -> the stall it announced last, seconds (capped)

    def _own_stall(self, now: float) -> float:
        """The longest this node's loop was blocked in the last STALL_MEMORY seconds."""
        return max((s for t, s in self._stalls if now - t <= STALL_MEMORY), default=0.0)

    def patience(self, peer_id: str) -> float:
        """How long a link with `peer_id` may stay silent: `dead_after` and the stall the peer announced."""
        return self._dead_after + self._peer_stalls.get(peer_id, 0.0)

    def heard(self, peer_id: str, body: bytes) -> None:
        """A PING or PONG from `peer_id`: remember the stall it announced."""
        self._peer_stalls[peer_id] = min(announced_stall(body), MAX_STALL_ALLOWANCE * self._dead_after)

    def pong(self, ping_body: bytes, now: float) -> bytes:
        """The PONG frame answering a PING (frame body, type byte first): its echo and this node's stall."""
        echo = ping_body[1:1 + ECHO.size]
        return encode_frame(FrameType.PONG, echo + STALL.pack(self._stall_ms(now)))

    def _stall_ms(self, now: float) -> int:
        return min(int(self._own_stall(now) * 1000), STALL_MAX_MS)

    async def run(self) -> None:
        """Every interval: ping each outgoing link, close every link silent for `dead_after`."""
        loop = asyncio.get_running_loop()
        interval = self._interval
        # Woken this much late, this node was paused or its loop blocked: what its peers sent meanwhile
        # is unread, so their silence proves nothing yet. Below it, a live peer's frames (one per
        # interval) are at most interval + this apart: less than dead_after, so no live link is closed.
        late_limit = max(interval, self._dead_after - 2 * interval)
        due = loop.time() + interval
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            now = loop.time()
            if now - due > late_limit:
                self._awake_since = now
            if now - due > interval:  # blocked: the peers heard nothing from this node meanwhile
                self._stalls.append((now, now - due + interval))
            due = now + interval
            ping = encode_frame(FrameType.PING, ECHO.pack(int(now * 1e9)) + STALL.pack(self._stall_ms(now)))
            for link in list(self._outgoing()):
                if not link.writer.is_closing():
                    self._metrics["heartbeats_sent"] += 1
                    self._write(link, ping)
            for link in list(self._every_link()):
                silent = now - max(link.last_heard, self._awake_since)
                if silent > self.patience(link.peer_id) and not link.closed:
                    self._metrics["links_dead"] += 1
                    log.warning("closing the link with %s: silent for %.1f s", link.peer_id[:8], silent)
                    link.abort()
