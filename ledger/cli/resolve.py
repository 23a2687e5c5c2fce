"""`ledger resolve` (an identifier's record, optionally with its proof) and `ledger verify` (a proof, offline)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ledger.cli.common import (
    EXIT_REJECTED,
    EXIT_USAGE,
    IDENTIFIER_FORMS,
    CliError,
    Subcommands,
    add_command,
    add_read_options,
    node_url,
    print_json,
    storage_identifier,
)
from ledger.client import LedgerClient, resolve_path


def cmd_resolve(args: argparse.Namespace) -> int:
    key = storage_identifier(args.identifier)  # every form of one item asks for the same record
    with LedgerClient(node_url(args)) as client:
        if not args.proof:
            print_json(client.resolve(key, args.height))
            return 0
        proven = client.proven(resolve_path(key), args.height)
    if proven.note:
        print(f"note: {proven.note}", file=sys.stderr)
    print_json(proven.body)
    if not proven.found:
        print(f"error: not registered as of height {proven.body.get('height')}: the proof proves its absence",
              file=sys.stderr)
        return EXIT_REJECTED
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    # Imported here: the proof checker loads the tree and chain code, which other commands do not need.
    from ledger.genesis import InvalidGenesis, load_genesis
    from ledger.proofs import InvalidProof, check_anchor_on_chain
    from ledger.verifier import failure_json, verdict_json, verify_document

    try:
        doc = json.loads(Path(args.file).read_text())
        genesis = load_genesis(args.genesis)
    except (OSError, json.JSONDecodeError, InvalidGenesis) as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    try:
        verdict = verify_document(doc, genesis)
        if args.rpc:
            if verdict.state.anchor is None:
                raise InvalidProof("anchor_missing", "--rpc given but the proof carries no Ethereum anchor")
            check_anchor_on_chain(verdict.state.anchor, args.rpc, genesis)
    except InvalidProof as exc:
        print(json.dumps(failure_json(exc)))
        return EXIT_REJECTED
    out = verdict_json(verdict, genesis.chain_id)
    if args.rpc:
        out["anchor"]["checked_on_chain"] = True
    print_json(out)
    return 0


def add_commands(sub: Subcommands) -> None:
    p = add_command(sub, "resolve", "resolve an identifier; prints JSON",
                    f"IDENTIFIER is {IDENTIFIER_FORMS}: every form of one item answers the same record, under "
                    "its key (`identifier`). Exits 1 when it is not registered.")
    p.add_argument("identifier", metavar="IDENTIFIER",
                   help="e.g. 88.100.1/EQ-2024-000123 or (01)09506000134376(21)12345")
    p.add_argument("--height", type=int, help="as of this committed height")
    p.add_argument("--proof", action="store_true",
                   help="include a proof reaching the latest Ethereum anchor: as of the latest anchored height "
                   "unless --height is given (an anchor never covers the head); for an unknown identifier, "
                   "print its proof of absence (and exit 1)")
    add_read_options(p)
    p.set_defaults(func=cmd_resolve)

    p = add_command(sub, "verify", "check a proof (or an answer carrying one) offline; exit 0 only if valid",
                    "Checks the proof against the validators named in the genesis file, and every field of the "
                    "answer around it against what the proof proves (docs/proofs.md). Prints JSON: `valid`, what is "
                    "proven and what the answer lists as `unproven`; or the `reason` (a stable code) and a "
                    "`message` naming what failed.")
    p.add_argument("file", help="JSON from `ledger resolve --proof`, `ledger asset show --proof` or a ?proof=true "
                   "answer")
    p.add_argument("--genesis", required=True, help="the chain's genesis file (the trust root)")
    p.add_argument("--rpc", help="also check on this Ethereum JSON-RPC that the genesis file's anchor contract "
                                 "holds the anchor")
    p.set_defaults(func=cmd_verify)
