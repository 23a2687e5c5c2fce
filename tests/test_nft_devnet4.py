"""Issue 5's walk-through on a 4-validator devnet, through the `ledger` command and different nodes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ledger.crypto import SigningKey
from tests.devnetutil import devnet_down, devnet_up, ledger

pytestmark = pytest.mark.slow


@pytest.fixture
def net4(tmp_path: Path) -> Iterator[dict[str, Any]]:
    data = devnet_up(tmp_path / "devnet", 4)
    yield data
    devnet_down(data)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def iso(days: int) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_assets_and_rights_walk_through(net4: dict[str, Any]) -> None:
    d = net4["dir"]
    node = [n["http"] for n in net4["nodes"]]

    def run(*args: str, check: bool = True) -> Any:
        return ledger(*args, "--dir", d, check=check)

    # 1. org1 gets 88.100.1, registers and mints equipment bound to it; org2's attempts are refused.
    run("id", "prefix", "88.100.1", "--owner", "org1")
    run("id", "register", "88.100.1/EQ-1", "--url", "https://twin.example/EQ-1")
    run("asset", "mint", "PUMP-1", "--kind", "equipment", "--identifier", "88.100.1/EQ-1",
        "--uri", "https://m.example/1", "--hash", sha("a"), "--node", node[1])
    refused = run("id", "register", "88.100.1/EQ-2", "--url", "https://x", "--key", "org2", "--node", node[2],
                  check=False)
    assert refused.returncode == 1 and "unauthorized" in refused.stderr
    refused = run("asset", "mint", "PUMP-X", "--kind", "equipment", "--identifier", "88.100.1/EQ-1",
                  "--uri", "u", "--hash", sha("b"), "--key", "org2", check=False)
    assert refused.returncode == 1 and "unauthorized" in refused.stderr

    # 2. org1 transfers it to org2: owner and a two-event history, read through another node.
    run("asset", "transfer", "PUMP-1", "--to", "org2")
    shown = json.loads(run("asset", "show", "PUMP-1", "--node", node[3]).stdout)
    bound = json.loads(run("resolve", "88.100.1/EQ-1").stdout)  # the nameplate code resolves to the token
    assert shown["owner"] == SigningKey.load(net4["keys"]["org2"]).id
    assert [e["event"] for e in shown["history"]] == ["mint", "transfer"]
    assert {"type": "NFT", "value": "PUMP-1"}.items() <= bound["record"]["values"][-1].items()

    # 3. org2 licenses org3 for one purpose for 30 days, sublicensable.
    run("asset", "mint", "DATA-1", "--kind", "data", "--uri", "https://d.example/1", "--hash", sha("c"),
        "--key", "org2")
    until = iso(30)
    grant = run("rights", "grant", "DATA-1", "--to", "org3", "--purpose", "analytics", "--until", until,
                "--sublicensable", "--key", "org2")
    licence = json.loads(grant.stdout)["licence_id"]

    def check(holder: str, purpose: str, *extra: str) -> int:
        return int(run("rights", "check", "DATA-1", "--holder", holder, "--purpose", purpose, *extra,
                       check=False).returncode)

    assert check("org3", "analytics") == 0
    assert check("org3", "marketing") == 1
    assert check("org3", "analytics", "--at", iso(31)) == 1

    # 4. org3 sublicenses to org1; revoking org3's licence denies both.
    run("rights", "grant", "DATA-1", "--to", "org1", "--purpose", "analytics", "--until", until,
        "--parent", licence, "--key", "org3")
    assert check("org1", "analytics", "--node", node[2]) == 0
    run("rights", "revoke", licence, "--key", "org2")
    assert check("org3", "analytics") == 1
    assert check("org1", "analytics") == 1
