"""The deterministic state machine: applies an ordered batch of transactions over modules.

Theory of operation: state is a flat map of byte keys to canonical record bytes. A block executes
on a `BlockOverlay` above the committed state; each transaction executes on its own overlay above
that. The envelope is checked first (decodes, right chain, active member, signature under the
member's *current* key, next nonce); a transaction failing those changes nothing at all. A valid
envelope consumes its nonce, then the module handler runs; if the handler raises `TxRejected`,
its overlay is dropped, so a failed transaction changes nothing but its sender's nonce (which
keeps the signed bytes from being replayed later, as in Ethereum).

Admin actions: a handler calls `ctx.require_admin()` before it writes. Outside an approved proposal that
raises `ApprovalRequired`; the handler's writes are dropped and the module that decides admin actions
(an `AdminGate`, `ledger.governance`) gets the transaction: it runs the action at once (a threshold of
one) or stores a proposal, and later runs it through `run_action` with `approved_by` set.

Before a block's transactions, modules that keep per-block state (`BlockHook`: the anchoring module keeps
the parent's hash) see the block's height and parent hash; modules with work that falls due in time
(`TimedHook`: the market returns the escrow of expired offers) see its height and time.

Nothing here reads a clock or iterates an unordered collection into a result: the block's changes
come out sorted by key, and time is the header's timestamp.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar, runtime_checkable

from ledger.codec import CodecError, decode, encode
from ledger.crypto import verify_digest
from ledger.tx import (
    Reject,
    SignedTx,
    TxRejected,
    check_tx_stateless,
    compute_signing_digest,
    compute_tx_id,
    decode_tx,
)

R = TypeVar("R")


class StateView(Protocol):
    def get(self, key: bytes) -> bytes | None: ...


class Overlay:
    """Buffered writes over a base view; `None` in `changes` marks a deletion."""

    def __init__(self, base: StateView) -> None:
        self.base = base
        self.changes: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        if key in self.changes:
            return self.changes[key]
        return self.base.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self.changes[key] = value

    def delete(self, key: bytes) -> None:
        self.changes[key] = None

    def merge_into(self, target: Overlay) -> None:
        target.changes.update(self.changes)


# Decoded state records, by type and bytes: members and prefixes are read by every tx of a block.
# Records are frozen, so sharing one decoded object is safe.
_record_memo: dict[tuple[type, bytes], Any] = {}
_RECORD_MEMO_LIMIT = 8192


def get_record(view: StateView, cls: type[R], key: bytes) -> R | None:
    raw = view.get(key)
    if raw is None:
        return None
    memo_key = (cls, raw)
    record = _record_memo.get(memo_key)
    if record is None:
        record = decode(cls, raw, trusted=True)  # state bytes were encoded by this node
        if len(_record_memo) >= _RECORD_MEMO_LIMIT:
            _record_memo.clear()
        _record_memo[memo_key] = record
    return typing.cast(R, record)


class ApprovalRequired(Exception):
    """Raised by `TxContext.require_admin` outside an approved proposal: the state machine hands the
    transaction to the module that decides admin actions (`ledger.governance`)."""


@dataclass(frozen=True)
class TxContext:
    """What a module handler sees: the sender, the block's height and time, and the state."""

    state: Overlay
    sender: str
    roles: tuple[str, ...]
    height: int
    timestamp: int
    tx_id: bytes
    # The admins whose approvals this execution carries out (set by ledger.governance; empty otherwise).
    approved_by: tuple[str, ...] = ()

    def get(self, cls: type[R], key: bytes) -> R | None:
        return get_record(self.state, cls, key)

    def put(self, key: bytes, record: Any) -> None:
        self.state.put(key, encode(record))

    def delete(self, key: bytes) -> None:
        self.state.delete(key)

    def require_role(self, role: str) -> None:
        if role not in self.roles:
            raise TxRejected(Reject.UNAUTHORIZED, f"sender lacks the {role} role")

    def require_admin(self) -> None:
        """Mark an admin action: it runs only as the admins' threshold approves it (ledger.governance).
        Call it before writing anything; outside an approved proposal it ends the handler."""
        # Inside an approved proposal the admins have decided.
        if self.approved_by:
            return
        # Only an admin proposes an admin action.
        self.require_role("admin")
        raise ApprovalRequired


Handler = Callable[[TxContext, Any], None]


class Module(Protocol):
    """A state module: the tx kinds it handles (their payload types are registered in ledger.tx)."""

    handlers: Mapping[str, Handler]


@runtime_checkable
class BlockHook(Protocol):
    """A module that writes state at the start of every block, before its transactions."""

    def begin_block(self, state: Overlay, height: int, prev_hash: bytes) -> None: ...


@runtime_checkable
class TimedHook(Protocol):
    """A module with work that falls due at a block time, done at the start of a block, before its transactions."""

    def begin_block_at(self, state: Overlay, height: int, timestamp: int) -> None: ...


# Runs the handler of a tx kind on a context: how the governance module executes an approved action.
ActionRunner = Callable[[TxContext, str, Any], None]


@runtime_checkable
class AdminGate(Protocol):
    """The module that decides admin actions (`ledger.governance.GovernanceModule`)."""

    def bind(self, run: ActionRunner) -> None:
        """Receive the way to run an approved action through the module that owns its kind."""

    def on_admin_action(self, ctx: TxContext, kind: str, payload: Any) -> None:
        """An admin's action reached `require_admin` (ctx has a fresh overlay): run it or propose it."""


@dataclass(frozen=True)
class TxResult:
    tx_id: bytes
    ok: bool
    reason: str  # "" when ok, else a Reject value
    message: str


@dataclass(frozen=True)
class SenderInfo:
    public_key: bytes
    roles: tuple[str, ...]
    kinds: frozenset[str] | None = None  # the only tx kinds this sender may send; None = any


# Resolves a sender id to its key and roles in the given view, or None if not an active member.
SenderLookup = Callable[[StateView, str], SenderInfo | None]


def nonce_key(sender: str) -> bytes:
    return b"nonce/" + sender.encode()


def get_nonce(view: StateView, sender: str) -> int:
    raw = view.get(nonce_key(sender))
    return 0 if raw is None else decode(int, raw, trusted=True)


class VerifiedCache:
    """Transactions this node already decoded and verified, keyed by tx id (the hash of its bytes).

    Reusing a verification between admission and execution within one node is allowed; every node
    still verifies every transaction itself. The decoded tx and payload are kept too, so the bytes
    are not decoded again at execution (same id, same bytes, same decoding). The mempool fills it
    and sizes it (`ledger.mempool.MAX_VERIFIED`); the oldest entries go first when it is full.
    """

    def __init__(self, limit: int) -> None:
        self._seen: dict[bytes, tuple[bytes, SignedTx, Any]] = {}
        self._limit = limit

    def add(self, tx_id: bytes, public_key: bytes, tx: SignedTx, payload: Any) -> None:
        if len(self._seen) >= self._limit:
            self._seen.pop(next(iter(self._seen)))
        self._seen[tx_id] = (public_key, tx, payload)

    def get(self, tx_id: bytes) -> tuple[bytes, SignedTx, Any] | None:
        return self._seen.get(tx_id)

    def discard(self, tx_ids: Iterable[bytes]) -> None:
        for t in tx_ids:
            self._seen.pop(t, None)


# --- the envelope checks admission (ledger.mempool) and execution share ------------------------


def signature_claim(raw: bytes, tx: SignedTx, public_key: bytes) -> tuple[bytes, bytes, bytes]:
    """(public key, digest, signature): what `ledger.crypto.verify_many` checks for `tx` under `public_key`."""
    return public_key, compute_signing_digest(raw, tx), tx.signature


def check_signature(ok: bool) -> None:
    """Raise the rejection of a signature that did not verify (`ok` is the verifier's verdict)."""
    # The signature is the sender's, under its current key.
    if not ok:
        raise TxRejected(Reject.BAD_SIGNATURE, "signature does not verify under the sender's key")


def check_nonce(view: StateView, tx: SignedTx, *, gap_allowed: bool) -> None:
    """The nonce is the sender's next one; at admission (`gap_allowed`) it may lie further ahead,
    since the sender's pending transactions fill the gap before it executes."""
    expected = get_nonce(view, tx.sender) + 1
    # Lower is a replay: that nonce was consumed, so the tx can never execute.
    if tx.nonce < expected:
        raise TxRejected(Reject.REPLAYED_NONCE, f"nonce {tx.nonce} already used (next is {expected})")
    # Higher leaves a gap.
    if tx.nonce > expected and not gap_allowed:
        raise TxRejected(Reject.NONCE_GAP, f"nonce {tx.nonce} skips ahead (next is {expected})")


class StateMachine:
    def __init__(self, chain_id: str, modules: Iterable[Module], sender_lookup: SenderLookup) -> None:
        self.chain_id = chain_id
        self.handlers: dict[str, Handler] = {}
        for module in modules:
            for kind, handler in module.handlers.items():
                if kind in self.handlers:
                    raise ValueError(f"two modules handle {kind!r}")
                self.handlers[kind] = handler
        self.sender_lookup = sender_lookup
        self.block_hooks = [m for m in modules if isinstance(m, BlockHook)]
        self.timed_hooks = [m for m in modules if isinstance(m, TimedHook)]
        gates = [m for m in modules if isinstance(m, AdminGate)]
        if len(gates) > 1:
            raise ValueError("two modules decide admin actions")
        # Without a governance module an admin's action runs at once (a threshold of one).
        self.gate = gates[0] if gates else None
        if self.gate is not None:
            self.gate.bind(self.run_action)

    def run_action(self, ctx: TxContext, kind: str, payload: Any) -> None:
        self.handlers[kind](ctx, payload)

    def execute_block(
        self,
        block_state: Overlay,
        txs: Iterable[bytes],
        height: int,
        timestamp: int,
        verified: VerifiedCache | None = None,
        prev_hash: bytes | None = None,
    ) -> list[TxResult]:
        """Execute `txs` in order on `block_state`, which collects the block's changes; with the parent's
        hash, the block hooks and the timed hooks run first."""
        if prev_hash is not None:
            for hook in self.block_hooks:
                hook.begin_block(block_state, height, prev_hash)
            for timed in self.timed_hooks:
                timed.begin_block_at(block_state, height, timestamp)
        return [self.execute_tx(block_state, raw, height, timestamp, verified) for raw in txs]

    def execute_tx(
        self,
        block_state: Overlay,
        raw: bytes,
        height: int,
        timestamp: int,
        verified: VerifiedCache | None = None,
    ) -> TxResult:
        tx_id = compute_tx_id(raw)
        try:
            tx, payload, sender = self.check_envelope(block_state, raw, tx_id, verified)
        except TxRejected as exc:
            return TxResult(tx_id, False, exc.reason.value, exc.message)
        # A valid envelope consumes its nonce, whether or not the payload succeeds.
        block_state.put(nonce_key(tx.sender), encode(tx.nonce))
        tx_state = Overlay(block_state)
        ctx = TxContext(tx_state, tx.sender, sender.roles, height, timestamp, tx_id)
        try:
            try:
                self.handlers[tx.kind](ctx, payload)
            except ApprovalRequired:
                # An admin action: what the handler wrote before asking is dropped; governance decides.
                tx_state = Overlay(block_state)
                ctx = replace(ctx, state=tx_state)
                if self.gate is None:
                    self.run_action(replace(ctx, approved_by=(ctx.sender,)), tx.kind, payload)
                else:
                    self.gate.on_admin_action(ctx, tx.kind, payload)
        except TxRejected as exc:
            return TxResult(tx_id, False, exc.reason.value, exc.message)
        except CodecError as exc:  # a stored record that does not decode is a handler bug; fail the tx
            return TxResult(tx_id, False, Reject.INVALID_VALUE.value, str(exc))
        tx_state.merge_into(block_state)
        return TxResult(tx_id, True, "", "")

    def check_sender(self, view: StateView, tx: SignedTx) -> SenderInfo:
        """The sender may send this kind of transaction, as of `view`; raises TxRejected."""
        # The kind is handled by a module of this state machine.
        if tx.kind not in self.handlers:
            raise TxRejected(Reject.UNKNOWN_KIND, f"no module handles {tx.kind!r}")
        # The sender is an active member.
        sender = self.sender_lookup(view, tx.sender)
        if sender is None:
            raise TxRejected(Reject.UNKNOWN_SENDER, f"{tx.sender} is not an active member")
        # A sender limited to some kinds (a validator sending system transactions) sends only those.
        if sender.kinds is not None and tx.kind not in sender.kinds:
            raise TxRejected(Reject.UNAUTHORIZED, f"{tx.sender} may not send {tx.kind!r}")
        return sender

    def check_envelope(
        self, view: StateView, raw: bytes, tx_id: bytes, verified: VerifiedCache | None
    ) -> tuple[SignedTx, Any, SenderInfo]:
        """Every check of a transaction that does not run its payload; raises TxRejected.

        This is the consensus rule: every validator runs it on every tx at execution. Admission
        (`ledger.mempool`) runs the same checks before ordering, so what it accepts passes here.
        """
        known = verified.get(tx_id) if verified is not None else None
        if known is not None:
            verified_key, tx, payload = known
        else:
            verified_key, tx = b"", decode_tx(raw)
            payload = check_tx_stateless(tx, self.chain_id)
        sender = self.check_sender(view, tx)
        # A verification under another key (the sender rotated it since) does not count.
        if verified_key != sender.public_key:
            check_signature(verify_digest(*signature_claim(raw, tx, sender.public_key)))
            if verified is not None:
                verified.add(tx_id, sender.public_key, tx, payload)
        check_nonce(view, tx, gap_allowed=False)
        return tx, payload, sender
