"""`ledger id prefix|register|import`: identifier prefixes and registrations."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ledger.cli.common import (
    EXIT_REJECTED,
    EXIT_USAGE,
    IDENTIFIER_FORMS,
    CliError,
    Subcommands,
    add_command,
    add_group,
    add_write_options,
    member_id,
    print_json,
    signer,
    storage_identifier,
)
from ledger.cli.governance import proposal_fields
from ledger.resolver.registry import VALUE_TYPES, IdRegister, PrefixCreate, ValueSpec


def cmd_prefix(args: argparse.Namespace) -> int:
    admin = signer(args, "admin")
    owner = member_id(args.owner, args) if args.owner else admin.member_id
    result = admin.send("prefix.create", PrefixCreate(args.prefix, owner))
    print_json({"prefix": args.prefix, "owner": owner, "tx_id": result["tx_id"], "height": result["height"],
                **proposal_fields(args, result)})
    return 0


def parse_values(url: str | None, extra: Sequence[str]) -> tuple[ValueSpec, ...]:
    """--url (index 1) and --value TYPE=VALUE options as the record's values, numbered in order."""
    values: list[ValueSpec] = []
    if url:
        values.append(ValueSpec(1, "URL", url))
    for item in extra:
        vtype, sep, value = item.partition("=")
        if not sep or vtype.upper() not in VALUE_TYPES:
            raise CliError(f"--value takes TYPE=VALUE with TYPE one of {', '.join(VALUE_TYPES)}", EXIT_USAGE)
        values.append(ValueSpec(len(values) + 1, vtype.upper(), value))
    if not values:
        raise CliError("give --url and/or --value TYPE=VALUE", EXIT_USAGE)
    return tuple(values)


def cmd_register(args: argparse.Namespace) -> int:
    key = storage_identifier(args.identifier)
    values = parse_values(args.url, args.value or [])
    registrar = signer(args, "registrar")
    result = registrar.send("id.register", IdRegister(key, values))
    # `identifier` is the key the record is kept (and found) under: for GS1 items, gs1/01/...
    print_json({"identifier": key, **({"input": args.identifier} if key != args.identifier else {}),
                "tx_id": result["tx_id"], "height": result["height"]})
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Bulk-register a CSV (see ledger.id_import): progress, batching, per-row error report, resume."""
    from ledger.id_import import ImportFileError, ProbeError, import_file

    path = Path(args.file)
    report_path = Path(args.report) if args.report else path.with_name(path.name + ".errors.csv")
    registrar = signer(args, "registrar")
    try:
        tally = import_file(registrar.client, registrar, path, args.batch, report_path)
    except ImportFileError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    except ProbeError as exc:
        raise CliError(str(exc)) from exc
    if tally.failed:
        print(f"{tally.failed} row(s) failed: see {report_path}", file=sys.stderr)
    print(json.dumps({"imported": tally.imported, "skipped": tally.skipped, "failed": tally.failed,
                      "report": str(report_path)}))
    return EXIT_REJECTED if tally.failed else 0


def add_commands(sub: Subcommands) -> None:
    ids = add_group(sub, "id", "identifier prefixes and registrations")
    p = add_command(ids, "prefix", "create a prefix (admin for top-level, parent owner for sub-prefixes)",
                    "A Handle prefix such as 88.100.1, or gs1:<company prefix digits> (gs1:9506000) for the GS1 "
                    "items of a company. Signed by the devnet's admin unless --key is given. A top-level prefix is "
                    "an admin action: with a threshold above one it makes a proposal (printed) that other admins "
                    "approve with `ledger governance approve`.")
    p.add_argument("prefix", help="e.g. 88.100.1 or gs1:9506000")
    p.add_argument("--owner", help="member id, name, devnet member name or key file (default: the signer)")
    add_write_options(p)
    p.set_defaults(func=cmd_prefix)

    p = add_command(ids, "register", "register an identifier under a prefix you own",
                    f"IDENTIFIER is {IDENTIFIER_FORMS}. Every GS1 form of one item is registered under one key "
                    "(gs1/01/<gtin>/21/<serial>, printed as `identifier`), which `ledger resolve` finds from any "
                    "of them; the item's prefix is its company prefix gs1:<digits>.")
    p.add_argument("identifier", metavar="IDENTIFIER",
                   help="e.g. 88.100.1/EQ-2024-000123 or /01/09506000134376/21/12345")
    p.add_argument("--url", help="the URL value (index 1)")
    p.add_argument("--value", action="append", metavar="TYPE=VALUE",
                   help=f"more values (repeat); TYPE in {', '.join(VALUE_TYPES)}")
    add_write_options(p)
    p.set_defaults(func=cmd_register)

    p = add_command(ids, "import", "bulk-register from a CSV with header identifier,url",
                    "Identifiers in any form `ledger id register` takes. Shows progress; rows that fail go to the "
                    "report CSV (line,identifier,error) without stopping the import; rows already registered with "
                    "the same URL are skipped, so running it again resumes an interrupted import. Exits 1 if any "
                    "row failed.")
    p.add_argument("file", help="the CSV file")
    p.add_argument("--batch", type=int, default=500, help="transactions per request (default 500)")
    p.add_argument("--report", help="per-row error report CSV (default: FILE.errors.csv)")
    add_write_options(p)
    p.set_defaults(func=cmd_import)
