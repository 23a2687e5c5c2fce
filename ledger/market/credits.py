"""State module: settlement credits, a fungible balance per member in consortium credits that stand for money
held outside the ledger.

Theory of operation. Each member's credits are one `CreditBalance` under `credits/b/<member>`: `available`
(what it may spend or move) and `held` (escrowed by its open offers, `ledger.market.trading`). The totals are
one `CreditSupply` under `credits/supply`: credits ever issued and ever withdrawn. This module is the only
writer of both; the market moves credits through the functions below (`pay`, `hold`, `release`, `pay_held`),
inside the transaction that trades, so a failed trade moves nothing. Every key is a state key, so a balance is
proven like any record (docs/proofs.md).

Invariant (checked by tests/test_market_properties.py over random sequences of every kind): the sum of all
members' `available + held` equals `issued - withdrawn`, and no balance is negative.

Rules (one check per line, each raising a typed `TxRejected`):
- credits.issue (TO, AMOUNT): by a member holding the treasury role, as an admin action: with a governance
  threshold above one it is a proposal the admins approve (`ledger.governance`), and when it runs the proposer
  must still be an active treasury member. The recipient is an active member.
- credits.withdraw (FROM, AMOUNT): the same, taking credits out of FROM's available balance (paid out outside
  the ledger).
- credits.transfer (TO, AMOUNT): by the holder, from its available balance, to another active member.
- Amounts are whole credits, 1 to MAX_AMOUNT; the credits outstanding never exceed MAX_SUPPLY (2^53 - 1, so
  every balance and total is an exact number in JSON and JavaScript too).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ledger.members import get_member
from ledger.state import Handler, StateView, TxContext, get_record
from ledger.tx import Reject, TxRejected, register_kind

MAX_SUPPLY = 2**53 - 1
MAX_AMOUNT = MAX_SUPPLY
SUPPLY_KEY = b"credits/supply"


@dataclass(frozen=True)
class CreditBalance:
    available: int
    held: int  # in escrow for open offers


@dataclass(frozen=True)
class CreditSupply:
    issued: int  # ever issued
    withdrawn: int  # ever withdrawn

    @property
    def outstanding(self) -> int:
        return self.issued - self.withdrawn


@dataclass(frozen=True)
class CreditsIssue:
    to: str
    amount: int


@dataclass(frozen=True)
class CreditsWithdraw:
    member: str  # whose credits are taken out
    amount: int


@dataclass(frozen=True)
class CreditsTransfer:
    to: str
    amount: int


ZERO = CreditBalance(0, 0)


# --- keys and queries ------------------------------------------------------------------------------


def balance_key(member: str) -> bytes:
    return b"credits/b/" + member.encode()


def get_balance(view: StateView, member: str) -> CreditBalance:
    return get_record(view, CreditBalance, balance_key(member)) or ZERO


def get_supply(view: StateView) -> CreditSupply:
    return get_record(view, CreditSupply, SUPPLY_KEY) or CreditSupply(0, 0)


# --- what the market calls (inside its transaction) --------------------------------------------------


def check_amount(amount: int, what: str = "amount") -> None:
    # Amounts are whole, positive and bounded.
    if not 1 <= amount <= MAX_AMOUNT:
        raise TxRejected(Reject.INVALID_VALUE, f"{what} must be a whole number of credits from 1 to {MAX_AMOUNT}")


def _put(ctx: TxContext, member: str, balance: CreditBalance) -> None:
    ctx.put(balance_key(member), balance)


def _debit_available(ctx: TxContext, member: str, amount: int) -> CreditBalance:
    balance = get_balance(ctx.state, member)
    # The payer has the credits available (held ones are promised to its offers).
    if balance.available < amount:
        raise TxRejected(Reject.INSUFFICIENT_CREDITS,
                         f"{member} has {balance.available} credits available, {amount} needed")
    return CreditBalance(balance.available - amount, balance.held)


def _credit(ctx: TxContext, member: str, amount: int) -> None:
    balance = get_balance(ctx.state, member)
    _put(ctx, member, CreditBalance(balance.available + amount, balance.held))


def pay(ctx: TxContext, payer: str, payee: str, amount: int) -> None:
    """Move `amount` (>= 0) from `payer`'s available credits to `payee`'s."""
    after = _debit_available(ctx, payer, amount)
    if amount:
        _put(ctx, payer, after)
        _credit(ctx, payee, amount)


def hold(ctx: TxContext, member: str, amount: int) -> None:
    """Put `amount` of `member`'s available credits in escrow."""
    after = _debit_available(ctx, member, amount)
    _put(ctx, member, CreditBalance(after.available, after.held + amount))


def _debit_held(ctx: TxContext, member: str, amount: int) -> CreditBalance:
    balance = get_balance(ctx.state, member)
    # Escrow is released only as far as it was held (a broken caller must not create credits).
    if balance.held < amount:
        raise TxRejected(Reject.INSUFFICIENT_CREDITS, f"{member} has {balance.held} credits held, {amount} released")
    return CreditBalance(balance.available, balance.held - amount)


def release(ctx: TxContext, member: str, amount: int) -> None:
    """Return `amount` of `member`'s escrow to its available credits."""
    after = _debit_held(ctx, member, amount)
    _put(ctx, member, CreditBalance(after.available + amount, after.held))


def pay_held(ctx: TxContext, payer: str, payee: str, amount: int) -> None:
    """Pay `amount` (>= 0) out of `payer`'s escrow to `payee`'s available credits."""
    _put(ctx, payer, _debit_held(ctx, payer, amount))
    if amount:
        _credit(ctx, payee, amount)


# --- handlers ------------------------------------------------------------------------------------


def _require_treasury(ctx: TxContext) -> None:
    """The sender (the proposer, when governance runs an approved proposal) is an active treasury member."""
    member = get_member(ctx.state, ctx.sender)
    # Only the treasury issues and withdraws credits, and only while it holds the role.
    if member is None or not member.active or "treasury" not in member.roles:
        raise TxRejected(Reject.UNAUTHORIZED, f"{ctx.sender} lacks the treasury role")


def _require_active_member(ctx: TxContext, member_id: str, what: str) -> None:
    member = get_member(ctx.state, member_id)
    # Credits go only to active members (a stranger's balance could never be spent).
    if member is None or not member.active:
        raise TxRejected(Reject.NOT_FOUND, f"{what} {member_id!r} is not an active member")


def process_issue(ctx: TxContext, p: CreditsIssue) -> None:
    _require_treasury(ctx)
    ctx.require_admin()
    check_amount(p.amount)
    _require_active_member(ctx, p.to, "recipient")
    supply = get_supply(ctx.state)
    # The credits outstanding stay exact numbers everywhere.
    if supply.outstanding + p.amount > MAX_SUPPLY:
        raise TxRejected(Reject.INVALID_VALUE, f"issuing {p.amount} would put more than {MAX_SUPPLY} credits out")
    ctx.put(SUPPLY_KEY, CreditSupply(supply.issued + p.amount, supply.withdrawn))
    _credit(ctx, p.to, p.amount)


def process_withdraw(ctx: TxContext, p: CreditsWithdraw) -> None:
    _require_treasury(ctx)
    ctx.require_admin()
    check_amount(p.amount)
    _put(ctx, p.member, _debit_available(ctx, p.member, p.amount))
    supply = get_supply(ctx.state)
    ctx.put(SUPPLY_KEY, CreditSupply(supply.issued, supply.withdrawn + p.amount))


def process_transfer(ctx: TxContext, p: CreditsTransfer) -> None:
    check_amount(p.amount)
    # A transfer moves credits to someone else.
    if p.to == ctx.sender:
        raise TxRejected(Reject.INVALID_VALUE, "a transfer goes to another member")
    _require_active_member(ctx, p.to, "recipient")
    pay(ctx, ctx.sender, p.to, p.amount)


class CreditsModule:
    handlers: Mapping[str, Handler] = {
        "credits.issue": process_issue,
        "credits.withdraw": process_withdraw,
        "credits.transfer": process_transfer,
    }


register_kind("credits.issue", CreditsIssue)
register_kind("credits.withdraw", CreditsWithdraw)
register_kind("credits.transfer", CreditsTransfer)
