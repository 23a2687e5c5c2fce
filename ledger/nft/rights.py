"""State module: data-rights licences, a tree per token (ERC-5218) whose rights list (ERC-5585) holds purposes.

Theory of operation. A `Licence` lives under `licence/<id>`, where the id is the hex sha256 of the
granting transaction's id (one licence per transaction, so ids are deterministic and unique). Two
lists make every question a handful of point reads, each provable: `licence-holder/<token>/<holder>`
(the licences a member holds on a token: what `check` reads) and `licence-token/<token>` (the tree,
for listing).

Rules:
- grant: a root licence (no parent) is granted by the token's current owner; a child licence by the
  holder of a sublicensable parent that is active at block time. A child's purposes are a subset of
  its parent's and its validity lies within the parent's (`valid_from` >= and `valid_until` <=).
  `valid_from < valid_until`, `valid_until` lies after block time (a `valid_from` of 0 means "from
  block time"); the holder is an active member; the token is live (not burned).
- revoke: the licence's `revoker` (the grantor of a sublicence; nobody extra for a root) or the
  token's *current* owner revokes; the revoking member and time are recorded. Revocation is final.
- active at t: not revoked, `valid_from <= t < valid_until`, and the parent active at t (recursively).
- `check(view, token, holder, purpose, at)`: allowed iff the token is live and some licence of the
  holder on it is active at `at` and lists the purpose.

When the token changes owner, its licences persist (the root licences move with the token, as in
ERC-5218): holders keep their rights. Control moves with ownership: the new owner grants new roots
and may revoke any licence on the token; the former owner loses the right to revoke the roots it
granted (a root's `revoker` is "", meaning "the current owner"), while a sublicence's grantor keeps
the right to revoke the sublicences it granted. When the token is burned, every licence on it checks
as denied ("token_burned").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from ledger.codec import appended, encode
from ledger.crypto import sha256
from ledger.members import get_member
from ledger.nft.assets import MAX_URI_LEN, Asset, asset_key, get_asset
from ledger.state import Handler, StateView, TxContext, get_record
from ledger.tx import Reject, TxRejected, register_kind

MAX_PURPOSES = 32
MAX_PURPOSE_LEN = 64
MAX_LICENCES_PER_TOKEN = 4096
MAX_DEPTH = 16


@dataclass(frozen=True)
class Licence:
    id: str
    token: str
    parent: str  # "" for a root licence
    depth: int  # 0 for a root
    grantor: str
    holder: str
    purposes: tuple[str, ...]  # sorted, unique
    valid_from: int  # ms
    valid_until: int  # ms, exclusive
    sublicensable: bool
    revoker: str  # who may revoke besides the current token owner ("" for roots)
    terms_uri: str
    terms_hash: bytes  # sha256 of the terms, or b"" when there are none
    created_height: int
    created_at: int  # ms
    revoked: bool
    revoked_by: str
    revoked_height: int
    revoked_at: int  # ms
    # Of the price of each sublicence its holder sells, the basis points it passes up to its grantor (set when the
    # licence was sold through a licence offer with a resale share; 0 otherwise, and in records from before it).
    resale_share_bps: int = appended(0)


@dataclass(frozen=True)
class LicenceGrant:
    token: str
    parent: str  # "" for a root licence
    holder: str
    purposes: tuple[str, ...]
    valid_from: int  # ms; 0 means block time
    valid_until: int  # ms
    sublicensable: bool
    terms_uri: str
    terms_hash: bytes


@dataclass(frozen=True)
class LicenceRevoke:
    licence: str


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str  # "allowed" or why not
    licence_id: str  # the deciding licence, "" when the holder has none that lists the purpose


# --- keys and queries ------------------------------------------------------------------------------


def licence_key(licence_id: str) -> bytes:
    return b"licence/" + licence_id.encode()


def holder_list_key(token: str, holder: str) -> bytes:
    return b"licence-holder/" + token.encode() + b"/" + holder.encode()


def token_list_key(token: str) -> bytes:
    return b"licence-token/" + token.encode()


def compute_licence_id(tx_id: bytes) -> str:
    return sha256(b"licence:" + tx_id).hex()


def get_licence(view: StateView, licence_id: str) -> Licence | None:
    return get_record(view, Licence, licence_key(licence_id))


def _id_list(view: StateView, key: bytes) -> tuple[str, ...]:
    return get_record(view, tuple[str, ...], key) or ()


def licences_of(view: StateView, token: str, holder: str | None = None) -> list[Licence]:
    key = token_list_key(token) if holder is None else holder_list_key(token, holder)
    found = (get_licence(view, i) for i in _id_list(view, key))
    return [lic for lic in found if lic is not None]


def inactive_reason(view: StateView, licence: Licence, at_ms: int) -> str:
    """"" when `licence` is active at `at_ms`, else why not (its own state before its ancestors')."""
    current: Licence | None = licence
    own = True
    while current is not None:
        prefix = "" if own else "ancestor_"
        if current.revoked:
            return prefix + "revoked"
        if at_ms < current.valid_from:
            return prefix + "not_yet_valid"
        if at_ms >= current.valid_until:
            return prefix + "expired"
        if not current.parent:
            return ""
        current = get_licence(view, current.parent)
        own = False
    return "ancestor_missing"


def is_licence_active(view: StateView, licence: Licence, at_ms: int) -> bool:
    return inactive_reason(view, licence, at_ms) == ""


def check(view: StateView, token: str, holder: str, purpose: str, at_ms: int) -> Decision:
    """May `holder` use `token` for `purpose` at `at_ms`? The deciding licence's id comes with it."""
    asset = get_asset(view, token)
    if asset is None:
        return Decision(False, "unknown_token", "")
    if asset.burned:
        return Decision(False, "token_burned", "")
    member = get_member(view, holder)
    if member is None or not member.active:
        return Decision(False, "holder_not_member", "")
    held = licences_of(view, token, holder)
    if not held:
        return Decision(False, "no_licence", "")
    covering = [lic for lic in held if purpose in lic.purposes]
    if not covering:
        return Decision(False, "purpose_not_granted", held[0].id)
    first_denial: Decision | None = None
    for lic in covering:
        reason = inactive_reason(view, lic, at_ms)
        if not reason:
            return Decision(True, "allowed", lic.id)
        if first_denial is None:
            first_denial = Decision(False, reason, lic.id)
    assert first_denial is not None  # covering is not empty
    return first_denial


# --- handlers ------------------------------------------------------------------------------------


def _check_grant_fields(p: LicenceGrant) -> tuple[str, ...]:
    purposes = tuple(sorted(set(p.purposes)))
    # At least one purpose, and a bounded number.
    if not 0 < len(purposes) <= MAX_PURPOSES:
        raise TxRejected(Reject.INVALID_VALUE, f"a licence lists 1-{MAX_PURPOSES} purposes")
    # Purposes are short printable labels without spaces.
    for purpose in purposes:
        if not 0 < len(purpose) <= MAX_PURPOSE_LEN or not purpose.isprintable() or " " in purpose:
            raise TxRejected(Reject.INVALID_VALUE, f"purpose {purpose!r} is not a 1-{MAX_PURPOSE_LEN} character label")
    # The terms URI is bounded, printable text.
    if len(p.terms_uri) > MAX_URI_LEN or not p.terms_uri.isprintable():
        raise TxRejected(Reject.INVALID_VALUE, f"terms_uri must be at most {MAX_URI_LEN} printable characters")
    # The terms hash is a sha256 (or absent).
    if len(p.terms_hash) not in (0, 32):
        raise TxRejected(Reject.INVALID_VALUE, "terms_hash must be 32 bytes or empty")
    return purposes


def _check_parent(ctx: TxContext, p: LicenceGrant, purposes: tuple[str, ...], valid_from: int) -> Licence:
    parent = ctx.get(Licence, licence_key(p.parent))
    # The parent licence exists.
    if parent is None:
        raise TxRejected(Reject.NOT_FOUND, f"no licence {p.parent}")
    # The parent licences the same token.
    if parent.token != p.token:
        raise TxRejected(Reject.INVALID_VALUE, f"licence {p.parent} is for token {parent.token!r}")
    # Only the parent's holder sublicenses.
    if parent.holder != ctx.sender:
        raise TxRejected(Reject.UNAUTHORIZED, "only the holder of the parent licence grants sublicences")
    # The parent allows sublicences.
    if not parent.sublicensable:
        raise TxRejected(Reject.UNAUTHORIZED, f"licence {p.parent} is not sublicensable")
    reason = inactive_reason(ctx.state, parent, ctx.timestamp)
    # The parent is active now (not revoked or expired, nor any ancestor).
    if reason:
        raise TxRejected(Reject.INACTIVE, f"parent licence is not active: {reason}")
    wider = sorted(set(purposes) - set(parent.purposes))
    # A sublicence's purposes are among its parent's.
    if wider:
        raise TxRejected(Reject.EXCEEDS_PARENT, f"purposes {wider} are not granted by the parent licence")
    # A sublicence does not outlive its parent.
    if p.valid_until > parent.valid_until:
        raise TxRejected(Reject.EXCEEDS_PARENT, f"valid_until is after the parent's ({parent.valid_until})")
    # A sublicence does not start before its parent.
    if valid_from < parent.valid_from:
        raise TxRejected(Reject.EXCEEDS_PARENT, f"valid_from is before the parent's ({parent.valid_from})")
    # The tree has bounded depth (check walks the ancestors).
    if parent.depth + 1 >= MAX_DEPTH:
        raise TxRejected(Reject.INVALID_VALUE, f"licence trees are at most {MAX_DEPTH} levels deep")
    return parent


def process_licence_grant(ctx: TxContext, p: LicenceGrant) -> None:
    grant(ctx, p)


def check_grant(ctx: TxContext, p: LicenceGrant) -> tuple[tuple[str, ...], int, int, str, tuple[str, ...]]:
    """Whether `ctx.sender` could grant `p` now, without granting it (raises TxRejected if not): the licence's
    purposes, start, depth and revoker, and the token's tree as it is."""
    purposes = _check_grant_fields(p)
    valid_from = p.valid_from or ctx.timestamp
    # The licence does not end in the past.
    if p.valid_until <= ctx.timestamp:
        raise TxRejected(Reject.EXPIRED, f"valid_until {p.valid_until} is not after block time {ctx.timestamp}")
    # The validity interval is not inverted or empty.
    if valid_from >= p.valid_until:
        raise TxRejected(Reject.INVALID_VALUE, f"valid_from {valid_from} is not before valid_until {p.valid_until}")
    holder = get_member(ctx.state, p.holder)
    # The holder is an active member.
    if holder is None or not holder.active:
        raise TxRejected(Reject.NOT_FOUND, f"holder {p.holder!r} is not an active member")
    asset = ctx.get(Asset, asset_key(p.token))
    # The token exists.
    if asset is None:
        raise TxRejected(Reject.NOT_FOUND, f"no asset {p.token!r}")
    # The token is live.
    if asset.burned:
        raise TxRejected(Reject.INACTIVE, f"asset {p.token!r} is burned")
    if p.parent:
        parent = _check_parent(ctx, p, purposes, valid_from)
        depth, revoker = parent.depth + 1, ctx.sender
    else:
        # Only the token's owner grants root licences.
        if asset.owner != ctx.sender:
            raise TxRejected(Reject.UNAUTHORIZED, f"only the owner of {p.token!r} grants root licences")
        depth, revoker = 0, ""
    tree = _id_list(ctx.state, token_list_key(p.token))
    # A token's tree is bounded.
    if len(tree) >= MAX_LICENCES_PER_TOKEN:
        raise TxRejected(Reject.INVALID_VALUE, f"token {p.token!r} has {MAX_LICENCES_PER_TOKEN} licences")
    return purposes, valid_from, depth, revoker, tree


def grant(ctx: TxContext, p: LicenceGrant, resale_share_bps: int = 0) -> Licence:
    """Grant `p` as `ctx.sender` under the rules above (also how the market grants a licence it sold, with the
    seller as sender, inside the buyer's transaction, and the offer's resale share); the licence granted."""
    purposes, valid_from, depth, revoker, tree = check_grant(ctx, p)
    licence = Licence(
        compute_licence_id(ctx.tx_id), p.token, p.parent, depth, ctx.sender, p.holder, purposes, valid_from,
        p.valid_until, p.sublicensable, revoker, p.terms_uri, p.terms_hash, ctx.height, ctx.timestamp,
        False, "", 0, 0, resale_share_bps,
    )
    ctx.put(licence_key(licence.id), licence)
    ctx.state.put(token_list_key(p.token), encode((*tree, licence.id)))
    held = _id_list(ctx.state, holder_list_key(p.token, p.holder))
    ctx.state.put(holder_list_key(p.token, p.holder), encode((*held, licence.id)))
    return licence


def process_licence_revoke(ctx: TxContext, p: LicenceRevoke) -> None:
    licence = ctx.get(Licence, licence_key(p.licence))
    # The licence exists.
    if licence is None:
        raise TxRejected(Reject.NOT_FOUND, f"no licence {p.licence}")
    # Revocation is final; a licence is revoked once.
    if licence.revoked:
        raise TxRejected(Reject.INACTIVE, f"licence {p.licence} is already revoked")
    asset = ctx.get(Asset, asset_key(licence.token))
    owner = asset.owner if asset is not None else ""
    # Only the licence's revoker or the token's current owner revokes.
    if ctx.sender not in {licence.revoker, owner} - {""}:
        raise TxRejected(Reject.UNAUTHORIZED, "only the grantor of a sublicence or the token's owner revokes")
    revoked = replace(licence, revoked=True, revoked_by=ctx.sender, revoked_height=ctx.height,
                      revoked_at=ctx.timestamp)
    ctx.put(licence_key(licence.id), revoked)


class RightsModule:
    handlers: Mapping[str, Handler] = {
        "licence.grant": process_licence_grant,
        "licence.revoke": process_licence_revoke,
    }


register_kind("licence.grant", LicenceGrant)
register_kind("licence.revoke", LicenceRevoke)
