"""The `ledger` command.

Writes take `--node URL` and `--key FILE`; without them they use the running devnet (found with
`--dir`, $LEDGER_DEVNET or ./.devnet): its first node, and its `org1` key for identifier writes or
its `admin` key for prefix and member administration.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ledger import devnet as devnet_mod
from ledger.anchor.deploy_args import add_deploy_arguments, run_deploy_lazily
from ledger.client import LedgerClient, LedgerError, Signer
from ledger.crypto import KeyFileError, SigningKey
from ledger.resolver.identifiers import InvalidIdentifier, split_handle
from ledger.resolver.registry import VALUE_TYPES, IdRegister, PrefixCreate, ValueSpec

EXIT_REJECTED = 1
EXIT_USAGE = 2


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_REJECTED) -> None:
        super().__init__(message)
        self.code = code


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2))


# --- resolving defaults from the devnet ------------------------------------------------------------


def _devnet(args: argparse.Namespace) -> dict[str, Any] | None:
    try:
        return devnet_mod.load_devnet(devnet_mod.devnet_dir(getattr(args, "dir", None)))
    except devnet_mod.DevnetError:
        return None


def _node_url(args: argparse.Namespace) -> str:
    if args.node:
        return str(args.node)
    net = _devnet(args)
    if net is None:
        raise CliError("no --node given and no running devnet found (start one with `ledger devnet up`)", EXIT_USAGE)
    return str(net["nodes"][0]["http"])


def _key(args: argparse.Namespace, default_member: str) -> SigningKey:
    """The signing key: --key FILE, --key NAME of a devnet member (org2), or the devnet's default member."""
    path = args.key
    net = _devnet(args)
    if path and net is not None and path in net["keys"] and not Path(path).is_file():
        path = net["keys"][path]
    if not path:
        if net is None:
            raise CliError("no --key given and no devnet found", EXIT_USAGE)
        path = net["keys"][default_member]
    try:
        return SigningKey.load(path)
    except KeyFileError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc


def _member_id(text: str, args: argparse.Namespace) -> str:
    """A member given as an id, a devnet member's key name, a key file, or its ledger name."""
    net = _devnet(args)
    if net is not None and text in net["keys"]:
        return SigningKey.load(net["keys"][text]).id
    if Path(text).is_file():
        return SigningKey.load(text).id
    if len(text) == 40 and all(c in "0123456789abcdef" for c in text):
        return text
    # Otherwise a name that genesis or `member add` gave: ask the node.
    url = getattr(args, "node", None) or (net["nodes"][0]["http"] if net is not None else None)
    if url is None:
        raise CliError(f"unknown member {text!r} (give an id, a key file, or --node to look up names)", EXIT_USAGE)
    with LedgerClient(url) as client:
        try:
            member: dict[str, Any] = client._get("/v1/members", name=text)
        except LedgerError as exc:
            raise CliError(f"unknown member {text!r}: {exc.message}", EXIT_USAGE) from exc
    return str(member["id"])


def _signer(args: argparse.Namespace, default_member: str) -> tuple[LedgerClient, Signer]:
    client = LedgerClient(_node_url(args))
    return client, Signer(_key(args, default_member), client)


# --- commands -------------------------------------------------------------------------------------


def cmd_keygen(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not args.force:
        raise CliError(f"{out} exists (use --force to overwrite)", EXIT_USAGE)
    key = SigningKey.generate()
    key.save(out)
    _print_json({"id": key.id, "public_key": key.public_key.hex(), "file": str(out)})
    return 0


def cmd_node_run(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from ledger.api.server import create_app
    from ledger.config import ConfigError, NodeConfig

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = NodeConfig.load(args.home)
    except ConfigError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    try:  # open the store once up front, so a locked or damaged home fails with a clear message
        from ledger.store import LevelDBStore, StoreError

        LevelDBStore(config.data_dir / "ledger.db").close()
    except StoreError as exc:
        raise CliError(str(exc)) from exc
    import gc

    # The node keeps many long-lived objects (state-tree cache, queues); collect young garbage less
    # often so full collections do not rescan them at every burst of allocations.
    gc.set_threshold(50_000, 20, 20)
    from ledger.api.fastpath import fast_protocol

    app = create_app(args.home)
    uvicorn.run(
        app, host=config.http.host, port=config.http.port, log_level="warning",
        loop="uvloop", http=fast_protocol(app.state.handle_cache),
    )
    return 0


def cmd_devnet_up(args: argparse.Namespace) -> int:
    if args.ethereum == "tester":
        raise CliError("--ethereum tester is an in-process chain that the devnet's node processes cannot share; "
                       "use --ethereum anvil", EXIT_USAGE)
    if args.ethereum not in (None, "anvil", "none") and not args.ethereum.startswith(("http://", "https://")):
        raise CliError(f"--ethereum must be anvil, none or an http(s) RPC URL, not {args.ethereum!r}", EXIT_USAGE)
    directory = devnet_mod.devnet_dir(args.dir)
    try:
        data = devnet_mod.up(directory, args.nodes, args.base_port, args.batch_size, args.batch_wait_ms,
                             ethereum=args.ethereum, eth_key=args.eth_key)
    except devnet_mod.DevnetError as exc:
        raise CliError(str(exc)) from exc
    for i, n in enumerate(data["nodes"]):
        print(f"node{i}  {n['http']}  id={n['id']}  pid={n['pid']}")
    print(f"devnet: {directory / 'devnet.json'}  logs: {directory / 'logs'}")
    eth = data.get("ethereum") or {}
    if eth.get("rpc"):
        print(f"anchoring to {eth['rpc']} (chain {eth['chain_id']}) contract {eth['anchor_contract']}")
    if args.demo:
        _load_demo(data)
    print(f"open {data['nodes'][0]['http']}/network to see the validators (the explorer: resolve, tokens, labels)")
    if args.detach:
        return 0
    print("devnet running; press Ctrl-C to stop it")
    stop = False

    def _stop(signum: int, frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    while not stop:
        time.sleep(0.2)
    print("\nstopping devnet...")
    devnet_mod.down(directory)
    return 0


def _load_demo(data: dict[str, Any]) -> None:
    """A prefix per organisation and a few registered pieces of equipment to look at; the first one
    fully described (digital twin, bound token, licences) by `_load_demo_assets`."""
    client = LedgerClient(data["nodes"][0]["http"])
    admin = Signer(SigningKey.load(data["keys"]["admin"]), client)
    for i, org in enumerate(("org1", "org2", "org3"), start=1):
        key = SigningKey.load(data["keys"][org])
        prefix = f"88.100.{i}"
        try:
            admin.send("prefix.create", PrefixCreate(prefix, key.id))
        except LedgerError as exc:
            if exc.reason != "already_exists":
                raise
            admin.resync()
        signer = Signer(key, client)
        txs = [
            signer.sign("id.register", IdRegister(
                f"{prefix}/EQ-2024-{n:06d}",
                (ValueSpec(1, "URL", f"https://twin.{org}.example/EQ-2024-{n:06d}"),
                 *_demo_twin(org, n)),
            ))
            for n in range(1, 4)
        ]
        client.submit(txs, wait=True)
    _load_demo_assets(client, data, admin)
    print("demo data: prefixes 88.100.1-3 with identifiers like 88.100.1/EQ-2024-000001 (twin, token "
          f"{DEMO_TOKEN}, licences), and the GS1 item /01/09506000134376/21/12345")


DEMO_TOKEN = "PUMP-2024-000001"


def _demo_twin(org: str, n: int) -> tuple[ValueSpec, ...]:
    if (org, n) != ("org1", 1):
        return ()
    return (ValueSpec(2, "TWIN", "https://twin.org1.example/twins/EQ-2024-000001"),
            ValueSpec(3, "DESC", "Centrifugal pump P-7, hall 2"))


def _load_demo_assets(client: LedgerClient, data: dict[str, Any], admin: Signer) -> None:
    """A GS1 item, and a token bound to 88.100.1/EQ-2024-000001 with a licence tree: org1 licenses org2,
    which sublicenses org3 twice and revokes one of them (so the pages show every licence state)."""
    import hashlib

    from ledger.nft.assets import AssetMint
    from ledger.nft.rights import LicenceGrant, LicenceRevoke, compute_licence_id

    try:
        client._get(f"/v1/assets/{DEMO_TOKEN}")
        return  # loaded by an earlier --demo
    except LedgerError as exc:
        if exc.status != 404:
            raise
    org1, org2, org3 = (Signer(SigningKey.load(data["keys"][o]), client) for o in ("org1", "org2", "org3"))
    admin.send("prefix.create", PrefixCreate("gs1:9506000", org1.member_id))
    org1.send("id.register", IdRegister("/01/09506000134376/21/12345", (
        ValueSpec(1, "URL", "https://products.org1.example/09506000134376"),
        ValueSpec(2, "TWIN", "https://twin.org1.example/twins/09506000134376-12345"))))
    org1.send("asset.mint", AssetMint(DEMO_TOKEN, "equipment", f"https://meta.org1.example/{DEMO_TOKEN}.json",
                                      hashlib.sha256(b"demo metadata of " + DEMO_TOKEN.encode()).digest(), "",
                                      "88.100.1/EQ-2024-000001"))
    day = 86_400_000
    now = int(time.time() * 1000)

    def grant(signer: Signer, parent: str, holder: Signer, purposes: tuple[str, ...], days: int, sub: bool) -> str:
        result = signer.send("licence.grant", LicenceGrant(DEMO_TOKEN, parent, holder.member_id, purposes, 0,
                                                            now + days * day, sub, "", b""))
        return compute_licence_id(bytes.fromhex(result["tx_id"]))

    root = grant(org1, "", org2, ("maintenance", "monitoring"), 365, True)
    grant(org2, root, org3, ("maintenance",), 90, False)
    revoked = grant(org2, root, org3, ("monitoring",), 180, False)
    org2.send("licence.revoke", LicenceRevoke(revoked))


def cmd_devnet_down(args: argparse.Namespace) -> int:
    try:
        stopped = devnet_mod.down(devnet_mod.devnet_dir(args.dir))
    except devnet_mod.DevnetError as exc:
        raise CliError(str(exc)) from exc
    print(f"stopped {len(stopped)} node(s)")
    return 0


def cmd_devnet_status(args: argparse.Namespace) -> int:
    try:
        rows = devnet_mod.status(devnet_mod.devnet_dir(args.dir))
    except devnet_mod.DevnetError as exc:
        raise CliError(str(exc)) from exc
    if args.json:
        _print_json(rows)
        return 0
    header = f"{'node':<7} {'url':<24} {'height':>7} {'view':>5} {'primary':<8} health"
    print(header)
    for r in rows:
        h = "-" if r["height"] is None else str(r["height"])
        v = "-" if r["view"] is None else str(r["view"])
        p = "-" if r["primary"] is None else ("yes" if r["primary"] else "no")
        print(f"{r['node']:<7} {r['url']:<24} {h:>7} {v:>5} {p:<8} {r['health']}")
    return 0 if all(r["health"] == "ok" for r in rows) else EXIT_REJECTED


def cmd_id_prefix(args: argparse.Namespace) -> int:
    client, signer = _signer(args, "admin")
    owner = _member_id(args.owner, args) if args.owner else signer.member_id
    result = signer.send("prefix.create", PrefixCreate(args.prefix, owner))
    _print_json({"prefix": args.prefix, "owner": owner, "tx_id": result["tx_id"], "height": result["height"]})
    return 0


def _parse_values(url: str | None, extra: Sequence[str]) -> tuple[ValueSpec, ...]:
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


def cmd_id_register(args: argparse.Namespace) -> int:
    try:
        split_handle(args.identifier)
    except InvalidIdentifier as exc:
        raise CliError(f"invalid identifier: {exc}", EXIT_USAGE) from exc
    values = _parse_values(args.url, args.value or [])
    client, signer = _signer(args, "org1")
    result = signer.send("id.register", IdRegister(args.identifier, values))
    _print_json({"identifier": args.identifier, "tx_id": result["tx_id"], "height": result["height"]})
    return 0


def cmd_id_import(args: argparse.Namespace) -> int:
    """Bulk-register a CSV (see ledger.id_import): progress, batching, per-row error report, resume."""
    from ledger.id_import import ImportFileError, ProbeError, import_file

    path = Path(args.file)
    report_path = Path(args.report) if args.report else path.with_name(path.name + ".errors.csv")
    client, signer = _signer(args, "org1")
    try:
        tally = import_file(client, signer, path, args.batch, report_path)
    except ImportFileError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    except ProbeError as exc:
        raise CliError(str(exc)) from exc
    if tally.failed:
        print(f"{tally.failed} row(s) failed: see {report_path}", file=sys.stderr)
    print(json.dumps({"imported": tally.imported, "skipped": tally.skipped, "failed": tally.failed,
                      "report": str(report_path)}))
    return EXIT_REJECTED if tally.failed else 0


def cmd_resolve(args: argparse.Namespace) -> int:
    with LedgerClient(_node_url(args)) as client:
        if not args.proof:
            _print_json(client.resolve(args.identifier, args.height))
            return 0
        proven = client.proven(f"/v1/resolve/{args.identifier}", args.height)
    if proven.note:
        print(f"note: {proven.note}", file=sys.stderr)
    _print_json(proven.body)
    if not proven.found:
        print(f"error: not registered as of height {proven.body.get('height')}: the proof proves its absence",
              file=sys.stderr)
        return EXIT_REJECTED
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from ledger.cli_assets import check_token_answer, is_token_key
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
    _print_json({"valid": True, "chain_id": genesis.chain_id, "height": verified.height,
                 "key": verified.key.decode(errors="replace"), "present": verified.value is not None,
                 "record": record, "anchor": anchor})
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from ledger.benchmark import run_bench

    result = run_bench(args.nodes, args.txs, args.clients, args.batch, args.batch_wait_ms, args.workload)
    print(json.dumps(result))
    return 0


# --- parser --------------------------------------------------------------------------------------


def _write_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--node", help="node URL (default: the devnet's first node)")
    p.add_argument("--key", help="member key file, or a devnet member name such as org2 (default: a devnet key)")
    p.add_argument("--dir", help="devnet directory to take defaults from (default: $LEDGER_DEVNET or ./.devnet)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ledger", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("keygen", help="create an Ed25519 key file (PEM, mode 0600)")
    p.add_argument("--out", required=True, help="where to write the key")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=cmd_keygen)

    node = sub.add_parser("node", help="run a node").add_subparsers(dest="node_command", required=True)
    p = node.add_parser("run", help="run the node configured in HOME/config.json")
    p.add_argument("--home", required=True, help="node home directory (config.json, key, data)")
    p.set_defaults(func=cmd_node_run)

    dev = sub.add_parser("devnet", help="a local multi-node network").add_subparsers(dest="devnet_command",
                                                                                      required=True)
    p = dev.add_parser("up", help="create keys and genesis, start the nodes, wait until healthy")
    p.add_argument("--nodes", type=int, default=1, help="number of validators (default 1)")
    p.add_argument("--dir", help="devnet directory (default: $LEDGER_DEVNET or ./.devnet)")
    p.add_argument("--detach", action="store_true", help="return once the nodes are healthy")
    p.add_argument("--base-port", type=int, default=devnet_mod.DEFAULT_HTTP_PORT, help="first HTTP port to try")
    p.add_argument("--batch-size", type=int, default=1000, help="max transactions per block")
    p.add_argument("--batch-wait-ms", type=int, default=30, help="how long the primary gathers a partial block")
    p.add_argument("--demo", action="store_true", help="load demo prefixes and identifiers")
    p.add_argument("--ethereum", default=None,
                   help="anchoring chain: anvil (local, started here), none, or an http(s) RPC URL "
                        "(default: the devnet's current choice, none for a new devnet)")
    p.add_argument("--eth-key", default=None, help="deployer key file for --ethereum URL (default: Anvil dev key)")
    p.set_defaults(func=cmd_devnet_up)
    p = dev.add_parser("down", help="stop the devnet's nodes")
    p.add_argument("--dir")
    p.set_defaults(func=cmd_devnet_down)
    p = dev.add_parser("status", help="height, view, primary and health of each node")
    p.add_argument("--dir")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_devnet_status)

    ids = sub.add_parser("id", help="identifier prefixes and registrations").add_subparsers(dest="id_command",
                                                                                             required=True)
    p = ids.add_parser("prefix", help="create a prefix (admin for top-level, parent owner for sub-prefixes)")
    p.add_argument("prefix")
    p.add_argument("--owner", help="member id, devnet member name or key file (default: the signer)")
    _write_opts(p)
    p.set_defaults(func=cmd_id_prefix)
    p = ids.add_parser("register", help="register an identifier under a prefix you own")
    p.add_argument("identifier", help="e.g. 88.100.1/EQ-2024-000123")
    p.add_argument("--url", help="the URL value (index 1)")
    p.add_argument("--value", action="append", metavar="TYPE=VALUE", help=f"more values; TYPE in {VALUE_TYPES}")
    _write_opts(p)
    p.set_defaults(func=cmd_id_register)
    p = ids.add_parser("import", help="bulk-register from a CSV with header identifier,url")
    p.add_argument("file")
    p.add_argument("--batch", type=int, default=500, help="transactions per request")
    p.add_argument("--report", help="per-row error report CSV (default: FILE.errors.csv)")
    _write_opts(p)
    p.set_defaults(func=cmd_id_import)

    p = sub.add_parser("resolve", help="resolve an identifier; prints JSON")
    p.add_argument("identifier")
    p.add_argument("--height", type=int, help="as of this committed height")
    p.add_argument("--proof", action="store_true",
                   help="include a proof reaching the latest Ethereum anchor: as of the latest anchored height "
                   "unless --height is given (an anchor never covers the head); for an unknown identifier, "
                   "print its proof of absence (and exit 1)")
    p.add_argument("--node")
    p.add_argument("--dir")
    p.set_defaults(func=cmd_resolve)

    p = sub.add_parser("verify", help="check a proof (or an answer carrying one) offline; exit 0 only if valid")
    p.add_argument("file", help="JSON from `ledger resolve --proof`, `ledger asset show --proof` or a ?proof=true "
                   "answer")
    p.add_argument("--genesis", required=True, help="the chain's genesis file (the trust root)")
    p.add_argument("--rpc", help="also check on this Ethereum JSON-RPC that the anchor is on chain")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("bench", help="start a devnet, load it, print figures as one JSON line last")
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--txs", type=int, default=20_000)
    p.add_argument("--clients", type=int, default=4, help="concurrent submitting members")
    p.add_argument("--batch", type=int, default=175, help="transactions per HTTP request")
    p.add_argument("--batch-wait-ms", type=int, default=30, help="how long the primary gathers a partial block")
    p.add_argument("--workload", choices=("register", "mixed"), default="register",
                   help="identifier registrations, or asset mints, licence grants and transfers")
    p.set_defaults(func=cmd_bench)

    contracts = sub.add_parser("contracts", help="the Ethereum anchor contract").add_subparsers(
        dest="contracts_command", required=True)
    p = contracts.add_parser("deploy", help="deploy LedgerAnchor (or re-use a matching deployment) and add submitters")
    add_deploy_arguments(p)
    p.set_defaults(func=run_deploy_lazily)

    from ledger.cli_assets import add_asset_commands  # imports this module: import here, not at the top
    from ledger.cli_members import add_member_commands

    add_asset_commands(sub)
    add_member_commands(sub)
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


if __name__ == "__main__":
    # Run the `ledger.cli` module itself, not this `__main__` copy, so there is one CliError class
    # (ledger.cli_assets imports ledger.cli).
    from ledger.cli import main as ledger_main

    sys.exit(ledger_main())
