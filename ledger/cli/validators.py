"""`ledger validator list|add|remove|rotate`: the validator set, changed by the admins.

Each change is an admin action: with a threshold above one it makes a proposal (printed as `proposal`)
that other admins approve with `ledger governance approve`. A change takes effect `activation_delay`
blocks after the block that commits it (ledger/validators.py says why); until then the next change waits.
"""

from __future__ import annotations

import argparse
from typing import Any

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
from ledger.crypto import KeyFileError, SigningKey, derive_id
from ledger.validators import ACTIVATION_DELAY, ValidatorAdd, ValidatorRemove, ValidatorRotate

GROUP_DETAILS = f"""\
Validators are named by id (40 hex digits, `ledger validator list`). Writes are signed by the devnet's
admin unless --key is given. A change takes effect {ACTIVATION_DELAY} blocks after the block that commits
it, and one change at a time: the next is refused until the last has taken effect. With a threshold of
several admins, a change is a proposal: other admins approve it with `ledger governance approve ID`."""


def public_key_of(text: str) -> bytes:
    """A validator's public key from 64 hex digits or a key file (only its public key is used)."""
    if len(text) == 64:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    try:
        return SigningKey.load(text).public_key
    except KeyFileError as exc:
        raise CliError(f"{text!r} is neither a public key (64 hex digits) nor a readable key file: {exc}",
                       EXIT_USAGE) from exc


def _validator_id(text: str) -> str:
    text = text.lower()
    if len(text) != 40 or any(c not in "0123456789abcdef" for c in text):
        raise CliError(f"a validator id is 40 hex digits (see `ledger validator list`), not {text!r}", EXIT_USAGE)
    return text


def _report(args: argparse.Namespace, result: dict[str, Any], **fields: Any) -> int:
    print_json({**fields, "tx_id": result["tx_id"], "height": result["height"],
                "takes_effect_at": result["height"] + ACTIVATION_DELAY, **proposal_fields(args, result)})
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    public_key = public_key_of(args.validator)
    result = signer(args, "admin").send("validator.add", ValidatorAdd(public_key, args.host, args.port))
    return _report(args, result, added=derive_id(public_key), host=args.host, port=args.port)


def cmd_remove(args: argparse.Namespace) -> int:
    validator = _validator_id(args.id)
    result = signer(args, "admin").send("validator.remove", ValidatorRemove(validator))
    return _report(args, result, removed=validator)


def cmd_rotate(args: argparse.Namespace) -> int:
    validator = _validator_id(args.id)
    new_key = public_key_of(args.new_key)
    result = signer(args, "admin").send("validator.rotate", ValidatorRotate(validator, new_key))
    return _report(args, result, rotated=validator, new_id=derive_id(new_key),
                   note="the validator's node must run with the new key from the height the change takes effect")


def cmd_list(args: argparse.Namespace) -> int:
    body = fetch(args, "/v1/validators")
    if args.json:
        print_json(body)
        return 0
    for s in body["sets"]:
        print(f"set {s['seq']} ({s['change']}), certifies from height {s['active_from']}:")
        for i, v in enumerate(s["validators"]):
            address = f"{v['host']}:{v['port']}" if v["host"] else "(from the nodes' peers)"
            print(f"  {i:>2} {v['id']} {address}")
    return 0


def add_commands(sub: Subcommands) -> None:
    group = add_group(sub, "validator", "validators: list, add, remove, rotate", GROUP_DETAILS)
    p = add_command(group, "list", "the set in force and the changes scheduled")
    p.add_argument("--json", action="store_true", help="print the answer of GET /v1/validators")
    add_read_options(p)
    p.set_defaults(func=cmd_list)
    p = add_command(group, "add", "admin: add a validator (its node must listen at --host:--port)")
    p.add_argument("validator", metavar="KEYFILE_OR_PUBKEY", help="its key file, or its public key in 64 hex digits")
    p.add_argument("--host", required=True, help="the host name or address its peer port listens on")
    p.add_argument("--port", required=True, type=int, help="its peer port")
    add_write_options(p)
    p.set_defaults(func=cmd_add)
    p = add_command(group, "remove", "admin: remove a validator")
    p.add_argument("id", help="the validator's id")
    add_write_options(p)
    p.set_defaults(func=cmd_remove)
    p = add_command(group, "rotate", "admin: replace a validator's key (it keeps its place and address)")
    p.add_argument("id", help="the validator's id")
    p.add_argument("--new-key", required=True, help="the new key file, or its public key in 64 hex digits")
    add_write_options(p)
    p.set_defaults(func=cmd_rotate)
