"""`ledger resolve` (an identifier's record, optionally with its proof) and `ledger verify` (a proof, offline)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

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
from ledger.codec import CodecError, decode, to_plain
from ledger.nft.assets import Asset, asset_key
from ledger.nft.rights import Licence, licence_key


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
    from ledger.proofs import InvalidProof, check_anchor_on_chain, verify_state_proof
    from ledger.resolver import proofs as resolution

    try:
        doc = json.loads(Path(args.file).read_text())
        genesis = load_genesis(args.genesis)
    except (OSError, json.JSONDecodeError, InvalidGenesis) as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    proof = doc.get("proof", doc) if isinstance(doc, dict) else doc
    try:
        verified = verify_state_proof(proof, genesis)
        # An answer that carries its proof must say what the proof proves.
        if isinstance(doc, dict) and "proof" in doc and doc.get("height", verified.height) != verified.height:
            raise InvalidProof(f"the answer says height {doc['height']}, its proof is as of {verified.height}")
        record: Any
        if is_token_key(verified.key):
            record = check_token_answer(doc, verified.key, verified.value)
        elif resolution.is_identifier_key(verified.key):
            record = resolution.check_answer(doc, verified.key, verified.value)
        else:  # another kind of state key: the proven bytes as they are
            record = None if verified.value is None else verified.value.hex()
    except InvalidProof as exc:
        print(json.dumps({"valid": False, "reason": str(exc)}))
        return EXIT_REJECTED
    anchor: dict[str, Any] | None = None
    if verified.anchor is not None:
        claim = verified.anchor
        anchor = {"height": claim.height, "eth_chain_id": claim.eth_chain_id, "contract": claim.contract,
                  "tx_hash": claim.tx_hash, "checked_on_chain": False}
        if args.rpc:
            try:
                check_anchor_on_chain(claim, args.rpc)
            except InvalidProof as exc:
                print(json.dumps({"valid": False, "reason": f"anchor: {exc}"}))
                return EXIT_REJECTED
            anchor["checked_on_chain"] = True
    elif args.rpc:
        print(json.dumps({"valid": False, "reason": "--rpc given but the proof carries no Ethereum anchor"}))
        return EXIT_REJECTED
    print_json({"valid": True, "chain_id": genesis.chain_id, "height": verified.height,
                "key": verified.key.decode(errors="replace"), "present": verified.value is not None,
                "record": record, "anchor": anchor})
    return 0


# --- an answer about a token or licence that carries a proof -------------------------------------

TOKEN_RECORDS: dict[bytes, type[Asset] | type[Licence]] = {b"asset/": Asset, b"licence/": Licence}
ASSET_SUMMARY = ("owner", "kind", "burned")


def is_token_key(key: bytes) -> bool:
    """Whether a proven key is an asset token's or a licence's."""
    return any(key.startswith(prefix) for prefix in TOKEN_RECORDS)


def check_token_answer(doc: Any, key: bytes, value: bytes | None) -> Any:
    """The proven asset or licence record (JSON form; None if absent), after checking that the answer
    around the proof (`asset show --proof`, `/v1/assets/..`, `/v1/licences/..`, `/v1/rights/check`)
    says what the proof proves. Raises InvalidProof otherwise."""
    from ledger.proofs import InvalidProof

    cls = next(c for prefix, c in TOKEN_RECORDS.items() if key.startswith(prefix))
    try:
        record = None if value is None else to_plain(decode(cls, value))
    except CodecError as exc:
        raise InvalidProof(f"the proven value is not a {cls.__name__} record: {exc}") from exc
    if not isinstance(doc, dict):
        return record
    claimed = doc.get("asset") if cls is Asset else doc.get("licence")
    claimed_id = doc.get("id") if cls is Asset else doc.get("licence_id")
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
                    "Checks the proof against the validators named in the genesis file, and that the answer "
                    "around it says what it proves; prints JSON with `valid` and what is proven.")
    p.add_argument("file", help="JSON from `ledger resolve --proof`, `ledger asset show --proof` or a ?proof=true "
                   "answer")
    p.add_argument("--genesis", required=True, help="the chain's genesis file (the trust root)")
    p.add_argument("--rpc", help="also check on this Ethereum JSON-RPC that the anchor is on chain")
    p.set_defaults(func=cmd_verify)
