"""`DIR/devnet.json`: the record of a devnet, read by the `ledger` command and by scripts.

Its format is a contract (ARCHITECTURE.md section 4): `chain_id`; `nodes`, each with `id`, `http`,
`pid` and `home`; `genesis`; `keys`, each member's key file by name (and `admin1` ... `adminK`, the
admins, `admin1` being the same key as the first admin, `admin`); `ethereum` with `rpc`,
`chain_id` and `anchor_contract` (plus the launcher's `anvil_pid` and `deployment`); `observers` (when
`--observers` made any), each with `id`, `http`, `pid` and `home` like `nodes`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ledger.genesis import load_genesis

DEFAULT_DIR = ".devnet"


class DevnetError(RuntimeError):
    """A devnet cannot be found, created, started or stopped; the message says why."""


def devnet_dir(arg: str | None) -> Path:
    """The devnet directory: `arg` (--dir), else $LEDGER_DEVNET, else ./.devnet."""
    return Path(arg or os.environ.get("LEDGER_DEVNET") or DEFAULT_DIR).resolve()


def exists(directory: Path) -> bool:
    return (directory / "devnet.json").exists()


def load_devnet(directory: Path) -> dict[str, Any]:
    path = directory / "devnet.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise DevnetError(f"no devnet at {directory} (run `ledger devnet up --dir {directory}` first)") from exc
    return data


def save_devnet(directory: Path, data: dict[str, Any]) -> None:
    # Written whole and renamed, so a reader never sees half a file.
    tmp = directory / "devnet.json.tmp"
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(directory / "devnet.json")


def member_with_role(data: dict[str, Any], role: str) -> str | None:
    """The first founding member (in genesis order) that holds `role` and has a key in devnet.json: the
    member that signs a devnet write needing that role when no --key is given."""
    for member in load_genesis(data["genesis"]).members:
        if role in member.roles and member.name in data["keys"]:
            return member.name
    return None
