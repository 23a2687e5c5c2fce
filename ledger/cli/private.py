"""`ledger collection create|show|node-org` and `ledger private put|get|purge|proof`: private data.

A collection is a name and its member organisations (an admin action). Private data written to it goes
to a node of a member organisation; the ledger keeps only a salted hash of it. Reads are signed by a
member's key; a purge removes the plaintext from every node that held it, and the hash stays."""

from __future__ import annotations

import argparse
import base64
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from ledger.cli.common import (
    EXIT_USAGE,
    CliError,
    Subcommands,
    add_command,
    add_group,
    add_read_options,
    add_write_options,
    devnet_record,
    node_url,
    print_json,
    signer,
    signing_key,
)
from ledger.cli.governance import proposal_fields
from ledger.client import LedgerClient, LedgerError, Signer, check_result
from ledger.codec import CodecError, decode
from ledger.private.module import CollectionCreate, NodeOrgSet, PrivatePurge, PrivatePut
from ledger.private.reads import MEMBER_HEADER, REQUEST_HEADER, read_associated_data, sign_read
from ledger.private.records import MAX_VALUE_BYTES, SALT_LEN, commitment
from ledger.private.service import FetchAnswer
from ledger.sealed import SealError, open_sealed
from ledger.tx import tx_to_plain

COLLECTION_DETAILS = """\
Collections are created by the admins (a proposal when the threshold needs more than one). Each node
belongs to a member organisation: genesis names them (`node_orgs`; the devnet maps node1, node2, node3 to
org1, org2, org3 and node0 to admin), or an admin action does (`ledger collection node-org NODE ORG`)."""

PRIVATE_DETAILS = """\
put sends the file to a node of a member organisation (with --node, or the devnet's first such node) with a
signed private.put holding only sha256 of a random salt and the value: the value reaches the member
organisations' nodes only. get signs its request with --key (a member of the collection). purge removes
the value from every node; the commitment stays, and `ledger private proof` still proves it."""


def cmd_collection_create(args: argparse.Namespace) -> int:
    members = tuple(m.strip() for m in args.members.split(",") if m.strip())
    if not members:
        raise CliError("--members takes member names separated by commas, e.g. org1,org2", EXIT_USAGE)
    result = signer(args, "admin").send("collection.create", CollectionCreate(args.name, members))
    print_json({"collection": args.name, "members": sorted(set(members)), "tx_id": result["tx_id"],
                "height": result["height"], **proposal_fields(args, result)})
    return 0


def cmd_collection_show(args: argparse.Namespace) -> int:
    with LedgerClient(node_url(args)) as client:
        print_json(client.get(f"/v1/collections/{args.name}"))
    return 0


def cmd_node_org(args: argparse.Namespace) -> int:
    result = signer(args, "admin").send("node.org", NodeOrgSet(args.node_id, args.org))
    print_json({"node": args.node_id, "org": args.org, "tx_id": result["tx_id"], "height": result["height"],
                **proposal_fields(args, result)})
    return 0


def member_node(args: argparse.Namespace, collection: str) -> str:
    """--node if its organisation is a member of the collection (else an error), or the devnet's first such node:
    private data is never sent to a node of another organisation."""
    net = devnet_record(args)
    candidates = [args.node] if args.node else [n["http"] for n in (net or {}).get("nodes", [])]
    if not candidates:
        raise CliError("no --node given and no devnet found", EXIT_USAGE)
    with LedgerClient(candidates[0]) as client:
        members = client.get(f"/v1/collections/{collection}")["members"]
    for url in candidates:
        with LedgerClient(url) as client:
            try:
                org = client.status().get("private_data", {}).get("org")
            except LedgerError:
                continue
        if org in members:
            return str(url)
    if args.node:
        raise CliError(f"node {args.node} is not of a member organisation of {collection!r}: private data goes only "
                       "to the nodes of its members (give another --node)", EXIT_USAGE)
    raise CliError(f"no devnet node belongs to a member organisation of {collection!r}", EXIT_USAGE)


def _answer(r: httpx.Response) -> dict[str, Any]:
    """The JSON body of a node's answer; LedgerError (with the node's reason) for an error answer."""
    try:
        body = r.json()
    except ValueError:
        body = {"error": str(r.status_code), "message": r.text[:500]}
    if not isinstance(body, dict):
        body = {"value": body}
    if r.status_code >= 400:
        raise LedgerError(body.get("error", str(r.status_code)), body.get("message", ""), r.status_code, body)
    return body


def cmd_put(args: argparse.Namespace) -> int:
    try:
        value = Path(args.file).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc}", EXIT_USAGE) from exc
    if len(value) > MAX_VALUE_BYTES:
        raise CliError(f"a private value is at most {MAX_VALUE_BYTES} bytes; {args.file} has {len(value)}", EXIT_USAGE)
    url = member_node(args, args.collection)
    salt = os.urandom(SALT_LEN)
    digest = commitment(args.collection, args.key_name, salt, value)
    with LedgerClient(url) as client:
        member = Signer(signing_key(args, "issuer"), client)
        tx = member.sign("private.put", PrivatePut(args.collection, args.key_name, digest))
        try:
            r = client.http.post(f"/v1/private/{args.collection}",
                                 json={"tx": tx_to_plain(tx), "salt": salt.hex(),
                                       "value": base64.b64encode(value).decode()})
        except httpx.HTTPError as exc:
            raise CliError(f"cannot reach {url}: {exc}") from exc
        body = _answer(r)
        check_result({"accepted": True, **body})
    print_json({"collection": args.collection, "key": args.key_name, "node": url, **body})
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    url = member_node(args, args.collection)
    key = signing_key(args, "issuer")
    with LedgerClient(url) as client:
        member = client.get("/v1/members", public_key=key.public_key.hex())
        chain_id = client.status()["chain_id"]
        token = sign_read(key, member["id"], chain_id, args.collection, args.key_name, time.time_ns() // 1_000_000)
        try:
            r = client.http.get(f"/v1/private/{args.collection}/{args.key_name}",
                                params={"sealed": "true"} if args.enc_key else {},
                                headers={MEMBER_HEADER: member["id"], REQUEST_HEADER: token})
        except httpx.HTTPError as exc:
            raise CliError(f"cannot reach {url}: {exc}") from exc
        body = _answer(r)
    if args.enc_key:
        body = _unseal(args, body, chain_id, member["id"])
    if args.out:
        Path(args.out).write_bytes(base64.b64decode(body["value"]))
        body = {**{k: v for k, v in body.items() if k != "value"}, "written_to": args.out}
    print_json(body)
    return 0


def _unseal(args: argparse.Namespace, body: dict[str, Any], chain_id: str, member: str) -> dict[str, Any]:
    """The answer with its sealed value opened by --enc-key and checked against the commitment."""
    try:
        private = bytes.fromhex(Path(args.enc_key).read_text().strip())
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read the encryption key {args.enc_key}: {exc}", EXIT_USAGE) from exc
    try:
        opened = decode(FetchAnswer, open_sealed(base64.b64decode(body["sealed"]), private,
                                                  read_associated_data(chain_id, args.collection, args.key_name,
                                                                       member)))
    except (SealError, CodecError, KeyError, ValueError) as exc:
        raise CliError(f"cannot open the sealed answer: {exc}") from exc
    if commitment(args.collection, args.key_name, opened.salt, opened.value).hex() != body["commitment"]:
        raise CliError("the value does not match its commitment: do not rely on it")
    rest = {k: v for k, v in body.items() if k != "sealed"}
    return {**rest, "salt": opened.salt.hex(), "value": base64.b64encode(opened.value).decode()}


def cmd_purge(args: argparse.Namespace) -> int:
    result = signer(args, "issuer").send("private.purge", PrivatePurge(args.collection, args.key_name))
    print_json({"collection": args.collection, "key": args.key_name, "purged": True, "tx_id": result["tx_id"],
                "height": result["height"]})
    return 0


def cmd_proof(args: argparse.Namespace) -> int:
    with LedgerClient(node_url(args)) as client:
        answer = client.get(f"/v1/private/{args.collection}/{args.key_name}/entry", proof="true")
    print_json(answer["proof"])
    print(f"entry: {answer['entry']}", file=sys.stderr)
    return 0


def add_commands(sub: Subcommands) -> None:
    group = add_group(sub, "collection", "private data collections: create, show, node-org", COLLECTION_DETAILS)
    p = add_command(group, "create", "admin: create a collection of member organisations")
    p.add_argument("name", help="1-64 letters, digits, '.', '_' or '-'")
    p.add_argument("--members", required=True, help="member organisations' names, separated by commas: org1,org2")
    add_write_options(p)
    p.set_defaults(func=cmd_collection_create)
    p = add_command(group, "show", "a collection and its member organisations")
    p.add_argument("name")
    add_read_options(p)
    p.set_defaults(func=cmd_collection_show)
    p = add_command(group, "node-org", "admin: name the member organisation a node (validator or observer) "
                    "belongs to")
    p.add_argument("node_id", metavar="NODE", help="the node's id (40 hex digits; `ledger status` shows it)")
    p.add_argument("org", metavar="ORG", help="the organisation's member name")
    add_write_options(p)
    p.set_defaults(func=cmd_node_org)

    group = add_group(sub, "private", "private data: put, get, purge, proof", PRIVATE_DETAILS)
    p = add_command(group, "put", "send a file's bytes to a collection's member nodes; the ledger keeps its hash")
    p.add_argument("collection")
    p.add_argument("key_name", metavar="KEY", help="the entry's key (printable, at most 256 characters)")
    p.add_argument("--file", required=True, help=f"the value (at most {MAX_VALUE_BYTES} bytes)")
    add_write_options(p)
    p.set_defaults(func=cmd_put)
    p = add_command(group, "get", "read an entry from a member node, with a request signed by --key",
                    "Over plain HTTP the value travels in the clear unless --enc-key is given.")
    p.add_argument("collection")
    p.add_argument("key_name", metavar="KEY")
    p.add_argument("--out", help="write the value to this file (default: base64 in the JSON)")
    p.add_argument("--enc-key", help="your X25519 private key file (`ledger member enc-key --generate`): the node "
                   "seals the value to your registered key, so nobody on the way reads it")
    add_write_options(p)
    p.set_defaults(func=cmd_get)
    p = add_command(group, "purge", "a member: remove an entry's value from every node (its hash stays)")
    p.add_argument("collection")
    p.add_argument("key_name", metavar="KEY")
    add_write_options(p)
    p.set_defaults(func=cmd_purge)
    p = add_command(group, "proof", "the state proof of an entry's commitment (check it with `ledger verify`)")
    p.add_argument("collection")
    p.add_argument("key_name", metavar="KEY")
    add_read_options(p)
    p.set_defaults(func=cmd_proof)
