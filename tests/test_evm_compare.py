"""bench/evm_compare.py's Anvil part against a real Anvil (from the pinned npm package): it really mints, it
counts only mints that succeeded, and its command line refuses bad options. A few seconds in all."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from web3 import Web3
from web3.contract import Contract

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "evm_compare.py"
ANVIL = REPO / "contracts" / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"

pytestmark = pytest.mark.skipif(
    not os.access(ANVIL, os.X_OK), reason="Anvil binary absent: run `make install` (npm ci in contracts/)"
)


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("evm_compare", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["evm_compare"] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def ec() -> ModuleType:
    return _load_script()


@pytest.fixture(scope="module")
def anvil_url(ec: ModuleType) -> Iterator[str]:
    with ec.anvil("interval", 0.1) as url:
        yield url


def _nft(url: str, address: str) -> Contract:
    abi = json.loads((REPO / "contracts" / "build" / "BenchNFT.json").read_text())["abi"]
    return Web3(Web3.HTTPProvider(url)).eth.contract(address=Web3.to_checksum_address(address), abi=abi)


def test_anvil_part_mints_every_token_to_its_minter(ec: ModuleType, anvil_url: str) -> None:
    result = ec.mint_benchmark(anvil_url, txs=24, clients=2, accounts_per_client=2, batch=5, timeout_s=60)
    assert result["mints"] == 24 and result["failed"] == 0
    assert result["mints_per_s"] > 0 and 0 < result["p50_ms"] <= result["p99_ms"]
    # read back from the chain, not from the script's own count
    nft = _nft(anvil_url, result["contract_address"])
    minters = result["minters"]
    assert len(minters) == 4
    assert sum(nft.functions.balanceOf(m).call() for m in minters) == 24
    owners = [nft.functions.ownerOf(token).call() for token in range(1, 25)]
    assert owners == [minters[(token - 1) % 4] for token in range(1, 25)]


def test_reverted_mints_do_not_count(ec: ModuleType, anvil_url: str) -> None:
    """A mint that runs out of gas is mined but reverts: the figure must not count it as a mint."""
    result = ec.mint_benchmark(anvil_url, txs=6, clients=1, accounts_per_client=2, batch=6, gas=30_000, timeout_s=60)
    assert result["mints"] == 0 and result["failed"] == 6 and result["mints_per_s"] == 0


def test_command_line_refuses_bad_options(ec: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    for args, message in ((["--txs", "0"], "--txs must be 1 or more"),
                          (["--anvil-only", "--ledger-only"], "not allowed with"),
                          (["--block-time", "0"], "--block-time must be more than 0"),
                          (["--mining", "fast"], "invalid choice")):
        with pytest.raises(SystemExit) as info:
            ec.parse_args(args)
        assert info.value.code == 2 and message in capsys.readouterr().err, args
    assert ec.parse_args([]).mining == "interval"
