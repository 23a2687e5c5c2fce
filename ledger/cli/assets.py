"""`ledger asset mint|transfer|burn|show` and `ledger rights grant|revoke|check`: tokens and data-rights licences."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ledger import timefmt
from ledger.cli.common import (
    EXIT_USAGE,
    IDENTIFIER_FORMS,
    CliError,
    Subcommands,
    add_command,
    add_group,
    add_read_options,
    add_write_options,
    fetch,
    member_id,
    node_url,
    print_json,
    signer,
    storage_identifier,
)
from ledger.cli.market import parse_bps
from ledger.client import LedgerClient
from ledger.nft.assets import KINDS, AssetBurn, AssetMint, AssetTransfer
from ledger.nft.rights import LicenceGrant, LicenceRevoke, compute_licence_id

EXIT_DENIED = 1
GROUP_DETAILS = """\
Writes are signed with --key (a key file or a devnet member's name such as org2), by default by the
devnet's first member with the issuer role. Members (--to, --holder, --owner) are names, devnet member
names, key files or member ids. Times are ISO 8601 (a naive time means UTC) or milliseconds since the
epoch."""


def parse_time(text: str) -> int:
    """Milliseconds since the epoch from digits or ISO 8601."""
    try:
        return timefmt.parse_time_ms(text)
    except ValueError as exc:
        raise CliError(f"not an ISO 8601 time: {text!r}", EXIT_USAGE) from exc


def parse_sha256(text: str) -> bytes:
    try:
        digest = bytes.fromhex(text)
    except ValueError:
        digest = b""
    if len(digest) != 32:
        raise CliError("--hash takes a sha256 as 64 hex digits", EXIT_USAGE)
    return digest


def cmd_mint(args: argparse.Namespace) -> int:
    owner = member_id(args.owner, args) if args.owner else ""
    identifier = storage_identifier(args.identifier) if args.identifier else ""
    bps = parse_bps(args.royalty) if args.royalty is not None else None
    issuer = signer(args, "issuer")
    # The royalty is set by the mint itself (so the token never exists without it).
    mint = AssetMint(args.id, args.kind, args.uri, parse_sha256(args.hash), owner, identifier, bps or 0)
    result = issuer.send("asset.mint", mint)
    print_json({"id": args.id, "owner": owner or issuer.member_id, "identifier": identifier or None,
                "royalty_bps": bps, "tx_id": result["tx_id"], "height": result["height"]})
    return 0


def cmd_transfer(args: argparse.Namespace) -> int:
    to = member_id(args.to, args)
    result = signer(args, "issuer").send("asset.transfer", AssetTransfer(args.id, to))
    print_json({"id": args.id, "owner": to, "tx_id": result["tx_id"], "height": result["height"]})
    return 0


def cmd_burn(args: argparse.Namespace) -> int:
    result = signer(args, "issuer").send("asset.burn", AssetBurn(args.id))
    print_json({"id": args.id, "burned": True, "tx_id": result["tx_id"], "height": result["height"]})
    return 0


def _show_with_proof(args: argparse.Namespace) -> dict[str, Any]:
    """The token with a proof reaching the latest Ethereum anchor (see `LedgerClient.proven`)."""
    with LedgerClient(node_url(args)) as client:
        proven = client.proven(f"/v1/assets/{args.id}", args.height, history="true")
    if proven.note:
        print(f"note: {args.id}: {proven.note}", file=sys.stderr)
    return proven.body


def cmd_show(args: argparse.Namespace) -> int:
    """The node's asset answer with its provenance (`history`, from `history_start`), the token's id, owner,
    kind and burned flag repeated at the top; with --proof `ledger verify` checks every one of them."""
    body = (_show_with_proof(args) if args.proof
            else fetch(args, f"/v1/assets/{args.id}", height=args.height, history="true"))
    asset = body["asset"]
    print_json({"id": asset["id"], "owner": asset["owner"], "kind": asset["kind"], "burned": asset["burned"], **body})
    return 0


def cmd_grant(args: argparse.Namespace) -> int:
    holder = member_id(args.to, args)
    payload = LicenceGrant(
        args.token, args.parent or "", holder, tuple(args.purpose), parse_time(args.valid_from) if args.valid_from
        else 0, parse_time(args.until), args.sublicensable, args.terms_uri or "",
        parse_sha256(args.terms_hash) if args.terms_hash else b"",
    )
    result = signer(args, "issuer").send("licence.grant", payload)
    print_json({"licence_id": compute_licence_id(bytes.fromhex(result["tx_id"])), "token": args.token,
                "holder": holder, "purposes": sorted(set(args.purpose)), "valid_until": payload.valid_until,
                "parent": args.parent, "tx_id": result["tx_id"], "height": result["height"]})
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    result = signer(args, "issuer").send("licence.revoke", LicenceRevoke(args.licence))
    print_json({"licence_id": args.licence, "revoked": True, "tx_id": result["tx_id"], "height": result["height"]})
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    holder = member_id(args.holder, args)
    at = str(parse_time(args.at)) if args.at else None
    body = fetch(args, "/v1/rights/check", token=args.token, holder=holder, purpose=args.purpose, at=at,
                 proof="true" if args.proof else "false")
    print_json(body)
    return 0 if body["allowed"] else EXIT_DENIED


def add_commands(sub: Subcommands) -> None:
    assets = add_group(sub, "asset", "asset tokens: mint, transfer, burn, show", GROUP_DETAILS)
    p = add_command(assets, "mint", "mint a token (issuer role)",
                    "An equipment token may be bound to a registered identifier under a prefix the minter owns "
                    f"(--identifier: {IDENTIFIER_FORMS}); the identifier's record then gains an NFT value naming "
                    "the token.")
    p.add_argument("id", help="the token id, e.g. PUMP-2024-000001")
    p.add_argument("--kind", required=True, choices=KINDS, help="what the token stands for")
    p.add_argument("--uri", required=True, help="metadata URI")
    p.add_argument("--hash", required=True, help="sha256 of the metadata, 64 hex digits")
    p.add_argument("--identifier", help="bind an equipment token to this identifier (any form `ledger resolve` takes)")
    p.add_argument("--owner", help="owner if not the minter (member name, key file or id)")
    p.add_argument("--royalty", metavar="BPS", help="the creator's share of every later sale's price, in basis points "
                   "(1 to 10000; 500 = 5%%), set by the mint itself and fixed for good (ERC-2981)")
    add_write_options(p)
    p.set_defaults(func=cmd_mint)
    p = add_command(assets, "transfer", "transfer a token (its owner)")
    p.add_argument("id", help="the token id")
    p.add_argument("--to", required=True, help="the new owner: member name, key file or id")
    add_write_options(p)
    p.set_defaults(func=cmd_transfer)
    p = add_command(assets, "burn", "decommission a token (its owner)",
                    "A bound identifier's NFT value is marked decommissioned; the token's history stays.")
    p.add_argument("id", help="the token id")
    add_write_options(p)
    p.set_defaults(func=cmd_burn)
    p = add_command(assets, "show", "print a token with its owner and history as JSON")
    p.add_argument("id", help="the token id")
    p.add_argument("--height", type=int, help="the token as of this committed height (default: the head)")
    p.add_argument("--proof", action="store_true",
                   help="include a state proof for `ledger verify`, reaching the latest Ethereum anchor (without "
                        "--height, the token is shown as of the latest anchored height)")
    add_read_options(p)
    p.set_defaults(func=cmd_show)

    rights = add_group(sub, "rights", "data-rights licences: grant, revoke, check", GROUP_DETAILS)
    p = add_command(rights, "grant", "grant a licence (root: token owner; child: holder of --parent)",
                    "Prints the licence id (`licence_id`), which --parent and `rights revoke` take.")
    p.add_argument("token", help="the token id")
    p.add_argument("--to", required=True, help="holder: member name, key file or id")
    p.add_argument("--purpose", required=True, action="append", help="a purpose (repeat for more)")
    p.add_argument("--until", required=True, help="end of validity, ISO 8601")
    p.add_argument("--from", dest="valid_from", help="start of validity, ISO 8601 (default: block time)")
    p.add_argument("--sublicensable", action="store_true", help="let the holder grant sublicences")
    p.add_argument("--parent", help="parent licence id, for a sublicence")
    p.add_argument("--terms-uri", help="URI of the licence terms")
    p.add_argument("--terms-hash", help="sha256 of the terms, 64 hex digits")
    add_write_options(p)
    p.set_defaults(func=cmd_grant)
    p = add_command(rights, "revoke", "revoke a licence (its grantor or the token owner)",
                    "Its sublicences stop being valid with it.")
    p.add_argument("licence", help="the licence id")
    add_write_options(p)
    p.set_defaults(func=cmd_revoke)
    p = add_command(rights, "check", "exit 0 when allowed, 1 when denied; prints JSON",
                    "The answer names the deciding licence, or the reason for a denial.")
    p.add_argument("token", help="the token id")
    p.add_argument("--holder", required=True, help="member name, key file or id")
    p.add_argument("--purpose", required=True, help="the purpose asked about")
    p.add_argument("--at", help="ISO 8601 time (default: now)")
    p.add_argument("--proof", action="store_true", help="include the state proof of the deciding licence")
    add_read_options(p)
    p.set_defaults(func=cmd_check)
