"""Checkpoints, garbage collection, catch-up, timers and restart of a replica.

Theory of operation
-------------------
`Recovery` is the collaborator of a `Replica` for everything that keeps it bounded and brings it
back after trouble; the state lives on the replica.

- Checkpoints: after delivering a multiple of K a replica broadcasts a signed checkpoint; 2f+1
  matching ones are a stable checkpoint. The low watermark moves to it, and the log, the votes,
  the blocks and every persisted per-height record at or below it are deleted.
- Catch-up: a replica is behind when a stable checkpoint or an installed new view's base lies
  above it, when f+1 validators' checkpoints are above it, or when it holds a certificate it
  cannot deliver in order for a while. It then emits `FetchBlocks` (rate-limited); the driver's
  `notify_committed` calls bring it forward. A replica that sees a peer behind (a stale checkpoint,
  a view change with a low base) sends that peer its checkpoint and its recent votes, so even
  idle peers give a lagging replica the evidence it needs.
- Timers (ticks): the progress timer (in-flight work without a delivery for the timeout starts
  a view change), the request timer (a backup's oldest queued client tx waiting longer than
  `request_timeout_ticks` starts one; a tx that survives `max_tx_strikes` of them is dropped as
  unorderable), the new-view timer (runs only once 2f+1 want the view, as in Castro-Liskov), and
  retransmission of this replica's own messages while stalled. Timeouts double per consecutive
  view change, capped, and reset on delivery.
- Restart: everything persisted (see log.py) is read back; signatures of the current view are
  re-made (Ed25519 is deterministic, so they are byte-identical), never new ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ledger.chain import Block, CommitCertificate, ValidatorSignature, compute_block_hash
from ledger.codec import CodecError, decode, encode
from ledger.consensus.actions import FetchBlocks, Send
from ledger.consensus.log import (
    KEY_CERTIFICATE,
    KEY_CHECKPOINT,
    KEY_NEWVIEW,
    KEY_VIEW,
    PREFIX_ACCEPTED,
    PREFIX_BLOCK,
    PREFIX_PREPARED,
    PREFIX_VOTE,
    AcceptedRecord,
    CorruptConsensusState,
    ViewRecord,
    VoteRecord,
    parse_height_key,
)
from ledger.consensus.messages import (
    Checkpoint,
    CheckpointProof,
    Commit,
    Envelope,
    Prepare,
    PreparedProof,
    PrePrepare,
    Vote,
    decode_body,
    decode_envelope,
    encode_envelope,
)

if TYPE_CHECKING:
    from ledger.consensus.replica import Replica


class Recovery:
    """Checkpoints, garbage collection, catch-up, timers and restart (a collaborator of the replica)."""

    def __init__(self, replica: Replica) -> None:
        self.r = replica

    def receive_checkpoint(self, sender: str, env: Envelope, body: Checkpoint) -> None:
        r = self.r
        k = r.config.checkpoint_interval
        # Checkpoints come at multiples of the interval.
        if body.height == 0 or body.height % k:
            r.metrics["dropped_invalid"] += 1
            return
        if r._stable is not None and body.height <= r._stable.height:
            r.metrics["dropped_stale"] += 1
            if r._verified(env, body):
                self.help_peer(sender, body.height)  # the sender is behind: tell it how far we are
            return
        if not r._verified(env, body):
            return
        if body.height > r._claims.get(sender, 0):
            r._claims[sender] = body.height
        if body.height > r._high():
            # Evidence that this replica is behind; nothing to keep.
            r.metrics["dropped_out_of_window"] += 1
            self.maybe_fetch()
            return
        r._checkpoints.setdefault(body.height, {}).setdefault(sender, (body.block_hash, env.signature))
        self.check_stable(body.height)
        r._ord.advance()

    def send_checkpoint(self, height: int, block_hash: bytes) -> None:
        r = self.r
        env = r._sign(Checkpoint(height, block_hash))
        r._my_checkpoint = env
        r._checkpoints.setdefault(height, {})[r.id] = (block_hash, env.signature)
        r._broadcast(env)
        self.check_stable(height)

    def check_stable(self, height: int) -> None:
        r = self.r
        if r._stable is not None and height <= r._stable.height:
            return
        tally: dict[bytes, list[ValidatorSignature]] = {}
        for sender, (block_hash, sig) in r._checkpoints.get(height, {}).items():
            tally.setdefault(block_hash, []).append(ValidatorSignature(sender, sig))
        for block_hash, sigs in tally.items():
            if len(sigs) >= r._q:
                sigs.sort(key=lambda s: s.validator)
                r._stable = CheckpointProof(height, block_hash, tuple(sigs))
                r._persist(KEY_CHECKPOINT, encode(r._stable))
                r._low = max(r._low, height)
                self.collect_garbage(height)
                if height > r._delivered:
                    self.maybe_fetch()
                return

    def collect_garbage(self, upto: int) -> None:
        """Forget (and delete from persisted state) everything at or below a stable checkpoint."""
        r = self.r
        for h, slot in r._slots.items():
            block = r._blocks.get(slot.block_hash)
            if r._delivered < h <= upto and block is not None:
                r._queue.unmark(block.txs)  # not delivered here: let them be proposed again
        for table in (r._slots, r._votes, r._my_votes, r._certs):
            for h in [h for h in table if h <= upto]:
                del table[h]
        for h in [h for h in r._checkpoints if h < upto]:
            del r._checkpoints[h]
        for block_hash in [bh for bh, b in r._blocks.items() if b.header.height <= upto]:
            del r._blocks[block_hash]
            r._executed.discard(block_hash)
            r._persisted_blocks.discard(block_hash)
        floor = upto - r.config.watermark_window
        for h in [h for h in r._delivered_hashes if h < floor and h != r._delivered]:
            del r._delivered_hashes[h]
        r._expected = {h: bh for h, bh in r._expected.items() if h > upto}
        for h in sorted(h for h in r._height_keys if h <= upto):
            for key in sorted(r._height_keys.pop(h)):
                r._persist(key, b"")

    def help_peer(self, sender: str, height: int) -> None:
        """A peer showed it is at `height`, below us: send it our latest checkpoint and our votes
        above its height, the evidence it needs to catch up (rate-limited per peer)."""
        r = self.r
        last = r._helped.get(sender)
        if height >= r._delivered or (last is not None and r._now - last < r.config.retransmit_ticks):
            return
        r._helped[sender] = r._now
        if r._my_checkpoint is not None and decode_body(r._my_checkpoint).height > height:
            r._out.append(Send(sender, encode_envelope(r._my_checkpoint)))
        for h in sorted(r._my_votes):
            if height < h <= r._delivered:
                r._out.append(Send(sender, encode_envelope(r._my_votes[h])))

    def is_fetchable_behind(self) -> bool:
        """Others delivered blocks above ours (so the primary is not what holds us back)."""
        r = self.r
        d = r._delivered
        # A stable checkpoint or an installed new view's base lies above us.
        if (r._stable is not None and r._stable.height > d) or r._nv_base > d:
            return True
        # f+1 validators (so at least one honest) delivered beyond us.
        claims = sorted(r._claims.values(), reverse=True)
        weak = r._quorums.weak
        return len(claims) >= weak and claims[weak - 1] > d

    def is_behind(self) -> bool:
        r = self.r
        if self.is_fetchable_behind():
            return True
        # A certificate above us that we cannot deliver in order.
        stalled = r._now - r._last_delivery >= r.config.retransmit_ticks
        return stalled and any(h > r._delivered for h in r._certs)

    def maybe_fetch(self) -> None:
        r = self.r
        if r._n == 1 or r._now - r._last_fetch < r.config.fetch_retry_ticks:
            return
        if self.is_behind():
            r._last_fetch = r._now
            r.metrics["fetch_requests"] += 1
            r._out.append(FetchBlocks(r._delivered + 1))

    def timeout(self) -> int:
        r = self.r
        return r.config.view_change_ticks << min(r._backoff, r.config.max_backoff_exponent)

    def has_work(self) -> bool:
        """In-flight ordering that should make progress (queued client txs have their own timer)."""
        r = self.r
        d = r._delivered
        if any(h > d for h in r._certs) or any(h > d for h in r._expected):
            return True
        return any(h > d and (s.view == r._view or s.pending is not None) for h, s in r._slots.items())

    def check_timers(self) -> None:
        r = self.r
        if r._active:
            if not self.has_work() or self.is_fetchable_behind():
                # Nothing in flight, or the others are deciding blocks we must fetch: the primary
                # is not the problem.
                r._last_progress = r._now
            elif r._now - r._last_progress >= self.timeout():
                r._vc.start(r._view + 1)
        elif r._vc.log.count_at_least(r._view) < r._q:
            # Castro-Liskov: the timer for the next view runs only once 2f+1 replicas want this view
            # (an isolated replica keeps repeating its view change instead of racing ahead).
            r._vc_started = r._now
        elif r._now - r._vc_started >= self.timeout():
            r._vc.start(r._view + 1)

    def check_censorship(self) -> None:
        r = self.r
        if self.is_fetchable_behind():
            return  # our queue may hold txs of blocks we have not fetched yet
        while (oldest := r._queue.oldest()) is not None:
            tx, entry = oldest
            if r._now - entry.arrival < r.config.request_timeout_ticks:
                return
            if entry.strikes >= r.config.max_tx_strikes:
                # It survived view changes unordered: invalid or already committed elsewhere.
                r._queue.drop(tx)
                r.metrics["txs_dropped_unordered"] += 1
                continue
            entry.strikes += 1
            entry.arrival = r._now
            r._vc.start(r._view + 1)
            return

    def retransmit(self) -> None:
        r = self.r
        r._last_retransmit = r._now
        if not r._active:
            if r._vc.my_vc is not None:
                r._broadcast(r._vc.my_vc)
            return
        for h in sorted(r._slots):
            slot = r._slots[h]
            if h <= r._delivered or slot.view != r._view:
                continue
            for env in (slot.my_preprepare, slot.my_prepare, slot.my_commit):
                if env is not None:
                    r._broadcast(env)
        for h in sorted(r._my_votes):
            if h > r._delivered - r.config.max_inflight:
                r._broadcast(r._my_votes[h])
        if r._my_checkpoint is not None:
            r._broadcast(r._my_checkpoint)

    def restore(self, persisted: Mapping[bytes, bytes]) -> None:
        """Rebuild from everything this replica persisted before a restart (see log.py)."""
        try:
            self.restore_records(persisted)
        except (CodecError, ValueError) as exc:
            raise CorruptConsensusState(f"persisted consensus state does not decode: {exc}") from exc

    def restore_records(self, persisted: Mapping[bytes, bytes]) -> None:
        r = self.r
        accepted: dict[int, AcceptedRecord] = {}
        for key, value in sorted(persisted.items()):
            if not value:
                continue
            if key == KEY_VIEW:
                record = decode(ViewRecord, value)
                r._view, r._active = record.view, not record.changing
            elif key == KEY_CERTIFICATE:
                r._last_cert = decode(CommitCertificate, value)
            elif key == KEY_CHECKPOINT:
                r._stable = decode(CheckpointProof, value)
            elif key == KEY_NEWVIEW:
                env = decode_envelope(value)
                r._vc.new_view = (decode_body(env).view, value)
            parsed = parse_height_key(key)
            if parsed is None:
                continue
            prefix, h, _ = parsed
            r._height_keys.setdefault(h, set()).add(key)
            if h <= r._delivered:
                continue
            if prefix == PREFIX_BLOCK:
                block = decode(Block, value)
                block_hash = compute_block_hash(block.header)
                r._blocks[block_hash] = block
                r._persisted_blocks.add(block_hash)
            elif prefix == PREFIX_ACCEPTED:
                accepted[h] = decode(AcceptedRecord, value)
            elif prefix == PREFIX_PREPARED:
                r._slot(h).proof = decode(PreparedProof, value)
            elif prefix == PREFIX_VOTE:
                vote = decode(VoteRecord, value)
                env = r._sign(Vote(h, vote.view, vote.block_hash))  # Ed25519 is deterministic
                r._my_votes[h] = env
                r._votes.setdefault(h, {})[r.id] = (vote.block_hash, vote.view, env.signature)
        if r._stable is not None:
            r._low = max(r._low, r._stable.height)
            r._my_checkpoint = r._sign(Checkpoint(r._stable.height, r._stable.block_hash))
            r._announce = True
        if r._last_cert is not None and r._last_cert.height == r._delivered:
            r._head_hash = r._last_cert.block_hash
            r._delivered_hashes[r._delivered] = r._head_hash
        if r._active:
            self.restore_current_view(accepted)
        else:
            r._vc.rebuild_my_view_change()

    def restore_current_view(self, accepted: Mapping[int, AcceptedRecord]) -> None:
        """Take up again what this replica signed in its current view (signatures re-made alike)."""
        r = self.r
        for h, rec in sorted(accepted.items()):
            block = r._blocks.get(rec.block_hash)
            if rec.view != r._view:
                continue
            # Marked accepted even without the block: no other block is ever signed here.
            slot = r._slot(h)
            slot.view = rec.view
            slot.block_hash, slot.prev_hash, slot.preprepare_signature = (
                rec.block_hash, rec.prev_hash, rec.preprepare_signature,
            )
            if r.primary == r.id and block is not None:
                body = PrePrepare(rec.view, h, rec.block_hash, rec.prev_hash)
                slot.my_preprepare = r._sign(body, encode(block))
            elif r.primary != r.id:
                slot.my_prepare = r._sign(Prepare(rec.view, h, rec.block_hash))
                slot.prepares[r.id] = (rec.block_hash, slot.my_prepare.signature)
            proof = slot.proof
            if proof is not None and proof.view == rec.view and proof.block_hash == rec.block_hash:
                slot.prepared = True
                slot.my_commit = r._sign(Commit(rec.view, h, rec.block_hash))
                slot.commits[r.id] = rec.block_hash
                for s in proof.prepares:
                    slot.prepares.setdefault(s.validator, (rec.block_hash, s.signature))
