"""The devnet's definition, read from `devnet/devnet.toml` (or a copy given with `--definition`).

It says what `make devnet` and `ledger devnet up` create: the members and their roles, the admins and
the approvals an admin action needs, the number of validators and their ports, the batch settings, the
Ethereum chain and the anchoring intervals, and where the demo data lives. Command-line flags override
it (`Definition.with_overrides`).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from ledger.members import ROLES

DEFAULT_DEFINITION = Path(__file__).with_name("devnet.toml")
MEMBER_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # also a key file name: DIR/keys/<name>.pem

T = TypeVar("T")


class DefinitionError(ValueError):
    """The definition file is missing, not TOML, or says something the devnet cannot be built from."""


def check_ethereum_choice(chain: str) -> str:
    """`anvil`, `none` or an http(s) JSON-RPC URL; raises DefinitionError otherwise."""
    if chain == "tester":
        raise DefinitionError("tester is an in-process chain that the devnet's node processes cannot share; "
                              "use anvil")
    if chain not in ("anvil", "none") and not chain.startswith(("http://", "https://")):
        raise DefinitionError(f"the Ethereum chain must be anvil, none or an http(s) RPC URL, not {chain!r}")
    return chain


@dataclass(frozen=True)
class Anchoring:
    """The chain the validators anchor to, and how often (written into each node's config)."""

    chain: str  # anvil | none | an http(s) RPC URL
    interval_blocks: int
    interval_s: float
    grace_s: float
    max_backoff_s: float
    confirmations: int = 1  # an anchor is attested once its Ethereum block has this many (Anvil: 1, no reorgs)

    def node_settings(self) -> dict[str, Any]:
        return {"interval_blocks": self.interval_blocks, "interval_s": self.interval_s, "grace_s": self.grace_s,
                "max_backoff_s": self.max_backoff_s, "confirmations": self.confirmations}


@dataclass(frozen=True)
class Governance:
    """How many admins the devnet has and how many of them approve an admin action (genesis governance)."""

    admins: int  # K: the first admin of [members], then admin2 ... adminK
    approvals: int  # M
    expiry_hours: float  # how long a proposal stays open

    @property
    def expiry_ms(self) -> int:
        return round(self.expiry_hours * 3600 * 1000)


DEFAULT_GOVERNANCE = Governance(1, 1, 168.0)


@dataclass(frozen=True)
class Definition:
    source: Path
    chain_id: str
    members: tuple[tuple[str, tuple[str, ...]], ...]  # (name, roles), in the file's order
    governance: Governance
    nodes: int
    http_base_port: int
    batch_size: int
    batch_wait_ms: int
    anchoring: Anchoring
    demo_equipment: Path
    demo_assets: Path

    def with_overrides(self, nodes: int | None = None, http_base_port: int | None = None,
                       batch_size: int | None = None, batch_wait_ms: int | None = None,
                       admins: int | None = None, approvals: int | None = None) -> Definition:
        """This definition with the values given (not None) replaced, checked like the file's."""
        gov = self.governance
        changed = replace(
            self,
            governance=replace(gov, admins=gov.admins if admins is None else admins,
                               approvals=gov.approvals if approvals is None else approvals),
            nodes=self.nodes if nodes is None else nodes,
            http_base_port=self.http_base_port if http_base_port is None else http_base_port,
            batch_size=self.batch_size if batch_size is None else batch_size,
            batch_wait_ms=self.batch_wait_ms if batch_wait_ms is None else batch_wait_ms,
        )
        _check_numbers(changed)
        _check_governance(changed)
        return changed

    def first_admin(self) -> str:
        """The [members] member that is admin1 (the first holding the admin role)."""
        return next(name for name, roles in self.members if "admin" in roles)

    def genesis_members(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """The members genesis holds: [members], then the admins admin2 ... adminK beyond the first."""
        extra = tuple((f"admin{i}", ("admin",)) for i in range(2, self.governance.admins + 1))
        return (*self.members, *extra)

    def key_aliases(self) -> dict[str, str]:
        """Key names in devnet.json that name another member's key: admin1 is the first admin."""
        return {"admin1": self.first_admin()}


def _take(table: dict[str, Any], key: str, kind: type[T], where: str) -> T:
    value = table.get(key)
    # bool is an int to Python, not to a reader of the file
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise DefinitionError(f"{where}.{key} must be a {kind.__name__}, not {value!r}")
    return value


def _number(table: dict[str, Any], key: str, where: str) -> float:
    value = table.get(key)
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise DefinitionError(f"{where}.{key} must be a number of seconds, not {value!r}")
    return float(value)


def _table(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key)
    if not isinstance(value, dict):
        raise DefinitionError(f"the [{key}] table is missing")
    return value


def _members(table: dict[str, Any]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    out = []
    for name, roles in table.items():
        if not MEMBER_NAME_RE.fullmatch(name):
            raise DefinitionError(f"member name {name!r}: use letters, digits, '-' and '_' (it names a key file)")
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise DefinitionError(f"members.{name} must be a list of roles")
        unknown = [r for r in roles if r not in ROLES]
        if unknown:
            raise DefinitionError(f"members.{name}: unknown roles {unknown}; known: {list(ROLES)}")
        out.append((name, tuple(roles)))
    if not out:
        raise DefinitionError("[members] names no member")
    return tuple(out)


def _check_numbers(d: Definition) -> None:
    if d.nodes < 1:
        raise DefinitionError(f"a devnet has at least one validator, not {d.nodes}")
    if not 1024 <= d.http_base_port <= 65000:
        raise DefinitionError(f"http_base_port must be in 1024-65000, not {d.http_base_port}")
    if d.batch_size < 1 or d.batch_wait_ms < 0:
        raise DefinitionError("batch_size must be at least 1 and batch_wait_ms not negative")
    if d.anchoring.interval_blocks < 1:
        raise DefinitionError("ethereum.interval_blocks must be at least 1")
    if d.anchoring.confirmations < 1:
        raise DefinitionError("ethereum.confirmations must be at least 1")


def _check_governance(d: Definition) -> None:
    gov = d.governance
    if not any("admin" in roles for _, roles in d.members):
        raise DefinitionError("[members] names no member with the admin role")
    if gov.admins < 1 or not 1 <= gov.approvals <= gov.admins:
        raise DefinitionError(f"governance: approvals must be 1-{gov.admins} (the admins), not {gov.approvals}")
    if gov.expiry_hours <= 0:
        raise DefinitionError("governance.expiry_hours must be positive")
    names = {name for name, _ in d.members}
    # admin2 ... adminK are new members; admin1 names the first admin's key.
    taken = [f"admin{i}" for i in range(2, gov.admins + 1) if f"admin{i}" in names]
    if "admin1" in names and d.first_admin() != "admin1":
        taken.append("admin1")
    if taken:
        raise DefinitionError(f"members {taken} clash with the admin key names admin1 ... admin{gov.admins}")


def _governance(doc: dict[str, Any]) -> Governance:
    """The optional [governance] table (a definition written before it gets one admin, one approval)."""
    table = doc.get("governance", {})
    if not isinstance(table, dict):
        raise DefinitionError("governance must be a table")
    default = DEFAULT_GOVERNANCE
    hours = table.get("expiry_hours", default.expiry_hours)
    if not isinstance(hours, int | float) or isinstance(hours, bool):
        raise DefinitionError(f"governance.expiry_hours must be a number of hours, not {hours!r}")
    return Governance(
        admins=_take(table, "admins", int, "governance") if "admins" in table else default.admins,
        approvals=_take(table, "approvals", int, "governance") if "approvals" in table else default.approvals,
        expiry_hours=float(hours),
    )


def load_definition(path: Path | str | None = None) -> Definition:
    """Read and check a definition file (default: `devnet/devnet.toml`). Raises DefinitionError."""
    source = Path(path) if path is not None else DEFAULT_DEFINITION
    try:
        doc = tomllib.loads(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DefinitionError(f"cannot read the devnet definition {source}: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DefinitionError(f"{source} is not valid TOML: {exc}") from exc
    nodes, eth, demo = _table(doc, "nodes"), _table(doc, "ethereum"), _table(doc, "demo")
    try:
        definition = Definition(
            source=source.resolve(),
            chain_id=_take(doc, "chain_id", str, "definition"),
            members=_members(_table(doc, "members")),
            governance=_governance(doc),
            nodes=_take(nodes, "count", int, "nodes"),
            http_base_port=_take(nodes, "http_base_port", int, "nodes"),
            batch_size=_take(nodes, "batch_size", int, "nodes"),
            batch_wait_ms=_take(nodes, "batch_wait_ms", int, "nodes"),
            anchoring=Anchoring(
                chain=check_ethereum_choice(_take(eth, "chain", str, "ethereum")),
                interval_blocks=_take(eth, "interval_blocks", int, "ethereum"),
                interval_s=_number(eth, "interval_s", "ethereum"),
                grace_s=_number(eth, "grace_s", "ethereum"),
                max_backoff_s=_number(eth, "max_backoff_s", "ethereum"),
                confirmations=_take({"confirmations": 1, **eth}, "confirmations", int, "ethereum"),
            ),
            demo_equipment=source.resolve().parent / _take(demo, "equipment", str, "demo"),
            demo_assets=source.resolve().parent / _take(demo, "assets", str, "demo"),
        )
        _check_governance(definition)
    except DefinitionError as exc:
        raise DefinitionError(f"{source}: {exc}") from None
    _check_numbers(definition)
    return definition
