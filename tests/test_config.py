"""config.json: every setting checked at start, defaults applied, paths under HOME."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devnet import ethereum as devnet_ethereum
from devnet import launcher
from devnet.definition import load_definition
from ledger.config import ConfigError, Endpoint, HttpEndpoint, HttpLimits, NodeConfig, write_config
from tests.nodeutil import make_home

MINIMAL = {"http": {"port": 8700}}
ETHEREUM = {"rpc": "http://127.0.0.1:8545", "contract": "0x" + "ab" * 20}


def load(tmp_path: Path, settings: dict[str, Any]) -> NodeConfig:
    write_config(tmp_path, settings)
    return NodeConfig.load(tmp_path)


def refusal(tmp_path: Path, settings: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, settings)
    return str(info.value)


def test_a_misspelt_top_level_key_is_refused_naming_key_and_file(tmp_path: Path) -> None:
    message = refusal(tmp_path, {**MINIMAL, "batch_sise": 500})
    assert message == f"{tmp_path / 'config.json'}: unknown setting 'batch_sise'"


@pytest.mark.parametrize(("settings", "name"), [
    ({"http": {"port": 8700, "prot": 1}}, "http.prot"),
    ({**MINIMAL, "p2p": {"host": "0.0.0.0", "port": 9700, "hots": "x"}}, "p2p.hots"),
    ({**MINIMAL, "peers": [{"id": "a", "host": "h", "port": 1}, {"id": "b", "host": "h", "port": 2, "prot": 3}]},
     "peers[1].prot"),
    ({**MINIMAL, "ethereum": {**ETHEREUM, "interval_block": 10}}, "ethereum.interval_block"),
    ({"http": {"port": 8700, "limits": {"reads_per_second": 10}}}, "http.limits.reads_per_second"),
])
def test_a_misspelt_nested_key_is_refused_naming_its_path(tmp_path: Path, settings: dict[str, Any],
                                                          name: str) -> None:
    assert refusal(tmp_path, settings).endswith(f"config.json: unknown setting '{name}'")


@pytest.mark.parametrize(("settings", "name"), [
    ({"http": {"port": "8700"}}, "http.port"),  # a string, not a number
    ({"http": {"port": -1}}, "http.port"),
    ({**MINIMAL, "tick_ms": 0}, "tick_ms"),
    ({**MINIMAL, "batch_size": 1.5}, "batch_size"),
    ({**MINIMAL, "verify_threads": True}, "verify_threads"),
    ({**MINIMAL, "node_key": 7}, "node_key"),
    ({**MINIMAL, "peers": [{"id": "a", "host": "h", "port": 70000}]}, "peers[0].port"),
    ({**MINIMAL, "ethereum": {**ETHEREUM, "interval_blocks": 0}}, "ethereum.interval_blocks"),
    ({"http": {"port": 8700, "limits": {"reads_per_s": 0}}}, "http.limits.reads_per_s"),
    ({"http": {"port": 8700, "limits": {"exempt": ["10.0.0.300/8"]}}}, "http.limits.exempt[0]"),
    ({"http": {"port": 8700, "limits": {"exempt": "10.0.0.0/8"}}}, "http.limits.exempt"),
])
def test_a_wrong_type_or_range_is_refused_naming_the_setting(tmp_path: Path, settings: dict[str, Any],
                                                             name: str) -> None:
    assert f"config.json: setting '{name}': " in refusal(tmp_path, settings)


def test_a_missing_required_setting_is_named(tmp_path: Path) -> None:
    assert refusal(tmp_path, {}).endswith("missing setting 'http'")
    no_contract = {**MINIMAL, "ethereum": {"rpc": "http://x"}}
    assert refusal(tmp_path, no_contract).endswith("missing setting 'ethereum.contract'")


def test_unreadable_or_malformed_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        NodeConfig.load(tmp_path / "nowhere")
    (tmp_path / "config.json").write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        NodeConfig.load(tmp_path)
    assert refusal(tmp_path, [MINIMAL]).endswith("expected a JSON object of settings")  # type: ignore[arg-type]
    assert refusal(tmp_path, {**MINIMAL, "home": "/elsewhere"}).endswith("unknown setting 'home'")


def test_defaults_are_applied(tmp_path: Path) -> None:
    config = load(tmp_path, {**MINIMAL, "ethereum": ETHEREUM})
    assert config.http == HttpEndpoint(host="127.0.0.1", port=8700, limits=HttpLimits())
    limits = config.http.limits
    assert (limits.rate_limits, limits.reads_per_s, limits.writes_per_s, limits.exempt) == (True, 2000.0, 50.0, ())
    assert config.p2p == Endpoint(host="127.0.0.1", port=0) and config.peers == ()
    assert (config.batch_size, config.tick_ms, config.batch_wait_ms, config.verify_threads) == (1000, 10, 30, 2)
    assert (config.view_change_timeout_ms, config.request_timeout_ms, config.retransmit_ms) == (2000, 1500, 500)
    eth = config.ethereum
    assert eth is not None and eth.chain_id is None and eth.key_file is None and eth.deploy_block == 0
    assert (eth.interval_blocks, eth.interval_s, eth.grace_s, eth.max_backoff_s, eth.tx_timeout_s) == (
        1000, 600.0, 20.0, 60.0, 120.0)


def test_an_absent_null_or_empty_ethereum_section_means_no_anchoring(tmp_path: Path) -> None:
    for section in ({}, {"ethereum": None}, {"ethereum": {}}):
        assert load(tmp_path, {**MINIMAL, **section}).ethereum is None


def test_paths_are_relative_to_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    defaults = load(home, MINIMAL)
    assert defaults.home == home
    assert (defaults.node_key, defaults.genesis, defaults.data_dir) == (
        home / "node.pem", home / "genesis.json", home / "data")
    config = load(home, {**MINIMAL, "node_key": "keys/n.pem", "genesis": "../genesis.json", "data_dir": "/var/db",
                         "ethereum": {**ETHEREUM, "key_file": "eth.key"}})
    assert (config.node_key, config.genesis, config.data_dir) == (
        home / "keys/n.pem", home / "../genesis.json", Path("/var/db"))
    assert config.ethereum is not None and config.ethereum.key_file == home / "eth.key"
    no_key_file = load(home, {**MINIMAL, "ethereum": {**ETHEREUM, "key_file": ""}}).ethereum
    assert no_key_file is not None and no_key_file.key_file is None  # "" has always meant none


def test_every_config_the_devnet_and_tests_write_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    definition = load_definition().with_overrides(nodes=4, http_base_port=21000, batch_size=200, batch_wait_ms=10)
    data = launcher.create(tmp_path / "devnet", definition)
    homes = [Path(entry["home"]) for entry in data["nodes"]]
    for home in homes:
        config = NodeConfig.load(home)
        assert len(config.peers) == 3 and config.batch_size == 200 and config.genesis.resolve().is_file()
    # ... and once `devnet up --ethereum URL` has written the anchoring section (no chain needed here).
    deployment = {"address": ETHEREUM["contract"], "chain_id": 31337, "block_number": 5}
    monkeypatch.setattr(devnet_ethereum, "_deploy", lambda *args: deployment)
    devnet_ethereum.setup(tmp_path / "devnet", data, "http://127.0.0.1:1", definition.anchoring)
    for home in homes:
        eth = NodeConfig.load(home).ethereum
        assert eth is not None and (eth.chain_id, eth.deploy_block) == (31337, 5)
    assert NodeConfig.load(make_home(tmp_path / "unit").path).tick_ms == 5  # tests/nodeutil.py's homes


@pytest.mark.slow
def test_node_run_with_a_misspelt_key_exits_naming_it(tmp_path: Path) -> None:
    home = make_home(tmp_path).path
    settings = json.loads((home / "config.json").read_text())
    write_config(home, {**settings, "tick_msec": 5})
    proc = subprocess.run([sys.executable, "-m", "ledger.cli", "node", "run", "--home", str(home)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "unknown setting 'tick_msec'" in proc.stderr
    assert not (home / "data").exists()  # refused before anything was opened
