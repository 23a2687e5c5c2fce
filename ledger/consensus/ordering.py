"""The normal case of PBFT over a hash-chained block log: accept, prepare, commit, vote, deliver, propose.

Theory of operation
-------------------
`Orderer` owns the ordering log (slots, blocks, votes, certificates) and runs each height through
its phases; it asks the head, the view state, the checkpoints and the transaction queue for what
they own and never writes their fields.

- Accept (PRE-PREPARE -> PREPARE): one pre-prepare per (view, height), only from the view's
  primary, only if it extends the block accepted one height below in the same view (or the
  committed head), only within `max_inflight` of the last delivered height, and only once the
  application re-executed it to the very same header. Acceptance is persisted before the prepare
  leaves. A re-proposal of a block this replica already delivered is accepted without execution
  (helping replicas that lag behind) but only for that same block.
- Prepared (-> COMMIT): the pre-prepare plus 2f matching prepares from backups, and prepared one
  height below in the same view (prepared blocks form a chain; newview.py relies on it). The
  prepared proof is persisted before the commit leaves.
- Decided (-> VOTE): 2f+1 matching commits. The certificate vote is persisted, then broadcast; a
  replica votes at most once per height, ever.
- Deliver: 2f+1 votes for one (block hash, header view) form the certificate; blocks are delivered
  strictly in height order, each on the previous one. A delivered multiple of the checkpoint
  interval is checkpointed; a checkpoint that becomes stable collects the garbage below it.
- Propose: the primary cuts batches from the queue and builds each block on its previous in-flight
  block (`parent`), at most `max_inflight` above the last delivered height and below the high
  watermark, after every re-proposal the new view forces (proposer.py; it asks this log for heights
  and parents and hands back the block to pre-prepare).

The driver applies a Deliver before it calls the replica again; until then (within one call) a
block is built or checked on a just-delivered parent only if the application executed that parent.

The application's verdict on a block is evidence about the primary; an exception from it is not
(a disk or code error here): it becomes `ApplicationError`, which stops the node.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from ledger.chain import Block, CommitCertificate, ValidatorSignature, compute_block_hash
from ledger.codec import encode
from ledger.consensus.application import Application, ApplicationError
from ledger.consensus.checkpoints import Checkpoints
from ledger.consensus.context import Context
from ledger.consensus.evidence import compute_slot, order_pair
from ledger.consensus.head import Head
from ledger.consensus.log import (
    KEY_CERTIFICATE,
    PREFIX_ACCEPTED,
    PREFIX_BLOCK,
    PREFIX_PREPARED,
    PREFIX_VOTE,
    AcceptedRecord,
    PersistedState,
    Slot,
    VoteRecord,
    key_for_height,
)
from ledger.consensus.messages import (
    KIND_PREPREPARE,
    Commit,
    Envelope,
    Prepare,
    PreparedProof,
    PrePrepare,
    Vote,
    decode_block,
    decode_body,
)
from ledger.consensus.proposer import Proposer
from ledger.consensus.quorum import Quorums
from ledger.consensus.txqueue import TxQueue
from ledger.consensus.views import ViewState


class Orderer:
    def __init__(
        self, ctx: Context, app: Application, head: Head, views: ViewState, checkpoints: Checkpoints, queue: TxQueue,
    ) -> None:
        self._ctx = ctx
        self._app = app
        self._head = head
        self._views = views
        self._checkpoints = checkpoints
        self._queue = queue
        self._slots: dict[int, Slot] = {}
        self._blocks: dict[bytes, Block] = {}
        self._executed: set[bytes] = set()  # hashes of blocks the application executed
        self._votes: dict[int, dict[str, tuple[bytes, int, bytes]]] = {}  # height -> sender -> (hash, view, sig)
        self._my_votes: dict[int, Envelope] = {}
        self._certs: dict[int, CommitCertificate] = {}
        self._persisted_blocks: set[bytes] = set()
        self._reported: set[tuple[str, str, int, int]] = set()  # equivocations reported: (sender, kind, slot)
        self._advancing = False
        self._changed = False
        self._proposer = Proposer(ctx, app, head, views, checkpoints, queue, self)

    # --- what others may ask ---------------------------------------------------------------------

    def slot(self, height: int) -> Slot | None:
        return self._slots.get(height)

    def block(self, block_hash: bytes) -> Block | None:
        return self._blocks.get(block_hash)

    @property
    def slot_count(self) -> int:
        return len(self._slots)

    @property
    def block_count(self) -> int:
        return len(self._blocks)

    def prepared_proofs(self, above: int, upto: int, before_view: int) -> tuple[PreparedProof, ...]:
        """This replica's highest-view prepared proof of each height in (above, upto], from earlier views."""
        return tuple(
            s.proof for h, s in sorted(self._slots.items())
            if s.proof is not None and above < h <= upto and s.proof.view < before_view
        )

    def in_flight(self, txs: Sequence[bytes]) -> list[bytes]:
        """Those of `txs` that a block of the current view above the delivered head carries already."""
        d, view = self._head.height, self._views.view
        carried: set[bytes] = set()
        for h, s in self._slots.items():
            if h > d and s.view == view and (block := self._blocks.get(s.block_hash)) is not None:
                carried.update(block.txs)
        return [tx for tx in txs if tx in carried]

    def has_certificate_above(self, height: int) -> bool:
        return any(h > height for h in self._certs)

    def voters_above(self, height: int) -> int:
        """How many other validators cast a certificate vote above `height`: each decided a block there."""
        me = self._ctx.signer.id
        return len({s for h, votes in self._votes.items() if h > height for s in votes if s != me})

    def has_work(self) -> bool:
        """In-flight ordering that should make progress (queued client txs have their own timer)."""
        d = self._head.height
        if self.has_certificate_above(d) or any(h > d for h in self._views.expected):
            return True
        view = self._views.view
        return any(h > d and (s.view == view or s.pending is not None) for h, s in self._slots.items())

    def own_messages(self) -> Iterator[Envelope]:
        """What this replica sent in the current view and still matters, for retransmission."""
        d, view = self._head.height, self._views.view
        for h in sorted(self._slots):
            slot = self._slots[h]
            if h <= d or slot.view != view:
                continue
            for env in (slot.my_preprepare, slot.my_prepare, slot.my_commit):
                if env is not None:
                    yield env
        for h in sorted(self._my_votes):
            if h > d - self._ctx.config.max_inflight:
                yield self._my_votes[h]

    def my_votes_between(self, low: int, high: int) -> Iterator[Envelope]:
        """This replica's certificate votes at heights in (low, high]."""
        for h in sorted(self._my_votes):
            if low < h <= high:
                yield self._my_votes[h]

    # --- receiving ---------------------------------------------------------------------------------

    def handle_ordering(self, sender: str, env: Envelope, body: PrePrepare | Prepare | Commit) -> None:
        """A verified pre-prepare, prepare or commit of the current view."""
        if isinstance(body, PrePrepare):
            self.on_preprepare(sender, env, body)
            return
        # Prepares come from backups; the primary's pre-prepare stands for its prepare.
        if isinstance(body, Prepare) and sender == self._set(body.height).primary(body.view):
            self._ctx.metrics["dropped_invalid"] += 1
            return
        slot = self._slot(body.height)
        held = (slot.prepares if isinstance(body, Prepare) else slot.commits).setdefault(
            sender, (body.block_hash, env.signature))
        if held[0] != body.block_hash:
            # The same sender, the same (view, height), another block: an equivocation.
            earlier = type(body)(body.view, body.height, held[0])
            self._report(Envelope(env.kind, sender, encode(earlier), held[1], b""), env)
        self.advance()

    def on_preprepare(self, sender: str, env: Envelope, body: PrePrepare) -> None:
        h = body.height
        # Only the primary of the view (in the set of the height) pre-prepares.
        if sender != self._set(h).primary(body.view):
            self._ctx.metrics["dropped_invalid"] += 1
            return
        block = decode_block(env.attachment)
        # The attached block is the one the signed pre-prepare names.
        header = block.header
        if compute_block_hash(header) != body.block_hash or header.height != h or header.prev_hash != body.prev_hash:
            self._ctx.metrics["dropped_invalid"] += 1
            return
        # The block names the primary of its view as its proposer, a view not after this one.
        if header.proposer != self._set(h).primary(header.view) or header.view > body.view:
            self._ctx.metrics["dropped_invalid"] += 1
            return
        if h <= self._head.height:
            # A re-proposal of a block this replica delivered: take part only for that very block.
            if self._head.hash_at(h) != body.block_hash:
                self._ctx.metrics["dropped_stale"] += 1
                return
        elif h <= self._views.nv_base:
            # Certified below the new view's base: this replica must fetch it, not order it.
            self._ctx.metrics["dropped_stale"] += 1
            return
        cert = self._certs.get(h)
        expected = self._views.expected.get(h)
        # Nothing contradicts a certificate or the re-proposal the new view forces.
        if (cert is not None and cert.block_hash != body.block_hash) or (
            expected is not None and expected != body.block_hash
        ):
            self._ctx.metrics["dropped_invalid"] += 1
            return
        # A block proposed afresh carries the view it is proposed in.
        if header.view != body.view and expected is None and h > self._head.height:
            self._ctx.metrics["dropped_invalid"] += 1
            return
        slot = self._slot(h)
        view = self._views.view
        held = slot.block_hash if slot.view == view else (slot.pending.block_hash if slot.pending else None)
        if held is not None:
            if held != body.block_hash:
                self._ctx.metrics["equivocations"] += 1
                self._report(self._held_preprepare(slot, sender), env)
            else:
                self._blocks.setdefault(body.block_hash, block)  # a retransmission may bring a missing block
            return
        # Block time is judged on receipt (see Application.timely) for a block proposed afresh.
        if expected is None and h > self._head.height and not self._app.timely(block):
            self._ctx.metrics["untimely_blocks"] += 1
            return
        self._blocks[body.block_hash] = block
        slot.pending = body
        slot.pending_signature = env.signature
        self.advance()

    def receive_vote(self, sender: str, env: Envelope, body: Vote) -> None:
        """A verified certificate vote above the delivered height, within the high watermark."""
        votes = self._votes.setdefault(body.height, {})
        held = votes.get(sender)
        if held is None:
            votes[sender] = (body.block_hash, body.view, env.signature)
            self._check_certified(body.height)
            self.advance()
        elif held[0] != body.block_hash:
            # Two certificate votes at one height: a validator votes once per height, ever.
            earlier = Vote(body.height, held[1], held[0])
            self._report(Envelope(env.kind, sender, encode(earlier), held[2], b""), env)

    def _held_preprepare(self, slot: Slot, primary: str) -> Envelope:
        """The pre-prepare this replica holds at `slot` (accepted in this view, or waiting), signature-only."""
        if slot.view == self._views.view:
            body = PrePrepare(slot.view, slot.height, slot.block_hash, slot.prev_hash)
            return Envelope(KIND_PREPREPARE, primary, encode(body), slot.preprepare_signature, b"")
        assert slot.pending is not None
        return Envelope(KIND_PREPREPARE, primary, encode(slot.pending), slot.pending_signature, b"")

    def _report(self, first: Envelope, second: Envelope) -> None:
        """Two contradicting signed messages of one validator: evidence for the ledger, once per slot."""
        body = decode_body(second)
        key = (second.sender, second.kind, *compute_slot(second.kind, body))
        if key in self._reported:
            return
        self._reported.add(key)
        self._ctx.metrics["equivocations_reported"] += 1
        self._ctx.out.evidence(*order_pair(first, second))

    # --- running the slots -------------------------------------------------------------------------

    def advance(self) -> None:
        """Run every slot forward until nothing changes (accept, prepare, commit, vote, deliver)."""
        if self._advancing:
            self._changed = True
            return
        self._advancing = True
        try:
            self._changed = True
            while self._changed:
                self._changed = False
                if self._views.active:
                    for h in sorted(self._slots):
                        slot = self._slots.get(h)
                        if slot is not None:
                            self._advance_slot(slot)
                self._deliver_ready()
                self._proposer.maybe_propose()
        finally:
            self._advancing = False

    def _advance_slot(self, slot: Slot) -> None:
        view = self._views.view
        if slot.view != view and slot.pending is not None:
            self._try_accept(slot)
        if slot.view != view:
            return
        if not slot.prepared and self._is_prepared(slot):
            self._on_prepared(slot)
        if slot.prepared and not slot.committed and slot.count_commits() >= self._set(slot.height).quorum:
            self._on_committed(slot)

    def _validate(self, block: Block, parent: bytes | None) -> bool:
        try:
            ok = bool(self._app.validate(block, parent))
        except Exception as exc:
            raise ApplicationError(f"validating block {block.header.height} failed: {exc!r}") from exc
        if ok:
            self._executed.add(compute_block_hash(block.header))
        return ok

    def is_executed(self, height: int) -> bool:
        """The application can build on the block this replica holds at `height`."""
        if height <= self._head.height:
            h = self._head.hash_at(height)
            return self._head.is_applied(height) or (h is not None and h in self._executed)
        slot = self._slots.get(height)
        if slot is None or slot.view != self._views.view:
            return False
        if slot.block_hash in self._executed:
            return True
        block = self._blocks.get(slot.block_hash)
        if block is None or not self.is_executed(height - 1):
            return False
        return self._validate(block, self.parent_hash(height))  # accepted here already

    def parent_hash(self, height: int) -> bytes | None:
        """Hash of the block this replica holds at height-1 (None: the committed head, unknown)."""
        d = self._head.height
        if height - 1 <= d:
            return self._head.hash if height - 1 == d else self._head.hash_at(height - 1)
        return self._slots[height - 1].block_hash

    def _try_accept(self, slot: Slot) -> None:
        body = slot.pending
        view = self._views.view
        if body is None or body.view != view:
            slot.pending = None
            return
        h, d = body.height, self._head.height
        if h > d + self._ctx.config.max_inflight:
            return  # beyond the pipeline; wait
        if self._ctx.membership.crosses(d + 1, h):
            return  # another validator set from h on: wait until the height before it is delivered
        if h <= d:
            if self._head.hash_at(h) != body.block_hash:
                slot.pending = None
                return
        else:
            if h - 1 == d:
                # It extends the committed head.
                if self._head.hash is not None and body.prev_hash != self._head.hash:
                    self._ctx.metrics["dropped_invalid"] += 1
                    slot.pending = None
                    return
            else:
                prev = self._slots.get(h - 1)
                # It extends the block accepted one height below in this view.
                if prev is None or prev.view != view or prev.block_hash != body.prev_hash:
                    return
            if not self.is_executed(h - 1):
                return
            block = self._blocks.get(body.block_hash)
            # Executing it gives exactly its header.
            if block is None or (
                body.block_hash not in self._executed
                and not self._validate(block, self.parent_hash(h))
            ):
                self._ctx.metrics["invalid_blocks"] += 1
                slot.pending = None
                return
        self._accept(slot, body, slot.pending_signature, None)

    def _accept(self, slot: Slot, body: PrePrepare, pp_signature: bytes, my_pp: Envelope | None) -> None:
        """Record (persist, then send) this replica's acceptance of a pre-prepare in the current view."""
        h, view = body.height, self._views.view
        block = self._blocks.get(body.block_hash)
        if h > self._checkpoints.low and block is not None and body.block_hash not in self._persisted_blocks:
            self._persisted_blocks.add(body.block_hash)
            self._ctx.out.persist(key_for_height(PREFIX_BLOCK, h, body.block_hash), encode(block))
        record = AcceptedRecord(view, body.block_hash, body.prev_hash, pp_signature)
        self._ctx.out.persist(key_for_height(PREFIX_ACCEPTED, h), encode(record))
        slot.view = view
        slot.block_hash, slot.prev_hash, slot.preprepare_signature = body.block_hash, body.prev_hash, pp_signature
        slot.pending = None
        slot.accepted_at = self._ctx.clock.now
        slot.my_preprepare = my_pp
        me = self._ctx.signer.id
        if self._set(h).primary(view) != me and self._ctx.membership.is_member(me, h):
            env = self._ctx.signer.sign(Prepare(view, h, body.block_hash))
            slot.prepares[self._ctx.signer.id] = (body.block_hash, env.signature)
            slot.my_prepare = env
            self._ctx.out.broadcast(env)
        self._changed = True

    def _is_prepared(self, slot: Slot) -> bool:
        # A pre-prepare and 2f matching prepares from backups.
        q = self._set(slot.height)
        if slot.count_prepares(q.primary(self._views.view)) < q.quorum - 1:
            return False
        # Prepared in height order (see newview.py for why).
        if slot.height - 1 <= self._head.height:
            return True
        prev = self._slots.get(slot.height - 1)
        return prev is not None and prev.view == self._views.view and prev.prepared

    def _on_prepared(self, slot: Slot) -> None:
        slot.prepared = True
        view, primary = self._views.view, self._set(slot.height).primary(self._views.view)
        matching = [(s, sig) for s, (h, sig) in slot.prepares.items() if h == slot.block_hash and s != primary]
        sigs = [ValidatorSignature(s, sig) for s, sig in sorted(matching)]
        proof = PreparedProof(
            view, slot.height, slot.block_hash, slot.prev_hash, slot.preprepare_signature, tuple(sigs)
        )
        if slot.proof is None or slot.proof.view <= view:
            slot.proof = proof
            if slot.height > self._checkpoints.low:
                self._ctx.out.persist(key_for_height(PREFIX_PREPARED, slot.height), encode(proof))
        self._changed = True
        if not self._ctx.membership.is_member(self._ctx.signer.id, slot.height):
            return  # not a validator at this height: it follows, and signs nothing
        env = self._ctx.signer.sign(Commit(view, slot.height, slot.block_hash))
        slot.commits[self._ctx.signer.id] = (slot.block_hash, env.signature)
        slot.my_commit = env
        self._ctx.out.broadcast(env)

    def _on_committed(self, slot: Slot) -> None:
        """2f+1 commits: the block is decided; cast the certificate vote (once per height, ever)."""
        slot.committed = True
        self._changed = True
        h, me = slot.height, self._ctx.signer.id
        mine = self._votes.get(h, {}).get(me)
        if h in self._my_votes or (mine is not None and mine[0] != slot.block_hash):
            return
        if not self._ctx.membership.is_member(me, h):
            return
        block = self._blocks.get(slot.block_hash)
        if block is None:
            return
        vote = Vote(h, block.header.view, slot.block_hash)
        self._ctx.out.persist(key_for_height(PREFIX_VOTE, h), encode(VoteRecord(vote.view, vote.block_hash)))
        env = self._ctx.signer.sign(vote)
        self._my_votes[h] = env
        self._votes.setdefault(h, {})[me] = (vote.block_hash, vote.view, env.signature)
        self._ctx.out.broadcast(env)
        self._check_certified(h)

    def _check_certified(self, height: int) -> None:
        if height in self._certs or height <= self._head.height:
            return
        tally: dict[tuple[bytes, int], list[ValidatorSignature]] = {}
        for sender, (block_hash, view, sig) in self._votes.get(height, {}).items():
            tally.setdefault((block_hash, view), []).append(ValidatorSignature(sender, sig))
        for (block_hash, view), sigs in tally.items():
            if len(sigs) >= self._set(height).quorum:
                sigs.sort(key=lambda s: s.validator)
                self._certs[height] = CommitCertificate(height, view, block_hash, tuple(sigs))
                self._changed = True
                return

    def _deliver_ready(self) -> None:
        while True:
            h = self._head.height + 1
            cert = self._certs.get(h)
            block = self._blocks.get(cert.block_hash) if cert is not None else None
            if cert is None or block is None or block.header.view != cert.view:
                return
            if self._head.hash is not None and block.header.prev_hash != self._head.hash:
                return
            now = self._ctx.clock.now
            self._ctx.out.persist(KEY_CERTIFICATE, encode(cert))
            self._ctx.out.deliver(block, cert)
            self._ctx.metrics["blocks_delivered"] += 1
            self._head.record_delivered(h, cert.block_hash, cert, now)
            del self._certs[h]
            self._queue.remove(block.txs)
            cfg = self._ctx.config
            if self._queue.had_room_for_oldest(block.txs, cfg.batch_size, cfg.max_batch_bytes):
                # Measured from when this replica saw the block proposed, not delivered: on long links a
                # block proposed before a forward reached the primary is delivered long after it.
                slot = self._slots.get(h)
                accepted = slot is not None and slot.accepted_at >= 0 and slot.block_hash == cert.block_hash
                seen = slot.accepted_at if slot is not None and accepted else now
                self._queue.pass_over(seen, cfg.request_timeout_ticks // 2)
            self._views.delivered(now)
            self._changed = True
            if self._checkpoints.is_due(h):
                stable = self._checkpoints.send(h, cert.block_hash)
                if stable is not None:
                    self.collect_garbage(stable)

    # --- proposing (the primary's batches: proposer.py) ------------------------------------------

    def tick_batch(self) -> None:
        """A tick at the primary: a partial batch waits at most `batch_ticks`."""
        self._proposer.tick_batch()

    def first_free_height(self) -> int:
        """The first height above the delivered head with no block of the current view."""
        h, view = self._head.height + 1, self._views.view
        while (s := self._slots.get(h)) is not None and s.view == view:
            h += 1
        return h

    def send_preprepare(self, h: int, block_hash: bytes, block: Block, built: bool = False) -> None:
        """Propose `block` at `h` in the current view (a fresh block this replica's application `built`,
        or a re-proposal a new view forces)."""
        if built:
            self._executed.add(block_hash)
        self._blocks[block_hash] = block
        body = PrePrepare(self._views.view, h, block_hash, block.header.prev_hash)
        env = self._ctx.signer.sign(body, encode(block))
        self._accept(self._slot(h), body, env.signature, env)
        self._ctx.out.broadcast(env)

    # --- views, catch-up, garbage collection, restart ---------------------------------------------

    def reset_view(self) -> None:
        """A view change: forget every slot's current-view state (proofs and decisions stay)."""
        for slot in self._slots.values():
            slot.reset_view()

    def forget_certificates_upto(self, height: int) -> None:
        """Blocks up to `height` were applied by catch-up."""
        self._certs = {h: c for h, c in self._certs.items() if h > height}

    def collect_garbage(self, upto: int) -> None:
        """Forget (and delete from persisted state) everything at or below a stable checkpoint."""
        for h, slot in self._slots.items():
            block = self._blocks.get(slot.block_hash)
            if self._head.height < h <= upto and block is not None:
                self._queue.unmark(block.txs)  # not delivered here: let them be proposed again
        for table in (self._slots, self._votes, self._my_votes, self._certs):
            for h in [h for h in table if h <= upto]:
                del table[h]
        self._reported = {r for r in self._reported if r[3] > upto}
        for block_hash in [bh for bh, b in self._blocks.items() if b.header.height <= upto]:
            del self._blocks[block_hash]
            self._executed.discard(block_hash)
            self._persisted_blocks.discard(block_hash)
        self._head.forget_below(upto - self._ctx.config.watermark_window)
        self._views.forget_expected_upto(upto)
        self._ctx.out.delete_upto(upto)

    def restore(self, persisted: PersistedState) -> None:
        """After a restart: blocks, prepared proofs and votes above the delivered height."""
        for block in persisted.blocks:
            block_hash = compute_block_hash(block.header)
            self._blocks[block_hash] = block
            self._persisted_blocks.add(block_hash)
        for h, proof in persisted.prepared.items():
            self._slot(h).proof = proof
        for h, vote in persisted.votes.items():
            env = self._ctx.signer.sign(Vote(h, vote.view, vote.block_hash))  # Ed25519 is deterministic
            self._my_votes[h] = env
            self._votes.setdefault(h, {})[self._ctx.signer.id] = (vote.block_hash, vote.view, env.signature)

    def restore_current_view(self, accepted: dict[int, AcceptedRecord]) -> None:
        """Take up again what this replica signed in its current view (signatures re-made alike)."""
        view, me = self._views.view, self._ctx.signer.id
        is_primary = self._views.primary == me
        for h, rec in sorted(accepted.items()):
            if rec.view != view:
                continue
            block = self._blocks.get(rec.block_hash)
            # Marked accepted even without the block: no other block is ever signed here.
            slot = self._slot(h)
            slot.view = rec.view
            slot.block_hash, slot.prev_hash, slot.preprepare_signature = (
                rec.block_hash, rec.prev_hash, rec.preprepare_signature,
            )
            if is_primary and block is not None:
                body = PrePrepare(rec.view, h, rec.block_hash, rec.prev_hash)
                slot.my_preprepare = self._ctx.signer.sign(body, encode(block))
            elif not is_primary:
                slot.my_prepare = self._ctx.signer.sign(Prepare(rec.view, h, rec.block_hash))
                slot.prepares[me] = (rec.block_hash, slot.my_prepare.signature)
            proof = slot.proof
            if proof is not None and proof.view == rec.view and proof.block_hash == rec.block_hash:
                slot.prepared = True
                slot.my_commit = self._ctx.signer.sign(Commit(rec.view, h, rec.block_hash))
                slot.commits[me] = (rec.block_hash, slot.my_commit.signature)
                for s in proof.prepares:
                    slot.prepares.setdefault(s.validator, (rec.block_hash, s.signature))

    def _set(self, height: int) -> Quorums:
        """The validators that order `height` (the replica drops messages about heights it cannot know)."""
        return self._ctx.membership.at(height)

    def _slot(self, height: int) -> Slot:
        slot = self._slots.get(height)
        if slot is None:
            slot = self._slots[height] = Slot(height)
        return slot
