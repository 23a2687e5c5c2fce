#!/usr/bin/env python3
"""Deploy (or re-use) the LedgerAnchor contract.

    contracts/deploy.py --rpc URL --key FILE [--out FILE]

URL is an http(s) JSON-RPC endpoint (Anvil, Sepolia, ...) or `tester` for an in-process EthereumTester.
FILE holds the deployer's hex private key and must have mode 0600; the key is never printed.
The contract has no owner and no allow-list; the validators' submitter addresses are certified in the
ledger (the genesis `anchoring` section, or the `anchor.settings` admin action). Same as
`ledger contracts deploy`. Run with the project's venv python (needs web3).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ledger.anchor.contract import run_deploy  # noqa: E402
from ledger.anchor.deploy_args import add_deploy_arguments  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_deploy_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    return run_deploy(args)


if __name__ == "__main__":
    sys.exit(main())
