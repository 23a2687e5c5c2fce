"""The PBFT replica (Castro-Liskov): sans-I/O, driven by `submit`, `step`, `tick`, answering with actions.

Theory of operation
-------------------
Sequence numbers are block heights: block h+1 follows committed block h. The primary of view v is
`validators[v % n]`. The normal case for one height runs four phases:

1. PRE-PREPARE: the primary cuts a batch (by size, or after `batch_ticks`), has the application
   build the block on its previous in-flight block (pipelining, up to `max_inflight` heights above
   the last delivered one, below the high watermark) and broadcasts it.
2. PREPARE: a backup accepts one pre-prepare per (view, height), only if it extends the block it
   accepted at height-1 in the same view and the application re-executes it to the same header;
   it persists the acceptance, then broadcasts a prepare.
3. COMMIT: with the pre-prepare and 2f matching prepares, and once prepared at height-1 too, the
   replica is *prepared*; it persists the prepared proof, then broadcasts a commit.
4. VOTE: with 2f+1 matching commits the block is decided (PBFT committed-local). Only now does the
   replica sign the certificate vote (`chain.CommitVote` under DOMAIN_COMMIT) and broadcast it.
   2f+1 votes form the `chain.CommitCertificate`; blocks are delivered strictly in height order.

Why a fourth phase: a certificate vote does not name the view it was cast in (the certificate's
view is the block header's view), so votes cast in different views add up. Signing votes only for
decided blocks makes every honest vote at a height name the one decided block: a replica never
votes for two blocks at one height, and any 2f+1 votes certify the decided block.

Checkpoints: after delivering a multiple of `checkpoint_interval`, a replica broadcasts a signed
checkpoint; 2f+1 matching ones make it stable: the low watermark moves up and the log and the
persisted state below it are deleted.

The shape: components that each own their state and are handed only the components they need
(never the replica), layered so that each asks only the ones below it:

    replica      public interface; the checks every incoming message passes; wiring
    timers       progress, new-view and request timers; retransmission          (timers.py)
    viewchange   view change and new view; future-view messages              (viewchange.py, newview.py)
    catchup      being behind, helping peers behind                              (catchup.py)
    ordering     the log and the normal case: accept, prepare, commit, vote, deliver
    proposer     the primary's batches and the blocks built on them              (proposer.py)
    head, views, checkpoints, txqueue    delivered chain; view and its timers; watermarks; queue
    outbox, clock, quorums, messages     actions out; ticks; quorum sizes and primaries; wire format

Time arrives only as `tick()`. With one validator the same code runs with quorum 1: a submit of
`batch_size` transactions (or the tick after `batch_ticks`) cuts a batch and returns its `Deliver`
at once; nothing is sent or persisted, since no peer can ever see a conflicting message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ledger.chain import CommitCertificate
from ledger.codec import encode
from ledger.consensus.actions import Action
from ledger.consensus.application import Application, ApplicationError
from ledger.consensus.catchup import CatchUp
from ledger.consensus.checkpoints import Checkpoints
from ledger.consensus.clock import Clock
from ledger.consensus.context import Context
from ledger.consensus.head import Head
from ledger.consensus.log import KEY_CERTIFICATE, read_persisted
from ledger.consensus.membership import Membership
from ledger.consensus.messages import (
    KIND_NEWVIEW,
    Checkpoint,
    Commit,
    Envelope,
    MalformedMessage,
    NewView,
    Prepare,
    PrePrepare,
    SignatureChecker,
    Signer,
    Suspect,
    ViewChange,
    Vote,
    decode_body,
    decode_envelope,
)
from ledger.consensus.newview import InvalidNewView, InvalidViewChange
from ledger.consensus.ordering import Orderer
from ledger.consensus.outbox import Outbox
from ledger.consensus.settings import ReplicaConfig, check_config
from ledger.consensus.timers import Timers
from ledger.consensus.txqueue import TxQueue
from ledger.consensus.viewchange import ViewChanger
from ledger.consensus.views import ViewState
from ledger.crypto import SigningKey
from ledger.errors import ConfigError

METRICS = (
    "dropped_malformed", "dropped_sender_mismatch", "dropped_non_validator", "dropped_from_self",
    "dropped_bad_signature", "dropped_out_of_window", "dropped_stale", "dropped_invalid",
    "dropped_queue_full", "equivocations", "invalid_blocks", "untimely_blocks", "view_changes", "new_views",
    "blocks_delivered", "fetch_requests", "txs_forwarded", "txs_dropped_unordered", "internal_errors",
    "equivocations_reported", "suspected_stalled", "suspected_passed_over", "suspected_unordered",
)


class Replica:
    def __init__(
        self,
        config: ReplicaConfig,
        key: SigningKey,
        app: Application,
        validator_keys: Mapping[str, bytes] | None = None,
        persisted: Mapping[bytes, bytes] | None = None,
        later_sets: Sequence[tuple[int, Sequence[str]]] = (),
    ) -> None:
        """`config.validators` is genesis's set; `later_sets` (active_from, validators) every one the chain
        decided since (`Membership`); `validator_keys` covers every validator named."""
        check_config(config)
        named = {*config.validators, *(v for _, vs in later_sets for v in vs)}
        if validator_keys is None:
            if len(named) != 1:
                raise ConfigError("validator_keys are needed with more than one validator")
            validator_keys = {key.id: key.public_key}
        if any(v not in validator_keys for v in named):
            raise ConfigError("validator_keys lacks a validator's public key")
        self.config = config
        self.id = key.id
        self.metrics: dict[str, int] = dict.fromkeys(METRICS, 0)
        delivered = app.committed_height()
        self.head = Head(delivered)
        membership = self._membership = Membership(config.validators, self.head, config.activation_delay)
        for active_from, validators in later_sets:
            membership.schedule(active_from, validators)
        self._checker = SignatureChecker(config.chain_id, {v: validator_keys[v] for v in named})
        self._clock = Clock()
        out = self._out = Outbox(lambda: self._membership.current.n == 1, self.metrics)
        ctx = Context(config, membership, Signer(key, config.chain_id), out, self._clock, self.metrics)
        self.views = ViewState(membership, config.view_change_ticks, config.max_backoff_exponent,
                               config.request_timeout_ticks)
        self.checkpoints = Checkpoints(ctx, delivered)
        self._queue = TxQueue(config.max_pending_txs)
        self.orderer = Orderer(ctx, app, self.head, self.views, self.checkpoints, self._queue)
        self._catchup = CatchUp(ctx, self.head, self.views, self.checkpoints, self.orderer)
        self.viewchanger = ViewChanger(
            ctx, self._checker, self.head, self.views, self.checkpoints, self._queue, self.orderer, self._catchup,
        )
        self._timers = Timers(
            ctx, self.head, self.views, self.checkpoints, self._queue, self.orderer, self._catchup, self.viewchanger,
        )
        if persisted:
            self._restore(persisted)

    # --- public interface ------------------------------------------------------------------------

    @property
    def view(self) -> int:
        return self.views.view

    @property
    def primary(self) -> str:
        return self.views.primary

    @property
    def pending(self) -> int:
        return len(self._queue)

    @property
    def height(self) -> int:
        """The last height this replica delivered (or was told was committed)."""
        return self.head.height

    def submit(self, txs: Sequence[bytes]) -> list[Action]:
        """Queue client transactions (already admitted by the driver); a backup forwards them."""
        self._begin()
        added, refused = self._queue.add(txs, self._clock.now)
        self.metrics["dropped_queue_full"] += refused
        if added and self.views.active and self.views.primary == self.id:
            # A tx that came back (a restart emptied the mempool, a backup forwarded its queue to a new
            # primary) while a block of this view carries it waits for that block: never in two blocks.
            self._queue.mark_proposed(self.orderer.in_flight(added))
        if added and self._membership.current.n > 1:
            if self.views.active and self.views.primary != self.id:
                self._out.forward(added, (self.views.primary,))
            elif not self.views.active:
                # No primary to trust right now: every validator gets them.
                self._out.forward(added, self._membership.current.others(self.id))
        self.orderer.advance()
        return self._out.take()

    def withdraw(self, txs: Sequence[bytes]) -> None:
        """The host refused queued transactions for good (their nonce was used): they leave the queue."""
        self._queue.remove(txs)

    def step(self, sender: str, message: bytes) -> list[Action]:
        """An encoded, signed consensus message from peer `sender`.

        Never raises for anything a peer sends; raises ApplicationError when the application fails
        (the driver stops the node: a local failure is no evidence against any peer).
        """
        self._begin()
        try:
            self._dispatch(sender, message)
        except MalformedMessage:
            self.metrics["dropped_malformed"] += 1
        except (InvalidViewChange, InvalidNewView):
            self.metrics["dropped_invalid"] += 1
        except ApplicationError:
            raise
        except Exception:  # a bug must not let a peer's message take the replica down
            self.metrics["internal_errors"] += 1
        return self._out.take()

    def tick(self) -> list[Action]:
        self._begin()
        self._clock.tick()
        if self.views.active and self.views.primary == self.id:
            self.orderer.tick_batch()
        if self._membership.current.n > 1:
            self._timers.on_tick()
        self.orderer.advance()
        return self._out.take()

    def notify_committed(
        self, height: int, block_hash: bytes, certificate: CommitCertificate | None = None,
        txs: Sequence[bytes] = (),
    ) -> list[Action]:
        """The driver applied a certified block fetched by catch-up (pass its certificate and
        transactions when at hand: the certificate keeps view changes small, the transactions leave
        the queue)."""
        self._begin()
        if height > self.head.height:
            now = self._clock.now
            matches = certificate is not None and (certificate.height, certificate.block_hash) == (height, block_hash)
            self.head.record_applied(height, block_hash, certificate if matches else None, now)
            self.checkpoints.raise_low(height - self.config.watermark_window // 2)
            if matches:
                self._out.persist(KEY_CERTIFICATE, encode(certificate))
            self._queue.remove(txs)
            self.orderer.forget_certificates_upto(height)
            self.views.progressed(now)
            if self.checkpoints.is_due(height):
                self._on_stable(self.checkpoints.send(height, block_hash))
            self.orderer.advance()
        return self._out.take()

    def schedule_validators(self, active_from: int, validators: Sequence[str], keys: Mapping[str, bytes]) -> None:
        """The committed chain decided the set certifying heights from `active_from` on (the driver calls
        this when it applies the block that decided it, before the replica delivers more)."""
        for v in validators:
            self._checker.keys.setdefault(v, keys[v])
        self._membership.schedule(active_from, validators)

    def is_validator(self) -> bool:
        """This replica's key is in the set of the height it delivers next."""
        return self.id in self._membership.current.validators

    # --- plumbing --------------------------------------------------------------------------------

    def _begin(self) -> None:
        self._out.take()  # nothing is left over from an earlier call that raised
        self.head.begin_call()

    def _on_stable(self, height: int | None) -> None:
        """A checkpoint became stable: collect the garbage below it; fetch what we have not delivered."""
        if height is None:
            return
        self.orderer.collect_garbage(height)
        if height > self.head.height:
            self._catchup.maybe_fetch()

    def _restore(self, persisted: Mapping[bytes, bytes]) -> None:
        """Rebuild from everything this replica persisted before a restart (see log.py)."""
        state = read_persisted(persisted, self.head.height)
        if state.view is not None:
            self.views.restore(state.view.view, state.view.changing)
        self._out.note_persisted(state.height_keys)
        self.orderer.restore(state)
        if state.checkpoint is not None:
            self.checkpoints.restore(state.checkpoint)
        self.head.restore(state.certificate)
        if self.views.active:
            self.orderer.restore_current_view(state.accepted)
        self.viewchanger.restore(state.new_view, changing=not self.views.active)

    # --- receiving -------------------------------------------------------------------------------

    def _dispatch(self, sender: str, message: bytes) -> None:
        env = decode_envelope(message)
        # The transport-authenticated sender is the one the message names, but for a new view: it
        # proves itself (its primary's signature over 2f+1 signed view changes), so a validator passes
        # it on to a peer its primary left out (ViewChanger.reply_new_view).
        if env.sender != sender and env.kind != KIND_NEWVIEW:
            self.metrics["dropped_sender_mismatch"] += 1
            return
        # Only validators take part.
        if sender not in self._checker.keys:
            self.metrics["dropped_non_validator"] += 1
            return
        # A replica does not talk to itself (a twin sharing its key would).
        if self.id in (sender, env.sender):
            self.metrics["dropped_from_self"] += 1
            return
        body = decode_body(env)
        if isinstance(body, PrePrepare | Prepare | Commit):
            self._receive_ordering(sender, env, body)
        elif isinstance(body, Vote):
            self._receive_vote(sender, env, body)
        elif isinstance(body, Checkpoint):
            self._receive_checkpoint(sender, env, body)
        elif not self._is_current(sender):
            return
        elif isinstance(body, ViewChange):
            if self._verified(env, body):
                self.viewchanger.receive_view_change(sender, env, body)
        elif isinstance(body, NewView):
            if self._verified(env, body):
                self.viewchanger.receive_new_view(env.sender, env, body)
        elif isinstance(body, Suspect) and self._verified(env, body):
            self.viewchanger.receive_suspect(sender, env, body)

    def _is_current(self, sender: str) -> bool:
        """View changes, new views and suspicions come from the current set (the next height's)."""
        if sender in self._membership.current.validators:
            return True
        self.metrics["dropped_non_validator"] += 1
        return False

    def _is_member_at(self, sender: str, height: int) -> bool:
        """Messages about one height come from that height's set, which this replica must know."""
        if not self._membership.knows(height):
            self.metrics["dropped_out_of_window"] += 1
            return False
        if sender not in self._membership.at(height).validators:
            self.metrics["dropped_non_validator"] += 1
            return False
        return True

    def _verified(self, env: Envelope, body: Any) -> bool:
        if self._checker.envelope(env, body):
            return True
        self.metrics["dropped_bad_signature"] += 1
        return False

    def _in_window(self, height: int, floor: int) -> bool:
        """Above `floor` (else stale) and not beyond the high watermark; drops are counted."""
        if height <= floor:
            self.metrics["dropped_stale"] += 1
            return False
        if height > self.checkpoints.high:
            self.metrics["dropped_out_of_window"] += 1
            return False
        return True

    def _receive_ordering(self, sender: str, env: Envelope, body: PrePrepare | Prepare | Commit) -> None:
        # Beyond this replica's pipeline: a genuine one shows the sender delivered blocks we have not.
        if not self._note_ahead(sender, env, body, body.height - self.config.max_inflight):
            return
        if not self._is_member_at(sender, body.height):
            return
        # Within the watermarks.
        if not self._in_window(body.height, self.checkpoints.low):
            return
        if not self._verified(env, body):
            return
        if body.height <= self.head.height:
            # Still ordering a height we delivered: the sender is behind; show it our votes.
            self._catchup.help_peer(sender, body.height - 1)
        self.viewchanger.note_view(sender, body.view)
        if body.view < self.views.view:
            self.metrics["dropped_stale"] += 1
            self.viewchanger.reply_new_view(sender)
            return
        if body.view > self.views.view or not self.views.active:
            self.viewchanger.buffer_future(sender, body.view, env, body)
            return
        self.orderer.handle_ordering(sender, env, body)

    def _receive_vote(self, sender: str, env: Envelope, body: Vote) -> None:
        # A vote is cast for a decided block: a genuine one beyond our pipeline shows we are behind.
        if not self._note_ahead(sender, env, body, body.height - self.config.max_inflight):
            return
        if not self._is_member_at(sender, body.height):
            return
        # Above what this replica delivered, within the high watermark.
        if not self._in_window(body.height, self.head.height):
            return
        if not self._verified(env, body):
            return
        self.orderer.receive_vote(sender, env, body)

    def _note_ahead(self, sender: str, env: Envelope, body: Any, delivered_by_sender: int) -> bool:
        """For a message showing its sender delivered beyond us: check its signature (False: drop it)
        and let catch-up count the sender as ahead. Other messages pass unchecked (True)."""
        if delivered_by_sender <= self.head.height:
            return True
        if not self._verified(env, body):
            return False
        self._catchup.note_ahead(sender, delivered_by_sender)
        return True

    def _receive_checkpoint(self, sender: str, env: Envelope, body: Checkpoint) -> None:
        checkpoints = self.checkpoints
        # Checkpoints come at multiples of the interval.
        if not checkpoints.is_checkpoint_height(body.height):
            self.metrics["dropped_invalid"] += 1
            return
        if checkpoints.is_stale(body.height):
            self.metrics["dropped_stale"] += 1
            if self._verified(env, body):
                self._catchup.help_peer(sender, body.height)  # the sender is behind: tell it how far we are
            return
        if not self._verified(env, body):
            return
        checkpoints.note_claim(sender, body.height)
        if body.height > checkpoints.high:
            # Evidence that this replica is behind; nothing to keep.
            self.metrics["dropped_out_of_window"] += 1
            self._catchup.maybe_fetch()
            return
        if not self._is_member_at(sender, body.height):
            return
        self._on_stable(checkpoints.add(sender, body, env.signature))
        self.orderer.advance()
