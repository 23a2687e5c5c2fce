"""State module: M-of-N governance. Admin actions are proposals that run once M admins approve them.

Theory of operation. An admin action is a transaction whose handler calls `ctx.require_admin()`
(members: `member.add`, `member.roles`, `member.remove`; registry: `prefix.create` of a top-level
prefix; the validator set and the anchoring settings are meant to follow the same way). Outside an
approved proposal that call raises `ApprovalRequired`, and the state machine hands the transaction to
`GovernanceModule.on_admin_action`:

- its sender is an admin (checked by `require_admin`);
- with a threshold M of 1 the action runs at once, in the same transaction, and no proposal is stored:
  one admin's word is the whole decision, and the transaction itself is the record (as before
  governance existed, so a plain devnet behaves and hashes as it did);
- otherwise the action is tried on a scratch overlay (a proposal that could not run now is refused
  with the action's own reason), and a `Proposal` is stored with the proposer's approval. Its id is
  `sha256("proposal:" || tx id)` in hex, so the proposer knows it from its transaction alone.

`governance.approve` adds an admin's approval. When the approvals of admins who are *still* active
admins reach M, the owning module's handler runs the action in the same transaction (through the
`ActionRunner` the state machine gives this module: no module writes another's state), with
`approved_by` naming those admins, and the proposal becomes `executed`. If the action fails then (the
state changed since it was proposed), the approving transaction fails with the action's reason and
nothing changes: the proposal stays open until it expires or is rejected.

`governance.reject` adds an admin's rejection. A proposal is `rejected` once it can no longer pass:
when the active admins who have not rejected it are fewer than M (with N admins: N - M + 1 rejections).
A single rejection does not kill a proposal unless M = N: otherwise one rogue admin could veto every
admin action, its own removal included.

Each admin votes once per proposal (an approval or a rejection, final). Votes count until the
proposal's `expires_at` (block time, genesis `expiry_ms` after the proposal); from then on it is
expired, which nothing writes: readers derive it from the record and the block time (`status_at`).
Time, not height, because approvals are human-paced and an idle ledger makes no blocks.

Invariant kept here: after every admin action the active admins are at least M, so the admins can
always reach the threshold (an action that would leave fewer is refused, whoever approved it).

State keys (each covered by the generic state proof): `gov/settings` (the threshold and expiry, from
genesis; absent on older genesis files: M = 1), `gov/p/<id>` (a proposal), `gov/count` (proposals so
far) and `gov/n/<seq>` (the id of the seq-th proposal, seq from 1, 8 bytes big-endian), for listing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from ledger.codec import decode, encode
from ledger.crypto import sha256
from ledger.members import active_admins
from ledger.state import ActionRunner, Handler, Overlay, StateView, TxContext, get_record
from ledger.tx import PAYLOAD_TYPES, Reject, TxRejected, register_kind

DEFAULT_EXPIRY_MS = 7 * 24 * 3600 * 1000  # a week
SETTINGS_KEY = b"gov/settings"
COUNT_KEY = b"gov/count"

OPEN, EXECUTED, REJECTED, EXPIRED = "open", "executed", "rejected", "expired"
STATUSES = (OPEN, EXECUTED, REJECTED, EXPIRED)


@dataclass(frozen=True)
class GovernanceSettings:
    approvals: int  # M: the admin approvals an admin action needs
    expiry_ms: int  # how long a proposal takes votes, in block time


DEFAULT_SETTINGS = GovernanceSettings(1, DEFAULT_EXPIRY_MS)


@dataclass(frozen=True)
class Proposal:
    id: str  # hex sha256("proposal:" || proposing tx id)
    seq: int  # its place in the order of proposals, from 1
    kind: str  # the action's tx kind, e.g. member.remove
    payload: bytes  # the action's canonical payload (the record type registered for `kind`)
    proposer: str
    tx_id: str  # hex id of the proposing transaction
    created_height: int
    created_at: int  # ms, block time
    expires_at: int  # ms, block time from which votes are refused
    approvals: tuple[str, ...]  # member ids, in the order they approved
    rejections: tuple[str, ...]
    status: str  # open, executed or rejected (expired is derived: see status_at)
    closed_height: int  # where it was executed or rejected; 0 while open


@dataclass(frozen=True)
class ProposalVote:
    proposal: str  # the proposal id


# --- keys and queries ------------------------------------------------------------------------------


def proposal_key(proposal_id: str) -> bytes:
    return b"gov/p/" + proposal_id.encode()


def seq_key(seq: int) -> bytes:
    return b"gov/n/" + seq.to_bytes(8, "big")


def compute_proposal_id(tx_id: bytes) -> str:
    return sha256(b"proposal:" + tx_id).hex()


def get_settings(view: StateView) -> GovernanceSettings:
    return get_record(view, GovernanceSettings, SETTINGS_KEY) or DEFAULT_SETTINGS


def get_proposal(view: StateView, proposal_id: str) -> Proposal | None:
    return get_record(view, Proposal, proposal_key(proposal_id))


def proposal_count(view: StateView) -> int:
    return get_record(view, int, COUNT_KEY) or 0


def proposal_id_at(view: StateView, seq: int) -> str | None:
    raw = view.get(seq_key(seq))
    return None if raw is None else raw.decode()


def status_at(proposal: Proposal, timestamp: int) -> str:
    """The proposal's status at block time `timestamp`: open, executed, rejected or expired."""
    if proposal.status == OPEN and timestamp >= proposal.expires_at:
        return EXPIRED
    return proposal.status


def counted_approvals(view: StateView, proposal: Proposal) -> tuple[str, ...]:
    """The approvals that count now: those of admins who are still active admins."""
    admins = set(active_admins(view) or ())
    return tuple(a for a in proposal.approvals if a in admins)


def action_payload(proposal: Proposal) -> Any:
    """The decoded action (a payload record of `proposal.kind`)."""
    return decode(PAYLOAD_TYPES[proposal.kind], proposal.payload, trusted=True)


def settings_state(settings: GovernanceSettings) -> dict[bytes, bytes]:
    """The genesis state entry of a genesis file's governance section."""
    return {SETTINGS_KEY: encode(settings)}


# --- handlers --------------------------------------------------------------------------------------


class GovernanceModule:
    """Decides admin actions (`ledger.state.AdminGate`) and handles the votes on proposals."""

    def __init__(self) -> None:
        self._run: ActionRunner | None = None
        self.handlers: Mapping[str, Handler] = {
            "governance.approve": self.process_approve,
            "governance.reject": self.process_reject,
        }

    def bind(self, run: ActionRunner) -> None:
        self._run = run

    def on_admin_action(self, ctx: TxContext, kind: str, payload: Any) -> None:
        settings = get_settings(ctx.state)
        if settings.approvals <= 1:
            # One admin decides: run it now; no proposal is stored.
            self._execute(replace(ctx, approved_by=(ctx.sender,)), kind, payload)
            return
        # A proposal that could not run now is refused with the action's own reason (the trial's
        # writes are dropped with its overlay).
        trial = replace(ctx, state=Overlay(ctx.state), approved_by=(ctx.sender,))
        self._execute(trial, kind, payload)
        seq = proposal_count(ctx.state) + 1
        proposal = Proposal(
            id=compute_proposal_id(ctx.tx_id), seq=seq, kind=kind, payload=encode(payload), proposer=ctx.sender,
            tx_id=ctx.tx_id.hex(), created_height=ctx.height, created_at=ctx.timestamp,
            expires_at=ctx.timestamp + settings.expiry_ms, approvals=(ctx.sender,), rejections=(), status=OPEN,
            closed_height=0,
        )
        ctx.put(proposal_key(proposal.id), proposal)
        ctx.state.put(seq_key(seq), proposal.id.encode())
        ctx.put(COUNT_KEY, seq)

    def process_approve(self, ctx: TxContext, p: ProposalVote) -> None:
        proposal = _open_for_vote(ctx, p.proposal)
        proposal = replace(proposal, approvals=(*proposal.approvals, ctx.sender))
        approvers = counted_approvals(ctx.state, proposal)
        if len(approvers) >= get_settings(ctx.state).approvals:
            # The threshold is reached: the owning module runs the action, in this transaction.
            run_ctx = TxContext(ctx.state, proposal.proposer, (), ctx.height, ctx.timestamp, ctx.tx_id,
                                approved_by=approvers)
            self._execute(run_ctx, proposal.kind, action_payload(proposal))
            proposal = replace(proposal, status=EXECUTED, closed_height=ctx.height)
        ctx.put(proposal_key(proposal.id), proposal)

    def process_reject(self, ctx: TxContext, p: ProposalVote) -> None:
        proposal = _open_for_vote(ctx, p.proposal)
        proposal = replace(proposal, rejections=(*proposal.rejections, ctx.sender))
        admins = set(active_admins(ctx.state) or ())
        # It can no longer pass: the admins who have not rejected it are fewer than the threshold.
        if len(admins - set(proposal.rejections)) < get_settings(ctx.state).approvals:
            proposal = replace(proposal, status=REJECTED, closed_height=ctx.height)
        ctx.put(proposal_key(proposal.id), proposal)

    def _execute(self, ctx: TxContext, kind: str, payload: Any) -> None:
        """Run an approved action through the module that owns `kind`, then keep the admins at the threshold."""
        if self._run is None:
            raise RuntimeError("GovernanceModule used outside a StateMachine")
        self._run(ctx, kind, payload)
        admins = active_admins(ctx.state)
        threshold = get_settings(ctx.state).approvals
        # The admins can still reach the threshold (a chain without the admin index keeps one admin
        # by the members' own rule).
        if admins is not None and len(admins) < threshold:
            raise TxRejected(Reject.UNAUTHORIZED, f"this would leave {len(admins)} active admin(s), fewer than the "
                                                  f"{threshold} approval(s) admin actions need")


def _open_for_vote(ctx: TxContext, proposal_id: str) -> Proposal:
    """The proposal `proposal_id`, after checking that the sender may vote on it now."""
    # Only admins vote.
    ctx.require_role("admin")
    proposal = get_proposal(ctx.state, proposal_id)
    # The proposal exists.
    if proposal is None:
        raise TxRejected(Reject.NOT_FOUND, f"no proposal {proposal_id}")
    # It is still open.
    if proposal.status != OPEN:
        raise TxRejected(Reject.INACTIVE, f"proposal {proposal_id} is {proposal.status} already")
    # It has not expired.
    if ctx.timestamp >= proposal.expires_at:
        raise TxRejected(Reject.EXPIRED, f"proposal {proposal_id} expired at {proposal.expires_at}")
    # Each admin votes once.
    if ctx.sender in proposal.approvals or ctx.sender in proposal.rejections:
        raise TxRejected(Reject.ALREADY_EXISTS, f"{ctx.sender} has voted on proposal {proposal_id} already")
    return proposal


register_kind("governance.approve", ProposalVote)
register_kind("governance.reject", ProposalVote)
