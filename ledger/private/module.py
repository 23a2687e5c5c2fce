"""State module of private data: encryption keys, node organisations, collections, commitments, purges.

- `member.enc_key`: a member registers (or replaces) its X25519 encryption public key.
- `node.org` (admin action): names the member organisation a node (validator or observer) belongs to.
- `collection.create` (admin action): a collection and its member organisations.
- `private.put`: a member of the collection commits to a value under a key (one value until it is purged;
  then the key may take a new one): only the salted hash is state;
  the plaintext travels beside the transaction to the member organisations' nodes (`ledger.private.service`).
- `private.purge`: a member of the collection marks the entry purged; the commitment stays, so proofs of
  it still verify, and every node deletes the plaintext from its side store when it commits the purge.

Owns the keys of `ledger.private.records`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

from ledger.members import find_member_by_name, get_member
from ledger.private.records import (
    Collection,
    PrivateEntry,
    collection_key,
    enc_key_key,
    entry_key,
    get_collection,
    get_entry,
    node_org_key,
    valid_key,
    valid_name,
)
from ledger.state import Handler, StateView, TxContext
from ledger.tx import Reject, TxRejected, register_kind

MAX_COLLECTION_MEMBERS = 64
NODE_ID_RE = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class EncKeySet:
    public_key: bytes  # raw X25519


@dataclass(frozen=True)
class NodeOrgSet:
    node: str  # node id
    org: str  # member name


@dataclass(frozen=True)
class CollectionCreate:
    name: str
    members: tuple[str, ...]  # member names


@dataclass(frozen=True)
class PrivatePut:
    collection: str
    key: str
    commitment: bytes


@dataclass(frozen=True)
class PrivatePurge:
    collection: str
    key: str


def _org_id(ctx: TxContext, name: str) -> str:
    member = find_member_by_name(ctx.state, name)
    # An organisation is an active member, named as genesis or `member.add` named it.
    if member is None or not member.active:
        raise TxRejected(Reject.NOT_FOUND, f"no active member named {name!r}")
    return member.id


def _collection_of_member(ctx: TxContext, name: str) -> Collection:
    collection = get_collection(ctx.state, name)
    # The collection exists.
    if collection is None:
        raise TxRejected(Reject.NOT_FOUND, f"no collection {name!r}")
    # Only its member organisations write to it or purge it.
    if ctx.sender not in collection.members:
        raise TxRejected(Reject.UNAUTHORIZED, f"{ctx.sender} is not a member of collection {name!r}")
    return collection


def process_enc_key(ctx: TxContext, p: EncKeySet) -> None:
    # A raw X25519 public key.
    if len(p.public_key) != 32:
        raise TxRejected(Reject.INVALID_VALUE, "an X25519 public key is 32 bytes")
    ctx.put(enc_key_key(ctx.sender), p.public_key)


def process_node_org(ctx: TxContext, p: NodeOrgSet) -> None:
    ctx.require_admin()
    # A node id is the hex id of its node key.
    if NODE_ID_RE.fullmatch(p.node) is None:
        raise TxRejected(Reject.INVALID_VALUE, "node must be a node id (40 hex digits)")
    ctx.put(node_org_key(p.node), _org_id(ctx, p.org))


def process_collection_create(ctx: TxContext, p: CollectionCreate) -> None:
    ctx.require_admin()
    # Names are short labels, usable in keys and URLs.
    if not valid_name(p.name):
        raise TxRejected(Reject.INVALID_VALUE, "a collection name is 1-64 letters, digits, '.', '_' or '-'")
    # A name names one collection, for good.
    if get_collection(ctx.state, p.name) is not None:
        raise TxRejected(Reject.ALREADY_EXISTS, f"collection {p.name!r} exists")
    # At least one member organisation, a bounded number.
    if not 0 < len(set(p.members)) <= MAX_COLLECTION_MEMBERS:
        raise TxRejected(Reject.INVALID_VALUE, f"a collection has 1-{MAX_COLLECTION_MEMBERS} member organisations")
    members = tuple(sorted({_org_id(ctx, name) for name in p.members}))
    ctx.put(collection_key(p.name), Collection(p.name, members, ctx.height))


def process_put(ctx: TxContext, p: PrivatePut) -> None:
    _collection_of_member(ctx, p.collection)
    # Keys are printable text.
    if not valid_key(p.key):
        raise TxRejected(Reject.INVALID_VALUE, "a key is 1-256 printable characters")
    # The commitment is a sha256 hash.
    if len(p.commitment) != 32:
        raise TxRejected(Reject.INVALID_VALUE, "a commitment is 32 bytes")
    existing = get_entry(ctx.state, p.collection, p.key)
    # A key holds one value until it is purged: a replaced value would linger in the side stores' files,
    # beyond the reach of a purge.
    if existing is not None and not existing.purged:
        raise TxRejected(Reject.ALREADY_EXISTS, f"{p.collection}/{p.key} holds a value; purge it first")
    ctx.put(entry_key(p.collection, p.key),
            PrivateEntry(p.collection, p.key, p.commitment, ctx.sender, ctx.height, False))


def process_purge(ctx: TxContext, p: PrivatePurge) -> None:
    _collection_of_member(ctx, p.collection)
    entry = get_entry(ctx.state, p.collection, p.key)
    # There is something to purge.
    if entry is None:
        raise TxRejected(Reject.NOT_FOUND, f"no entry {p.key!r} in collection {p.collection!r}")
    if entry.purged:
        raise TxRejected(Reject.INACTIVE, f"entry {p.key!r} was purged already")
    ctx.put(entry_key(p.collection, p.key), replace(entry, purged=True))


def org_name(view: StateView, member_id: str) -> str:
    """A member organisation's name, for answers (its id if it has none)."""
    member = get_member(view, member_id)
    return member.name if member is not None else member_id


class PrivateModule:
    handlers: Mapping[str, Handler] = {
        "member.enc_key": process_enc_key,
        "node.org": process_node_org,
        "collection.create": process_collection_create,
        "private.put": process_put,
        "private.purge": process_purge,
    }


register_kind("member.enc_key", EncKeySet)
register_kind("node.org", NodeOrgSet)
register_kind("collection.create", CollectionCreate)
register_kind("private.put", PrivatePut)
register_kind("private.purge", PrivatePurge)
