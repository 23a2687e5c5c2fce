"""State module: the validator set, and its changes by governance (`validator.add|remove|rotate`).

Theory of operation. Genesis names the first set. Each change is an admin action
(`TxContext.require_admin`, so it runs once the admins' threshold approves it, `ledger.governance`)
and stores the whole new set as a `ValidatorSet` record, numbered from 1. A change committed at height
h takes effect at height `h + ACTIVATION_DELAY`: blocks up to that height minus one are certified by
the set before, blocks from it on by the new one.

Why a fixed delay: every node learns of a change when it delivers block h, and a primary never
proposes more than `max_inflight` heights above what it delivered (the replica requires
`max_inflight < ACTIVATION_DELAY`), so the set of any height a replica orders is already in its
committed state; it never has to guess. Why not the next checkpoint: the checkpoint interval is each
node's own setting, not a rule of the chain.

One change at a time: a change is refused while the one before has not taken effect. So the block
that commits change i lies at or above change i-1's activation, and is certified by set i-1: a
proof from after any number of changes walks them from genesis, each certified by the set before.

Validators are in primary-rotation order. An added validator goes to the end; a rotated one keeps
its place, host and port under its new key (its id, derived from the key, changes with it). The
record carries each validator's host and port, so the other nodes dial a new one without editing
their configuration; genesis validators have none (host "", port 0): their nodes' `peers` list
names them, as before.

State keys (each covered by the generic state proof): `val/count` (the changes so far; absent: none)
and `val/s/<seq>` (set `seq`, 8 bytes big-endian). A chain without changes stores nothing here, so
its state and hashes stay as they were before this module existed.

`validators_at(view, height, genesis)` answers "the validators at height h" for consensus, catch-up,
proofs and anchor attestations. `view` must hold the committed state at height h - ACTIVATION_DELAY
or later (any change that took effect by h was committed by then).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from ledger.crypto import PUBLIC_KEY_LEN, derive_id
from ledger.genesis import Genesis
from ledger.members import VALIDATOR_KINDS, lookup_sender
from ledger.state import Handler, SenderInfo, SenderLookup, StateView, TxContext, get_record
from ledger.tx import Reject, TxRejected, register_kind

ACTIVATION_DELAY = 16  # heights between the block committing a change and the first it governs
MAX_VALIDATORS = 64  # consensus messages are sized for sets up to this (ledger/consensus/bounds.py)
MAX_HOST_LEN = 253  # a DNS name
COUNT_KEY = b"val/count"


@dataclass(frozen=True)
class Validator:
    id: str  # derive_id(public_key)
    public_key: bytes
    host: str  # where its peer port listens; "" for genesis validators (their nodes' `peers` name them)
    port: int  # 0 with host ""


@dataclass(frozen=True)
class ValidatorSet:
    seq: int  # 0 for genesis, then 1, 2, ... in the order the changes committed
    active_from: int  # the first height this set certifies
    validators: tuple[Validator, ...]  # primary-rotation order
    change: str  # genesis, add, remove or rotate
    committed_height: int  # the block whose transaction made the change (0 for genesis)
    tx_id: str  # hex id of that transaction ("" for genesis)


@dataclass(frozen=True)
class ValidatorAdd:
    public_key: bytes
    host: str
    port: int


@dataclass(frozen=True)
class ValidatorRemove:
    validator: str  # id


@dataclass(frozen=True)
class ValidatorRotate:
    validator: str  # id
    public_key: bytes  # the new key


# --- keys and queries ------------------------------------------------------------------------------


def set_key(seq: int) -> bytes:
    return b"val/s/" + seq.to_bytes(8, "big")


def change_count(view: StateView) -> int:
    return get_record(view, int, COUNT_KEY) or 0


def genesis_set(genesis: Genesis) -> ValidatorSet:
    validators = tuple(Validator(derive_id(v.public_key), v.public_key, "", 0) for v in genesis.validators)
    return ValidatorSet(0, 1, validators, "genesis", 0, "")


def get_set(view: StateView, seq: int, genesis: Genesis) -> ValidatorSet:
    """Set `seq` (0: genesis's)."""
    if seq == 0:
        return genesis_set(genesis)
    found = get_record(view, ValidatorSet, set_key(seq))
    if found is None:
        raise KeyError(f"no validator set {seq}")
    return found


def latest_set(view: StateView, genesis: Genesis) -> ValidatorSet:
    """The last set decided, in force or scheduled."""
    return get_set(view, change_count(view), genesis)


def set_at(view: StateView, height: int, genesis: Genesis) -> ValidatorSet:
    """The set that certifies block `height` (see the module docstring for which `view` may answer)."""
    for seq in range(change_count(view), 0, -1):
        found = get_set(view, seq, genesis)
        if found.active_from <= height:
            return found
    return genesis_set(genesis)


def validators_at(view: StateView, height: int, genesis: Genesis) -> tuple[Validator, ...]:
    """The validators at height `height`, in primary-rotation order: the one function quorums, certificate
    checks and anchor attestations count against."""
    return set_at(view, height, genesis).validators


def keys_of(validators: tuple[Validator, ...]) -> dict[str, bytes]:
    """Validator id -> public key, in rotation order."""
    return {v.id: v.public_key for v in validators}


def sets_from(view: StateView, height: int, genesis: Genesis) -> list[ValidatorSet]:
    """The set in force at `height` and every one decided after it, in order."""
    latest = change_count(view)
    first = set_at(view, height, genesis).seq
    return [get_set(view, seq, genesis) for seq in range(first, latest + 1)]


# --- handlers --------------------------------------------------------------------------------------


def _check_key(public_key: bytes, current: tuple[Validator, ...]) -> None:
    # A validator key is a raw Ed25519 public key.
    if len(public_key) != PUBLIC_KEY_LEN:
        raise TxRejected(Reject.INVALID_VALUE, "public_key must be 32 bytes")
    # Each key appears once in a set.
    if any(v.public_key == public_key for v in current):
        raise TxRejected(Reject.ALREADY_EXISTS, f"{derive_id(public_key)} is a validator already")


def _find(validator_id: str, current: tuple[Validator, ...]) -> int:
    for i, v in enumerate(current):
        if v.id == validator_id:
            return i
    raise TxRejected(Reject.NOT_FOUND, f"{validator_id} is not a validator")


class ValidatorsModule:
    """Owns the `val/` keys: the sets after genesis's."""

    def __init__(self, genesis: Genesis) -> None:
        self._genesis = genesis
        self.handlers: Mapping[str, Handler] = {
            "validator.add": self.process_add,
            "validator.remove": self.process_remove,
            "validator.rotate": self.process_rotate,
        }

    def _current(self, ctx: TxContext) -> ValidatorSet:
        latest = latest_set(ctx.state, self._genesis)
        # One change at a time: the last one has taken effect (so each is certified by the set before it).
        if latest.active_from > ctx.height:
            raise TxRejected(Reject.LOCKED, f"validator set {latest.seq} takes effect at height {latest.active_from}; "
                                            "propose the next change from then on")
        return latest

    def _store(self, ctx: TxContext, before: ValidatorSet, validators: tuple[Validator, ...], change: str) -> None:
        seq = before.seq + 1
        ctx.put(set_key(seq), ValidatorSet(seq, ctx.height + ACTIVATION_DELAY, validators, change, ctx.height,
                                           ctx.tx_id.hex()))
        ctx.put(COUNT_KEY, seq)

    def process_add(self, ctx: TxContext, p: ValidatorAdd) -> None:
        ctx.require_admin()
        before = self._current(ctx)
        _check_key(p.public_key, before.validators)
        # The others must be able to dial it: a host name or address, and a port.
        if not 0 < len(p.host) <= MAX_HOST_LEN or not p.host.isprintable() or " " in p.host:
            raise TxRejected(Reject.INVALID_VALUE, f"host must be 1-{MAX_HOST_LEN} printable characters, no spaces")
        if not 0 < p.port < 65536:
            raise TxRejected(Reject.INVALID_VALUE, "port must be 1-65535")
        # Consensus messages are sized for at most this many validators.
        if len(before.validators) >= MAX_VALIDATORS:
            raise TxRejected(Reject.INVALID_VALUE, f"a set has at most {MAX_VALIDATORS} validators")
        added = Validator(derive_id(p.public_key), p.public_key, p.host, p.port)
        self._store(ctx, before, (*before.validators, added), "add")

    def process_remove(self, ctx: TxContext, p: ValidatorRemove) -> None:
        ctx.require_admin()
        before = self._current(ctx)
        index = _find(p.validator, before.validators)
        # Someone must remain to certify blocks.
        if len(before.validators) == 1:
            raise TxRejected(Reject.INVALID_VALUE, "the last validator cannot be removed")
        self._store(ctx, before, before.validators[:index] + before.validators[index + 1:], "remove")

    def process_rotate(self, ctx: TxContext, p: ValidatorRotate) -> None:
        ctx.require_admin()
        before = self._current(ctx)
        index = _find(p.validator, before.validators)
        _check_key(p.public_key, before.validators)
        old = before.validators[index]
        new = replace(old, id=derive_id(p.public_key), public_key=p.public_key)
        self._store(ctx, before, before.validators[:index] + (new,) + before.validators[index + 1:], "rotate")


def validator_sender_lookup(genesis: Genesis) -> SenderLookup:
    """`ledger.members.lookup_sender`, extended to validators: those of genesis and of the last set decided.

    A validator that is not a member may send the system kinds of VALIDATOR_KINDS only, with the
    `validator` role. A validator that is also a member keeps its member rights and gains the role.
    """
    genesis_keys = genesis.validator_keys()

    def lookup(view: StateView, sender_id: str) -> SenderInfo | None:
        info = lookup_sender(view, sender_id)
        key = genesis_keys.get(sender_id)
        if key is None and change_count(view):
            key = keys_of(latest_set(view, genesis).validators).get(sender_id)
        if key is None:
            return info
        if info is None:
            return SenderInfo(key, ("validator",), VALIDATOR_KINDS)
        return SenderInfo(info.public_key, tuple(sorted({*info.roles, "validator"})), info.kinds)

    return lookup


register_kind("validator.add", ValidatorAdd)
register_kind("validator.remove", ValidatorRemove)
register_kind("validator.rotate", ValidatorRotate)
