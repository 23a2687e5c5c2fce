"""Catch-up: knowing when this replica is behind the others, and helping peers that are behind it.

Theory of operation: a replica is behind when a stable checkpoint or an installed new view's base
lies above its delivered height, when f+1 validators show they delivered beyond it (their
checkpoints, or ordering messages and votes above its pipeline: at least one honest validator got
there), or when, stalled for a while, it holds a certificate it cannot deliver in order or f+1
validators' votes above its head. It then emits
`FetchBlocks` (rate-limited); the driver fetches certified blocks from peers and reports each
applied one with `Replica.notify_committed`.

A replica that sees a peer behind (a stale checkpoint, a view change with a low base) sends that
peer its latest checkpoint and its votes above the peer's height, so even idle validators give a
lagging one the evidence it needs.
"""

from __future__ import annotations

from ledger.consensus.checkpoints import Checkpoints
from ledger.consensus.context import Context
from ledger.consensus.head import Head
from ledger.consensus.ordering import Orderer
from ledger.consensus.views import ViewState


class CatchUp:
    def __init__(
        self, ctx: Context, head: Head, views: ViewState, checkpoints: Checkpoints, orderer: Orderer,
    ) -> None:
        self._ctx = ctx
        self._head = head
        self._views = views
        self._checkpoints = checkpoints
        self._orderer = orderer
        self._helped: dict[str, int] = {}  # peer -> tick we last helped it
        self._ahead: dict[str, int] = {}  # peer -> a height its messages show it delivered
        self._last_fetch = -(10**9)

    def is_fetchable_behind(self) -> bool:
        """Others delivered blocks above ours (so the primary is not what holds us back)."""
        d = self._head.height
        # A stable checkpoint or an installed new view's base lies above us.
        if self._checkpoints.stable_height > d or self._views.nv_base > d:
            return True
        # f+1 validators (so at least one honest) delivered beyond us.
        weak = self._ctx.quorums.weak
        if self._checkpoints.claimed_by(weak) > d:
            return True
        ahead = sorted(self._ahead.values(), reverse=True)
        return len(ahead) >= weak and ahead[weak - 1] > d

    def note_ahead(self, peer: str, delivered: int) -> None:
        """A verified message of `peer` shows it delivered `delivered`, beyond this replica."""
        if delivered > self._ahead.get(peer, 0):
            self._ahead[peer] = delivered
            self.maybe_fetch()

    def is_behind(self) -> bool:
        if self.is_fetchable_behind():
            return True
        # Stalled, with a certificate above us that we cannot deliver in order, or with f+1 validators
        # (at least one honest) voting above us: a block we lack was decided (a replica in another
        # view, or one the primary leaves out, hears of it only so, until the next checkpoint).
        stalled = self._ctx.clock.now - self._head.last_delivery >= self._ctx.config.retransmit_ticks
        d = self._head.height
        return stalled and (
            self._orderer.has_certificate_above(d) or self._orderer.voters_above(d) >= self._ctx.quorums.weak
        )

    def maybe_fetch(self) -> None:
        now = self._ctx.clock.now
        if self._ctx.quorums.n == 1 or now - self._last_fetch < self._ctx.config.fetch_retry_ticks:
            return
        if self.is_behind():
            self._last_fetch = now
            self._ctx.metrics["fetch_requests"] += 1
            self._ctx.out.fetch(self._head.height + 1)

    def help_peer(self, peer: str, height: int) -> None:
        """`peer` showed it is at `height`, below us: send it our latest checkpoint and our votes
        above its height, the evidence it needs to catch up (rate-limited per peer)."""
        now, d = self._ctx.clock.now, self._head.height
        last = self._helped.get(peer)
        if height >= d or (last is not None and now - last < self._ctx.config.retransmit_ticks):
            return
        self._helped[peer] = now
        mine = self._checkpoints.mine
        if mine is not None and self._checkpoints.mine_height > height:
            self._ctx.out.send(peer, mine)
        for env in self._orderer.my_votes_between(height, d):
            self._ctx.out.send(peer, env)
