"""`ledger contracts deploy`: the Ethereum anchor contract on any chain."""

from __future__ import annotations

from ledger.anchor.deploy_args import add_deploy_arguments, run_deploy_lazily
from ledger.cli.common import Subcommands, add_command, add_group


def add_commands(sub: Subcommands) -> None:
    contracts = add_group(sub, "contracts", "the Ethereum anchor contract")
    p = add_command(contracts, "deploy", "deploy LedgerAnchor (or re-use a matching deployment)",
                    "Idempotent: a deployment file matching the chain and artifact is re-used. The contract has "
                    "no owner: certify its address, the chain id and the validators' submitter addresses in the "
                    "genesis file's `anchoring` section or with `ledger anchoring set` (README).")
    add_deploy_arguments(p)
    p.set_defaults(func=run_deploy_lazily)
