"""State module: prefix ownership and identifier records of typed values (the Handle model).

A prefix has an owner. Top-level prefixes are created by the admins (an admin action: see
`ledger.governance`); the owner of a prefix creates
sub-prefixes under it (88.100 -> 88.100.1) for any member, and `prefix.transfer` hands a prefix to
another member (by its owner, or by the owner of a prefix above it). Only a prefix's owner
registers, updates or deletes identifiers under it. A record holds typed values (URL, EMAIL, HASH,
TWIN, NFT, DESC) as in the Handle data model; timestamps are the block time of the last change.

GS1 items: a GS1 company prefix is the prefix `gs1:<digits>`. An identifier given in any GS1 form
(Digital Link path or URI, EPC URN, element string, `gs1/01/...`, `gs1:<cp>/01/...`) is stored under
its canonical key `gs1/01/<gtin14>[/21/<serial>]` (see `identifiers.parse_identifier`); its owner is
the owner of the longest registered `gs1:` prefix among the key's company-prefix candidates.
Other identifiers are Handles `<prefix>/<suffix>`, stored as given.

Value-level changes: `id.value_set` adds or replaces the value at one index, `id.value_remove`
removes one value (the last value of a record is removed with `id.delete`).

History: every change of a record (register, update, value set/remove, delete, NFT bind and
decommission) is an entry `id-h/<key>/<n:08d>` (n from 0) with the values after the change, the
height, tx id, block time and the acting member; `id-hc/<key>` holds the entry count. A record never
changed since its registration stores neither: its single entry is derived from the record, which
names its registering member and tx (so a bulk registration writes one state key per identifier).
The first later change stores that derived entry, then its own. History is state, so it is covered
by state proofs and readable at any height.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

from ledger.codec import decode
from ledger.members import get_member
from ledger.resolver.identifiers import (
    Identifier,
    InvalidIdentifier,
    check_prefix,
    owner_prefix_candidates,
    parent_prefix,
    parse_identifier,
    split_handle,
)
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
    created_by: str  # the registering member
    created_tx: str  # hex id of the registering transaction


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


@dataclass(frozen=True)
class PrefixTransfer:
    prefix: str
    new_owner: str


@dataclass(frozen=True)
class IdValueSet:
    """Add the value at `value.index`, or replace the value already there."""

    handle: str
    value: ValueSpec


@dataclass(frozen=True)
class IdValueRemove:
    handle: str
    index: int


@dataclass(frozen=True)
class HistoryEntry:
    """One change of a record: the values after it (empty once deleted) and who made it when."""

    seq: int
    change: str  # the tx kind: id.register, id.update, id.value_set, id.value_remove, id.delete, asset.*
    values: tuple[HandleValue, ...]
    height: int
    tx_id: str  # hex
    time: int  # ms, block time
    actor: str


def prefix_key(prefix: str) -> bytes:
    return b"prefix/" + prefix.encode()


def identifier_key(handle: str) -> bytes:
    return b"id/" + handle.encode()


def history_key(handle: str, seq: int) -> bytes:
    return b"id-h/" + handle.encode() + b"/" + f"{seq:08d}".encode()


def history_count_key(handle: str) -> bytes:
    return b"id-hc/" + handle.encode()


_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
GS1_FORM_STARTS = ("/", "(", "^", "gs1/", "gs1:")


def is_gs1_form(text: str) -> bool:
    """True when `text` is written in one of the GS1 forms (not a plain Handle)."""
    return text.startswith(GS1_FORM_STARTS) or text[:4].lower() == "urn:" or _SCHEME_RE.match(text) is not None


def storage_key(text: str) -> tuple[str, Identifier | None]:
    """The key a record is stored under: the canonical GS1 key for GS1 forms, else the Handle as given
    (checked with `split_handle`, as before GS1 support). Raises InvalidIdentifier."""
    if is_gs1_form(text):
        ident = parse_identifier(text)
        if ident.scheme == "gs1":
            return ident.canonical, ident
    split_handle(text)
    return text, None


def owning_prefix(view: StateView, text: str) -> tuple[str, str, Prefix | None]:
    """(storage key, prefix name, prefix record or None) of an identifier in any accepted form.
    A GS1 item's prefix is its longest registered `gs1:<digits>` candidate (the longest candidate when
    none is registered). Raises InvalidIdentifier."""
    key, ident = storage_key(text)
    if ident is None:
        prefix = key.partition("/")[0]
        return key, prefix, get_prefix(view, prefix)
    candidates = owner_prefix_candidates(ident)
    for candidate in candidates:
        record = get_prefix(view, candidate)
        if record is not None:
            return key, candidate, record
    return key, candidates[0] if candidates else "gs1", None


def get_history(view: StateView, handle: str, limit: int = 1000, start: int = 0) -> tuple[int, list[HistoryEntry]]:
    """(total entries, entries from `start`, at most `limit`) of a record's history, oldest first."""
    total = history_count(view, handle)
    out: list[HistoryEntry] = []
    for seq in range(max(0, start), min(total, max(0, start) + limit)):
        entry = get_record(view, HistoryEntry, history_key(handle, seq))
        if entry is None and seq == 0:
            record = get_record(view, IdentifierRecord, identifier_key(handle))
            entry = None if record is None else registration_entry(record)
        if entry is not None:
            out.append(entry)
    return total, out


def registration_entry(record: IdentifierRecord) -> HistoryEntry:
    """The first history entry of a record never changed since registration, derived from the record."""
    return HistoryEntry(0, "id.register", record.values, record.created_height, record.created_tx,
                        record.created_at, record.created_by)


def history_count(view: StateView, handle: str) -> int:
    """Entries in a record's history. A record never changed since its registration stores no history:
    its one entry is derived from the record (so a registration writes one state key, not three)."""
    raw = view.get(history_count_key(handle))
    if raw is not None:
        return decode(int, raw, trusted=True)
    if view.get(history_key(handle, 0)) is not None:
        return 1
    return 0 if view.get(identifier_key(handle)) is None else 1


def append_history(
    ctx: TxContext, handle: str, change: str, values: tuple[HandleValue, ...], previous: IdentifierRecord | None
) -> None:
    """Record one change of `handle`; `previous` is the record before the change (None if there was none).

    Called by every handler that changes an identifier record after a registration; the first such
    change also stores the registration entry it derives from `previous`.
    """
    raw = ctx.state.get(history_count_key(handle))
    if raw is not None:
        seq = decode(int, raw, trusted=True)
    elif ctx.state.get(history_key(handle, 0)) is not None:
        seq = 1
    elif previous is not None:
        ctx.put(history_key(handle, 0), registration_entry(previous))
        seq = 1
    else:
        seq = 0
    ctx.put(history_key(handle, seq), HistoryEntry(seq, change, values, ctx.height, ctx.tx_id.hex(),
                                                   ctx.timestamp, ctx.sender))
    ctx.put(history_count_key(handle), seq + 1)


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
        # A top-level prefix (or one whose parent is not held here) is an admin action (ledger.governance).
        ctx.require_admin()
    elif parent_record.owner != ctx.sender:
        # A sub-prefix needs the parent's owner.
        raise TxRejected(Reject.UNAUTHORIZED, f"only the owner of {parent} creates prefixes under it")
    ctx.put(prefix_key(p.prefix), Prefix(p.prefix, p.owner, ctx.height))


def process_prefix_transfer(ctx: TxContext, p: PrefixTransfer) -> None:
    record = ctx.get(Prefix, prefix_key(p.prefix))
    # The prefix exists.
    if record is None:
        raise TxRejected(Reject.NOT_FOUND, f"prefix {p.prefix} is not registered")
    # Its owner, or the owner of a prefix above it (who delegated it), transfers it.
    allowed = record.owner == ctx.sender
    parent = parent_prefix(p.prefix)
    while not allowed and parent is not None:
        above = ctx.get(Prefix, prefix_key(parent))
        allowed = above is not None and above.owner == ctx.sender
        parent = parent_prefix(parent)
    if not allowed:
        raise TxRejected(Reject.UNAUTHORIZED, f"only the owner of {p.prefix} (or of a prefix above it) transfers it")
    # The new owner is an active member.
    owner = get_member(ctx.state, p.new_owner)
    if owner is None or not owner.active:
        raise TxRejected(Reject.NOT_FOUND, f"new owner {p.new_owner} is not an active member")
    ctx.put(prefix_key(p.prefix), Prefix(p.prefix, p.new_owner, record.created_height))


def _owned_handle(ctx: TxContext, handle: str) -> str:
    """The storage key of `handle`, after checking that the sender owns its prefix."""
    try:
        key, prefix, record = owning_prefix(ctx.state, handle)
    except InvalidIdentifier as exc:
        raise _invalid(exc) from exc
    # The prefix exists on this ledger.
    if record is None:
        raise TxRejected(Reject.NOT_FOUND, f"prefix {prefix} is not registered")
    # Only its owner changes identifiers under it.
    if record.owner != ctx.sender:
        raise TxRejected(Reject.UNAUTHORIZED, f"only the owner of {prefix} changes its identifiers")
    return key


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
    key = _owned_handle(ctx, p.handle)
    # An identifier is registered once.
    if ctx.get(IdentifierRecord, identifier_key(key)) is not None:
        raise TxRejected(Reject.ALREADY_EXISTS, f"{key} already exists")
    values = build_values(p.values, ctx.timestamp)
    record = IdentifierRecord(key, values, ctx.height, ctx.height, ctx.timestamp, ctx.sender, ctx.tx_id.hex())
    ctx.put(identifier_key(key), record)
    # A first registration needs no history entry (derived from the record); a re-registration after a
    # delete continues the stored history.
    if ctx.state.get(history_count_key(key)) is not None:
        append_history(ctx, key, "id.register", values, None)


def _existing(ctx: TxContext, handle: str) -> tuple[str, IdentifierRecord]:
    key = _owned_handle(ctx, handle)
    record = ctx.get(IdentifierRecord, identifier_key(key))
    # Only existing identifiers are changed.
    if record is None:
        raise TxRejected(Reject.NOT_FOUND, f"{key} does not exist")
    return key, record


def _store_values(ctx: TxContext, key: str, record: IdentifierRecord, specs: tuple[ValueSpec, ...],
                  change: str) -> None:
    values = build_values(specs, ctx.timestamp, record.values)
    ctx.put(identifier_key(key), replace(record, values=values, updated_height=ctx.height))
    append_history(ctx, key, change, values, record)


def process_id_update(ctx: TxContext, p: IdUpdate) -> None:
    key, record = _existing(ctx, p.handle)
    _store_values(ctx, key, record, p.values, "id.update")


def _specs(values: tuple[HandleValue, ...]) -> list[ValueSpec]:
    return [ValueSpec(v.index, v.type, v.value) for v in values]


def process_id_value_set(ctx: TxContext, p: IdValueSet) -> None:
    key, record = _existing(ctx, p.handle)
    specs = [s for s in _specs(record.values) if s.index != p.value.index]
    _store_values(ctx, key, record, (*specs, p.value), "id.value_set")


def process_id_value_remove(ctx: TxContext, p: IdValueRemove) -> None:
    key, record = _existing(ctx, p.handle)
    # The value exists.
    if not any(v.index == p.index for v in record.values):
        raise TxRejected(Reject.NOT_FOUND, f"{key} has no value at index {p.index}")
    specs = tuple(s for s in _specs(record.values) if s.index != p.index)
    # A record keeps at least one value: delete the identifier instead.
    if not specs:
        raise TxRejected(Reject.INVALID_VALUE, f"index {p.index} is the last value of {key}; use id.delete")
    _store_values(ctx, key, record, specs, "id.value_remove")


def process_id_delete(ctx: TxContext, p: IdDelete) -> None:
    key, record = _existing(ctx, p.handle)
    ctx.delete(identifier_key(key))
    append_history(ctx, key, "id.delete", (), record)


class RegistryModule:
    handlers: Mapping[str, Handler] = {
        "prefix.create": process_prefix_create,
        "id.register": process_id_register,
        "id.update": process_id_update,
        "id.delete": process_id_delete,
        "prefix.transfer": process_prefix_transfer,
        "id.value_set": process_id_value_set,
        "id.value_remove": process_id_value_remove,
    }


register_kind("prefix.create", PrefixCreate)
register_kind("id.register", IdRegister)
register_kind("id.update", IdUpdate)
register_kind("id.delete", IdDelete)
register_kind("prefix.transfer", PrefixTransfer)
register_kind("id.value_set", IdValueSet)
register_kind("id.value_remove", IdValueRemove)
