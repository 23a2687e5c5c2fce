"""The `ledger member ...` commands: the admin adds and removes members and sets roles; a member
rotates its own key. Members are named by the names genesis or `member add` gave them (or by id,
key file, or devnet key name). Writes default to the devnet's admin key (rotate-key: org1's)."""

from __future__ import annotations

import argparse

from ledger import cli
from ledger.crypto import KeyFileError, SigningKey
from ledger.members import ROLES, MemberAdd, MemberRemove, MemberRotateKey, MemberSetRoles


def _public_key(args: argparse.Namespace) -> bytes:
    if args.public_key:
        try:
            key = bytes.fromhex(args.public_key)
        except ValueError:
            key = b""
        if len(key) != 32:
            raise cli.CliError("--public-key takes 64 hex digits (an Ed25519 public key)", cli.EXIT_USAGE)
        return key
    try:
        return SigningKey.load(args.key_file).public_key
    except KeyFileError as exc:
        raise cli.CliError(str(exc), cli.EXIT_USAGE) from exc


def cmd_add(args: argparse.Namespace) -> int:
    if not (args.public_key or args.key_file):
        raise cli.CliError("give the new member's --public-key HEX or --key-file FILE", cli.EXIT_USAGE)
    public_key = _public_key(args)
    _, signer = cli._signer(args, "admin")
    result = signer.send("member.add", MemberAdd(args.name, public_key, tuple(args.role or ())))
    from ledger.crypto import derive_id

    cli._print_json({"name": args.name, "id": derive_id(public_key), "roles": sorted(set(args.role or ())),
                     "tx_id": result["tx_id"], "height": result["height"]})
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    member = cli._member_id(args.member, args)
    _, signer = cli._signer(args, "admin")
    result = signer.send("member.remove", MemberRemove(member))
    cli._print_json({"removed": member, "tx_id": result["tx_id"], "height": result["height"]})
    return 0


def cmd_roles(args: argparse.Namespace) -> int:
    member = cli._member_id(args.member, args)
    _, signer = cli._signer(args, "admin")
    result = signer.send("member.roles", MemberSetRoles(member, tuple(args.role or ())))
    cli._print_json({"member": member, "roles": sorted(set(args.role or ())), "tx_id": result["tx_id"],
                     "height": result["height"]})
    return 0


def cmd_rotate_key(args: argparse.Namespace) -> int:
    try:
        new_key = SigningKey.load(args.new_key)
    except KeyFileError as exc:
        raise cli.CliError(str(exc), cli.EXIT_USAGE) from exc
    _, signer = cli._signer(args, "org1")
    result = signer.send("member.rotate_key", MemberRotateKey(new_key.public_key))
    cli._print_json({"member": signer.member_id, "new_public_key": new_key.public_key.hex(),
                     "tx_id": result["tx_id"], "height": result["height"],
                     "note": f"sign with {args.new_key} from now on; the old key is refused"})
    return 0


def add_member_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    members = sub.add_parser("member", help="members: add, remove, roles, rotate-key").add_subparsers(
        dest="member_command", required=True)
    roles_help = f"a role ({', '.join(ROLES)}); repeat for several"
    p = members.add_parser("add", help="admin: add a member")
    p.add_argument("name", help="the member's name (unique; used to name it in commands)")
    p.add_argument("--public-key", help="its Ed25519 public key, 64 hex digits")
    p.add_argument("--key-file", help="or its key file (only the public key is used)")
    p.add_argument("--role", action="append", help=roles_help)
    cli._write_opts(p)
    p.set_defaults(func=cmd_add)
    p = members.add_parser("remove", help="admin: remove a member (its transactions are refused from then on)")
    p.add_argument("member", help="name, id, key file or devnet key name")
    cli._write_opts(p)
    p.set_defaults(func=cmd_remove)
    p = members.add_parser("roles", help="admin: set a member's roles (replaces them)")
    p.add_argument("member", help="name, id, key file or devnet key name")
    p.add_argument("--role", action="append", help=roles_help)
    cli._write_opts(p)
    p.set_defaults(func=cmd_roles)
    p = members.add_parser("rotate-key", help="replace the signing member's own key")
    p.add_argument("--new-key", required=True, help="the new key file (make one with `ledger keygen`)")
    cli._write_opts(p)
    p.set_defaults(func=cmd_rotate_key)
