"""Checking view changes and computing the new view: pure functions over signed proofs.

Theory of operation
-------------------
A replica that suspects the primary of view v broadcasts VIEW-CHANGE(v+1) carrying:
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

Backups check a NEW-VIEW by verifying each carried view change and recomputing the chain
(`check_new_view`); view changes travel without attachments inside a new view (the chosen blocks
come with the new primary's pre-prepares). Every check is one commented line that raises a typed
error (`InvalidViewChange`, `InvalidNewView`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ledger.chain import Block, CommitCertificate, CommitVote, compute_block_hash, compute_tx_root
from ledger.consensus.membership import Membership, UnknownSet
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
    Suspect,
    ViewChange,
    decode_body,
    decode_envelope,
)
from ledger.consensus.quorum import Quorums


class InvalidViewChange(ValueError):
    """A view change (or a proof inside one) failed a check; the text says which."""


class InvalidNewView(ValueError):
    """A new-view message failed a check; the text says which."""


# --- proofs ----------------------------------------------------------------------------------


def _set_at(m: Membership, height: int, what: str) -> Quorums:
    """The set of `height`; a proof about a height whose set this replica cannot know yet is refused."""
    try:
        return m.at(height)
    except UnknownSet as exc:
        raise InvalidViewChange(f"{what}: {exc}") from exc


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


def check_checkpoint_proof(proof: CheckpointProof, checker: SignatureChecker, m: Membership) -> None:
    q = _set_at(m, proof.height, "checkpoint proof")
    _check_signers([s.validator for s in proof.signatures], q.validators, q.quorum, "checkpoint proof")
    body = Checkpoint(proof.height, proof.block_hash)
    for s in proof.signatures:
        # Every signature is that validator's checkpoint message.
        if not checker.body(s.validator, body, s.signature):
            raise InvalidViewChange(f"checkpoint proof: bad signature from {s.validator}")


def check_certificate_signatures(cert: CommitCertificate, checker: SignatureChecker, m: Membership) -> None:
    q = _set_at(m, cert.height, "commit certificate")
    _check_signers([s.validator for s in cert.signatures], q.validators, q.quorum, "commit certificate")
    vote = CommitVote(checker.chain_id, cert.height, cert.view, cert.block_hash)
    for s in cert.signatures:
        # Every signature is that validator's commit vote.
        if not checker.commit_vote(s.validator, vote, s.signature):
            raise InvalidViewChange(f"commit certificate: bad signature from {s.validator}")


def check_prepared_proof(proof: PreparedProof, checker: SignatureChecker, m: Membership) -> None:
    q = _set_at(m, proof.height, f"prepared proof at {proof.height}")
    primary = q.primary(proof.view)
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


def check_suspicion(vc: ViewChange, checker: SignatureChecker, m: Membership) -> None:
    """The suspicion a view change carries: f+1 validators (of the current set) suspected the primary of
    the view it left."""
    q = m.current
    _check_signers([s.validator for s in vc.suspicion], q.validators, q.weak, "suspicion")
    body = Suspect(vc.view - 1)
    for s in vc.suspicion:
        # Every signature is that validator's suspicion of the view left.
        if not checker.body(s.validator, body, s.signature):
            raise InvalidViewChange(f"suspicion: bad signature from {s.validator}")


def compute_base(vc: ViewChange) -> tuple[int, bytes]:
    """The highest decided block a view change proves: (height, hash); (0, b"") for none."""
    best: tuple[int, bytes] = (0, b"")
    if vc.checkpoint is not None and vc.checkpoint.height > best[0]:
        best = (vc.checkpoint.height, vc.checkpoint.block_hash)
    if vc.certificate is not None and vc.certificate.height > best[0]:
        best = (vc.certificate.height, vc.certificate.block_hash)
    return best


def check_view_change(vc: ViewChange, checker: SignatureChecker, m: Membership, pipeline: int) -> None:
    """Every proof in a view change verifies, each against the validators of its height; raise
    InvalidViewChange otherwise.

    `pipeline` is `max_inflight`: a replica accepts pre-prepares at most that far above what it
    delivered, and its base is at least that, so its prepared proofs lie within it (which bounds
    the view change, and the new view that carries it, whoever sends it).
    """
    # View 0 is never entered by a view change.
    if vc.view < 1:
        raise InvalidViewChange("view change to view 0")
    if vc.checkpoint is not None:
        check_checkpoint_proof(vc.checkpoint, checker, m)
    if vc.certificate is not None:
        check_certificate_signatures(vc.certificate, checker, m)
    if vc.suspicion:
        check_suspicion(vc, checker, m)
    base, _ = compute_base(vc)
    last = base
    for p in vc.prepared:
        # Proofs are above the base, one per height, in increasing height order.
        if p.height <= last:
            raise InvalidViewChange("prepared proofs not above the base or not increasing")
        # Proofs lie within the pipeline above the base.
        if p.height > base + pipeline:
            raise InvalidViewChange(f"prepared proof at {p.height}, beyond the pipeline above the base {base}")
        # Proofs come from earlier views.
        if p.view >= vc.view:
            raise InvalidViewChange("prepared proof from a view not before the new one")
        check_prepared_proof(p, checker, m)
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


def check_new_view(nv: NewView, sender: str, checker: SignatureChecker, m: Membership, pipeline: int) -> NewViewPlan:
    """Verify a new view completely; return the plan its view changes force. Its primary, its senders and
    their quorum are of the current set (the height after this replica's head)."""
    q = m.current
    # The new view comes from its primary.
    if sender != q.primary(nv.view):
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
        if env.sender not in q.validators:
            raise InvalidNewView(f"view change from {env.sender[:16]}, not a validator of the current set")
        if not checker.envelope(env, vc):
            raise InvalidNewView(f"bad view change signature from {env.sender[:16]}")
        try:
            check_view_change(vc, checker, m, pipeline)
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
