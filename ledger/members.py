"""Members: the organisations allowed to transact, their keys and roles.

Only an active member's transaction, signed with its current key, is executed. Adding and removing
members and setting roles are admin actions (`TxContext.require_admin`): they run once the admins'
threshold approves them (`ledger.governance`). A member rotates its own key, after which transactions
signed with the old key fail with `bad_signature`.

The active admins are indexed under `member-admins` (sorted ids), which governance counts. Genesis
files written before governance existed have no index (their state must stay as it was, so that their
block 0 keeps its hash); on such a chain the threshold is 1 and the older rule keeps an admin: an admin
cannot remove itself or drop its own admin role.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from ledger.crypto import PUBLIC_KEY_LEN, derive_id
from ledger.state import Handler, SenderInfo, StateView, TxContext, get_record
from ledger.tx import Reject, TxRejected, register_kind

ROLES = ("admin", "registrar", "issuer", "auditor", "treasury", "appraiser")


@dataclass(frozen=True)
class Member:
    id: str
    name: str
    public_key: bytes
    roles: tuple[str, ...]
    active: bool


@dataclass(frozen=True)
class MemberAdd:
    name: str
    public_key: bytes
    roles: tuple[str, ...]


@dataclass(frozen=True)
class MemberSetRoles:
    member: str
    roles: tuple[str, ...]


@dataclass(frozen=True)
class MemberRemove:
    member: str


@dataclass(frozen=True)
class MemberRotateKey:
    public_key: bytes


def member_key(member_id: str) -> bytes:
    return b"member/" + member_id.encode()


def member_name_key(name: str) -> bytes:
    return b"member-name/" + name.encode()


def member_key_index(public_key: bytes) -> bytes:
    return b"member-pk/" + public_key.hex().encode()


ADMINS_KEY = b"member-admins"


def active_admins(view: StateView) -> tuple[str, ...] | None:
    """The ids of the active admins, sorted; None on a chain whose genesis predates the index."""
    return get_record(view, tuple[str, ...], ADMINS_KEY)


def _index_admin(ctx: TxContext, member_id: str, is_admin: bool) -> None:
    admins = active_admins(ctx.state)
    if admins is None:  # a chain without the index (see the module's docstring) keeps none
        return
    updated = tuple(sorted({*admins, member_id} if is_admin else set(admins) - {member_id}))
    if updated != admins:
        ctx.put(ADMINS_KEY, updated)


def find_member_by_public_key(view: StateView, public_key: bytes) -> Member | None:
    """The member whose current key this is (ids stay the first key's after a rotation)."""
    raw = view.get(member_key_index(public_key))
    return None if raw is None else get_member(view, raw.decode())


def find_member_by_name(view: StateView, name: str) -> Member | None:
    """Members are named on the command line by the names genesis or `member.add` gave them."""
    raw = view.get(member_name_key(name))
    return None if raw is None else get_member(view, raw.decode())


def get_member(view: StateView, member_id: str) -> Member | None:
    return get_record(view, Member, member_key(member_id))


def lookup_sender(view: StateView, member_id: str) -> SenderInfo | None:
    member = get_member(view, member_id)
    if member is None or not member.active:
        return None
    return SenderInfo(member.public_key, member.roles)


# System transactions a validator sends with its node key: anchor attestations, equivocation evidence.
VALIDATOR_KINDS = frozenset({"anchor.attest", "evidence.equivocation"})


def check_roles(roles: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [r for r in roles if r not in ROLES]
    # Roles come from the fixed list.
    if unknown:
        raise TxRejected(Reject.INVALID_VALUE, f"unknown roles {unknown}; known: {list(ROLES)}")
    # One canonical order, so equal role sets encode identically.
    return tuple(sorted(set(roles)))


def new_member(name: str, public_key: bytes, roles: tuple[str, ...]) -> Member:
    # A member's key is a raw Ed25519 public key.
    if len(public_key) != PUBLIC_KEY_LEN:
        raise TxRejected(Reject.INVALID_VALUE, "public_key must be 32 bytes")
    # Names are short, printable labels.
    if not 0 < len(name) <= 128 or not name.isprintable():
        raise TxRejected(Reject.INVALID_VALUE, "name must be 1-128 printable characters")
    return Member(derive_id(public_key), name, public_key, check_roles(roles), True)


def process_member_add(ctx: TxContext, p: MemberAdd) -> None:
    ctx.require_admin()
    member = new_member(p.name, p.public_key, p.roles)
    existing = ctx.get(Member, member_key(member.id))
    # A key belongs to one member, once.
    if existing is not None:
        raise TxRejected(Reject.ALREADY_EXISTS, f"member {member.id} already exists")
    # A name names one member, so commands can use it.
    if ctx.state.get(member_name_key(member.name)) is not None:
        raise TxRejected(Reject.ALREADY_EXISTS, f"a member is already named {member.name!r}")
    ctx.put(member_key(member.id), member)
    ctx.state.put(member_name_key(member.name), member.id.encode())
    ctx.state.put(member_key_index(member.public_key), member.id.encode())
    _index_admin(ctx, member.id, "admin" in member.roles)


def _existing(ctx: TxContext, member_id: str) -> Member:
    member = ctx.get(Member, member_key(member_id))
    if member is None or not member.active:
        raise TxRejected(Reject.NOT_FOUND, f"no active member {member_id}")
    return member


def process_member_set_roles(ctx: TxContext, p: MemberSetRoles) -> None:
    ctx.require_admin()
    member = _existing(ctx, p.member)
    roles = check_roles(p.roles)
    # Without the admin index, an admin cannot drop its own admin role (so an admin remains); with it,
    # governance keeps the admins at or above the threshold.
    if p.member == ctx.sender and "admin" not in roles and active_admins(ctx.state) is None:
        raise TxRejected(Reject.UNAUTHORIZED, "an admin cannot drop its own admin role")
    ctx.put(member_key(member.id), replace(member, roles=roles))
    _index_admin(ctx, member.id, "admin" in roles)


def process_member_remove(ctx: TxContext, p: MemberRemove) -> None:
    ctx.require_admin()
    member = _existing(ctx, p.member)
    # Without the admin index, an admin cannot remove itself (as above).
    if p.member == ctx.sender and active_admins(ctx.state) is None:
        raise TxRejected(Reject.UNAUTHORIZED, "an admin cannot remove itself")
    ctx.put(member_key(member.id), replace(member, active=False))
    _index_admin(ctx, member.id, False)


def process_member_rotate_key(ctx: TxContext, p: MemberRotateKey) -> None:
    member = _existing(ctx, ctx.sender)
    # The new key is a raw Ed25519 public key.
    if len(p.public_key) != PUBLIC_KEY_LEN:
        raise TxRejected(Reject.INVALID_VALUE, "public_key must be 32 bytes")
    # The new key is no other member's current key.
    if ctx.state.get(member_key_index(p.public_key)) is not None:
        raise TxRejected(Reject.ALREADY_EXISTS, "that key belongs to a member already")
    # The id stays the member's original id; only the verifying key changes.
    ctx.put(member_key(member.id), replace(member, public_key=p.public_key))
    ctx.state.delete(member_key_index(member.public_key))
    ctx.state.put(member_key_index(p.public_key), member.id.encode())


class MembersModule:
    handlers: Mapping[str, Handler] = {
        "member.add": process_member_add,
        "member.roles": process_member_set_roles,
        "member.remove": process_member_remove,
        "member.rotate_key": process_member_rotate_key,
    }


register_kind("member.add", MemberAdd)
register_kind("member.roles", MemberSetRoles)
register_kind("member.remove", MemberRemove)
register_kind("member.rotate_key", MemberRotateKey)
