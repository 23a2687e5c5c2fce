"""What a tick does besides batching: the timers that watch the primary, and retransmission.

Theory of operation (all in ticks):
- Progress timer: in-flight work without a delivery for the view's timeout starts a view change.
  It does not run while there is no work or while the others are deciding blocks this replica must
  fetch (the primary is not the problem then).
- New-view timer: runs only once 2f+1 replicas want the view this replica moved to, as in
  Castro-Liskov (an isolated replica keeps repeating its view change instead of racing ahead);
  when it runs out, the replica moves on to the next view.
- Request timer (censorship resistance), on backups, for the oldest queued client transaction. It
  measures a lack of progress, not the age of a queue: it runs out when no block was delivered for
  `request_timeout_ticks` (paced) since the transaction arrived (a backlog that is draining never starts a
  view change). A primary that keeps ordering others' transactions but not this one shows it
  differently: blocks with room to spare are delivered without it (ordering.py counts these
  pass-overs, of blocks this replica saw proposed half a request timeout after the transaction arrived:
  on long links a block proposed before the forward reached the primary is delivered much later).
  The first pass-over forwards the waiting transactions to the primary again (forwards
  can be lost with a link); `max_passovers` of them make the replica suspect the primary. A transaction that
  survives `max_tx_strikes` view changes unordered is dropped as unorderable (invalid, or refused
  by every primary), and the driver hears of it (`DropTxs`), so it does not stay pending.
- Retransmission: while stalled, this replica resends its own messages of the current view (or its
  view change) every `retransmit_ticks`; after a restart it announces its stable checkpoint once.
  While idle it repeats the certificate vote of its last block every `IDLE_ANNOUNCE_FACTOR`
  retransmission periods (its checkpoint instead at a checkpoint height, where the vote is collected):
  a replica that missed that block learns from f+1 of them that it is behind, and fetches it, even
  when no new transaction comes.
Timeouts double per consecutive view change, capped, and reset on delivery (views.py). The progress
and request timers also allow for the recent pace of deliveries, up to a cap (views.py, "The pace").
"""

from __future__ import annotations

from ledger.consensus.catchup import CatchUp
from ledger.consensus.checkpoints import Checkpoints
from ledger.consensus.context import Context
from ledger.consensus.head import Head
from ledger.consensus.ordering import Orderer
from ledger.consensus.txqueue import TxQueue
from ledger.consensus.viewchange import ViewChanger
from ledger.consensus.views import ViewState

IDLE_ANNOUNCE_FACTOR = 4


class Timers:
    def __init__(
        self, ctx: Context, head: Head, views: ViewState, checkpoints: Checkpoints, queue: TxQueue,
        orderer: Orderer, catchup: CatchUp, viewchanger: ViewChanger,
    ) -> None:
        self._ctx = ctx
        self._head = head
        self._views = views
        self._checkpoints = checkpoints
        self._queue = queue
        self._orderer = orderer
        self._catchup = catchup
        self._viewchanger = viewchanger
        self._last_retransmit = 0

    def on_tick(self) -> None:
        """One tick of a replica with peers (the clock has advanced)."""
        views, now = self._views, self._ctx.clock.now
        if views.active and views.primary != self._ctx.signer.id:
            self._check_censorship()
        self._check_view_timers()
        announcement = self._checkpoints.take_announcement()
        if announcement is not None:
            self._ctx.out.broadcast(announcement)
        retransmit = self._ctx.config.retransmit_ticks
        waited = now - self._head.last_delivery >= retransmit
        stalled = not views.active or (waited and self._orderer.has_work())
        if stalled and now - self._last_retransmit >= retransmit:
            self._retransmit()
        elif not stalled and now - self._last_retransmit >= IDLE_ANNOUNCE_FACTOR * retransmit:
            self._announce_head()
        self._catchup.maybe_fetch()

    def _announce_head(self) -> None:
        """Idle: say again now and then that we decided our last block (its certificate vote), so that
        a replica which missed it learns it is behind without waiting for new traffic."""
        self._last_retransmit = self._ctx.clock.now
        d = self._head.height
        votes = list(self._orderer.my_votes_between(d - 1, d))
        for env in votes:
            self._ctx.out.broadcast(env)
        # At a stable checkpoint the vote is collected: the checkpoint message says the same.
        mine = self._checkpoints.mine
        if not votes and mine is not None and self._checkpoints.mine_height == d:
            self._ctx.out.broadcast(mine)

    def _check_view_timers(self) -> None:
        views, now = self._views, self._ctx.clock.now
        if views.active:
            if not self._orderer.has_work() or self._catchup.is_fetchable_behind():
                views.progressed(now)
            elif views.is_progress_overdue(now):
                self._viewchanger.suspect("stalled")
        elif self._viewchanger.count_wanting(views.view) < self._ctx.quorums.quorum:
            views.wait_for_quorum(now)
        elif views.is_new_view_overdue(now):
            self._viewchanger.start(views.view + 1)

    def _check_censorship(self) -> None:
        if self._catchup.is_fetchable_behind():
            return  # our queue may hold txs of blocks we have not fetched yet
        cfg, now, queue = self._ctx.config, self._ctx.clock.now, self._queue
        dropped: list[bytes] = []
        while (oldest := queue.oldest()) is not None:
            tx, entry = oldest
            idle = now - max(entry.arrival, self._head.last_delivery)
            if idle < self._views.request_timeout() and entry.passed < cfg.max_passovers:
                if entry.passed > entry.reforwarded:
                    # Passed over: perhaps our forward was lost; the primary gets what waits again.
                    queue.note_reforwarded(tx)
                    self._ctx.out.forward(queue.txs(), (self._views.primary,))
                break
            if entry.strikes >= cfg.max_tx_strikes:
                # It survived view changes unordered: invalid, or refused by every primary.
                queue.drop(tx)
                dropped.append(tx)
                self._ctx.metrics["txs_dropped_unordered"] += 1
                continue
            reason = "passed_over" if entry.passed >= cfg.max_passovers else "unordered"
            queue.strike(tx, now)
            # Like a PBFT client that got no answer: every validator learns the waiting transactions,
            # so their timers run too and they suspect the primary with us if it ignores them.
            self._ctx.out.forward(queue.txs(), self._ctx.quorums.others(self._ctx.signer.id))
            self._viewchanger.suspect(reason)
            break
        if dropped:
            self._ctx.out.drop(dropped, "unordered")

    def _retransmit(self) -> None:
        self._last_retransmit = self._ctx.clock.now
        if not self._views.active:
            mine = self._viewchanger.my_view_change
            if mine is not None:
                self._ctx.out.broadcast(mine)
            return
        for env in self._orderer.own_messages():
            self._ctx.out.broadcast(env)
        suspicion = self._viewchanger.my_suspicion
        if suspicion is not None:
            self._ctx.out.broadcast(suspicion)
        if self._checkpoints.mine is not None:
            self._ctx.out.broadcast(self._checkpoints.mine)
