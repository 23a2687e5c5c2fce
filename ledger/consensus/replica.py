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

This module holds the state, the public interface and the checks every incoming message passes
(decodes, sender is the authenticated peer and a validator, within the watermarks, signature,
view); the transitions live in collaborators that hold the replica: `ordering.Orderer` (the
normal case above), `viewchange.ViewChanger` (view change and new view), `recovery.Recovery`
(checkpoints, garbage collection, catch-up, timers, restart). `log.py` has the slots, the
transaction queue and the persistence key scheme; `messages.py` the wire format.

Time arrives only as `tick()`: batching, the progress timer (view change when in-flight work makes
no progress, doubling on consecutive view changes), the request timer (a backup's queued client
transaction not ordered in `request_timeout_ticks` triggers a view change: censorship resistance),
retransmission while stalled, and catch-up (`FetchBlocks` when f+1 checkpoints, a stable
checkpoint, a new view's base or a certificate show certified blocks this replica cannot reach).

With one validator the same code runs with quorum 1: a submit of `batch_size` transactions (or
the tick after `batch_ticks`) cuts a batch and returns its `Deliver` at once; nothing is sent or
persisted, since no peer can ever see a conflicting message.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ledger.chain import Block, CommitCertificate
from ledger.codec import encode
from ledger.consensus.actions import Action, Broadcast, ForwardTxs, Persist
from ledger.consensus.app import Application
from ledger.consensus.log import (
    KEY_CERTIFICATE,
    Slot,
    TxQueue,
    parse_height_key,
)
from ledger.consensus.messages import (
    Checkpoint,
    CheckpointProof,
    Commit,
    Envelope,
    MalformedMessage,
    NewView,
    Prepare,
    PrePrepare,
    SignatureChecker,
    ViewChange,
    Vote,
    decode_body,
    decode_envelope,
    encode_envelope,
    sign_message,
)
from ledger.consensus.ordering import Orderer
from ledger.consensus.quorum import quorum_size, weak_quorum_size
from ledger.consensus.recovery import Recovery
from ledger.consensus.viewchange import InvalidNewView, InvalidViewChange, Quorums, ViewChanger, compute_primary
from ledger.crypto import SigningKey


class ConfigError(ValueError):
    """A replica configuration that cannot work; the text says which setting."""


@dataclass(frozen=True)
class ReplicaConfig:
    chain_id: str
    validators: tuple[str, ...]  # validator ids in primary-rotation order
    batch_size: int = 1000
    batch_ticks: int = 1  # cut a partial batch after this many ticks
    checkpoint_interval: int = 10  # K: a checkpoint every K blocks
    watermark_window: int = 40  # high watermark = low watermark (stable checkpoint) + this
    max_inflight: int = 4  # pipelining depth above the last delivered block
    view_change_ticks: int = 20  # base progress timeout; doubles per consecutive view change
    max_backoff_exponent: int = 6
    request_timeout_ticks: int = 50  # a backup's queued tx not ordered by then -> view change
    max_tx_strikes: int = 2  # view changes one unordered tx may cause before it is dropped
    retransmit_ticks: int = 5  # while stalled, resend own messages this often
    fetch_retry_ticks: int = 10
    max_pending_txs: int = 200_000
    max_buffered_per_peer: int = 64  # messages for a future view kept per peer


def check_config(cfg: ReplicaConfig) -> None:
    # There are validators, each listed once.
    if not cfg.validators or len(set(cfg.validators)) != len(cfg.validators):
        raise ConfigError("validators must be a non-empty list of distinct ids")
    # Every count and period is positive.
    for name in ("batch_size", "batch_ticks", "checkpoint_interval", "max_inflight", "view_change_ticks",
                 "request_timeout_ticks", "retransmit_ticks", "fetch_retry_ticks", "max_pending_txs",
                 "max_buffered_per_peer", "max_tx_strikes"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be at least 1")
    # The window leaves room for a checkpoint interval and the pipeline above it.
    if cfg.watermark_window < cfg.checkpoint_interval + cfg.max_inflight:
        raise ConfigError("watermark_window must be at least checkpoint_interval + max_inflight")


METRICS = (
    "dropped_malformed", "dropped_sender_mismatch", "dropped_non_validator", "dropped_from_self",
    "dropped_bad_signature", "dropped_out_of_window", "dropped_stale", "dropped_invalid",
    "dropped_queue_full", "equivocations", "invalid_blocks", "view_changes", "new_views",
    "blocks_delivered", "fetch_requests", "txs_forwarded", "txs_dropped_unordered", "internal_errors",
)


class Replica:
    def __init__(
        self,
        config: ReplicaConfig,
        key: SigningKey,
        app: Application,
        validator_keys: Mapping[str, bytes] | None = None,
        persisted: Mapping[bytes, bytes] | None = None,
    ) -> None:
        check_config(config)
        if key.id not in config.validators:
            raise ConfigError("this replica's key is not one of the validators")
        if validator_keys is None:
            if len(config.validators) != 1:
                raise ConfigError("validator_keys are needed with more than one validator")
            validator_keys = {key.id: key.public_key}
        if any(v not in validator_keys for v in config.validators):
            raise ConfigError("validator_keys lacks a validator's public key")
        self.config = config
        self.key = key
        self.app = app
        self.id = key.id
        self._n = len(config.validators)
        self._q = quorum_size(self._n)
        self._quorums = Quorums(config.validators, self._q, weak_quorum_size(self._n))
        self._checker = SignatureChecker(config.chain_id, {v: validator_keys[v] for v in config.validators})
        self.metrics: dict[str, int] = dict.fromkeys(METRICS, 0)
        self._out: list[Action] = []
        # view state
        self._view = 0
        self._active = True
        self._vc = ViewChanger(self)
        self._ord = Orderer(self)
        self._rec = Recovery(self)
        self._expected: dict[int, bytes] = {}  # re-proposals the installed new view forces
        self._nv_base = 0
        self._future: dict[str, deque[tuple[int, Envelope, Any]]] = {}
        # chain state
        self._delivered = app.committed_height()
        self._applied = self._delivered
        self._head_hash: bytes | None = None
        self._delivered_hashes: dict[int, bytes] = {}
        self._last_cert: CommitCertificate | None = None
        self._stable: CheckpointProof | None = None
        self._low = self._delivered
        # log
        self._slots: dict[int, Slot] = {}
        self._blocks: dict[bytes, Block] = {}
        self._executed: set[bytes] = set()
        self._votes: dict[int, dict[str, tuple[bytes, int, bytes]]] = {}
        self._my_votes: dict[int, Envelope] = {}
        self._certs: dict[int, CommitCertificate] = {}
        self._checkpoints: dict[int, dict[str, tuple[bytes, bytes]]] = {}
        self._my_checkpoint: Envelope | None = None
        self._helped: dict[str, int] = {}
        self._claims: dict[str, int] = {}
        self._height_keys: dict[int, set[bytes]] = {}
        self._persisted_blocks: set[bytes] = set()
        self._queue = TxQueue(config.max_pending_txs)
        # timers (in ticks)
        self._now = 0
        self._waited = 0
        self._last_progress = 0  # the progress (view-change) timer starts here
        self._last_delivery = 0
        self._vc_started = 0
        self._backoff = 0
        self._last_retransmit = 0
        self._last_fetch = -(10**9)
        self._advancing = False
        self._changed = False
        self._announce = False  # after a restart: broadcast our checkpoint once, peers answer with theirs
        if persisted:
            self._rec.restore(persisted)

    # --- public interface ------------------------------------------------------------------------

    @property
    def view(self) -> int:
        return self._view

    @property
    def primary(self) -> str:
        return compute_primary(self.config.validators, self._view)

    @property
    def pending(self) -> int:
        return len(self._queue)

    @property
    def height(self) -> int:
        """The last height this replica delivered (or was told was committed)."""
        return self._delivered

    def submit(self, txs: Sequence[bytes]) -> list[Action]:
        """Queue client transactions (already admitted by the driver); a backup forwards them."""
        self._begin()
        added, refused = self._queue.add(txs, self._now)
        self.metrics["dropped_queue_full"] += refused
        if added and self._n > 1:
            if self._active and self.primary != self.id:
                self._forward(added, self.primary)
            elif not self._active:
                self._forward(added)  # no primary to trust right now: every validator gets them
        self._ord.advance()
        return self._end()

    def step(self, sender: str, message: bytes) -> list[Action]:
        """An encoded, signed consensus message from peer `sender`. Never raises."""
        self._begin()
        try:
            self._dispatch(sender, message)
        except MalformedMessage:
            self.metrics["dropped_malformed"] += 1
        except (InvalidViewChange, InvalidNewView):
            self.metrics["dropped_invalid"] += 1
        except Exception:  # a bug must not let a peer's message take the replica down
            self.metrics["internal_errors"] += 1
        return self._end()

    def tick(self) -> list[Action]:
        self._begin()
        self._now += 1
        if self._active and self.primary == self.id:
            self._ord.tick_batch()
        if self._n > 1:
            if self._active and self.primary != self.id:
                self._rec.check_censorship()
            self._rec.check_timers()
            if self._announce and self._my_checkpoint is not None:
                self._announce = False
                self._broadcast(self._my_checkpoint)
            waited = self._now - self._last_delivery >= self.config.retransmit_ticks
            stalled = not self._active or (waited and self._rec.has_work())
            if stalled and self._now - self._last_retransmit >= self.config.retransmit_ticks:
                self._rec.retransmit()
            self._rec.maybe_fetch()
        self._ord.advance()
        return self._end()

    def notify_committed(
        self, height: int, block_hash: bytes, certificate: CommitCertificate | None = None,
        txs: Sequence[bytes] = (),
    ) -> list[Action]:
        """The driver applied a certified block fetched by catch-up (pass its certificate and
        transactions when at hand: the certificate keeps view changes small, the transactions leave
        the queue)."""
        self._begin()
        if height > self._delivered:
            self._delivered = self._applied = height
            self._head_hash = block_hash
            self._delivered_hashes[height] = block_hash
            self._low = max(self._low, height - self.config.watermark_window // 2)
            if certificate is not None and (certificate.height, certificate.block_hash) == (height, block_hash):
                self._last_cert = certificate
                self._persist(KEY_CERTIFICATE, encode(certificate))
            self._queue.remove(txs)
            self._certs = {h: c for h, c in self._certs.items() if h > height}
            self._last_progress = self._last_delivery = self._now
            if height % self.config.checkpoint_interval == 0:
                self._rec.send_checkpoint(height, block_hash)
            self._ord.advance()
        return self._end()

    # --- plumbing --------------------------------------------------------------------------------

    def _begin(self) -> None:
        self._out = []
        self._applied = self._delivered  # the driver applied every Deliver returned so far

    def _end(self) -> list[Action]:
        out, self._out = self._out, []
        return out

    def _forward(self, txs: Sequence[bytes], to: str | None = None) -> None:
        """Hand client txs to `to` (the primary), or to every other validator when None."""
        targets = [to] if to is not None else [v for v in self.config.validators if v != self.id]
        for v in targets:
            self._out.append(ForwardTxs(v, tuple(txs)))
        self.metrics["txs_forwarded"] += len(txs)

    def _persist(self, key: bytes, value: bytes) -> None:
        if self._n == 1:
            return
        parsed = parse_height_key(key)
        if parsed is not None:
            keys = self._height_keys.setdefault(parsed[1], set())
            if value:
                keys.add(key)
            else:
                keys.discard(key)
        self._out.append(Persist(key, value))

    def _broadcast(self, env: Envelope) -> None:
        if self._n > 1:
            self._out.append(Broadcast(encode_envelope(env)))

    def _sign(self, body: Any, attachment: bytes = b"") -> Envelope:
        return sign_message(self.key, self.config.chain_id, body, attachment)

    def _primary_of(self, view: int) -> str:
        return compute_primary(self.config.validators, view)

    def _high(self) -> int:
        return self._low + self.config.watermark_window

    def _slot(self, height: int) -> Slot:
        slot = self._slots.get(height)
        if slot is None:
            slot = self._slots[height] = Slot(height)
        return slot

    # --- receiving -------------------------------------------------------------------------------

    def _dispatch(self, sender: str, message: bytes) -> None:
        env = decode_envelope(message)
        # The transport-authenticated sender is the one the message names.
        if env.sender != sender:
            self.metrics["dropped_sender_mismatch"] += 1
            return
        # Only validators take part.
        if sender not in self._checker.keys:
            self.metrics["dropped_non_validator"] += 1
            return
        # A replica does not talk to itself (a twin sharing its key would).
        if sender == self.id:
            self.metrics["dropped_from_self"] += 1
            return
        body = decode_body(env)
        if isinstance(body, PrePrepare | Prepare | Commit):
            self._receive_ordering(sender, env, body)
        elif isinstance(body, Vote):
            self._receive_vote(sender, env, body)
        elif isinstance(body, Checkpoint):
            self._rec.receive_checkpoint(sender, env, body)
        elif isinstance(body, ViewChange):
            if self._verified(env, body):
                self._vc.receive_view_change(sender, env, body)
        elif isinstance(body, NewView) and self._verified(env, body):
            self._vc.receive_new_view(sender, env, body)

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
        if height > self._high():
            self.metrics["dropped_out_of_window"] += 1
            return False
        return True

    def _receive_ordering(self, sender: str, env: Envelope, body: PrePrepare | Prepare | Commit) -> None:
        # Within the watermarks.
        if not self._in_window(body.height, self._low):
            return
        if not self._verified(env, body):
            return
        self._vc.log.note_view(sender, body.view)
        if body.view < self._view:
            self.metrics["dropped_stale"] += 1
            self._vc.reply_new_view(sender)
            return
        if body.view > self._view or not self._active:
            self._buffer_future(sender, body.view, env, body)
            self._vc.maybe_join()
            return
        self._ord.handle_ordering(sender, env, body)

    def _buffer_future(self, sender: str, view: int, env: Envelope, body: Any) -> None:
        buf = self._future.get(sender)
        if buf is None:
            buf = self._future[sender] = deque(maxlen=self.config.max_buffered_per_peer)
        buf.append((view, env, body))

    def _replay_future(self) -> None:
        for sender, buf in list(self._future.items()):
            items = list(buf)
            buf.clear()
            for view, env, body in items:
                if view > self._view:
                    buf.append((view, env, body))
                elif view == self._view:
                    self._ord.handle_ordering(sender, env, body)

    def _receive_vote(self, sender: str, env: Envelope, body: Vote) -> None:
        # Above what this replica delivered, within the high watermark.
        if not self._in_window(body.height, self._delivered):
            return
        if not self._verified(env, body):
            return
        votes = self._votes.setdefault(body.height, {})
        if sender not in votes:
            votes[sender] = (body.block_hash, body.view, env.signature)
            self._ord.check_certified(body.height)
            self._ord.advance()

    # --- the normal case -------------------------------------------------------------------------

    # --- proposing -------------------------------------------------------------------------------

    # --- checkpoints and garbage collection ------------------------------------------------------

    # --- timers, retransmission, catch-up --------------------------------------------------------

    # --- view changes (logic in viewchange.py) ---------------------------------------------------

    # --- restart ---------------------------------------------------------------------------------
