"""The normal case of PBFT over a hash-chained block log: accept, prepare, commit, vote, deliver, propose.

Theory of operation
-------------------
`Orderer` is the collaborator of a `Replica` that runs each height (slot) through its phases; the
state lives on the replica (slots, blocks, votes, certificates), this class holds the transitions.

- Accept (PRE-PREPARE -> PREPARE): one pre-prepare per (view, height), only from the view's
  primary, only if it extends the block accepted one height below in the same view (or the
  committed head), only within `max_inflight` of the last delivered height, and only once the
  application re-executed it to the very same header. Acceptance is persisted before the prepare
  leaves. A re-proposal of a block this replica already delivered is accepted without execution
  (helping replicas that lag behind) but only for that same block.
- Prepared (-> COMMIT): the pre-prepare plus 2f matching prepares from backups, and prepared one
  height below in the same view (prepared blocks form a chain; viewchange.py relies on it). The
  prepared proof is persisted before the commit leaves.
- Decided (-> VOTE): 2f+1 matching commits. The certificate vote is persisted, then broadcast; a
  replica votes at most once per height, ever.
- Deliver: 2f+1 votes for one (block hash, header view) form the certificate; blocks are delivered
  strictly in height order, each on the previous one.
- Propose: the primary cuts batches from the queue and builds each block on its previous in-flight
  block (`parent`), at most `max_inflight` above the last delivered height and below the high
  watermark, after every re-proposal the new view forces.

The driver applies a Deliver before it calls the replica again; until then (within one call) a
block is built or checked on a just-delivered parent only if the application executed that parent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ledger.chain import Block, CommitCertificate, ValidatorSignature, compute_block_hash
from ledger.codec import encode
from ledger.consensus.actions import Deliver
from ledger.consensus.log import (
    KEY_CERTIFICATE,
    PREFIX_ACCEPTED,
    PREFIX_BLOCK,
    PREFIX_PREPARED,
    PREFIX_VOTE,
    AcceptedRecord,
    Slot,
    VoteRecord,
    key_for_height,
)
from ledger.consensus.messages import (
    Commit,
    Envelope,
    Prepare,
    PreparedProof,
    PrePrepare,
    Vote,
    decode_block,
)

if TYPE_CHECKING:
    from ledger.consensus.replica import Replica


class Orderer:
    """The normal-case transitions of one replica (a collaborator holding the replica)."""

    def __init__(self, replica: Replica) -> None:
        self.r = replica

    def handle_ordering(self, sender: str, env: Envelope, body: PrePrepare | Prepare | Commit) -> None:
        r = self.r
        if isinstance(body, PrePrepare):
            self.on_preprepare(sender, env, body)
            return
        # Prepares come from backups; the primary's pre-prepare stands for its prepare.
        if isinstance(body, Prepare) and sender == r._primary_of(body.view):
            r.metrics["dropped_invalid"] += 1
            return
        slot = r._slot(body.height)
        if isinstance(body, Prepare):
            slot.prepares.setdefault(sender, (body.block_hash, env.signature))
        else:
            slot.commits.setdefault(sender, body.block_hash)
        self.advance()

    def on_preprepare(self, sender: str, env: Envelope, body: PrePrepare) -> None:
        r = self.r
        h = body.height
        # Only the primary of the view pre-prepares.
        if sender != r._primary_of(body.view):
            r.metrics["dropped_invalid"] += 1
            return
        block = decode_block(env.attachment)
        # The attached block is the one the signed pre-prepare names.
        header = block.header
        if compute_block_hash(header) != body.block_hash or header.height != h or header.prev_hash != body.prev_hash:
            r.metrics["dropped_invalid"] += 1
            return
        if h <= r._delivered:
            # A re-proposal of a block this replica delivered: take part only for that very block.
            if r._delivered_hashes.get(h) != body.block_hash:
                r.metrics["dropped_stale"] += 1
                return
        elif h <= r._nv_base:
            # Certified below the new view's base: this replica must fetch it, not order it.
            r.metrics["dropped_stale"] += 1
            return
        cert = r._certs.get(h)
        expected = r._expected.get(h)
        # Nothing contradicts a certificate or the re-proposal the new view forces.
        if (cert is not None and cert.block_hash != body.block_hash) or (
            expected is not None and expected != body.block_hash
        ):
            r.metrics["dropped_invalid"] += 1
            return
        slot = r._slot(h)
        held = slot.block_hash if slot.view == r._view else (slot.pending.block_hash if slot.pending else None)
        if held is not None:
            if held != body.block_hash:
                r.metrics["equivocations"] += 1
            else:
                r._blocks.setdefault(body.block_hash, block)  # a retransmission may bring a missing block
            return
        r._blocks[body.block_hash] = block
        slot.pending = body
        slot.pending_signature = env.signature
        self.advance()

    def advance(self) -> None:
        """Run every slot forward until nothing changes (accept, prepare, commit, vote, deliver)."""
        r = self.r
        if r._advancing:
            r._changed = True
            return
        r._advancing = True
        try:
            r._changed = True
            while r._changed:
                r._changed = False
                if r._active:
                    for h in sorted(r._slots):
                        slot = r._slots.get(h)
                        if slot is not None:
                            self.advance_slot(slot)
                self.deliver_ready()
                self.maybe_propose(r._waited >= r.config.batch_ticks)
        finally:
            r._advancing = False

    def advance_slot(self, slot: Slot) -> None:
        r = self.r
        if slot.view != r._view and slot.pending is not None:
            self.try_accept(slot)
        if slot.view != r._view:
            return
        if not slot.prepared and self.is_prepared(slot):
            self.on_prepared(slot)
        if slot.prepared and not slot.committed and slot.count_commits() >= r._q:
            self.on_committed(slot)

    def validate(self, block: Block, parent: bytes | None) -> bool:
        r = self.r
        try:
            ok = bool(r.app.validate(block, parent))
        except Exception:
            ok = False
        if ok:
            r._executed.add(compute_block_hash(block.header))
        return ok

    def is_executed(self, height: int) -> bool:
        """The application can build on the block this replica holds at `height`."""
        r = self.r
        if height <= r._delivered:
            h = r._delivered_hashes.get(height)
            return height <= r._applied or (h is not None and h in r._executed)
        slot = r._slots.get(height)
        if slot is None or slot.view != r._view:
            return False
        if slot.block_hash in r._executed:
            return True
        block = r._blocks.get(slot.block_hash)
        if block is None or not self.is_executed(height - 1):
            return False
        return self.validate(block, self.parent_hash(height))

    def parent_hash(self, height: int) -> bytes | None:
        """Hash of the block this replica holds at height-1 (None: the committed head, unknown)."""
        r = self.r
        if height - 1 <= r._delivered:
            return r._head_hash if height - 1 == r._delivered else r._delivered_hashes.get(height - 1)
        return r._slots[height - 1].block_hash

    def try_accept(self, slot: Slot) -> None:
        r = self.r
        body = slot.pending
        if body is None or body.view != r._view:
            slot.pending = None
            return
        h = body.height
        if h > r._delivered + r.config.max_inflight:
            return  # beyond the pipeline; wait
        if h <= r._delivered:
            if r._delivered_hashes.get(h) != body.block_hash:
                slot.pending = None
                return
        else:
            if h - 1 == r._delivered:
                # It extends the committed head.
                if r._head_hash is not None and body.prev_hash != r._head_hash:
                    r.metrics["dropped_invalid"] += 1
                    slot.pending = None
                    return
            else:
                prev = r._slots.get(h - 1)
                # It extends the block accepted one height below in this view.
                if prev is None or prev.view != r._view or prev.block_hash != body.prev_hash:
                    return
            if not self.is_executed(h - 1):
                return
            block = r._blocks.get(body.block_hash)
            # Executing it gives exactly its header.
            if block is None or (
                body.block_hash not in r._executed and not self.validate(block, self.parent_hash(h))
            ):
                r.metrics["invalid_blocks"] += 1
                slot.pending = None
                return
        self.accept(slot, body, slot.pending_signature, None)

    def accept(self, slot: Slot, body: PrePrepare, pp_signature: bytes, my_pp: Envelope | None) -> None:
        """Record (persist, then send) this replica's acceptance of a pre-prepare in the current view."""
        r = self.r
        h = body.height
        block = r._blocks.get(body.block_hash)
        if h > r._low and block is not None and body.block_hash not in r._persisted_blocks:
            r._persisted_blocks.add(body.block_hash)
            r._persist(key_for_height(PREFIX_BLOCK, h, body.block_hash), encode(block))
        record = AcceptedRecord(r._view, body.block_hash, body.prev_hash, pp_signature)
        r._persist(key_for_height(PREFIX_ACCEPTED, h), encode(record))
        slot.view = r._view
        slot.block_hash, slot.prev_hash, slot.preprepare_signature = body.block_hash, body.prev_hash, pp_signature
        slot.pending = None
        slot.my_preprepare = my_pp
        if r.primary != r.id:
            env = r._sign(Prepare(r._view, h, body.block_hash))
            slot.prepares[r.id] = (body.block_hash, env.signature)
            slot.my_prepare = env
            r._broadcast(env)
        r._changed = True

    def is_prepared(self, slot: Slot) -> bool:
        r = self.r
        # A pre-prepare and 2f matching prepares from backups.
        if slot.count_prepares(r.primary) < r._q - 1:
            return False
        # Prepared in height order (see viewchange.py for why).
        if slot.height - 1 <= r._delivered:
            return True
        prev = r._slots.get(slot.height - 1)
        return prev is not None and prev.view == r._view and prev.prepared

    def on_prepared(self, slot: Slot) -> None:
        r = self.r
        slot.prepared = True
        primary = r.primary
        matching = [(s, sig) for s, (h, sig) in slot.prepares.items() if h == slot.block_hash and s != primary]
        sigs = [ValidatorSignature(s, sig) for s, sig in sorted(matching)]
        proof = PreparedProof(
            r._view, slot.height, slot.block_hash, slot.prev_hash, slot.preprepare_signature, tuple(sigs)
        )
        if slot.proof is None or slot.proof.view <= r._view:
            slot.proof = proof
            if slot.height > r._low:
                r._persist(key_for_height(PREFIX_PREPARED, slot.height), encode(proof))
        env = r._sign(Commit(r._view, slot.height, slot.block_hash))
        slot.commits[r.id] = slot.block_hash
        slot.my_commit = env
        r._broadcast(env)
        r._changed = True

    def on_committed(self, slot: Slot) -> None:
        """2f+1 commits: the block is decided; cast the certificate vote (once per height, ever)."""
        r = self.r
        slot.committed = True
        r._changed = True
        h = slot.height
        mine = r._votes.get(h, {}).get(r.id)
        if h in r._my_votes or (mine is not None and mine[0] != slot.block_hash):
            return
        block = r._blocks.get(slot.block_hash)
        if block is None:
            return
        vote = Vote(h, block.header.view, slot.block_hash)
        r._persist(key_for_height(PREFIX_VOTE, h), encode(VoteRecord(vote.view, vote.block_hash)))
        env = r._sign(vote)
        r._my_votes[h] = env
        r._votes.setdefault(h, {})[r.id] = (vote.block_hash, vote.view, env.signature)
        r._broadcast(env)
        self.check_certified(h)

    def check_certified(self, height: int) -> None:
        r = self.r
        if height in r._certs or height <= r._delivered:
            return
        tally: dict[tuple[bytes, int], list[ValidatorSignature]] = {}
        for sender, (block_hash, view, sig) in r._votes.get(height, {}).items():
            tally.setdefault((block_hash, view), []).append(ValidatorSignature(sender, sig))
        for (block_hash, view), sigs in tally.items():
            if len(sigs) >= r._q:
                sigs.sort(key=lambda s: s.validator)
                r._certs[height] = CommitCertificate(height, view, block_hash, tuple(sigs))
                r._changed = True
                return

    def deliver_ready(self) -> None:
        r = self.r
        while True:
            h = r._delivered + 1
            cert = r._certs.get(h)
            block = r._blocks.get(cert.block_hash) if cert is not None else None
            if cert is None or block is None or block.header.view != cert.view:
                return
            if r._head_hash is not None and block.header.prev_hash != r._head_hash:
                return
            r._persist(KEY_CERTIFICATE, encode(cert))
            r._out.append(Deliver(block, cert))
            r.metrics["blocks_delivered"] += 1
            r._delivered = h
            r._head_hash = cert.block_hash
            r._delivered_hashes[h] = cert.block_hash
            r._last_cert = cert
            del r._certs[h]
            r._queue.remove(block.txs)
            r._last_progress = r._last_delivery = r._now
            r._backoff = 0
            r._changed = True
            if h % r.config.checkpoint_interval == 0:
                r._rec.send_checkpoint(h, cert.block_hash)

    def tick_batch(self) -> None:
        r = self.r
        if r._queue.unproposed == 0:
            r._waited = 0
            return
        r._waited += 1
        if r._waited >= r.config.batch_ticks:
            self.maybe_propose(True)

    def maybe_propose(self, force: bool) -> None:
        r = self.r
        if not r._active or r.primary != r.id:
            return
        size = r.config.batch_size
        while r._queue.unproposed >= size or (force and r._queue.unproposed > 0):
            h = self.next_proposal_height()
            if h is None:
                return
            txs = r._queue.take_batch(size)
            if not self.propose(h, txs):
                r._queue.unmark(txs)
                return
            force = False
            r._waited = 0

    def next_proposal_height(self) -> int | None:
        r = self.r
        # A primary behind the stable checkpoint catches up first (it never proposes twice at a
        # height whose log was collected).
        if r._delivered < r._low:
            return None
        h = r._delivered + 1
        while (s := r._slots.get(h)) is not None and s.view == r._view:
            h += 1
        # Inside the pipeline and the watermarks, after every forced re-proposal.
        if h > r._delivered + r.config.max_inflight or h > r._high():
            return None
        if r._expected and h <= max(r._expected):
            return None
        # The application holds the parent.
        if not self.is_executed(h - 1):
            return None
        return h

    def propose(self, h: int, txs: list[bytes]) -> bool:
        r = self.r
        parent = self.parent_hash(h)
        try:
            block = r.app.propose(txs, r._view, r.id, parent)
        except Exception:
            r.metrics["invalid_blocks"] += 1
            return False
        block_hash = compute_block_hash(block.header)
        # The application built on the block asked for.
        if block.header.height != h or (parent is not None and block.header.prev_hash != parent):
            r.metrics["invalid_blocks"] += 1
            return False
        r._executed.add(block_hash)
        self.send_preprepare(h, block_hash, block)
        return True

    def send_preprepare(self, h: int, block_hash: bytes, block: Block) -> None:
        r = self.r
        r._blocks[block_hash] = block
        body = PrePrepare(r._view, h, block_hash, block.header.prev_hash)
        env = r._sign(body, encode(block))
        self.accept(r._slot(h), body, env.signature, env)
        r._broadcast(env)
