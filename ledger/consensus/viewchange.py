"""View change and new view (Castro-Liskov), adapted to a hash-chained, pipelined block log.

Theory of operation
-------------------
A replica that suspects the primary of view v (progress timer, or a client transaction not ordered
in time) stops taking part in v and broadcasts VIEW-CHANGE(v+1) carrying:
- its stable checkpoint proof (2f+1 checkpoint signatures) and the commit certificate of the last
  block it delivered: either proves a decided block, the *base* the new view builds on;
- for every height above that base, its highest-view *prepared proof* (the primary's pre-prepare
  signature and 2f matching prepare signatures), with the blocks attached.

Replicas prepare in height order: a replica counts itself prepared at height h in view w only when
it is prepared at h-1 in w (or h-1 is delivered), so the prepared blocks a replica reports form a
chain. Within one view all prepared blocks lie on one chain (two prepared blocks at one height of
one view would need an honest replica to accept two pre-prepares for one (view, height)).

The new primary collects 2f+1 view changes for v+1 and computes the new-view chain
(`compute_new_view`): start at the highest base any of them proves, then for each next height take,
among the prepared proofs whose block links to the block chosen below, the one with the highest
view; stop at the first height with no linking proof. The chosen blocks are re-proposed with their
original content and header (the header's `view` stays the view that first proposed the block, so
the block hash, and every certificate vote over it, is unchanged). Fresh proposals continue above.

Why nothing decided is lost: a block X decided at height h in view w was prepared by f+1 honest
replicas in w, and so were its ancestors. Any 2f+1 view changes for a later view include one of
them, which reports X's chain at a view >= w; by induction every pre-prepare at those heights in
later views is for X's chain, so no proof with a higher view can name another block, and the
greedy walk from the base (itself decided, hence an ancestor of X) reaches X.

Backups check a NEW-VIEW by verifying each carried view change and recomputing the chain; view
changes travel without attachments inside a new view (the chosen blocks come with the new
primary's pre-prepares).

Liveness: a replica joins a view change when f+1 others are in higher views (their view changes or
any signed message) by moving to the (f+1)-th highest such view, so a partition that heals
converges on one view instead of looping. Timeouts double on each consecutive view change without
progress (capped) and reset when a block is delivered. Replicas answer peers stuck in an older view
with the new-view message that installed their current one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ledger.chain import Block, CommitCertificate, CommitVote, compute_block_hash, compute_tx_root
from ledger.codec import encode
from ledger.consensus.actions import Broadcast, Send
from ledger.consensus.log import KEY_NEWVIEW, KEY_VIEW, ViewRecord
from ledger.consensus.messages import (
    KIND_VIEWCHANGE,
    Checkpoint,
    CheckpointProof,
    Envelope,
    MalformedMessage,
    NewView,
    Prepare,
    PreparedProof,
    PrePrepare,
    SignatureChecker,
    ViewChange,
    decode_blocks,
    decode_body,
    decode_envelope,
    encode_envelope,
    strip,
)

if TYPE_CHECKING:
    from ledger.consensus.replica import Replica

MAX_PREPARED_PER_VIEWCHANGE = 512


class InvalidViewChange(ValueError):
    """A view change (or a proof inside one) failed a check; the text says which."""


class InvalidNewView(ValueError):
    """A new-view message failed a check; the text says which."""


def compute_primary(validators: Sequence[str], view: int) -> str:
    return validators[view % len(validators)]


@dataclass(frozen=True)
class Quorums:
    """The validator set in rotation order with its quorum sizes."""

    validators: tuple[str, ...]
    quorum: int  # 2f+1
    weak: int  # f+1


# --- proofs ----------------------------------------------------------------------------------


def _check_signers(signers: list[str], validators: Sequence[str], need: int, what: str) -> None:
    # One signature per validator, in canonical order.
    if signers != sorted(set(signers)):
        raise InvalidViewChange(f"{what}: signers duplicated or unsorted")
    # Only validators sign.
    if any(s not in validators for s in signers):
        raise InvalidViewChange(f"{what}: signed by a non-validator")
    # Enough of them.
    if len(signers) < need:
        raise InvalidViewChange(f"{what}: {len(signers)} signatures, {need} needed")


def check_checkpoint_proof(proof: CheckpointProof, checker: SignatureChecker, q: Quorums) -> None:
    _check_signers([s.validator for s in proof.signatures], q.validators, q.quorum, "checkpoint proof")
    body = Checkpoint(proof.height, proof.block_hash)
    for s in proof.signatures:
        # Every signature is that validator's checkpoint message.
        if not checker.body(s.validator, body, s.signature):
            raise InvalidViewChange(f"checkpoint proof: bad signature from {s.validator}")


def check_certificate_signatures(cert: CommitCertificate, checker: SignatureChecker, q: Quorums) -> None:
    _check_signers([s.validator for s in cert.signatures], q.validators, q.quorum, "commit certificate")
    vote = CommitVote(checker.chain_id, cert.height, cert.view, cert.block_hash)
    for s in cert.signatures:
        # Every signature is that validator's commit vote.
        if not checker.commit_vote(s.validator, vote, s.signature):
            raise InvalidViewChange(f"commit certificate: bad signature from {s.validator}")


def check_prepared_proof(proof: PreparedProof, checker: SignatureChecker, q: Quorums) -> None:
    primary = compute_primary(q.validators, proof.view)
    pp = PrePrepare(proof.view, proof.height, proof.block_hash, proof.prev_hash)
    # The primary of the proof's view pre-prepared this block.
    if not checker.body(primary, pp, proof.preprepare_signature):
        raise InvalidViewChange(f"prepared proof at {proof.height}: bad pre-prepare signature")
    signers = [s.validator for s in proof.prepares]
    # The primary's pre-prepare stands for its prepare.
    if primary in signers:
        raise InvalidViewChange(f"prepared proof at {proof.height}: the primary cannot prepare")
    _check_signers(signers, q.validators, q.quorum - 1, f"prepared proof at {proof.height}")
    prepare = Prepare(proof.view, proof.height, proof.block_hash)
    for s in proof.prepares:
        # Every prepare signature verifies.
        if not checker.body(s.validator, prepare, s.signature):
            raise InvalidViewChange(f"prepared proof at {proof.height}: bad prepare from {s.validator}")


def compute_base(vc: ViewChange) -> tuple[int, bytes]:
    """The highest decided block a view change proves: (height, hash); (0, b"") for none."""
    best: tuple[int, bytes] = (0, b"")
    if vc.checkpoint is not None and vc.checkpoint.height > best[0]:
        best = (vc.checkpoint.height, vc.checkpoint.block_hash)
    if vc.certificate is not None and vc.certificate.height > best[0]:
        best = (vc.certificate.height, vc.certificate.block_hash)
    return best


def check_view_change(vc: ViewChange, checker: SignatureChecker, q: Quorums) -> None:
    """Every proof in a view change verifies; raise InvalidViewChange otherwise."""
    # View 0 is never entered by a view change.
    if vc.view < 1:
        raise InvalidViewChange("view change to view 0")
    if vc.checkpoint is not None:
        check_checkpoint_proof(vc.checkpoint, checker, q)
    if vc.certificate is not None:
        check_certificate_signatures(vc.certificate, checker, q)
    base, _ = compute_base(vc)
    # Bounded size.
    if len(vc.prepared) > MAX_PREPARED_PER_VIEWCHANGE:
        raise InvalidViewChange("too many prepared proofs")
    last = base
    for p in vc.prepared:
        # Proofs are above the base, one per height, in increasing height order.
        if p.height <= last:
            raise InvalidViewChange("prepared proofs not above the base or not increasing")
        # Proofs come from earlier views.
        if p.view >= vc.view:
            raise InvalidViewChange("prepared proof from a view not before the new one")
        check_prepared_proof(p, checker, q)
        last = p.height


def check_attached_blocks(vc: ViewChange, blocks: Sequence[Block]) -> dict[bytes, Block]:
    """The blocks attached to a view change: one per prepared proof, each matching it exactly."""
    by_hash: dict[bytes, Block] = {}
    for b in blocks:
        by_hash[compute_block_hash(b.header)] = b
    out: dict[bytes, Block] = {}
    for p in vc.prepared:
        block = by_hash.get(p.block_hash)
        # The sender attached the block of each proof.
        if block is None:
            raise InvalidViewChange(f"block of the prepared proof at {p.height} not attached")
        # The block sits where the proof says.
        if block.header.height != p.height or block.header.prev_hash != p.prev_hash:
            raise InvalidViewChange(f"attached block at {p.height} does not match its proof")
        # Its transactions are the ones the header commits to.
        if compute_tx_root(block.txs) != block.header.tx_root:
            raise InvalidViewChange(f"attached block at {p.height} has other transactions")
        out[p.block_hash] = block
    return out


# --- new view --------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewViewPlan:
    base_height: int
    base_hash: bytes  # b"" when no view change proved a block (the base is the genesis)
    chosen: tuple[PreparedProof, ...]  # re-proposals at base_height+1, +2, ...


def compute_new_view(vcs: Sequence[ViewChange]) -> NewViewPlan:
    """The chain a new view must re-propose, from 2f+1 checked view changes (see module comment)."""
    base_height, base_hash = 0, b""
    for vc in vcs:
        h, bh = compute_base(vc)
        if (h, bh) > (base_height, base_hash):
            base_height, base_hash = h, bh
    by_height: dict[int, list[PreparedProof]] = {}
    for vc in vcs:
        for p in vc.prepared:
            if p.height > base_height:
                by_height.setdefault(p.height, []).append(p)
    chosen: list[PreparedProof] = []
    parent = base_hash
    height = base_height + 1
    while height in by_height:
        # Only blocks that extend the chain chosen so far (any block at the first height above
        # an unknown genesis base).
        links = [p for p in by_height[height] if not parent or p.prev_hash == parent]
        if not links:
            break
        best = max(links, key=lambda p: (p.view, p.block_hash))
        chosen.append(best)
        parent = best.block_hash
        height += 1
    return NewViewPlan(base_height, base_hash, tuple(chosen))


def decode_view_change(raw: bytes) -> tuple[Envelope, ViewChange]:
    env = decode_envelope(raw)
    # Only view changes are carried.
    if env.kind != KIND_VIEWCHANGE:
        raise MalformedMessage("new view carries a message that is not a view change")
    body = decode_body(env)
    if not isinstance(body, ViewChange):
        raise MalformedMessage("view change body expected")
    return env, body


def check_new_view(nv: NewView, sender: str, checker: SignatureChecker, q: Quorums) -> NewViewPlan:
    """Verify a new view completely; return the plan its view changes force."""
    # The new view comes from its primary.
    if sender != compute_primary(q.validators, nv.view):
        raise InvalidNewView("new view not sent by the view's primary")
    vcs: list[ViewChange] = []
    senders: set[str] = set()
    for raw in nv.viewchanges:
        try:
            env, vc = decode_view_change(raw)
        except MalformedMessage as exc:
            raise InvalidNewView(str(exc)) from exc
        # Each view change is for this view, from a distinct validator, correctly signed.
        if vc.view != nv.view:
            raise InvalidNewView("carried view change is for another view")
        if env.sender in senders:
            raise InvalidNewView("two view changes from one validator")
        if not checker.envelope(env, vc):
            raise InvalidNewView(f"bad view change signature from {env.sender[:16]}")
        try:
            check_view_change(vc, checker, q)
        except InvalidViewChange as exc:
            raise InvalidNewView(f"carried view change invalid: {exc}") from exc
        senders.add(env.sender)
        vcs.append(vc)
    # A quorum moved to this view.
    if len(vcs) < q.quorum:
        raise InvalidNewView(f"{len(vcs)} view changes, {q.quorum} needed")
    plan = compute_new_view(vcs)
    # The primary re-proposes exactly the chain the view changes force.
    if (plan.base_height, plan.base_hash) != (nv.base_height, nv.base_hash):
        raise InvalidNewView("new view base differs from the one its view changes prove")
    if tuple(p.block_hash for p in plan.chosen) != nv.chosen:
        raise InvalidNewView("new view re-proposals differ from the ones its view changes force")
    return plan


# --- the log of view changes received -------------------------------------------------------


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

    def __init__(self, q: Quorums) -> None:
        self.q = q
        self.latest: dict[str, StoredViewChange] = {}
        self.peer_views: dict[str, int] = {}

    def note_view(self, sender: str, view: int) -> None:
        """`sender` signed a message in `view`."""
        if view > self.peer_views.get(sender, -1):
            self.peer_views[sender] = view

    def add(self, sender: str, stored: StoredViewChange) -> bool:
        """Keep `stored` if it is for a higher view than the one held for `sender`."""
        self.note_view(sender, stored.view)
        held = self.latest.get(sender)
        if held is not None and held.view >= stored.view:
            return False
        self.latest[sender] = stored
        return True

    def for_view(self, view: int) -> list[tuple[str, StoredViewChange]]:
        return sorted((s, vc) for s, vc in self.latest.items() if vc.view == view)

    def count_at_least(self, view: int) -> int:
        """Validators whose latest view change is for `view` or later (all of them left view-1)."""
        return sum(1 for vc in self.latest.values() if vc.view >= view)

    def compute_join_view(self, me: str, current: int) -> int | None:
        """The view to move to when f+1 others are in views above `current` (else None)."""
        higher = sorted((v for s, v in self.peer_views.items() if s != me and v > current), reverse=True)
        if len(higher) < self.q.weak:
            return None
        return higher[self.q.weak - 1]

    def prune(self, below: int) -> None:
        for s in [s for s, vc in self.latest.items() if vc.view < below]:
            del self.latest[s]


# --- the view-change side of a replica --------------------------------------------------------


class ViewChanger:
    """Drives one replica through view changes; a collaborator holding the replica it works for."""

    def __init__(self, replica: Replica) -> None:
        self.r = replica
        self.log = ViewChangeLog(replica._quorums)
        self.my_vc: Envelope | None = None
        self.new_view: tuple[int, bytes] | None = None  # (view, encoded NEW-VIEW that installed it)
        self.replied: dict[str, int] = {}

    def compute_view_change(self) -> tuple[ViewChange, dict[bytes, Block]]:
        """This replica's view change for its current view: base proofs and prepared proofs above."""
        r = self.r
        base = max(r._stable.height if r._stable else 0, r._last_cert.height if r._last_cert else 0)
        proofs = tuple(
            s.proof for h, s in sorted(r._slots.items()) if s.proof is not None and h > base and s.proof.view < r._view
        )
        blocks = {p.block_hash: r._blocks[p.block_hash] for p in proofs if p.block_hash in r._blocks}
        return ViewChange(r._view, r._stable, r._last_cert, proofs), blocks

    def rebuild_my_view_change(self) -> Envelope:
        r = self.r
        vc, blocks = self.compute_view_change()
        attachment = encode(tuple(blocks[p.block_hash] for p in vc.prepared if p.block_hash in blocks))
        env = r._sign(vc, attachment)
        self.my_vc = env
        self.log.add(r.id, StoredViewChange(vc.view, strip(env), vc, blocks))
        return env

    def start(self, target: int) -> None:
        """Leave the current view: persist the move, then broadcast VIEW-CHANGE(target)."""
        r = self.r
        if r._n == 1 or target <= r._view:
            return
        r._view, r._active = target, False
        r._vc_started = r._now
        r._backoff = min(r._backoff + 1, r.config.max_backoff_exponent)
        r.metrics["view_changes"] += 1
        for slot in r._slots.values():
            slot.reset_view()
        r._expected = {}
        r._persist(KEY_VIEW, encode(ViewRecord(target, True)))
        r._broadcast(self.rebuild_my_view_change())
        if len(r._queue):
            # Like a PBFT client that got no reply: every validator learns the waiting requests,
            # so their timers run too (they join this view change if nobody orders them).
            r._forward(tuple(r._queue.entries))
        self.maybe_new_view()

    def maybe_join(self) -> None:
        """f+1 others are in higher views: move to the (f+1)-th highest of them."""
        target = self.log.compute_join_view(self.r.id, self.r._view)
        if target is not None:
            self.start(target)

    def receive_view_change(self, sender: str, env: Envelope, body: ViewChange) -> None:
        r = self.r
        self.log.note_view(sender, body.view)
        r._rec.help_peer(sender, compute_base(body)[0])  # if the sender is behind in blocks
        if body.view < r._view or (body.view == r._view and r._active):
            self.reply_new_view(sender)  # the sender is behind in views: show it how this view began
            return
        check_view_change(body, r._checker, r._quorums)
        blocks: dict[bytes, Block] = {}
        if compute_primary(r.config.validators, body.view) == r.id:
            blocks = check_attached_blocks(body, decode_blocks(env.attachment))
        self.log.add(sender, StoredViewChange(body.view, strip(env), body, blocks))
        self.maybe_join()
        self.maybe_new_view()

    def maybe_new_view(self) -> None:
        """As the new primary with 2f+1 view changes (its own among them): start the view."""
        r = self.r
        if r._active or compute_primary(r.config.validators, r._view) != r.id:
            return
        entries = self.log.for_view(r._view)
        mine = [e for s, e in entries if s == r.id]
        others = [e for s, e in entries if s != r.id]
        if not mine or 1 + len(others) < r._q:
            return
        use = mine + others[: r._q - 1]
        plan = compute_new_view([e.body for e in use])
        blocks: dict[bytes, Block] = {}
        for p in plan.chosen:
            block = r._blocks.get(p.block_hash)
            if block is None:
                block = next((e.blocks[p.block_hash] for e in use if p.block_hash in e.blocks), None)
            if block is None:
                return  # cannot happen with checked view changes; wait for more
            blocks[p.block_hash] = block
        nv = NewView(
            r._view, tuple(encode_envelope(e.envelope) for e in use), plan.base_height, plan.base_hash,
            tuple(p.block_hash for p in plan.chosen),
        )
        raw = encode_envelope(r._sign(nv))
        r._persist(KEY_NEWVIEW, raw)
        self.install(r._view, plan, raw)
        r._out.append(Broadcast(raw))
        for p in plan.chosen:
            if p.height > r._low:
                r._queue.mark_proposed(blocks[p.block_hash].txs)
                r._ord.send_preprepare(p.height, p.block_hash, blocks[p.block_hash])
        r._ord.advance()

    def receive_new_view(self, sender: str, env: Envelope, body: NewView) -> None:
        r = self.r
        self.log.note_view(sender, body.view)
        if body.view < r._view or (body.view == r._view and r._active):
            r.metrics["dropped_stale"] += 1
            return
        plan = check_new_view(body, sender, r._checker, r._quorums)
        self.install(body.view, plan, encode_envelope(env))
        r._ord.advance()

    def install(self, view: int, plan: NewViewPlan, raw: bytes) -> None:
        """Enter `view` as its new-view message says; re-proposals are expected at their heights."""
        r = self.r
        r._view, r._active = view, True
        self.new_view = (view, raw)
        r._persist(KEY_VIEW, encode(ViewRecord(view, False)))
        r._expected = {plan.base_height + i + 1: p.block_hash for i, p in enumerate(plan.chosen)}
        r._nv_base = max(r._nv_base, plan.base_height)
        for slot in r._slots.values():
            slot.reset_view()
        r._last_progress = r._vc_started = r._now
        r.metrics["new_views"] += 1
        self.log.prune(view + 1)
        r._queue.restart(r._now)
        primary = compute_primary(r.config.validators, view)
        if primary != r.id and len(r._queue):
            r._forward(tuple(r._queue.entries), primary)
        r._replay_future()
        r._rec.maybe_fetch()
        r._changed = True

    def reply_new_view(self, sender: str) -> None:
        """Send a peer in an older view the new-view message of this replica's view (rate-limited)."""
        r = self.r
        # Only its signer sends it (a relay would not match the transport-authenticated sender).
        if not r._active or self.new_view is None or self.new_view[0] != r._view or r.primary != r.id:
            return
        last = self.replied.get(sender)
        if last is not None and r._now - last < r.config.retransmit_ticks:
            return
        self.replied[sender] = r._now
        r._out.append(Send(sender, self.new_view[1]))
