"""The devnet's definition (devnet/devnet.toml) decides what `ledger devnet up` creates; `--demo` loads the
demo data it names."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devnet.definition import DEFAULT_DEFINITION, DefinitionError, load_definition
from devnet.demo.loader import read_assets, read_equipment
from devnet.processes import any_free_port, port_free
from ledger.client import LedgerClient
from ledger.genesis import load_genesis
from tests.devnetutil import devnet_down, devnet_up, ledger

EDITED = """\
chain_id = "plant-test"

[members]
boss = ["admin"]
acme = ["registrar", "issuer"]
globex = ["auditor"]

[nodes]
count = 2
http_base_port = {port}
batch_size = 77
batch_wait_ms = 12

[ethereum]
chain = "none"
interval_blocks = 3
interval_s = 2.5
grace_s = 1
max_backoff_s = 2

[demo]
equipment = "{demo}/equipment.csv"
assets = "{demo}/assets.toml"
"""


def edited_definition(tmp_path: Path, **changes: str) -> Path:
    port = any_free_port()
    text = EDITED.format(port=port, demo=DEFAULT_DEFINITION.parent / "demo")
    for old, new in changes.items():
        text = text.replace(old, new)
    path = tmp_path / "devnet.toml"
    path.write_text(text)
    return path


def test_ports_picked_for_devnets_are_free_and_below_the_ephemeral_range() -> None:
    """An outgoing connection's source port comes from the ephemeral range: a devnet port picked there could be
    taken before its node listens (a CI run failed so). Each pick leaves room for a devnet's ports above it."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    picks = [any_free_port() for _ in range(50)]
    assert all(port + 100 < low and port_free(port) for port in picks), (low, picks)
    assert len(set(picks)) > 40  # drawn at random, so parallel runs seldom meet


def test_the_shipped_definition_and_demo_files_load() -> None:
    definition = load_definition()
    assert definition.nodes >= 1 and definition.members and definition.anchoring.chain in ("anvil", "none")
    # One admin whose approval is enough: the one-step admin commands of the plain devnet.
    assert (definition.governance.admins, definition.governance.approvals) == (1, 1)
    rows = read_equipment(definition.demo_equipment)
    tokens, licences = read_assets(definition.demo_assets)
    names = {name for name, _ in definition.members}
    # The demo names only members the definition creates.
    assert {r.owner for r in rows} | {t.minter for t in tokens} <= names
    assert {lic.grantor for lic in licences} | {lic.holder for lic in licences} <= names


@pytest.mark.parametrize(("change", "complaint"), [
    ({'acme = ["registrar", "issuer"]': 'acme = ["registrar", "boss"]'}, "members.acme: unknown roles ['boss']"),
    ({'chain = "none"': 'chain = "tester"'}, "tester is an in-process chain"),
    ({"count = 2": "count = 0"}, "at least one validator"),
    ({"batch_size = 77": 'batch_size = "77"'}, "nodes.batch_size must be a int"),
    ({"[members]\nboss": "[members]\n'bad name'"}, "member name 'bad name'"),
    ({"[nodes]": "[governance]\nadmins = 2\napprovals = 3\n\n[nodes]"}, "approvals must be 1-2 (the admins)"),
    ({"[nodes]": "[governance]\nadmins = 2\n\n[nodes]", "globex =": "admin2 ="},
     "members ['admin2'] clash with the admin key names"),
    ({'boss = ["admin"]': 'boss = ["auditor"]'}, "names no member with the admin role"),
])
def test_a_wrong_definition_is_refused_with_its_reason(tmp_path: Path, change: dict[str, str],
                                                       complaint: str) -> None:
    path = edited_definition(tmp_path)
    text = path.read_text()
    for old, new in change.items():
        text = text.replace(old, new)
    path.write_text(text)
    with pytest.raises(DefinitionError) as info:
        load_definition(path)
    assert complaint in str(info.value)
    refused = ledger("devnet", "up", "--definition", str(path), "--dir", str(tmp_path / "dn"), check=False)
    assert refused.returncode == 2 and complaint in refused.stderr
    assert not (tmp_path / "dn").exists()


@pytest.mark.slow
def test_an_edited_definition_changes_what_devnet_up_creates(tmp_path: Path) -> None:
    definition = edited_definition(tmp_path)
    d = tmp_path / "devnet"
    ledger("devnet", "up", "--definition", str(definition), "--dir", str(d), "--detach")
    try:
        data = json.loads((d / "devnet.json").read_text())
        assert len(data["nodes"]) == 2 and data["chain_id"] == "plant-test"
        # admin1 names the first admin's key (boss), as admin2 ... adminK would name the others.
        assert set(data["keys"]) == {"boss", "acme", "globex", "admin1"}
        assert data["keys"]["admin1"] == data["keys"]["boss"]
        genesis = load_genesis(data["genesis"])
        assert [(m.name, m.roles) for m in genesis.members] == [
            ("boss", ("admin",)), ("acme", ("registrar", "issuer")), ("globex", ("auditor",))]
        config = json.loads((Path(data["nodes"][1]["home"]) / "config.json").read_text())
        assert (config["batch_size"], config["batch_wait_ms"], len(config["peers"])) == (77, 12, 1)
        assert "ethereum" not in config and data["ethereum"]["rpc"] is None
        # Writes without --key are signed by the first member with the role they need: boss, then acme.
        url = data["nodes"][0]["http"]
        ledger("id", "prefix", "88.5", "--owner", "acme", "--dir", str(d))
        ledger("id", "register", "88.5/PRESS-1", "--url", "https://press.example", "--dir", str(d))
        member_id = {name: httpx.get(f"{url}/v1/members", params={"name": name}).json()["id"]
                     for name in ("boss", "acme")}
        assert httpx.get(f"{url}/v1/prefixes/88.5").json()["owner"] == member_id["acme"]
        record = httpx.get(f"{url}/v1/resolve/88.5/PRESS-1").json()["record"]
        assert record["created_by"] == member_id["acme"]
        # Started again with the shipped definition, the directory keeps the devnet it holds (and says so).
        again = ledger("devnet", "up", "--dir", str(d), "--detach")
        assert "restarted as it was" in again.stdout
        assert len(json.loads((d / "devnet.json").read_text())["nodes"]) == 2
    finally:
        ledger("devnet", "down", "--dir", str(d), check=False)


@pytest.fixture
def demo_net(tmp_path: Path) -> Iterator[dict[str, Any]]:
    data = devnet_up(tmp_path / "devnet", 1, "--demo")
    yield data
    devnet_down(data)


@pytest.mark.slow
def test_demo_loads_the_equipment_tokens_and_licences_once(demo_net: dict[str, Any]) -> None:
    url = demo_net["nodes"][0]["http"]
    definition = load_definition()
    rows = read_equipment(definition.demo_equipment)
    tokens, licences = read_assets(definition.demo_assets)
    client = LedgerClient(url)
    for row in rows:
        values = {v["type"]: v["value"] for v in client.resolve(row.identifier)["record"]["values"]}
        assert values["URL"] == row.url and values.get("TWIN", "") == row.twin
        assert values.get("DESC", "") == row.description
    token = tokens[0]
    asset = httpx.get(f"{url}/v1/assets/{token.id}").json()["asset"]
    assert asset["identifier"] == token.identifier
    bound = client.resolve(token.identifier)["record"]["values"]
    assert ("NFT", token.id) in [(v["type"], v["value"]) for v in bound]
    granted = httpx.get(f"{url}/v1/assets/{token.id}/licences").json()["licences"]
    by_id = {g["id"]: g for g in granted}
    by_name = {lic.name: lic for lic in licences}

    def on_ledger(g: dict[str, Any]) -> tuple[Any, ...]:
        return g["grantor_name"], g["holder_name"], tuple(g["purposes"]), g["revoked"]

    def in_file(lic: Any) -> tuple[Any, ...]:
        return lic.grantor, lic.holder, tuple(sorted(lic.purposes)), lic.revoked

    assert sorted(map(on_ledger, granted)) == sorted(map(in_file, licences))
    # Each sublicence hangs under the licence the file names as its parent.
    assert sorted((on_ledger(g), on_ledger(by_id[g["parent"]])) for g in granted if g["parent"]) == sorted(
        (in_file(lic), in_file(by_name[lic.parent])) for lic in licences if lic.parent)
    # Loading again submits nothing: the ledger stays at its height.
    height = httpx.get(f"{url}/v1/status").json()["height"]
    ledger("devnet", "up", "--dir", demo_net["dir"], "--detach", "--demo")
    assert httpx.get(f"{url}/v1/status").json()["height"] == height
