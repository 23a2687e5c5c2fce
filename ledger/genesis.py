"""Genesis: the chain id, the validator set, the founding members with roles, initial prefixes, the
governance settings (the approvals an admin action needs, how long a proposal stays open), the
anchoring settings (the Ethereum chain, the anchor contract, the validators' submitter addresses), and
the member organisation each node belongs to (`node_orgs`, for private data collections).

The genesis file is JSON (the plain form of `Genesis`). Its canonical hash becomes block 0's
`prev_hash`, so every node that accepts block 1 agrees on the same genesis.

Optional sections (`governance`, `anchoring`, and those later issues add) come after the five original fields and
are `null` or missing when absent. The hash covers the fields up to the last present section, so a
file without them hashes (and its block 0 is built) exactly as before they existed: such a chain has
a threshold of one approval. A file with a section hashes as the longer record, which no file
without it can produce.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.anchor.settings import AnchoringSettings, check_settings
from ledger.anchor.settings import settings_state as anchoring_state
from ledger.codec import CodecError, encode, from_plain, to_plain
from ledger.crypto import derive_id, sha256
from ledger.governance import GovernanceSettings, settings_state
from ledger.members import ADMINS_KEY, check_roles, member_key, member_key_index, member_name_key, new_member
from ledger.private.records import NodeOrg, node_org_key
from ledger.resolver.identifiers import InvalidIdentifier, check_prefix
from ledger.resolver.registry import Prefix, prefix_key
from ledger.tx import TxRejected


@dataclass(frozen=True)
class GenesisValidator:
    name: str
    public_key: bytes


@dataclass(frozen=True)
class GenesisMember:
    name: str
    public_key: bytes
    roles: tuple[str, ...]


@dataclass(frozen=True)
class GenesisPrefix:
    prefix: str
    owner: str  # member id


@dataclass(frozen=True)
class Genesis:
    chain_id: str
    timestamp: int  # ms
    validators: tuple[GenesisValidator, ...]
    members: tuple[GenesisMember, ...]
    prefixes: tuple[GenesisPrefix, ...]
    governance: GovernanceSettings | None = None  # None: one admin's approval suffices
    anchoring: AnchoringSettings | None = None  # None: no anchoring until governance sets it
    node_orgs: tuple[NodeOrg, ...] | None = None  # None: no node belongs to an organisation until `node.org`

    def validator_keys(self) -> dict[str, bytes]:
        """Validator id -> public key."""
        return {derive_id(v.public_key): v.public_key for v in self.validators}

    def validator_ids(self) -> list[str]:
        """Validator ids in genesis order (the primary rotation order)."""
        return [derive_id(v.public_key) for v in self.validators]

    def hash(self) -> bytes:
        # The fields up to the last optional section present (see the module's docstring).
        fields = [getattr(self, f.name) for f in dataclasses.fields(self)]
        while len(fields) > len(ORIGINAL_FIELDS) and fields[-1] is None:
            fields.pop()
        return sha256(encode(fields))


ORIGINAL_FIELDS = ("chain_id", "timestamp", "validators", "members", "prefixes")


class InvalidGenesis(ValueError):
    pass


def check_genesis(genesis: Genesis) -> None:
    # The chain has a name.
    if not genesis.chain_id or not genesis.chain_id.isprintable():
        raise InvalidGenesis("chain_id must be non-empty printable text")
    # There is at least one validator, each with a distinct key.
    keys = [v.public_key for v in genesis.validators]
    if not keys or len(set(keys)) != len(keys):
        raise InvalidGenesis("validators must be non-empty with distinct keys")
    # Someone can administer the chain.
    if not any("admin" in m.roles for m in genesis.members):
        raise InvalidGenesis("genesis needs at least one admin member")
    member_ids = {derive_id(m.public_key) for m in genesis.members}
    # Members have distinct keys and distinct names.
    if len(member_ids) != len(genesis.members):
        raise InvalidGenesis("two members share a key")
    if len({m.name for m in genesis.members}) != len(genesis.members):
        raise InvalidGenesis("two members share a name")
    for p in genesis.prefixes:
        # Initial prefixes are well formed and owned by a founding member.
        try:
            check_prefix(p.prefix)
        except InvalidIdentifier as exc:
            raise InvalidGenesis(str(exc)) from exc
        if p.owner not in member_ids:
            raise InvalidGenesis(f"prefix {p.prefix} owner {p.owner} is not a genesis member")
    gov = genesis.governance
    if gov is not None:
        admins = sum(1 for m in genesis.members if "admin" in m.roles)
        # The admins can reach the threshold, and it is at least one.
        if not 1 <= gov.approvals <= admins:
            raise InvalidGenesis(f"governance.approvals must be 1-{admins} (the genesis admins), not {gov.approvals}")
        # Proposals stay open for some time.
        if gov.expiry_ms <= 0:
            raise InvalidGenesis("governance.expiry_ms must be positive")
    if genesis.anchoring is not None:
        # The anchoring settings are well formed (lowercase addresses, a positive chain id, submitters).
        try:
            check_settings(genesis.anchoring)
        except TxRejected as exc:
            raise InvalidGenesis(f"anchoring: {exc.message}") from exc
    _check_node_orgs(genesis)


def _check_node_orgs(genesis: Genesis) -> None:
    names = {m.name for m in genesis.members}
    nodes = [o.node for o in genesis.node_orgs or ()]
    # Each node is named once, by its id, and belongs to a founding member.
    if len(set(nodes)) != len(nodes):
        raise InvalidGenesis("node_orgs names a node twice")
    for o in genesis.node_orgs or ():
        if len(o.node) != 40 or any(c not in "0123456789abcdef" for c in o.node):
            raise InvalidGenesis(f"node_orgs: {o.node!r} is not a node id (40 hex digits)")
        if o.org not in names:
            raise InvalidGenesis(f"node_orgs: {o.org!r} is not a genesis member")


def genesis_state(genesis: Genesis) -> dict[bytes, bytes]:
    """The state before block 1: members and initial prefixes."""
    check_genesis(genesis)
    state: dict[bytes, bytes] = {}
    for m in genesis.members:
        try:
            member = new_member(m.name, m.public_key, check_roles(m.roles))
        except TxRejected as exc:
            raise InvalidGenesis(f"member {m.name}: {exc.message}") from exc
        state[member_key(member.id)] = encode(member)
        state[member_name_key(member.name)] = member.id.encode()
        state[member_key_index(member.public_key)] = member.id.encode()
    for p in genesis.prefixes:
        state[prefix_key(p.prefix)] = encode(Prefix(p.prefix, p.owner, 0))
    if genesis.governance is not None:
        # Only with the section: the state of a file without it stays as it was (see ledger.members).
        state.update(settings_state(genesis.governance))
        admins = sorted(derive_id(m.public_key) for m in genesis.members if "admin" in m.roles)
        state[ADMINS_KEY] = encode(tuple(admins))
    if genesis.anchoring is not None:
        state.update(anchoring_state(genesis.anchoring))
    ids = {m.name: derive_id(m.public_key) for m in genesis.members}
    for o in genesis.node_orgs or ():
        state[node_org_key(o.node)] = encode(ids[o.org])
    return state


def load_genesis(path: str | Path) -> Genesis:
    try:
        raw = json.loads(Path(path).read_text())
        genesis = genesis_from_plain(raw)
    except (OSError, json.JSONDecodeError, CodecError) as exc:
        raise InvalidGenesis(f"cannot load genesis {path}: {exc}") from exc
    check_genesis(genesis)
    return genesis


def genesis_from_plain(raw: Any) -> Genesis:
    """The genesis from its plain (JSON) form, in which optional sections may be left out (CodecError if
    malformed; not checked: see `check_genesis`)."""
    if isinstance(raw, dict):
        optional = [f.name for f in dataclasses.fields(Genesis) if f.name not in ORIGINAL_FIELDS]
        raw = {**{name: None for name in optional}, **raw}
    return from_plain(Genesis, raw)


def genesis_to_plain(genesis: Genesis) -> dict[str, Any]:
    """The file's plain form: absent optional sections are left out (as in files written before them)."""
    return {k: v for k, v in to_plain(genesis).items() if k in ORIGINAL_FIELDS or v is not None}


def save_genesis(genesis: Genesis, path: str | Path) -> None:
    Path(path).write_text(json.dumps(genesis_to_plain(genesis), indent=2) + "\n")
