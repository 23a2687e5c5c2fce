"""Load the demo data into a running devnet (`ledger devnet up --demo`).

`equipment.csv` (header `prefix,owner,identifier,url,twin,description`): the admin creates each
prefix for its owner, then each owner registers its rows (URL at index 1, then TWIN and DESC when
given). `assets.toml`: tokens (`[[tokens]]`, minted by `minter`, optionally bound to an identifier)
and licences (`[[licences]]`, granted by `grantor` to `holder`, valid for `days` from now, under the
licence named `parent`, revoked when `revoked = true`). Members are named as in the devnet's keys.

Loading twice changes nothing: prefixes, identifiers and tokens that exist already are skipped (a
token with its licences), so nothing is submitted the second time.
"""

from __future__ import annotations

import csv
import hashlib
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devnet.record import member_with_role
from ledger.client import LedgerClient, LedgerError, Signer, check_result
from ledger.crypto import SigningKey
from ledger.governance import ProposalVote, compute_proposal_id
from ledger.id_import import registered_urls
from ledger.nft.assets import AssetMint
from ledger.nft.rights import LicenceGrant, LicenceRevoke, compute_licence_id
from ledger.resolver.registry import IdRegister, PrefixCreate, ValueSpec

EQUIPMENT_COLUMNS = ("prefix", "owner", "identifier", "url", "twin", "description")
DAY_MS = 86_400_000


class DemoError(ValueError):
    """The demo files are unusable, or name a member the devnet does not have."""


@dataclass(frozen=True)
class Equipment:
    prefix: str
    owner: str
    identifier: str
    url: str
    twin: str
    description: str

    def values(self) -> tuple[ValueSpec, ...]:
        extra = [(kind, text) for kind, text in (("TWIN", self.twin), ("DESC", self.description)) if text]
        return (ValueSpec(1, "URL", self.url), *(ValueSpec(i, k, v) for i, (k, v) in enumerate(extra, start=2)))


@dataclass(frozen=True)
class Token:
    id: str
    kind: str
    minter: str
    identifier: str
    uri: str
    metadata: str


@dataclass(frozen=True)
class Licence:
    name: str
    token: str
    grantor: str
    holder: str
    purposes: tuple[str, ...]
    days: int
    sublicensable: bool
    parent: str
    revoked: bool


def read_equipment(path: Path) -> list[Equipment]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or not set(EQUIPMENT_COLUMNS) <= set(reader.fieldnames):
                raise DemoError(f"{path}: the header must be {','.join(EQUIPMENT_COLUMNS)}")
            rows = [Equipment(*((row.get(c) or "").strip() for c in EQUIPMENT_COLUMNS)) for row in reader]
    except (OSError, UnicodeDecodeError) as exc:
        raise DemoError(f"cannot read {path}: {exc}") from exc
    for n, row in enumerate(rows, start=2):
        if not (row.prefix and row.owner and row.identifier and row.url):
            raise DemoError(f"{path} line {n}: prefix, owner, identifier and url are required")
    return rows


def _field(entry: dict[str, Any], key: str, kind: type, where: str, default: Any = None) -> Any:
    value = entry.get(key, default)
    if not isinstance(value, kind):
        raise DemoError(f"{where}: {key} must be a {kind.__name__}, not {value!r}")
    return value


def read_assets(path: Path) -> tuple[list[Token], list[Licence]]:
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DemoError(f"cannot read {path}: {exc}") from exc
    tokens = []
    for i, t in enumerate(doc.get("tokens", [])):
        where = f"{path} tokens[{i}]"
        tokens.append(Token(_field(t, "id", str, where), _field(t, "kind", str, where), _field(t, "minter", str, where),
                            _field(t, "identifier", str, where, ""), _field(t, "uri", str, where),
                            _field(t, "metadata", str, where)))
    licences: list[Licence] = []
    for i, lic in enumerate(doc.get("licences", [])):
        where = f"{path} licences[{i}]"
        purposes = _field(lic, "purposes", list, where)
        licence = Licence(
            _field(lic, "name", str, where), _field(lic, "token", str, where), _field(lic, "grantor", str, where),
            _field(lic, "holder", str, where), tuple(str(p) for p in purposes), _field(lic, "days", int, where),
            _field(lic, "sublicensable", bool, where, False), _field(lic, "parent", str, where, ""),
            _field(lic, "revoked", bool, where, False))
        if licence.token not in {t.id for t in tokens}:
            raise DemoError(f"{where}: token {licence.token!r} is not one of the file's tokens")
        if licence.parent and licence.parent not in {earlier.name for earlier in licences}:
            raise DemoError(f"{where}: parent {licence.parent!r} names no licence above it")
        licences.append(licence)
    return tokens, licences


class DemoLoader:
    """Submits the demo through the devnet's first node, signing as the members the files name."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.keys: dict[str, str] = data["keys"]
        self.client = LedgerClient(data["nodes"][0]["http"])
        self._signers: dict[str, Signer] = {}

    def signer(self, member: str) -> Signer:
        if member not in self._signers:
            if member not in self.keys:
                raise DemoError(f"the demo names member {member!r}; the devnet has {sorted(self.keys)}")
            self._signers[member] = Signer(SigningKey.load(self.keys[member]), self.client)
        return self._signers[member]

    def _admin(self) -> Signer:
        admin = member_with_role(self.data, "admin")
        if admin is None:
            raise DemoError("the devnet has no member with the admin role to create the demo's prefixes")
        return self.signer(admin)

    def equipment(self, rows: list[Equipment]) -> None:
        admin = self._admin()
        for prefix, owner in dict.fromkeys((r.prefix, r.owner) for r in rows):
            if not self._exists(f"/v1/prefixes/{prefix}"):
                result = admin.send("prefix.create", PrefixCreate(prefix, self.signer(owner).member_id))
                self._approve(compute_proposal_id(bytes.fromhex(result["tx_id"])))
        registered = registered_urls(self.client, [r.identifier for r in rows])
        fresh = [r for r in rows if registered[r.identifier] is None]
        for owner in dict.fromkeys(r.owner for r in fresh):  # one batch per owner
            signer = self.signer(owner)
            mine = [r for r in fresh if r.owner == owner]
            txs = [signer.sign("id.register", IdRegister(r.identifier, r.values())) for r in mine]
            for row, result in zip(mine, self.client.submit(txs, wait=True), strict=True):
                try:
                    check_result(result, signer)
                except LedgerError as exc:
                    raise LedgerError(exc.reason, f"demo identifier {row.identifier}: {exc.message}") from exc

    def assets(self, tokens: list[Token], licences: list[Licence]) -> None:
        fresh = [t for t in tokens if not self._exists(f"/v1/assets/{t.id}")]
        for t in fresh:
            self.signer(t.minter).send("asset.mint", AssetMint(
                t.id, t.kind, t.uri, hashlib.sha256(t.metadata.encode()).digest(), "", t.identifier))
        now = int(time.time() * 1000)
        granted: dict[str, str] = {}  # licence name -> id
        for lic in licences:
            if lic.token not in {t.id for t in fresh}:
                continue  # its token was loaded earlier, and so was it
            grant = LicenceGrant(lic.token, granted.get(lic.parent, ""), self.signer(lic.holder).member_id,
                                 lic.purposes, 0, now + lic.days * DAY_MS, lic.sublicensable, "", b"")
            result = self.signer(lic.grantor).send("licence.grant", grant)
            granted[lic.name] = compute_licence_id(bytes.fromhex(result["tx_id"]))
        for lic in licences:
            if lic.revoked and lic.name in granted:
                self.signer(lic.grantor).send("licence.revoke", LicenceRevoke(granted[lic.name]))

    def _approve(self, proposal_id: str) -> None:
        """With a threshold above one, the admin's action made a proposal: the devnet's other admins
        (admin2 ... adminK) approve it until it runs."""
        path = f"/v1/governance/proposals/{proposal_id}"
        others = sorted((k for k in self.keys if k.startswith("admin") and k[5:].isdigit() and k != "admin1"),
                        key=lambda k: int(k[5:]))
        for name in others:
            if not self._exists(path) or self.client.get(path)["status"] != "open":
                return
            self.signer(name).send("governance.approve", ProposalVote(proposal_id))
        if self._exists(path) and self.client.get(path)["status"] != "executed":
            raise DemoError(f"the devnet's admins could not pass proposal {proposal_id}")

    def _exists(self, path: str) -> bool:
        try:
            self.client.get(path)
        except LedgerError as exc:
            if exc.status != 404:
                raise
            return False
        return True


def load_demo(data: dict[str, Any], equipment_csv: Path, assets_toml: Path) -> str:
    """Load both files into the devnet described by `data` (its devnet.json); a one-line summary."""
    rows = read_equipment(equipment_csv)
    tokens, licences = read_assets(assets_toml)
    loader = DemoLoader(data)
    try:
        loader.equipment(rows)
        loader.assets(tokens, licences)
    finally:
        loader.client.close()
    prefixes = ", ".join(dict.fromkeys(r.prefix for r in rows))
    first = rows[0].identifier if rows else "-"
    return (f"demo data: prefixes {prefixes} with {len(rows)} identifiers such as {first}; "
            f"{len(tokens)} token(s) such as {tokens[0].id if tokens else '-'} with {len(licences)} licence(s)")
