"""The `ledger asset ...` and `ledger rights ...` commands.

Writes sign with `--key` (a key file or a devnet member name such as org2) and default to the
devnet's org1 key, like `ledger id register`. Members (`--to`, `--holder`) are devnet member names,
key files or member ids. Times are ISO 8601 (a naive time means UTC) or milliseconds since the epoch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from ledger import cli, timefmt
from ledger.client import LedgerClient
from ledger.codec import CodecError, decode, to_plain
from ledger.nft.assets import KINDS, Asset, AssetBurn, AssetMint, AssetTransfer, asset_key
from ledger.nft.rights import Licence, LicenceGrant, LicenceRevoke, compute_licence_id, licence_key

EXIT_DENIED = 1


def parse_time(text: str) -> int:
    """Milliseconds since the epoch from digits or ISO 8601."""
    try:
        return timefmt.parse_time_ms(text)
    except ValueError as exc:
        raise cli.CliError(f"not an ISO 8601 time: {text!r}", cli.EXIT_USAGE) from exc


def _hash(text: str) -> bytes:
    try:
        digest = bytes.fromhex(text)
    except ValueError:
        digest = b""
    if len(digest) != 32:
        raise cli.CliError("--hash takes a sha256 as 64 hex digits", cli.EXIT_USAGE)
    return digest


def _writer(args: argparse.Namespace) -> tuple[LedgerClient, Any]:
    # --key may name a devnet member (org2) instead of a key file.
    net = cli._devnet(args)
    if args.key and net is not None and args.key in net["keys"]:
        args.key = net["keys"][args.key]
    return cli._signer(args, "org1")


def _get(args: argparse.Namespace, path: str, **params: Any) -> dict[str, Any]:
    with LedgerClient(cli._node_url(args)) as client:
        body: dict[str, Any] = client._get(path, **params)
    return body


# --- commands -------------------------------------------------------------------------------------


def cmd_asset_mint(args: argparse.Namespace) -> int:
    owner = cli._member_id(args.owner, args) if args.owner else ""
    payload = AssetMint(args.id, args.kind, args.uri, _hash(args.hash), owner, args.identifier or "")
    _, signer = _writer(args)
    result = signer.send("asset.mint", payload)
    cli._print_json({"id": args.id, "owner": owner or signer.member_id, "identifier": args.identifier,
                     "tx_id": result["tx_id"], "height": result["height"]})
    return 0


def cmd_asset_transfer(args: argparse.Namespace) -> int:
    to = cli._member_id(args.to, args)
    _, signer = _writer(args)
    result = signer.send("asset.transfer", AssetTransfer(args.id, to))
    cli._print_json({"id": args.id, "owner": to, "tx_id": result["tx_id"], "height": result["height"]})
    return 0


def cmd_asset_burn(args: argparse.Namespace) -> int:
    _, signer = _writer(args)
    result = signer.send("asset.burn", AssetBurn(args.id))
    cli._print_json({"id": args.id, "burned": True, "tx_id": result["tx_id"], "height": result["height"]})
    return 0


def _show_with_proof(args: argparse.Namespace) -> dict[str, Any]:
    """The token with a proof reaching the latest Ethereum anchor (see `LedgerClient.proven`)."""
    with LedgerClient(cli._node_url(args)) as client:
        proven = client.proven(f"/v1/assets/{args.id}", args.height)
    if proven.note:
        print(f"note: {args.id}: {proven.note}", file=sys.stderr)
    return proven.body


def cmd_asset_show(args: argparse.Namespace) -> int:
    body = _show_with_proof(args) if args.proof else _get(args, f"/v1/assets/{args.id}", height=args.height)
    # the history up to the height shown
    history = [e for e in _get(args, f"/v1/assets/{args.id}/history")["history"] if e["height"] <= body["height"]]
    asset = body["asset"]
    extra = {"proof": body["proof"]} if args.proof else {}
    cli._print_json({"id": asset["id"], "owner": asset["owner"], "kind": asset["kind"], "burned": asset["burned"],
                     "user_of": body["user_of"], "height": body["height"], "asset": asset, "history": history,
                     **extra})
    return 0


def cmd_rights_grant(args: argparse.Namespace) -> int:
    holder = cli._member_id(args.to, args)
    payload = LicenceGrant(
        args.token, args.parent or "", holder, tuple(args.purpose), parse_time(args.valid_from) if args.valid_from
        else 0, parse_time(args.until), args.sublicensable, args.terms_uri or "",
        _hash(args.terms_hash) if args.terms_hash else b"",
    )
    _, signer = _writer(args)
    result = signer.send("licence.grant", payload)
    cli._print_json({"license_id": compute_licence_id(bytes.fromhex(result["tx_id"])), "token": args.token,
                     "holder": holder, "purposes": sorted(set(args.purpose)), "valid_until": payload.valid_until,
                     "parent": args.parent, "tx_id": result["tx_id"], "height": result["height"]})
    return 0


def cmd_rights_revoke(args: argparse.Namespace) -> int:
    _, signer = _writer(args)
    result = signer.send("licence.revoke", LicenceRevoke(args.licence))
    cli._print_json({"license_id": args.licence, "revoked": True, "tx_id": result["tx_id"],
                     "height": result["height"]})
    return 0


def cmd_rights_check(args: argparse.Namespace) -> int:
    holder = cli._member_id(args.holder, args)
    at = str(parse_time(args.at)) if args.at else None
    body = _get(args, "/v1/rights/check", token=args.token, holder=holder, purpose=args.purpose, at=at,
                proof="true" if args.proof else "false")
    cli._print_json(body)
    return 0 if body["allowed"] else EXIT_DENIED


# --- checking an answer that carries a proof (`ledger verify`) ---------------------------------------

TOKEN_RECORDS: dict[bytes, type[Asset] | type[Licence]] = {b"asset/": Asset, b"licence/": Licence}
ASSET_SUMMARY = ("owner", "kind", "burned")


def is_token_key(key: bytes) -> bool:
    """Whether a proven key is an asset token's or a licence's."""
    return any(key.startswith(prefix) for prefix in TOKEN_RECORDS)


def check_token_answer(doc: Any, key: bytes, value: bytes | None) -> Any:
    """The proven asset or licence record (JSON form; None if absent), after checking that the answer
    around the proof (`asset show --proof`, `/v1/assets/..`, `/v1/licences/..`, `/v1/rights/check`)
    says what the proof proves. Raises InvalidProof otherwise."""
    from ledger.proofs import InvalidProof  # (not at the top: keeps `ledger` quick to start)

    cls = next(c for prefix, c in TOKEN_RECORDS.items() if key.startswith(prefix))
    try:
        record = None if value is None else to_plain(decode(cls, value))
    except CodecError as exc:
        raise InvalidProof(f"the proven value is not a {cls.__name__} record: {exc}") from exc
    if not isinstance(doc, dict):
        return record
    claimed = doc.get("asset") if cls is Asset else doc.get("licence")
    claimed_id = doc.get("id") if cls is Asset else doc.get("license_id")
    if isinstance(claimed, dict):
        claimed_id = claimed.get("id", claimed_id)
    make_key = asset_key if cls is Asset else licence_key
    if claimed_id is not None and make_key(str(claimed_id)) != key:
        raise InvalidProof(f"the proof is for another {cls.__name__.lower()} than the answer")
    if claimed is not None and claimed != record:
        raise InvalidProof(f"the answer's {cls.__name__.lower()} differs from the proven value")
    # `asset show` repeats some of the token's fields at the top
    summary: dict[str, Any] = record if cls is Asset and record is not None else {}
    if any(name in doc and doc[name] != summary.get(name) for name in ASSET_SUMMARY if summary):
        raise InvalidProof("the answer's asset differs from the proven value")
    return record


# --- parser --------------------------------------------------------------------------------------


def _guarded(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Report this module's usage errors itself: under `python -m ledger.cli` the caller's CliError
    is another class object than `ledger.cli.CliError`."""

    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except cli.CliError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.code

    return run


def _read_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--node", help="node URL (default: the devnet's first node)")
    p.add_argument("--dir", help="devnet directory to take defaults from")


def add_asset_commands(sub: Any) -> None:
    """Add the `asset` and `rights` command groups to the `ledger` parser's subparsers."""
    assets = sub.add_parser("asset", help="asset tokens: mint, transfer, burn, show").add_subparsers(
        dest="asset_command", required=True)
    p = assets.add_parser("mint", help="mint a token (issuer role)")
    p.add_argument("id")
    p.add_argument("--kind", required=True, choices=KINDS)
    p.add_argument("--uri", required=True, help="metadata URI")
    p.add_argument("--hash", required=True, help="sha256 of the metadata, 64 hex digits")
    p.add_argument("--identifier", help="bind an equipment token to an identifier under your prefix")
    p.add_argument("--owner", help="owner if not the minter (member name, key file or id)")
    cli._write_opts(p)
    p.set_defaults(func=_guarded(cmd_asset_mint))
    p = assets.add_parser("transfer", help="transfer a token")
    p.add_argument("id")
    p.add_argument("--to", required=True, help="member name, key file or id")
    cli._write_opts(p)
    p.set_defaults(func=_guarded(cmd_asset_transfer))
    p = assets.add_parser("burn", help="decommission a token")
    p.add_argument("id")
    cli._write_opts(p)
    p.set_defaults(func=_guarded(cmd_asset_burn))
    p = assets.add_parser("show", help="print a token with its owner and history as JSON")
    p.add_argument("id")
    p.add_argument("--height", type=int, help="the token as of this committed height (default: the head)")
    p.add_argument("--proof", action="store_true",
                   help="include a state proof for `ledger verify`, reaching the latest Ethereum anchor (without "
                        "--height, the token is shown as of the latest anchored height)")
    _read_opts(p)
    p.set_defaults(func=_guarded(cmd_asset_show))

    rights = sub.add_parser("rights", help="data-rights licences: grant, revoke, check").add_subparsers(
        dest="rights_command", required=True)
    p = rights.add_parser("grant", help="grant a licence (root: token owner; child: holder of --parent)")
    p.add_argument("token")
    p.add_argument("--to", required=True, help="holder: member name, key file or id")
    p.add_argument("--purpose", required=True, action="append", help="a purpose (repeat for more)")
    p.add_argument("--until", required=True, help="end of validity, ISO 8601")
    p.add_argument("--from", dest="valid_from", help="start of validity, ISO 8601 (default: block time)")
    p.add_argument("--sublicensable", action="store_true")
    p.add_argument("--parent", help="parent licence id, for a sublicence")
    p.add_argument("--terms-uri", help="URI of the licence terms")
    p.add_argument("--terms-hash", help="sha256 of the terms, 64 hex digits")
    cli._write_opts(p)
    p.set_defaults(func=_guarded(cmd_rights_grant))
    p = rights.add_parser("revoke", help="revoke a licence (its grantor or the token owner)")
    p.add_argument("licence")
    cli._write_opts(p)
    p.set_defaults(func=_guarded(cmd_rights_revoke))
    p = rights.add_parser("check", help="exit 0 when allowed, 1 when denied; prints JSON")
    p.add_argument("token")
    p.add_argument("--holder", required=True, help="member name, key file or id")
    p.add_argument("--purpose", required=True)
    p.add_argument("--at", help="ISO 8601 time (default: now)")
    p.add_argument("--proof", action="store_true", help="include the state proof of the deciding licence")
    _read_opts(p)
    p.set_defaults(func=_guarded(cmd_rights_check))
