"""View change and new view (Castro-Liskov), adapted to a hash-chained, pipelined block log.

Theory of operation
-------------------
A replica that suspects the primary of view v (timers.py: the progress timer, or a client
transaction not ordered in time) says so with a signed SUSPECT(v) and stays in v. A suspicion
counts for a window of time (`suspicion_window`) and is repeated while its reason holds. Once f+1
validators suspect v within that window (so at least one honest one does, and not one slow node now
and another an hour later), it stops taking part in v and broadcasts
VIEW-CHANGE(v+1) carrying those f+1 suspicions, so that every replica that sees it leaves v too: no
replica leaves a view alone while the others go on in it (a replica that has sent a view change
may never take part in the old view again: its view change could be used without what it prepared
there). The view change also carries its base proofs and its prepared proofs above them
(newview.py says what they prove and how the new view's chain is computed from 2f+1 of them). The
new primary, with 2f+1 view changes (its own among them), sends NEW-VIEW and re-proposes the chain
they force; backups check the new view completely and install it.

`ViewChanger` owns what a replica knows of view changes: the suspicions of each view, the latest
view change of each validator, its own, the new view that installed the current view, and the
ordering messages of views it has not installed yet.

Liveness: a replica joins a view change when f+1 others are in higher views (their view changes or
any signed message) by moving to the (f+1)-th highest such view, so a partition that heals
converges on one view instead of looping. Timeouts double on each consecutive view change without
progress (capped) and reset when a block is delivered (views.py). Replicas answer peers stuck in an
older view, or still waiting for the current one's new view, with the new-view message that
installed their current one (it proves itself, so any of them may pass it on). A replica left alone
in a higher view (it timed out waiting for a new view the others installed) cannot go back: its
view change for the higher view may already be in a new-view message, which must not miss what it
would prepare in the lower one. It keeps up through catch-up (catchup.py: f+1 votes above it) and
rejoins the others at their next view change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ledger.chain import Block, ValidatorSignature
from ledger.codec import encode
from ledger.consensus.catchup import CatchUp
from ledger.consensus.checkpoints import Checkpoints
from ledger.consensus.context import Context
from ledger.consensus.head import Head
from ledger.consensus.log import KEY_NEWVIEW, KEY_VIEW, ViewRecord
from ledger.consensus.membership import Membership
from ledger.consensus.messages import (
    Envelope,
    NewView,
    SignatureChecker,
    Suspect,
    ViewChange,
    decode_blocks,
    decode_body,
    encode_envelope,
    strip,
)
from ledger.consensus.newview import (
    NewViewPlan,
    check_attached_blocks,
    check_new_view,
    check_view_change,
    compute_base,
    compute_new_view,
)
from ledger.consensus.ordering import Orderer
from ledger.consensus.txqueue import TxQueue
from ledger.consensus.views import FutureMessages, ViewState


@dataclass
class StoredViewChange:
    view: int
    envelope: Envelope  # attachment stripped
    body: ViewChange
    blocks: dict[bytes, Block] = field(default_factory=dict)


class ViewChangeLog:
    """The latest checked view change of each validator, and the highest view each was seen in.

    Memory is bounded by one view change per validator.
    """

    def __init__(self, membership: Membership) -> None:
        self._membership = membership
        self._latest: dict[str, StoredViewChange] = {}
        self._peer_views: dict[str, int] = {}
        # view -> validator -> (signature of Suspect(view), tick it was last heard)
        self._suspects: dict[int, dict[str, tuple[bytes, int]]] = {}

    def add_suspect(self, sender: str, view: int, signature: bytes, now: int) -> None:
        self._suspects.setdefault(view, {})[sender] = (signature, now)

    def suspicion(self, view: int, now: int, window: int) -> tuple[ValidatorSignature, ...] | None:
        """f+1 validators' signed suspicions of `view`, sorted, once that many suspect it within
        `window` ticks of each other: suspicions expire, so two validators that were each briefly
        unhappy minutes apart (a busy node, a slow disk) do not add up to a view change."""
        held = {v: sig for v, (sig, heard) in self._suspects.get(view, {}).items() if now - heard <= window}
        if len(held) < self._membership.current.weak:
            return None
        return tuple(ValidatorSignature(v, sig) for v, sig in sorted(held.items()))

    def note_view(self, sender: str, view: int) -> None:
        """`sender` signed a message in `view`."""
        if view > self._peer_views.get(sender, -1):
            self._peer_views[sender] = view

    def add(self, sender: str, stored: StoredViewChange) -> bool:
        """Keep `stored` if it is for a higher view than the one held for `sender`."""
        self.note_view(sender, stored.view)
        held = self._latest.get(sender)
        if held is not None and held.view >= stored.view:
            return False
        self._latest[sender] = stored
        return True

    def for_view(self, view: int) -> list[tuple[str, StoredViewChange]]:
        return sorted((s, vc) for s, vc in self._latest.items() if vc.view == view)

    def count_at_least(self, view: int) -> int:
        """Validators whose latest view change is for `view` or later (all of them left view-1)."""
        return sum(1 for vc in self._latest.values() if vc.view >= view)

    def compute_join_view(self, me: str, current: int) -> int | None:
        """The view to move to when f+1 others are in views above `current` (else None)."""
        higher = sorted((v for s, v in self._peer_views.items() if s != me and v > current), reverse=True)
        weak = self._membership.current.weak
        if len(higher) < weak:
            return None
        return higher[weak - 1]

    def prune(self, below: int) -> None:
        for s in [s for s, vc in self._latest.items() if vc.view < below]:
            del self._latest[s]
        for v in [v for v in self._suspects if v < below]:
            del self._suspects[v]


class ViewChanger:
    def __init__(
        self, ctx: Context, checker: SignatureChecker, head: Head, views: ViewState, checkpoints: Checkpoints,
        queue: TxQueue, orderer: Orderer, catchup: CatchUp,
    ) -> None:
        self._ctx = ctx
        self._checker = checker
        self._head = head
        self._views = views
        self._checkpoints = checkpoints
        self._queue = queue
        self._orderer = orderer
        self._catchup = catchup
        self._log = ViewChangeLog(ctx.membership)
        self._future = FutureMessages(ctx.config.max_buffered_per_peer)
        self._mine: Envelope | None = None
        self._my_suspect: Envelope | None = None
        self._my_suspect_at = 0  # tick this replica last (re)made its suspicion
        self._suspicion: tuple[ValidatorSignature, ...] = ()  # what made this replica leave its last view
        self._new_view: tuple[int, bytes] | None = None  # (view, encoded NEW-VIEW that installed it)
        self._replied: dict[str, int] = {}

    @property
    def my_view_change(self) -> Envelope | None:
        return self._mine

    @property
    def my_suspicion(self) -> Envelope | None:
        """This replica's SUSPECT of the view it is active in, if it sent one and it has not expired."""
        mine = self._my_suspect
        active_view = self._views.view if self._views.active else -1
        if mine is None or decode_body(mine).view != active_view:
            return None
        return mine if self._ctx.clock.now - self._my_suspect_at <= self.suspicion_window() else None

    def suspicion_window(self) -> int:
        """How long (ticks) a suspicion counts: twice the longest timer that raises one. A suspecting
        replica whose reason holds suspects again (the progress timer, every tick while overdue) or
        repeats its suspicion while stalled (timers.py), so a real fault keeps it alive."""
        return 2 * max(self._views.progress_timeout(), self._views.request_timeout())

    @property
    def buffered(self) -> int:
        """Ordering messages held for views not installed yet."""
        return len(self._future)

    def count_wanting(self, view: int) -> int:
        """Validators whose latest view change is for `view` or later."""
        return self._log.count_at_least(view)

    # --- suspecting the primary ---------------------------------------------------------------------

    def suspect(self, reason: str) -> None:
        """A timer says the primary of the current view is faulty (`reason`: stalled, passed_over or
        unordered, counted in the metrics): say so (once per view); leave the view once f+1 validators
        say so."""
        views = self._views
        if self._ctx.quorums.n == 1 or not views.active or not self._is_validator():
            return
        if self.my_suspicion is None:
            self._ctx.metrics[f"suspected_{reason}"] += 1
            env = self._ctx.signer.sign(Suspect(views.view))
            self._my_suspect, self._my_suspect_at = env, self._ctx.clock.now
            self._log.add_suspect(self._ctx.signer.id, views.view, env.signature, self._ctx.clock.now)
            self._ctx.out.broadcast(env)
        self._maybe_leave()

    def receive_suspect(self, sender: str, env: Envelope, body: Suspect) -> None:
        """A suspicion with a verified signature."""
        self._log.note_view(sender, body.view)
        if body.view < self._views.view:
            self.reply_new_view(sender)  # the sender is behind in views: show it how this view began
            return
        self._log.add_suspect(sender, body.view, env.signature, self._ctx.clock.now)
        self._maybe_leave()

    def _maybe_leave(self) -> None:
        """f+1 suspect the view this replica is active in: leave it, carrying their suspicions."""
        if not self._views.active:
            return
        suspicion = self._log.suspicion(self._views.view, self._ctx.clock.now, self.suspicion_window())
        if suspicion is not None:
            self.start(self._views.view + 1, suspicion)

    def _is_validator(self) -> bool:
        """Only a validator of the current set moves views itself; one that is not follows new views."""
        return self._ctx.signer.id in self._ctx.quorums.validators

    # --- leaving a view ----------------------------------------------------------------------------

    def start(self, target: int, suspicion: tuple[ValidatorSignature, ...] = ()) -> None:
        """Leave the current view: persist the move, then broadcast VIEW-CHANGE(target).

        `suspicion`: f+1 signed suspicions of the view left, when that is why (target is the next view).
        """
        if self._ctx.quorums.n == 1 or target <= self._views.view or not self._is_validator():
            return
        self._suspicion = suspicion if target == self._views.view + 1 else ()
        self._views.leave(target, self._ctx.clock.now)
        self._ctx.metrics["view_changes"] += 1
        self._orderer.reset_view()
        self._ctx.out.persist(KEY_VIEW, encode(ViewRecord(target, True)))
        self._ctx.out.broadcast(self._rebuild_mine())
        if len(self._queue):
            # Like a PBFT client that got no reply: every validator learns the waiting requests,
            # so their timers run too (they join this view change if nobody orders them).
            self._ctx.out.forward(self._queue.txs(), self._ctx.quorums.others(self._ctx.signer.id))
        self._maybe_new_view()

    def _compute_view_change(self) -> tuple[ViewChange, dict[bytes, Block]]:
        """This replica's view change for its current view: base proofs and prepared proofs above."""
        stable, cert = self._checkpoints.stable, self._head.last_cert
        base = max(stable.height if stable else 0, cert.height if cert else 0)
        proofs = self._orderer.prepared_proofs(base, base + self._ctx.config.max_inflight, self._views.view)
        blocks = {p.block_hash: b for p in proofs if (b := self._orderer.block(p.block_hash)) is not None}
        return ViewChange(self._views.view, stable, cert, proofs, self._suspicion), blocks

    def _rebuild_mine(self) -> Envelope:
        vc, blocks = self._compute_view_change()
        attachment = encode(tuple(blocks[p.block_hash] for p in vc.prepared if p.block_hash in blocks))
        env = self._ctx.signer.sign(vc, attachment)
        self._mine = env
        self._log.add(self._ctx.signer.id, StoredViewChange(vc.view, strip(env), vc, blocks))
        return env

    # --- receiving ---------------------------------------------------------------------------------

    def note_view(self, sender: str, view: int) -> None:
        """`sender` signed an ordering message in `view`."""
        self._log.note_view(sender, view)

    def buffer_future(self, sender: str, view: int, env: Envelope, body: object) -> None:
        """An ordering message of a view not installed yet: keep it (bounded) and see whether to join."""
        self._future.add(sender, view, env, body)
        self.maybe_join()

    def maybe_join(self) -> None:
        """f+1 others are in higher views: move to the (f+1)-th highest of them."""
        target = self._log.compute_join_view(self._ctx.signer.id, self._views.view)
        if target is not None:
            self.start(target)

    def receive_view_change(self, sender: str, env: Envelope, body: ViewChange) -> None:
        """A view change with a verified signature; raises InvalidViewChange if a proof inside fails."""
        self._log.note_view(sender, body.view)
        self._catchup.help_peer(sender, compute_base(body)[0])  # if the sender is behind in blocks
        if body.view < self._views.view or (body.view == self._views.view and self._views.active):
            self.reply_new_view(sender)  # the sender is behind in views: show it how this view began
            return
        check_view_change(body, self._checker, self._ctx.membership, self._ctx.config.max_inflight)
        if body.suspicion and body.view == self._views.view + 1:
            # f+1 suspect the view this replica is in: it leaves too (below), not to be left alone in it.
            for s in body.suspicion:
                self._log.add_suspect(s.validator, self._views.view, s.signature, self._ctx.clock.now)
        blocks: dict[bytes, Block] = {}
        if self._ctx.quorums.primary(body.view) == self._ctx.signer.id:
            blocks = check_attached_blocks(body, decode_blocks(env.attachment))
        self._log.add(sender, StoredViewChange(body.view, strip(env), body, blocks))
        self._maybe_leave()
        self.maybe_join()
        self._maybe_new_view()

    def receive_new_view(self, sender: str, env: Envelope, body: NewView) -> None:
        """A new view with a verified signature; raises InvalidNewView if it does not check."""
        self._log.note_view(sender, body.view)
        if body.view < self._views.view or (body.view == self._views.view and self._views.active):
            self._ctx.metrics["dropped_stale"] += 1
            return
        plan = check_new_view(body, sender, self._checker, self._ctx.membership, self._ctx.config.max_inflight)
        self._install(body.view, plan, encode_envelope(env))
        self._orderer.advance()

    def reply_new_view(self, sender: str) -> None:
        """Send a peer in an older view, or still waiting for this one, the new-view message of this
        replica's view (rate-limited). Every replica that installed the view passes it on, not only
        its primary: a primary that keeps it from one replica (or a lost message) must not leave
        that replica waiting for the next view change alone while the others commit."""
        views = self._views
        if not views.active or self._new_view is None or self._new_view[0] != views.view:
            return
        now = self._ctx.clock.now
        last = self._replied.get(sender)
        if last is not None and now - last < self._ctx.config.retransmit_ticks:
            return
        self._replied[sender] = now
        self._ctx.out.send_raw(sender, self._new_view[1])

    # --- entering a view ---------------------------------------------------------------------------

    def _maybe_new_view(self) -> None:
        """As the new primary with 2f+1 view changes (its own among them): start the view."""
        views = self._views
        if views.active or views.primary != self._ctx.signer.id:
            return
        entries = self._log.for_view(views.view)
        mine = [e for s, e in entries if s == self._ctx.signer.id]
        others = [e for s, e in entries if s != self._ctx.signer.id]
        q = self._ctx.quorums.quorum
        if not mine or 1 + len(others) < q:
            return
        use = mine + others[: q - 1]
        plan = compute_new_view([e.body for e in use])
        blocks: dict[bytes, Block] = {}
        for p in plan.chosen:
            block = self._orderer.block(p.block_hash)
            if block is None:
                block = next((e.blocks[p.block_hash] for e in use if p.block_hash in e.blocks), None)
            if block is None:
                return  # cannot happen with checked view changes; wait for more
            blocks[p.block_hash] = block
        nv = NewView(
            views.view, tuple(encode_envelope(e.envelope) for e in use), plan.base_height, plan.base_hash,
            tuple(p.block_hash for p in plan.chosen),
        )
        raw = encode_envelope(self._ctx.signer.sign(nv))
        self._ctx.out.persist(KEY_NEWVIEW, raw)
        self._install(views.view, plan, raw)
        self._ctx.out.broadcast_raw(raw)
        for p in plan.chosen:
            if p.height > self._checkpoints.low:
                self._queue.mark_proposed(blocks[p.block_hash].txs)
                self._orderer.send_preprepare(p.height, p.block_hash, blocks[p.block_hash])
        self._orderer.advance()

    def _install(self, view: int, plan: NewViewPlan, raw: bytes) -> None:
        """Enter `view` as its new-view message says; re-proposals are expected at their heights."""
        now = self._ctx.clock.now
        expected = {plan.base_height + i + 1: p.block_hash for i, p in enumerate(plan.chosen)}
        self._views.enter(view, expected, plan.base_height, now)
        self._new_view = (view, raw)
        self._ctx.out.persist(KEY_VIEW, encode(ViewRecord(view, False)))
        self._orderer.reset_view()
        self._ctx.metrics["new_views"] += 1
        self._log.prune(view + 1)
        self._queue.restart(now)
        primary = self._ctx.quorums.primary(view)
        if primary != self._ctx.signer.id and len(self._queue):
            self._ctx.out.forward(self._queue.txs(), (primary,))
        for sender, env, body in self._future.take(view):
            self._orderer.handle_ordering(sender, env, body)
        self._catchup.maybe_fetch()

    # --- restart -----------------------------------------------------------------------------------

    def restore(self, new_view: tuple[int, bytes] | None, changing: bool) -> None:
        """After a restart: the new view this replica sent; a replica that was changing views
        rebuilds its view change (the same signature: Ed25519 is deterministic)."""
        self._new_view = new_view
        if changing:
            self._rebuild_mine()
