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
from ledger.genesis import load_genesis
from ledger.store import MAX_OPEN_FILES
from tests.nodeutil import make_home

MINIMAL = {"http": {"port": 8700}}
ETHEREUM = {"rpc": "http://127.0.0.1:8545", "contract": "0x" + "ab" * 20, "key_file": "eth.key"}


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
    ({**MINIMAL, "batch_eager_inflight": 5}, "batch_eager_inflight"),  # deeper than the pipeline
    ({**MINIMAL, "batch_size": 1.5}, "batch_size"),
    ({**MINIMAL, "verify_threads": True}, "verify_threads"),
    ({**MINIMAL, "leveldb_open_files": 5}, "leveldb_open_files"),
    ({**MINIMAL, "sync": {"fetchers": 0}}, "sync.fetchers"),
    ({**MINIMAL, "sync": {"history": "all"}}, "sync.history"),
    ({**MINIMAL, "sync": {"history": "full", "history_batch": 65}}, "sync.history_batch"),
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
    # (the contract is the ledger's to certify, not this file's: only the RPC is required)
    no_rpc = {**MINIMAL, "ethereum": {"key_file": "eth.key"}}
    assert refusal(tmp_path, no_rpc).endswith("missing setting 'ethereum.rpc'")


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
    assert config.batch_eager_inflight == 0
    assert (config.view_change_timeout_ms, config.request_timeout_ms, config.retransmit_ms) == (2000, 1500, 500)
    assert (config.leveldb_open_files, config.sync.fetchers) == (MAX_OPEN_FILES, 4)
    assert (config.sync.history, config.sync.history_batch) == ("recent", 64)  # blocks from the snapshot on only
    eth = config.ethereum
    assert eth is not None and eth.chain_id is None and eth.deploy_block == 0 and not eth.dev_key_from_node_key
    assert (eth.interval_blocks, eth.interval_s, eth.grace_s, eth.max_backoff_s, eth.tx_timeout_s) == (
        1000, 600.0, 20.0, 60.0, 120.0)
    assert (eth.confirmations, eth.fee_bump_after_s, eth.max_fee_gwei) == (3, 60.0, 500.0)


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
    passphrase_file = load(home, {**MINIMAL, "node_key_passphrase": {"file": "secret/pass"}}).node_key_passphrase
    assert passphrase_file.file == home / "secret/pass" and passphrase_file.env == "LEDGER_KEY_PASSPHRASE"
    assert defaults.node_key_passphrase.file is None


def test_an_ethereum_key_is_a_file_unless_a_development_chain_derives_it(tmp_path: Path) -> None:
    no_key = {k: v for k, v in ETHEREUM.items() if k != "key_file"}
    for section in (no_key, {**no_key, "key_file": ""}):  # "" has always meant none: now refused too
        assert "setting 'ethereum': key_file is required" in refusal(tmp_path, {**MINIMAL, "ethereum": section})
    derived = {**no_key, "dev_key_from_node_key": True}
    assert "needs chain_id 31337 or 1337" in refusal(tmp_path, {**MINIMAL, "ethereum": derived})
    assert "needs chain_id" in refusal(tmp_path, {**MINIMAL, "ethereum": {**derived, "chain_id": 1}})
    both = {**ETHEREUM, "dev_key_from_node_key": True, "chain_id": 31337}
    assert "not both" in refusal(tmp_path, {**MINIMAL, "ethereum": both})
    eth = load(tmp_path, {**MINIMAL, "ethereum": {**derived, "chain_id": 31337}}).ethereum
    assert eth is not None and eth.dev_key_from_node_key and eth.key_file is None


def test_peer_link_settings_have_defaults_and_limits(tmp_path: Path) -> None:
    links = load(tmp_path, MINIMAL).peer_links
    assert (links.heartbeat_ms, links.dead_after_ms, links.handshake_timeout_ms) == (250, 1500, 3000)
    assert (links.max_pending_handshakes, links.max_pending_per_address, links.reconnect_max_ms) == (64, 8, 1000)
    message = refusal(tmp_path, {**MINIMAL, "peer_links": {"heartbeat_ms": 500, "dead_after_ms": 900}})
    assert "setting 'peer_links.dead_after_ms': should be at least twice heartbeat_ms (500)" in message
    assert refusal(tmp_path, {**MINIMAL, "peer_links": {"heartbeats": 1}}).endswith(
        "unknown setting 'peer_links.heartbeats'")


def test_every_config_the_devnet_and_tests_write_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    definition = load_definition().with_overrides(nodes=4, http_base_port=21000, batch_size=200, batch_wait_ms=10)
    data = launcher.create(tmp_path / "devnet", definition)
    homes = [Path(entry["home"]) for entry in data["nodes"]]
    for home in homes:
        config = NodeConfig.load(home)
        assert len(config.peers) == 3 and config.batch_size == 200 and config.genesis.resolve().is_file()
    # ... and once `devnet up --ethereum URL` has written the anchoring section (no chain needed here), and
    # certified the contract and the validators' eth.key addresses in the genesis of the chain not started yet.
    submitters = devnet_ethereum.validator_addresses(data)
    deployment = {"address": ETHEREUM["contract"], "chain_id": 31337, "block_number": 5, "submitters": submitters}
    monkeypatch.setattr(devnet_ethereum, "_deploy", lambda *args: deployment)
    devnet_ethereum.setup(tmp_path / "devnet", data, "http://127.0.0.1:1", definition.anchoring)
    for home in homes:
        eth = NodeConfig.load(home).ethereum
        assert eth is not None and (eth.chain_id, eth.deploy_block, eth.confirmations) == (31337, 5, 1)
        assert eth.key_file == home / "eth.key" and not eth.dev_key_from_node_key
    anchoring = load_genesis(data["genesis"]).anchoring
    assert anchoring is not None and anchoring.contract == ETHEREUM["contract"]
    assert list(anchoring.submitters) == [a.lower() for a in submitters] and len(submitters) == 4
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


OBSERVER = {"validators": ["http://10.0.0.2:8700", "https://ledger.org-b.example/"]}


def test_an_observer_config_names_its_validators_http_urls(tmp_path: Path) -> None:
    config = load(tmp_path, {**MINIMAL, "role": "observer", "observer": OBSERVER})
    assert config.role == "observer"
    assert config.observer is not None
    assert config.observer.validators == ("http://10.0.0.2:8700", "https://ledger.org-b.example")
    assert load(tmp_path, MINIMAL).role == "validator"


@pytest.mark.parametrize(("settings", "expected"), [
    ({"role": "observer"}, "role 'observer' needs an 'observer' section naming the validators' HTTP URLs"),
    ({"observer": OBSERVER}, "an 'observer' section needs \"role\": \"observer\""),
    ({"role": "observer", "observer": OBSERVER, "ethereum": ETHEREUM},
     "an observer does not anchor: remove the 'ethereum' section"),
    ({"role": "observer", "observer": {"validators": ["10.0.0.2:8700"]}},
     "setting 'observer.validators': should be http(s) URLs of validators (got \"10.0.0.2:8700\")"),
    ({"role": "observer", "observer": {"validators": []}}, "setting 'observer.validators'"),
    ({"role": "voter"}, "setting 'role'"),
    ({"log_format": "xml"}, "setting 'log_format'"),
])
def test_observer_settings_that_do_not_fit_the_role_are_refused(
        tmp_path: Path, settings: dict[str, Any], expected: str) -> None:
    message = refusal(tmp_path, {**MINIMAL, **settings})
    assert message.startswith(f"{tmp_path / 'config.json'}: {expected}")


def test_full_history_with_pruning_is_refused(tmp_path: Path) -> None:
    """Full history makes an archive node; a pruning round would delete the old state its replay writes."""
    full = {"mode": "state", "history": "full"}
    message = refusal(tmp_path, {**MINIMAL, "sync": full, "prune": {"keep_heights": 10}})
    assert message.startswith(f"{tmp_path / 'config.json'}: \"sync\": {{\"history\": \"full\"}} makes an archive node")
    assert load(tmp_path, {**MINIMAL, "sync": full}).sync.history == "full"
