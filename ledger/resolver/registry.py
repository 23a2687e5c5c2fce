"""State module: prefix ownership and identifier records of typed values (the Handle model).

A prefix has an owner. The admin creates top-level prefixes; the owner of a prefix creates
sub-prefixes under it (88.100 -> 88.100.1) for any member. Only a prefix's owner registers,
updates or deletes identifiers under it. A record holds typed values (URL, EMAIL, HASH, TWIN,
NFT, ...) as in the Handle data model; timestamps are the block time of the last change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ledger.members import get_member
from ledger.resolver.identifiers import InvalidIdentifier, check_prefix, parent_prefix, split_handle
from ledger.state import Handler, StateView, TxContext, get_record
from ledger.tx import Reject, TxRejected, register_kind

VALUE_TYPES = ("URL", "EMAIL", "HASH", "TWIN", "NFT", "DESC")
DEFAULT_TTL = 86400
MAX_VALUES = 64
MAX_VALUE_LEN = 2048


@dataclass(frozen=True)
class Prefix:
    prefix: str
    owner: str
    created_height: int


@dataclass(frozen=True)
class ValueSpec:
    """A value as submitted: the ledger adds ttl defaults and the timestamp."""

    index: int
    type: str
    value: str


@dataclass(frozen=True)
class HandleValue:
    index: int
    type: str
    value: str
    ttl: int
    timestamp: int  # ms, block time of the change that set it


@dataclass(frozen=True)
class IdentifierRecord:
    handle: str
    values: tuple[HandleValue, ...]
    created_height: int
    updated_height: int
    created_at: int  # ms, block time of registration


@dataclass(frozen=True)
class PrefixCreate:
    prefix: str
    owner: str


@dataclass(frozen=True)
class IdRegister:
    handle: str
    values: tuple[ValueSpec, ...]


@dataclass(frozen=True)
class IdUpdate:
    handle: str
    values: tuple[ValueSpec, ...]


@dataclass(frozen=True)
class IdDelete:
    handle: str


def prefix_key(prefix: str) -> bytes:
    return b"prefix/" + prefix.encode()


def identifier_key(handle: str) -> bytes:
    return b"id/" + handle.encode()


def get_prefix(view: StateView, prefix: str) -> Prefix | None:
    return get_record(view, Prefix, prefix_key(prefix))


def get_identifier(view: StateView, handle: str) -> IdentifierRecord | None:
    return get_record(view, IdentifierRecord, identifier_key(handle))


def _invalid(exc: InvalidIdentifier) -> TxRejected:
    return TxRejected(Reject.INVALID_VALUE, str(exc))


def process_prefix_create(ctx: TxContext, p: PrefixCreate) -> None:
    try:
        check_prefix(p.prefix)
    except InvalidIdentifier as exc:
        raise _invalid(exc) from exc
    # A prefix is created once.
    if ctx.get(Prefix, prefix_key(p.prefix)) is not None:
        raise TxRejected(Reject.ALREADY_EXISTS, f"prefix {p.prefix} already exists")
    # The owner is an active member.
    owner = get_member(ctx.state, p.owner)
    if owner is None or not owner.active:
        raise TxRejected(Reject.NOT_FOUND, f"owner {p.owner} is not an active member")
    parent = parent_prefix(p.prefix)
    parent_record = ctx.get(Prefix, prefix_key(parent)) if parent is not None else None
    if parent_record is None:
        # A top-level prefix (or one whose parent is not held here) needs the admin.
        ctx.require_role("admin")
    elif parent_record.owner != ctx.sender:
        # A sub-prefix needs the parent's owner.
        raise TxRejected(Reject.UNAUTHORIZED, f"only the owner of {parent} creates prefixes under it")
    ctx.put(prefix_key(p.prefix), Prefix(p.prefix, p.owner, ctx.height))


def _owned_handle(ctx: TxContext, handle: str) -> None:
    try:
        prefix, _ = split_handle(handle)
    except InvalidIdentifier as exc:
        raise _invalid(exc) from exc
    record = ctx.get(Prefix, prefix_key(prefix))
    # The prefix exists on this ledger.
    if record is None:
        raise TxRejected(Reject.NOT_FOUND, f"prefix {prefix} is not registered")
    # Only its owner changes identifiers under it.
    if record.owner != ctx.sender:
        raise TxRejected(Reject.UNAUTHORIZED, f"only the owner of {prefix} changes its identifiers")


def build_values(
    specs: tuple[ValueSpec, ...], timestamp: int, previous: tuple[HandleValue, ...] = ()
) -> tuple[HandleValue, ...]:
    """Check submitted values and stamp them; unchanged values keep their old timestamp."""
    # A record holds at least one and a bounded number of values.
    if not 0 < len(specs) <= MAX_VALUES:
        raise TxRejected(Reject.INVALID_VALUE, f"a record holds 1-{MAX_VALUES} values")
    indexes = [s.index for s in specs]
    # Indexes are unique.
    if len(set(indexes)) != len(indexes):
        raise TxRejected(Reject.INVALID_VALUE, "value indexes must be unique")
    old = {v.index: v for v in previous}
    out = []
    for s in sorted(specs, key=lambda s: s.index):
        # Indexes are positive and leave 100 (HS_ADMIN) to the ledger.
        if not 0 < s.index < 2**31 or s.index == 100:
            raise TxRejected(Reject.INVALID_VALUE, f"invalid value index {s.index}")
        # Types come from the known list.
        if s.type not in VALUE_TYPES:
            raise TxRejected(Reject.INVALID_VALUE, f"unknown value type {s.type!r}; known: {VALUE_TYPES}")
        # Values are bounded, printable text.
        if len(s.value) > MAX_VALUE_LEN or not s.value.isprintable():
            raise TxRejected(Reject.INVALID_VALUE, f"value {s.index} is not printable text of bounded size")
        prev = old.get(s.index)
        stamp = prev.timestamp if prev is not None and (prev.type, prev.value) == (s.type, s.value) else timestamp
        out.append(HandleValue(s.index, s.type, s.value, DEFAULT_TTL, stamp))
    return tuple(out)


def process_id_register(ctx: TxContext, p: IdRegister) -> None:
    _owned_handle(ctx, p.handle)
    # An identifier is registered once.
    if ctx.get(IdentifierRecord, identifier_key(p.handle)) is not None:
        raise TxRejected(Reject.ALREADY_EXISTS, f"{p.handle} already exists")
    values = build_values(p.values, ctx.timestamp)
    ctx.put(identifier_key(p.handle), IdentifierRecord(p.handle, values, ctx.height, ctx.height, ctx.timestamp))


def process_id_update(ctx: TxContext, p: IdUpdate) -> None:
    _owned_handle(ctx, p.handle)
    record = ctx.get(IdentifierRecord, identifier_key(p.handle))
    # Only existing identifiers are updated.
    if record is None:
        raise TxRejected(Reject.NOT_FOUND, f"{p.handle} does not exist")
    values = build_values(p.values, ctx.timestamp, record.values)
    updated = IdentifierRecord(p.handle, values, record.created_height, ctx.height, record.created_at)
    ctx.put(identifier_key(p.handle), updated)


def process_id_delete(ctx: TxContext, p: IdDelete) -> None:
    _owned_handle(ctx, p.handle)
    # Only existing identifiers are deleted.
    if ctx.get(IdentifierRecord, identifier_key(p.handle)) is None:
        raise TxRejected(Reject.NOT_FOUND, f"{p.handle} does not exist")
    ctx.delete(identifier_key(p.handle))


class RegistryModule:
    handlers: Mapping[str, Handler] = {
        "prefix.create": process_prefix_create,
        "id.register": process_id_register,
        "id.update": process_id_update,
        "id.delete": process_id_delete,
    }


register_kind("prefix.create", PrefixCreate)
register_kind("id.register", IdRegister)
register_kind("id.update", IdUpdate)
register_kind("id.delete", IdDelete)
