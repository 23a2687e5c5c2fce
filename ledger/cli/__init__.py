"""The `ledger` command.

Writes take `--node URL` and `--key FILE`; without them they use the running devnet (found with
`--dir`, $LEDGER_DEVNET or ./.devnet): its first node, and the first of its members holding the
role the write needs (admin for prefixes and members, registrar for identifiers, issuer for tokens
and licences). Admin actions that need more admins' approval print the proposal they made
(`ledger governance`). `ledger COMMAND --help` explains each command.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ledger.cli import (
    anchoring,
    assets,
    backup,
    bench,
    contracts,
    devnet_commands,
    governance,
    ids,
    market,
    members,
    node,
    private,
    resolve,
    validators,
)
from ledger.cli.common import EXIT_REJECTED, CliError
from ledger.client import LedgerError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ledger", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (node, backup, devnet_commands, ids, resolve, bench, contracts, anchoring, assets, market, members,
                  governance, validators, private):
        group.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except LedgerError as exc:
        print(f"error: rejected: {exc.reason}: {exc.message}", file=sys.stderr)
        return EXIT_REJECTED
    except BrokenPipeError:
        # Output piped into `head` and the like: stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return code
