"""`ledger contracts deploy`: the Ethereum anchor contract on any chain."""

from __future__ import annotations

from ledger.anchor.deploy_args import add_deploy_arguments, run_deploy_lazily
from ledger.cli.common import Subcommands, add_command, add_group


def add_commands(sub: Subcommands) -> None:
    contracts = add_group(sub, "contracts", "the Ethereum anchor contract")
    p = add_command(contracts, "deploy", "deploy LedgerAnchor (or re-use a matching deployment) and add submitters",
                    "Idempotent: a deployment file matching the chain and artifact is re-used. Give each "
                    "validator's config.json an `ethereum` section naming the contract afterwards (README).")
    add_deploy_arguments(p)
    p.set_defaults(func=run_deploy_lazily)
