"""State module: unique asset tokens (ERC-721 ownership, ERC-4907 lease, ERC-5192 lock) with provenance.

Theory of operation. A token is an `Asset` record under `asset/<id>`; its id is unique forever (a
burned id is never minted again). Every state change of a token appends one `AssetEvent` under
`asset-h/<id>/<seq:08d>` (`Asset.events` counts them), so the provenance is a read of consecutive
keys and, like every state key, provable. Two indexes are kept in the same transaction as the
record: `asset-owner/<owner>/<id>` and `asset-kind/<kind>/<id>`, one entry per live token (a burn
removes both). Operator approvals (ERC-721 `setApprovalForAll`) are per owner:
`asset-op/<owner>/<operator>`.

Rules (each `process_*` checks one condition per line and raises a typed `TxRejected`):
- mint: issuer role; id unique; kind in KINDS; metadata URI + its sha256; the owner (default the
  minter) is an active member. An equipment token may be bound to an existing identifier under a
  prefix the minter owns: the identifier's record gains a value of type NFT (next free index) whose
  value is the token id, and the token names the identifier. A mint may set the token's royalty
  (`royalty_bps`, ERC-2981 style: at mint, for good): the market module keeps it (`ledger.market.trading`,
  handed to this module as `AssetsModule(on_royalty=...)`), refusing it, and so the mint, if out of range.
- approve: by the owner or one of its operators; clears with "".
- set_operator: the sender approves or withdraws an operator for all its tokens.
- transfer: by the owner, the approved member or an operator; never while locked; to an active
  member; clears the approval and the lease user.
- lease (ERC-4907 `setUser`): by the owner, approved member or operator; the user holds the token
  until `expires` (ms); `user_of` answers "" once expired (evaluated at a given time, the block time
  in handlers). "" clears the lease.
- lock / unlock (ERC-5192): only the owner. A locked token cannot change hands, so the member who
  unlocks is always the one who locked it; approved members and operators can do neither.
- sale (`sell`, called by the market module `ledger.market.trading`, never a tx kind of its own): the
  token moves from the seller, who must still own it, to the buyer as a transfer does, recorded as a
  `transfer` event whose detail names the sale; a locked or leased token cannot be sold.
- burn (decommissioning): by the owner or an operator, also when locked (a soulbound machine can still
  be decommissioned). The token is kept, marked burned, without owner, approval or user; its index
  entries go. If it is bound, the NFT value in the identifier's record is replaced, at the same
  index, by a DESC value "decommissioned: asset <id> burned at height <h>", so resolving the nameplate
  shows the decommissioning. (If the prefix owner has since removed the value or the identifier, the
  burn leaves the identifier alone.)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

from ledger.codec import appended, encode
from ledger.members import get_member
from ledger.resolver.identifiers import InvalidIdentifier
from ledger.resolver.registry import (
    DEFAULT_TTL,
    MAX_VALUES,
    HandleValue,
    IdentifierRecord,
    append_history,
    identifier_key,
    owning_prefix,
)
from ledger.state import Handler, StateView, TxContext, get_record
from ledger.tx import Reject, TxRejected, register_kind

KINDS = ("equipment", "data", "model", "document")
MAX_URI_LEN = 2048
TOKEN_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")


@dataclass(frozen=True)
class Asset:
    id: str
    kind: str
    owner: str  # "" once burned
    minter: str
    uri: str
    sha256: bytes  # of the metadata the URI serves
    identifier: str  # "" when not bound
    nft_index: int  # index of the NFT value in the identifier's record; 0 when not bound
    approved: str  # "" when none
    user: str  # ERC-4907 lease user, "" when none
    user_expires: int  # ms
    locked: bool
    burned: bool
    events: int  # number of provenance events
    minted_height: int
    minted_at: int  # ms, block time


@dataclass(frozen=True)
class AssetEvent:
    seq: int
    event: str  # mint, approve, lease, lock, unlock, transfer, burn
    height: int
    tx_id: bytes
    timestamp: int  # ms, block time
    actor: str  # the sender
    from_member: str
    to_member: str
    detail: str


@dataclass(frozen=True)
class AssetMint:
    id: str
    kind: str
    uri: str
    sha256: bytes
    owner: str  # "" means the minter
    identifier: str  # "" means not bound
    # Basis points of every later sale's price paid to the minter (0: none). Appended: a mint without one keeps
    # the bytes, and so the transaction id, it had before the field.
    royalty_bps: int = appended(0)


@dataclass(frozen=True)
class AssetApprove:
    id: str
    approved: str  # "" clears


@dataclass(frozen=True)
class AssetSetOperator:
    operator: str
    approved: bool


@dataclass(frozen=True)
class AssetTransfer:
    id: str
    to: str


@dataclass(frozen=True)
class AssetLease:
    id: str
    user: str  # "" clears
    expires: int  # ms


@dataclass(frozen=True)
class AssetLock:
    id: str


@dataclass(frozen=True)
class AssetUnlock:
    id: str


@dataclass(frozen=True)
class AssetBurn:
    id: str


# --- keys and queries ------------------------------------------------------------------------------


def asset_key(token: str) -> bytes:
    return b"asset/" + token.encode()


def history_key(token: str, seq: int) -> bytes:
    return b"asset-h/" + token.encode() + b"/" + f"{seq:08d}".encode()


def owner_index_prefix(owner: str) -> bytes:
    return b"asset-owner/" + owner.encode() + b"/"


def kind_index_prefix(kind: str) -> bytes:
    return b"asset-kind/" + kind.encode() + b"/"


def operator_key(owner: str, operator: str) -> bytes:
    return b"asset-op/" + owner.encode() + b"/" + operator.encode()


def get_asset(view: StateView, token: str) -> Asset | None:
    return get_record(view, Asset, asset_key(token))


def get_history(view: StateView, token: str, start: int = 0, limit: int | None = None) -> list[AssetEvent]:
    """The token's events from the `start`-th (0 is the first), at most `limit` of them."""
    asset = get_asset(view, token)
    if asset is None:
        return []
    end = asset.events if limit is None else min(asset.events, start + limit)
    events = (get_record(view, AssetEvent, history_key(token, n)) for n in range(start + 1, end + 1))
    return [e for e in events if e is not None]


def is_operator(view: StateView, owner: str, operator: str) -> bool:
    return view.get(operator_key(owner, operator)) is not None


def user_of(asset: Asset, at_ms: int) -> str:
    """ERC-4907 `userOf`: nobody once the lease has expired."""
    return asset.user if asset.user and at_ms < asset.user_expires else ""


def ids_from_index(keys: Iterable[bytes], prefix: bytes) -> list[str]:
    """Token ids from index keys (as a store scan of `prefix` yields them)."""
    return [k[len(prefix):].decode() for k in keys if k.startswith(prefix)]


# --- helpers -------------------------------------------------------------------------------------


def _require_active_member(ctx: TxContext, member_id: str, what: str) -> None:
    member = get_member(ctx.state, member_id)
    # The named member exists and is active.
    if member is None or not member.active:
        raise TxRejected(Reject.NOT_FOUND, f"{what} {member_id!r} is not an active member")


def _live_asset(ctx: TxContext, token: str) -> Asset:
    asset = ctx.get(Asset, asset_key(token))
    # The token exists.
    if asset is None:
        raise TxRejected(Reject.NOT_FOUND, f"no asset {token!r}")
    # The token is not burned.
    if asset.burned:
        raise TxRejected(Reject.INACTIVE, f"asset {token!r} is burned")
    return asset


def _may_act_for_owner(ctx: TxContext, asset: Asset, allow_approved: bool) -> bool:
    if ctx.sender == asset.owner:
        return True
    if allow_approved and asset.approved and ctx.sender == asset.approved:
        return True
    return is_operator(ctx.state, asset.owner, ctx.sender)


def _record_event(ctx: TxContext, asset: Asset, event: str, from_member: str = "", to_member: str = "",
                  detail: str = "") -> Asset:
    """Append a provenance event and store the asset with its counter advanced."""
    seq = asset.events + 1
    ctx.put(history_key(asset.id, seq), AssetEvent(
        seq, event, ctx.height, ctx.tx_id, ctx.timestamp, ctx.sender, from_member, to_member, detail))
    updated = replace(asset, events=seq)
    ctx.put(asset_key(asset.id), updated)
    return updated


def _index(ctx: TxContext, asset: Asset, present: bool) -> None:
    keys = (owner_index_prefix(asset.owner) + asset.id.encode(), kind_index_prefix(asset.kind) + asset.id.encode())
    for key in keys:
        if present:
            ctx.state.put(key, encode(asset.id))
        else:
            ctx.state.delete(key)


def _move_owner(ctx: TxContext, asset: Asset, owner: str) -> Asset:
    """`asset` owned by `owner`, its owner index entry moved (its kind's entry stays: a kind never changes, and
    rewriting it would cost a state write for nothing)."""
    ctx.state.delete(owner_index_prefix(asset.owner) + asset.id.encode())
    ctx.state.put(owner_index_prefix(owner) + asset.id.encode(), encode(asset.id))
    return replace(asset, owner=owner, approved="", user="", user_expires=0)


def _next_free_index(values: tuple[HandleValue, ...]) -> int:
    index = max((v.index for v in values), default=0) + 1
    return index + 1 if index == 100 else index  # 100 is HS_ADMIN, reserved


# --- handlers ------------------------------------------------------------------------------------


def _check_mint_fields(p: AssetMint) -> None:
    # Token ids are 1-128 characters of letters, digits and ._:- (no "/": ids are key segments).
    if not TOKEN_ID_RE.fullmatch(p.id):
        raise TxRejected(Reject.INVALID_VALUE, "token id must be 1-128 characters of A-Z a-z 0-9 . _ : -")
    # The kind comes from the known list.
    if p.kind not in KINDS:
        raise TxRejected(Reject.INVALID_VALUE, f"unknown asset kind {p.kind!r}; known: {list(KINDS)}")
    # The metadata URI is bounded, printable text.
    if not 0 < len(p.uri) <= MAX_URI_LEN or not p.uri.isprintable():
        raise TxRejected(Reject.INVALID_VALUE, f"uri must be 1-{MAX_URI_LEN} printable characters")
    # The metadata hash is a sha256.
    if len(p.sha256) != 32:
        raise TxRejected(Reject.INVALID_VALUE, "sha256 must be 32 bytes")
    # Only equipment is bound to an identifier (a nameplate).
    if p.identifier and p.kind != "equipment":
        raise TxRejected(Reject.INVALID_VALUE, "only equipment tokens are bound to identifiers")


def _bind(ctx: TxContext, token: str, identifier: str) -> tuple[str, int]:
    """Add the token's NFT value to the record of `identifier` (a Handle or any GS1 form, as `id.register`
    takes it); the record's storage key and the index used."""
    try:
        handle, prefix, prefix_record = owning_prefix(ctx.state, identifier)
    except InvalidIdentifier as exc:
        raise TxRejected(Reject.INVALID_VALUE, str(exc)) from exc
    # The identifier's prefix is registered.
    if prefix_record is None:
        raise TxRejected(Reject.NOT_FOUND, f"prefix {prefix} is not registered")
    # The minter owns the identifier's prefix.
    if prefix_record.owner != ctx.sender:
        raise TxRejected(Reject.UNAUTHORIZED, f"only the owner of {prefix} binds tokens to its identifiers")
    record = ctx.get(IdentifierRecord, identifier_key(handle))
    # The identifier is registered.
    if record is None:
        raise TxRejected(Reject.NOT_FOUND, f"{handle} is not registered")
    # An identifier names at most one token.
    if any(v.type == "NFT" for v in record.values):
        raise TxRejected(Reject.ALREADY_EXISTS, f"{handle} is already bound to a token")
    # The record has room for one more value.
    if len(record.values) >= MAX_VALUES:
        raise TxRejected(Reject.INVALID_VALUE, f"{handle} already holds {MAX_VALUES} values")
    index = _next_free_index(record.values)
    values = (*record.values, HandleValue(index, "NFT", token, DEFAULT_TTL, ctx.timestamp))
    ctx.put(identifier_key(handle), replace(record, values=values, updated_height=ctx.height))
    append_history(ctx, handle, "asset.bind", values, record)
    return handle, index


RoyaltyKeeper = Callable[[TxContext, str, str, int], None]  # (ctx, token, creator, bps): sets a token's royalty


def process_asset_mint(ctx: TxContext, p: AssetMint, on_royalty: RoyaltyKeeper | None = None) -> None:
    ctx.require_role("issuer")
    _check_mint_fields(p)
    # Token ids are unique, burned ones included.
    if ctx.get(Asset, asset_key(p.id)) is not None:
        raise TxRejected(Reject.ALREADY_EXISTS, f"asset {p.id!r} already exists")
    owner = p.owner or ctx.sender
    _require_active_member(ctx, owner, "owner")
    # The token names the identifier by its storage key (one for every GS1 form of an item).
    identifier, nft_index = _bind(ctx, p.id, p.identifier) if p.identifier else ("", 0)
    asset = Asset(p.id, p.kind, owner, ctx.sender, p.uri, p.sha256, identifier, nft_index, "", "", 0,
                  False, False, 0, ctx.height, ctx.timestamp)
    _index(ctx, asset, True)
    _record_event(ctx, asset, "mint", "", owner, identifier)
    if p.royalty_bps:
        # A royalty needs the market that keeps it.
        if on_royalty is None:
            raise TxRejected(Reject.INVALID_VALUE, "this ledger keeps no royalties")
        on_royalty(ctx, p.id, ctx.sender, p.royalty_bps)


def process_asset_approve(ctx: TxContext, p: AssetApprove) -> None:
    asset = _live_asset(ctx, p.id)
    # Only the owner or its operator approves.
    if not _may_act_for_owner(ctx, asset, allow_approved=False):
        raise TxRejected(Reject.UNAUTHORIZED, "only the owner or an operator approves")
    if p.approved:
        _require_active_member(ctx, p.approved, "approved")
    _record_event(ctx, replace(asset, approved=p.approved), "approve", asset.owner, p.approved)


def process_asset_set_operator(ctx: TxContext, p: AssetSetOperator) -> None:
    # An owner is not its own operator.
    if p.operator == ctx.sender:
        raise TxRejected(Reject.INVALID_VALUE, "the sender cannot be its own operator")
    key = operator_key(ctx.sender, p.operator)
    if p.approved:
        _require_active_member(ctx, p.operator, "operator")
        ctx.state.put(key, encode(True))
    else:
        ctx.state.delete(key)


def process_asset_transfer(ctx: TxContext, p: AssetTransfer) -> None:
    asset = _live_asset(ctx, p.id)
    # Only the owner, the approved member or an operator transfers.
    if not _may_act_for_owner(ctx, asset, allow_approved=True):
        raise TxRejected(Reject.UNAUTHORIZED, f"only the owner, approved member or an operator transfers {p.id!r}")
    # A locked token never changes hands (ERC-5192).
    if asset.locked:
        raise TxRejected(Reject.LOCKED, f"asset {p.id!r} is locked")
    _require_active_member(ctx, p.to, "recipient")
    # A transfer changes the owner.
    if p.to == asset.owner:
        raise TxRejected(Reject.INVALID_VALUE, f"{p.to} already owns {p.id!r}")
    _record_event(ctx, _move_owner(ctx, asset, p.to), "transfer", asset.owner, p.to)


def process_asset_lease(ctx: TxContext, p: AssetLease) -> None:
    asset = _live_asset(ctx, p.id)
    # Only the owner, the approved member or an operator leases.
    if not _may_act_for_owner(ctx, asset, allow_approved=True):
        raise TxRejected(Reject.UNAUTHORIZED, "only the owner, approved member or an operator leases")
    if p.user:
        _require_active_member(ctx, p.user, "user")
        # A lease ends in the future.
        if p.expires <= ctx.timestamp:
            raise TxRejected(Reject.EXPIRED, f"lease expiry {p.expires} is not after block time {ctx.timestamp}")
    expires = p.expires if p.user else 0
    _record_event(ctx, replace(asset, user=p.user, user_expires=expires), "lease", asset.owner, p.user,
                  str(expires))


def process_asset_lock(ctx: TxContext, p: AssetLock) -> None:
    asset = _live_asset(ctx, p.id)
    # Only the owner locks.
    if ctx.sender != asset.owner:
        raise TxRejected(Reject.UNAUTHORIZED, "only the owner locks a token")
    # The token is not locked already.
    if asset.locked:
        raise TxRejected(Reject.LOCKED, f"asset {p.id!r} is already locked")
    _record_event(ctx, replace(asset, locked=True), "lock", asset.owner)


def process_asset_unlock(ctx: TxContext, p: AssetUnlock) -> None:
    asset = _live_asset(ctx, p.id)
    # Only the owner unlocks (the owner who locked it: a locked token cannot change hands).
    if ctx.sender != asset.owner:
        raise TxRejected(Reject.UNAUTHORIZED, "only the owner unlocks a token")
    # The token is locked.
    if not asset.locked:
        raise TxRejected(Reject.INVALID_VALUE, f"asset {p.id!r} is not locked")
    _record_event(ctx, replace(asset, locked=False), "unlock", asset.owner)


def sale_refusal(asset: Asset, at_ms: int) -> TxRejected | None:
    """Why `asset` cannot be listed or sold at block time `at_ms`, or None: burned, locked, or leased."""
    if asset.burned:
        return TxRejected(Reject.INACTIVE, f"asset {asset.id!r} is burned")
    if asset.locked:
        return TxRejected(Reject.LOCKED, f"asset {asset.id!r} is locked")
    lessee = user_of(asset, at_ms)
    if lessee:
        return TxRejected(Reject.LOCKED, f"asset {asset.id!r} is leased to {lessee} until {asset.user_expires}")
    return None


def sell(ctx: TxContext, token: str, seller: str, buyer: str, detail: str) -> Asset:
    """Move `token` from `seller` to `buyer` for a market sale the caller has settled in the same transaction
    (its payment moves with it or, if this raises, nothing does)."""
    asset = _live_asset(ctx, token)
    # The seller still owns the token.
    if asset.owner != seller:
        raise TxRejected(Reject.UNAUTHORIZED, f"{seller} no longer owns {token!r}")
    refusal = sale_refusal(asset, ctx.timestamp)
    # A locked or leased token is not sold.
    if refusal is not None:
        raise refusal
    _require_active_member(ctx, buyer, "buyer")
    # A sale changes the owner.
    if buyer == seller:
        raise TxRejected(Reject.INVALID_VALUE, f"{buyer} already owns {token!r}")
    return _record_event(ctx, _move_owner(ctx, asset, buyer), "transfer", seller, buyer, detail)


def _mark_decommissioned(ctx: TxContext, asset: Asset) -> None:
    record = ctx.get(IdentifierRecord, identifier_key(asset.identifier))
    if record is None:
        return
    note = f"decommissioned: asset {asset.id} burned at height {ctx.height}"
    values = tuple(
        HandleValue(v.index, "DESC", note, v.ttl, ctx.timestamp)
        if v.index == asset.nft_index and v.type == "NFT" and v.value == asset.id else v
        for v in record.values
    )
    if values != record.values:
        ctx.put(identifier_key(asset.identifier), replace(record, values=values, updated_height=ctx.height))
        append_history(ctx, asset.identifier, "asset.decommission", values, record)


def process_asset_burn(ctx: TxContext, p: AssetBurn) -> None:
    asset = _live_asset(ctx, p.id)
    # Only the owner or an operator burns.
    if not _may_act_for_owner(ctx, asset, allow_approved=False):
        raise TxRejected(Reject.UNAUTHORIZED, "only the owner or an operator burns a token")
    _index(ctx, asset, False)
    if asset.identifier:
        _mark_decommissioned(ctx, asset)
    burned = replace(asset, owner="", approved="", user="", user_expires=0, burned=True)
    _record_event(ctx, burned, "burn", asset.owner, "", asset.identifier)


class AssetsModule:
    def __init__(self, on_royalty: RoyaltyKeeper | None = None) -> None:
        """`on_royalty`: what keeps the royalty a mint sets (the market's `set_royalty`; None: a mint with one
        is refused)."""

        def mint(ctx: TxContext, p: AssetMint) -> None:
            process_asset_mint(ctx, p, on_royalty)

        self.handlers: Mapping[str, Handler] = {**self.HANDLERS, "asset.mint": mint}

    HANDLERS: Mapping[str, Handler] = {
        "asset.mint": process_asset_mint,
        "asset.approve": process_asset_approve,
        "asset.set_operator": process_asset_set_operator,
        "asset.transfer": process_asset_transfer,
        "asset.lease": process_asset_lease,
        "asset.lock": process_asset_lock,
        "asset.unlock": process_asset_unlock,
        "asset.burn": process_asset_burn,
    }


register_kind("asset.mint", AssetMint)
register_kind("asset.approve", AssetApprove)
register_kind("asset.set_operator", AssetSetOperator)
register_kind("asset.transfer", AssetTransfer)
register_kind("asset.lease", AssetLease)
register_kind("asset.lock", AssetLock)
register_kind("asset.unlock", AssetUnlock)
register_kind("asset.burn", AssetBurn)
