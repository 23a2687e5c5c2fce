"""`ledger member add|remove|roles|rotate-key|enc-key`: the admins manage members; a member rotates its own key
and registers its encryption key.

Adding, removing and setting roles are admin actions: with a threshold above one they make a proposal
(printed as `proposal`, with `status` open) that other admins approve with `ledger governance approve`."""

from __future__ import annotations

import argparse
from pathlib import Path

from ledger.cli.common import (
    EXIT_USAGE,
    CliError,
    Subcommands,
    add_command,
    add_group,
    add_write_options,
    member_id,
    print_json,
    signer,
)
from ledger.cli.governance import proposal_fields
from ledger.crypto import KeyFileError, SigningKey, derive_id
from ledger.members import ROLES, MemberAdd, MemberRemove, MemberRotateKey, MemberSetRoles

GROUP_DETAILS = """\
Members are named by the names genesis or `member add` gave them (or by id, key file, or devnet key
name). Writes are signed by the devnet's admin unless --key is given (rotate-key: by the devnet's first
registrar). When the ledger's threshold needs more than one admin, add, remove and roles make a proposal
and print its id: other admins approve it with `ledger governance approve ID`."""


def _public_key(args: argparse.Namespace) -> bytes:
    if args.public_key:
        try:
            key = bytes.fromhex(args.public_key)
        except ValueError:
            key = b""
        if len(key) != 32:
            raise CliError("--public-key takes 64 hex digits (an Ed25519 public key)", EXIT_USAGE)
        return key
    try:
        return SigningKey.load(args.key_file).public_key
    except KeyFileError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc


def cmd_add(args: argparse.Namespace) -> int:
    if not (args.public_key or args.key_file):
        raise CliError("give the new member's --public-key HEX or --key-file FILE", EXIT_USAGE)
    public_key = _public_key(args)
    result = signer(args, "admin").send("member.add", MemberAdd(args.name, public_key, tuple(args.role or ())))
    print_json({"name": args.name, "id": derive_id(public_key), "roles": sorted(set(args.role or ())),
                "tx_id": result["tx_id"], "height": result["height"], **proposal_fields(args, result)})
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    member = member_id(args.member, args)
    result = signer(args, "admin").send("member.remove", MemberRemove(member))
    print_json({"removed": member, "tx_id": result["tx_id"], "height": result["height"],
                **proposal_fields(args, result)})
    return 0


def cmd_roles(args: argparse.Namespace) -> int:
    member = member_id(args.member, args)
    result = signer(args, "admin").send("member.roles", MemberSetRoles(member, tuple(args.role or ())))
    print_json({"member": member, "roles": sorted(set(args.role or ())), "tx_id": result["tx_id"],
                "height": result["height"], **proposal_fields(args, result)})
    return 0


def cmd_rotate_key(args: argparse.Namespace) -> int:
    try:
        new_key = SigningKey.load(args.new_key)
    except KeyFileError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    member = signer(args, "registrar")
    result = member.send("member.rotate_key", MemberRotateKey(new_key.public_key))
    print_json({"member": member.member_id, "new_public_key": new_key.public_key.hex(),
                "tx_id": result["tx_id"], "height": result["height"],
                "note": f"sign with {args.new_key} from now on; the old key is refused"})
    return 0


def cmd_enc_key(args: argparse.Namespace) -> int:
    from ledger.private.module import EncKeySet
    from ledger.sealed import generate_key

    if bool(args.public_key) == bool(args.generate):
        raise CliError("give --public-key HEX or --generate FILE", EXIT_USAGE)
    if args.generate:
        path = Path(args.generate)
        if path.exists():
            raise CliError(f"{path} exists; choose another file", EXIT_USAGE)
        private, public = generate_key()
        path.touch(mode=0o600)
        path.write_text(private.hex() + "\n")
    else:
        try:
            public = bytes.fromhex(args.public_key)
        except ValueError:
            public = b""
        if len(public) != 32:
            raise CliError("--public-key takes 64 hex digits (an X25519 public key)", EXIT_USAGE)
    member = signer(args, "registrar")
    result = member.send("member.enc_key", EncKeySet(public))
    print_json({"member": member.member_id, "enc_public_key": public.hex(), "tx_id": result["tx_id"],
                "height": result["height"], **({"private_key_file": args.generate} if args.generate else {})})
    return 0


def add_commands(sub: Subcommands) -> None:
    members = add_group(sub, "member", "members: add, remove, roles, rotate-key, enc-key", GROUP_DETAILS)
    roles_help = f"a role ({', '.join(ROLES)}); repeat for several"
    p = add_command(members, "add", "admin: add a member")
    p.add_argument("name", help="the member's name (unique; used to name it in commands)")
    p.add_argument("--public-key", help="its Ed25519 public key, 64 hex digits")
    p.add_argument("--key-file", help="or its key file (only the public key is used)")
    p.add_argument("--role", action="append", help=roles_help)
    add_write_options(p)
    p.set_defaults(func=cmd_add)
    p = add_command(members, "remove", "admin: remove a member (its transactions are refused from then on)")
    p.add_argument("member", help="name, id, key file or devnet key name")
    add_write_options(p)
    p.set_defaults(func=cmd_remove)
    p = add_command(members, "roles", "admin: set a member's roles (replaces them)")
    p.add_argument("member", help="name, id, key file or devnet key name")
    p.add_argument("--role", action="append", help=roles_help)
    add_write_options(p)
    p.set_defaults(func=cmd_roles)
    p = add_command(members, "rotate-key", "replace the signing member's own key",
                    "The member keeps its id; transactions signed with the old key are refused afterwards.")
    p.add_argument("--new-key", required=True, help="the new key file (make one with `ledger keygen`)")
    add_write_options(p)
    p.set_defaults(func=cmd_rotate_key)
    p = add_command(members, "enc-key", "register the signing member's X25519 encryption public key",
                    "Private terms are encrypted to the parties' registered keys (ledger/sealed.py). --generate "
                    "writes a new private key (64 hex digits, mode 0600) to FILE and registers its public key.")
    p.add_argument("--public-key", help="an X25519 public key, 64 hex digits")
    p.add_argument("--generate", metavar="FILE", help="or make a new key pair, the private key written to FILE")
    add_write_options(p)
    p.set_defaults(func=cmd_enc_key)
