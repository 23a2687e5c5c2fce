"""Command-line options of the contract deployment, importable without loading web3 (keeps `ledger` fast)."""

from __future__ import annotations

from typing import Any


def add_deploy_arguments(parser: Any) -> None:
    """Add the deploy options to an argparse parser (or subparser)."""
    parser.add_argument("--rpc", required=True, help="JSON-RPC URL (http/https), or 'tester'")
    parser.add_argument("--key", required=True, help="file holding the deployer's hex private key (mode 0600)")
    parser.add_argument(
        "--out", default=None, help="deployment file (default: contracts/deployments/<chain id>.json)"
    )
    parser.add_argument("--artifact", default=None, help="contract artifact (default: contracts/build/...)")
    parser.add_argument("--force", action="store_true", help="replace a deployment file of another chain")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait per transaction")


def run_deploy_lazily(args: Any) -> int:
    from ledger.anchor.contract import run_deploy

    return run_deploy(args)
