"""The devnet's Ethereum side: start Anvil, deploy LedgerAnchor, fund the validators, certify the settings.

With the chain `anvil` this starts Anvil from contracts/node_modules (its pid is kept in
`DIR/devnet.json`, its state in `DIR/anvil/state.json`, so a restarted Anvil keeps the contract
and the anchors dumped so far), deploys the contract with Anvil's first dev key, funds every
validator's Ethereum address, certifies the chain id, the contract and those addresses in the genesis
file's `anchoring` section (before the chain's first start), and writes the `ethereum` section of every
node's config with the definition's anchoring intervals. Each validator's Ethereum key is a file of
its own in its home (`eth.key`, mode 0600, made once at random), named by `ethereum.key_file`, as in
production. An RPC URL
gets the same against a running node (with `--eth-key FILE` as the deployer unless the chain is an
Anvil/Hardhat dev chain).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from devnet.definition import Anchoring, DefinitionError, check_ethereum_choice
from devnet.processes import any_free_port, is_alive, port_free, stop_pid
from devnet.record import DevnetError

REPO = Path(__file__).resolve().parents[1]
ANVIL = REPO / "contracts" / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"  # Anvil's public dev account 0
DEV_CHAIN_ID = 31337
FUND_WEI = 10 * 10**18  # gas money for each validator
ETH_KEY_FILE = "eth.key"  # in each node's home
NO_ETHEREUM = {"rpc": None, "chain_id": None, "anchor_contract": None, "anvil_pid": None}


def start_anvil(directory: Path, port: int | None = None) -> tuple[int, str]:
    """Start Anvil (state kept in DIR/anvil/state.json, dumped every second); return (pid, rpc)."""
    if not os.access(ANVIL, os.X_OK):
        raise DevnetError(f"Anvil not found at {ANVIL}: run `make install` (npm ci in contracts/)")
    port = port or any_free_port()
    state_dir = directory / "anvil"
    state_dir.mkdir(parents=True, exist_ok=True)
    log = open(state_dir / "anvil.log", "ab")  # noqa: SIM115 - owned by the child process
    proc = subprocess.Popen(
        [str(ANVIL), "--host", "127.0.0.1", "--port", str(port), "--chain-id", str(DEV_CHAIN_ID),
         "--state", str(state_dir / "state.json"), "--state-interval", "1"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    rpc = f"http://127.0.0.1:{port}"
    wait_rpc(rpc, proc, state_dir / "anvil.log")
    return proc.pid, rpc


@contextlib.contextmanager
def anvil_running(log_path: Path, *flags: str, timeout: float = 30.0) -> Iterator[str]:
    """A throwaway Anvil for a test or a benchmark (nothing kept, unlike the devnet's), on a free port with
    the dev chain id and `flags`; yields its RPC URL once it answers, and stops it on exit."""
    if not os.access(ANVIL, os.X_OK):
        raise DevnetError(f"Anvil not found at {ANVIL}: run `make install` (npm ci in contracts/)")
    port = any_free_port()
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [str(ANVIL), "--host", "127.0.0.1", "--port", str(port), "--chain-id", str(DEV_CHAIN_ID), *flags],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    rpc = f"http://127.0.0.1:{port}"
    try:
        wait_rpc(rpc, proc, log_path, timeout)
        yield rpc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def wait_rpc(rpc: str, proc: subprocess.Popen[bytes] | None = None, log: Path | None = None,
             timeout: float = 20.0) -> None:
    from web3 import Web3

    w3 = Web3(Web3.HTTPProvider(rpc, request_kwargs={"timeout": 2}))
    deadline = time.monotonic() + timeout
    while not w3.is_connected():
        if (proc is not None and proc.poll() is not None) or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:] if log is not None and log.exists() else ""
            raise DevnetError(f"Ethereum RPC at {rpc} did not come up:\n{tail}")
        time.sleep(0.1)


def _dev_key_file(directory: Path) -> Path:
    path = directory / "keys" / "anvil-dev.key"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text(DEV_KEY + "\n")
    os.chmod(path, 0o600)
    return path


def node_eth_key(home: Path) -> Path:
    """The validator's Ethereum key file in `home`, made at random (mode 0600) if it has none yet."""
    path = home / ETH_KEY_FILE
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("0x" + os.urandom(32).hex() + "\n")
    return path


def fund(directory: Path, data: dict[str, Any], address: str) -> None:
    """Give a validator added later its gas money, from Anvil's dev account when the devnet runs its own Anvil;
    on another chain, say that someone must."""
    eth = data.get("ethereum") or {}
    if not eth.get("rpc"):
        return
    if not is_alive(eth.get("anvil_pid")):
        print(f"warning: fund {address} on {eth['rpc']}: it pays for its anchors", file=sys.stderr)
        return
    from web3 import Web3
    from web3.types import Wei

    from ledger.anchor import contract as ac

    w3 = ac.connect(str(eth["rpc"]))
    dev = ac.load_key_file(_dev_key_file(directory))
    ac.send_transaction(w3, dev, {"to": Web3.to_checksum_address(address), "value": Wei(FUND_WEI)})


def validator_addresses(data: dict[str, Any]) -> list[str]:
    from ledger.anchor.contract import load_key_file

    return [str(load_key_file(node_eth_key(Path(entry["home"]))).address) for entry in data["nodes"]]


def _anvil(directory: Path, eth: dict[str, Any]) -> tuple[int, str]:
    """The devnet's Anvil: the running one, or a new one (on its old port when that is free)."""
    if is_alive(eth.get("anvil_pid")) and eth.get("rpc"):
        return int(eth["anvil_pid"]), str(eth["rpc"])
    port = None
    if eth.get("rpc") and eth.get("anvil_pid"):
        port = int(str(eth["rpc"]).rsplit(":", 1)[1])
        if not port_free(port):
            port = None
    return start_anvil(directory, port)


def setup(directory: Path, data: dict[str, Any], chain: str, anchoring: Anchoring, eth_key: str | None = None) -> None:
    """Point the devnet at `chain` (anvil | none | an http(s) RPC URL); updates `data` and the node configs."""
    try:
        check_ethereum_choice(chain)
    except DefinitionError as exc:
        raise DevnetError(f"--ethereum: {exc}") from None
    eth: dict[str, Any] = dict(data.get("ethereum") or {})
    if chain == "none":
        if is_alive(eth.get("anvil_pid")):
            stop_pid(int(eth["anvil_pid"]))
        data["ethereum"] = dict(NO_ETHEREUM)
        _write_node_configs(data, None)
        return
    pid: int | None = None
    if chain == "anvil":
        pid, rpc = _anvil(directory, eth)
    else:
        rpc = chain
    key_path = Path(eth_key) if eth_key else _dev_key_file(directory)
    try:
        deployment = _deploy(directory, data, rpc, key_path)
    except Exception:
        if pid is not None and eth.get("anvil_pid") != pid:  # started here: stop it again
            stop_pid(pid)
        raise
    certify(data, deployment)
    data["ethereum"] = {
        "rpc": rpc, "chain_id": deployment["chain_id"], "anchor_contract": deployment["address"],
        "anvil_pid": pid, "deployment": str(directory / "anchor-deployment.json"),
    }
    _write_node_configs(data, {
        "rpc": rpc, "chain_id": deployment["chain_id"], "contract": deployment["address"],
        "deploy_block": deployment["block_number"], **anchoring.node_settings(),
    })


def _deploy(directory: Path, data: dict[str, Any], rpc: str, key_path: Path) -> dict[str, Any]:
    from web3 import Web3
    from web3.types import Wei

    from ledger.anchor import contract as ac

    account = ac.load_key_file(key_path)
    w3 = ac.connect(rpc)
    submitters = validator_addresses(data)
    result = ac.deploy(w3, account, out=directory / "anchor-deployment.json", force=True)
    for addr in submitters:
        if w3.eth.get_balance(Web3.to_checksum_address(addr)) < FUND_WEI // 10:
            ac.send_transaction(w3, account, {"to": Web3.to_checksum_address(addr), "value": Wei(FUND_WEI)})
    d = result.deployment
    return {"address": d.address, "chain_id": d.chain_id, "block_number": d.block_number, "submitters": submitters}


def certify(data: dict[str, Any], deployment: dict[str, Any]) -> None:
    """Write the anchoring settings (chain, contract, the validators' addresses) into the genesis file of a
    chain that has not started yet. A chain that has started keeps its certified settings: changing them is
    an admin action (`anchor.settings`), and until then its validators refuse to anchor elsewhere."""
    from ledger.anchor.settings import AnchoringSettings
    from ledger.genesis import load_genesis, save_genesis

    wanted = AnchoringSettings(int(deployment["chain_id"]), str(deployment["address"]).lower(),
                               tuple(str(a).lower() for a in deployment["submitters"]))
    genesis = load_genesis(data["genesis"])
    if genesis.anchoring == wanted:
        return
    if any((Path(entry["home"]) / "data").exists() for entry in data["nodes"]):
        print(f"warning: this devnet's genesis certifies other anchoring settings than contract "
              f"{wanted.contract} on chain {wanted.eth_chain_id}; its validators will not anchor there "
              "(`ledger anchoring set` changes the certified settings, an admin action)", file=sys.stderr)
        return
    save_genesis(replace(genesis, anchoring=wanted), data["genesis"])


def _write_node_configs(data: dict[str, Any], section: dict[str, Any] | None) -> None:
    for entry in data["nodes"]:
        path = Path(entry["home"]) / "config.json"
        cfg = json.loads(path.read_text())
        if section is None:
            cfg.pop("ethereum", None)
        else:
            cfg["ethereum"] = {**section, "key_file": ETH_KEY_FILE}
        path.write_text(json.dumps(cfg, indent=2) + "\n")


def stop_anvil(data: dict[str, Any]) -> bool:
    """Stop the devnet's Anvil by its pid (its state is dumped on exit). True if one was running."""
    pid = (data.get("ethereum") or {}).get("anvil_pid")
    if not is_alive(pid):
        return False
    stop_pid(int(pid or 0))
    return True
