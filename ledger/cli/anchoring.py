"""`ledger anchoring show|set`: the anchoring settings the ledger certifies (Ethereum chain id, LedgerAnchor
contract, the validators' submitter addresses).

`set` is an admin action (`anchor.settings`): with a threshold above one it makes a proposal that other
admins approve with `ledger governance approve`. Validators whose `config.json` expects another contract
or chain refuse to anchor until the two agree."""

from __future__ import annotations

import argparse

from ledger.anchor.settings import AnchoringSettings, is_address
from ledger.cli.common import (
    EXIT_USAGE,
    CliError,
    Subcommands,
    add_command,
    add_group,
    add_read_options,
    add_write_options,
    fetch,
    print_json,
    signer,
)
from ledger.cli.governance import proposal_fields


def _address(text: str, what: str) -> str:
    address = text.lower()
    if not is_address(address):
        raise CliError(f"{what} {text!r} is not an Ethereum address (0x and 40 hex digits)", EXIT_USAGE)
    return address


def cmd_show(args: argparse.Namespace) -> int:
    print_json(fetch(args, "/v1/anchors"))
    return 0


def cmd_set(args: argparse.Namespace) -> int:
    settings = AnchoringSettings(args.eth_chain_id, _address(args.contract, "--contract"),
                                 tuple(_address(s, "--submitter") for s in args.submitter))
    result = signer(args, "admin").send("anchor.settings", settings)
    print_json({"eth_chain_id": settings.eth_chain_id, "contract": settings.contract,
                "submitters": list(settings.submitters), "tx_id": result["tx_id"], "height": result["height"],
                **proposal_fields(args, result)})
    return 0


def add_commands(sub: Subcommands) -> None:
    group = add_group(sub, "anchoring", "the certified Ethereum anchoring settings: show, set", __doc__ or "")
    p = add_command(group, "show", "the certified settings, the attestations an anchor needs, the latest anchor")
    add_read_options(p)
    p.set_defaults(func=cmd_show)
    p = add_command(group, "set", "admin: certify another chain, contract or set of submitters (replaces them)",
                    "Anchors already effective stay; from the commit on, attestations must name the new settings.")
    p.add_argument("--eth-chain-id", type=int, required=True, help="the Ethereum chain id (EIP-155)")
    p.add_argument("--contract", required=True, help="the LedgerAnchor contract's address")
    p.add_argument("--submitter", action="append", required=True,
                   help="a validator's Ethereum address whose anchors count; repeat for each")
    add_write_options(p)
    p.set_defaults(func=cmd_set)
