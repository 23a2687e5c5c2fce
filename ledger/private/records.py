"""Private data's state records and keys (each covered by the generic state proof, docs/proofs.md).

- `member-ek/<member id>`: the member's X25519 encryption public key (`member.enc_key`).
- `node-org/<node id>`: the member organisation a validator or observer belongs to (genesis's
  `node_orgs` section, or the admin action `node.org`).
- `pdc/c/<name>`: a collection: its name and its member organisations (member ids, sorted).
- `pdc/d/<collection>/<key>`: an entry: the salted commitment to its plaintext, who wrote it and when,
  and whether it was purged. The plaintext is never state.

The commitment is `sha256("ledger/private/v1" || canonical([collection, key, salt, value]))` with a
random 32-byte salt, so a guessed value cannot be checked against it without the salt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ledger.codec import encode
from ledger.crypto import sha256
from ledger.state import StateView, get_record

DOMAIN_COMMITMENT = b"ledger/private/v1"
SALT_LEN = 32
MAX_VALUE_BYTES = 1 << 20  # what one entry's plaintext may hold
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_KEY_LEN = 256


@dataclass(frozen=True)
class NodeOrg:
    node: str  # the node's id (derive_id of its node key)
    org: str  # the member organisation's name (in genesis) or id (in state)


@dataclass(frozen=True)
class Collection:
    name: str
    members: tuple[str, ...]  # member ids, sorted
    created_height: int


@dataclass(frozen=True)
class PrivateEntry:
    collection: str
    key: str
    commitment: bytes
    writer: str  # member id
    height: int
    purged: bool


def enc_key_key(member_id: str) -> bytes:
    return b"member-ek/" + member_id.encode()


def node_org_key(node_id: str) -> bytes:
    return b"node-org/" + node_id.encode()


def collection_key(name: str) -> bytes:
    return b"pdc/c/" + name.encode()


def entry_key(collection: str, key: str) -> bytes:
    return b"pdc/d/" + collection.encode() + b"/" + key.encode()


ENTRY_PREFIX = b"pdc/d/"


def commitment(collection: str, key: str, salt: bytes, value: bytes) -> bytes:
    return sha256(DOMAIN_COMMITMENT + encode((collection, key, salt, value)))


def valid_name(name: str) -> bool:
    return NAME_RE.fullmatch(name) is not None


def valid_key(key: str) -> bool:
    return 0 < len(key) <= MAX_KEY_LEN and key.isprintable()


def get_enc_key(view: StateView, member_id: str) -> bytes | None:
    return get_record(view, bytes, enc_key_key(member_id))


def get_node_org(view: StateView, node_id: str) -> str | None:
    """The member id of the organisation the node belongs to (None: none named)."""
    return get_record(view, str, node_org_key(node_id))


def get_collection(view: StateView, name: str) -> Collection | None:
    return get_record(view, Collection, collection_key(name))


def get_entry(view: StateView, collection: str, key: str) -> PrivateEntry | None:
    return get_record(view, PrivateEntry, entry_key(collection, key))


def node_in_collection(view: StateView, node_id: str, collection: Collection) -> bool:
    org = get_node_org(view, node_id)
    return org is not None and org in collection.members
