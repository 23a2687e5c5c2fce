"""`ledger devnet up|down|status|add-node|remove-node`: the local devnet that `devnet/devnet.toml` defines."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import Any

from devnet import launcher
from devnet.add_node import add_node
from devnet.definition import (
    DEFAULT_DEFINITION,
    Definition,
    DefinitionError,
    check_ethereum_choice,
    load_definition,
)
from devnet.demo.loader import DemoError, load_demo
from devnet.record import DevnetError, devnet_dir, exists, load_devnet
from devnet.remove_node import remove_node
from ledger.cli.common import EXIT_REJECTED, EXIT_USAGE, CliError, Subcommands, add_command, add_group, print_json
from ledger.id_import import ProbeError

UP_DETAILS = f"""\
What the devnet is (members and roles, validators, ports, batch settings, the Ethereum chain and
anchoring intervals, the demo data) is defined in {DEFAULT_DEFINITION}; edit it, or give a copy with
--definition. The options below override it. A directory that already holds a devnet is restarted as
it was created (members, node count, ports); only --ethereum changes it.

Writes DIR/devnet.json (the nodes, genesis, member key files and Ethereum settings) and DIR/logs/."""


def _definition(args: argparse.Namespace) -> Definition:
    try:
        return load_definition(args.definition)
    except DefinitionError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc


def _note_kept(directory: Path, definition: Definition, nodes: int | None) -> None:
    """Say so when an existing devnet is restarted as it was, not as the definition now says."""
    if not exists(directory) or nodes is not None:
        return
    data = load_devnet(directory)
    names = {name for name, _ in definition.genesis_members()} | set(definition.key_aliases())
    if len(data["nodes"]) != definition.nodes or set(data["keys"]) != names:
        print(f"note: {directory} holds a devnet created earlier ({len(data['nodes'])} node(s), members "
              f"{', '.join(data['keys'])}): restarted as it was, not as {definition.source} now says. For a new one: "
              f"`ledger devnet down --dir {directory}`, remove the directory, run this again.")


def cmd_up(args: argparse.Namespace) -> int:
    definition = _definition(args)
    try:
        if args.ethereum is not None:
            check_ethereum_choice(args.ethereum)
    except DefinitionError as exc:
        raise CliError(f"--ethereum: {exc}", EXIT_USAGE) from exc
    if args.observers is not None and not 0 <= args.observers <= 16:
        raise CliError("--observers: between 0 and 16", EXIT_USAGE)
    directory = devnet_dir(args.dir)
    try:
        definition = definition.with_overrides(admins=args.admins, approvals=args.approvals)
    except DefinitionError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    _note_kept(directory, definition, args.nodes)
    try:
        data = launcher.up(directory, args.nodes, definition=definition, base_port=args.base_port,
                           batch_size=args.batch_size, batch_wait_ms=args.batch_wait_ms,
                           ethereum=args.ethereum, eth_key=args.eth_key, observers=args.observers,
                           link_delay_ms=args.link_delay_ms)
    except DefinitionError as exc:  # an option out of range, e.g. --nodes 0
        raise CliError(str(exc), EXIT_USAGE) from exc
    except DevnetError as exc:
        raise CliError(str(exc)) from exc
    for i, n in enumerate(data["nodes"]):
        print(f"node{i}  {n['http']}  id={n['id']}  pid={n['pid']}")
    for i, n in enumerate(data.get("observers", [])):
        print(f"obs{i}   {n['http']}  id={n['id']}  pid={n['pid']}  (observer)")
    print(f"devnet: {directory / 'devnet.json'}  logs: {directory / 'logs'}")
    eth = data.get("ethereum") or {}
    if data.get("links"):
        print(f"peer links delayed {data['links']['delay_ms']:g} ms each way (relays pid {data['links']['pid']})")
    if eth.get("rpc"):
        print(f"anchoring to {eth['rpc']} (chain {eth['chain_id']}) contract {eth['anchor_contract']}")
    if args.demo:
        try:
            print(load_demo(data, definition.demo_equipment, definition.demo_assets))
        except DemoError as exc:
            raise CliError(f"demo data: {exc}", EXIT_USAGE) from exc
        except ProbeError as exc:
            raise CliError(f"demo data: {exc}") from exc
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
    launcher.down(directory)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    try:
        stopped = launcher.down(devnet_dir(args.dir))
    except DevnetError as exc:
        raise CliError(str(exc)) from exc
    print(f"stopped {len(stopped)} node(s)")
    return 0


def cmd_add_node(args: argparse.Namespace) -> int:
    try:
        entry = add_node(devnet_dir(args.dir), timeout=args.timeout, state_sync=args.state_sync)
    except DevnetError as exc:
        raise CliError(str(exc)) from exc
    print_json(entry)
    print(f"node{len(load_devnet(devnet_dir(args.dir))['nodes']) - 1} is at the head; it validates from height "
          f"{entry['active_from']}", file=sys.stderr)
    return 0


def cmd_remove_node(args: argparse.Namespace) -> int:
    validator = args.id.lower()
    if len(validator) != 40 or any(c not in "0123456789abcdef" for c in validator):
        raise CliError(f"a validator id is 40 hex digits (see `ledger devnet status --json`), not {args.id!r}",
                       EXIT_USAGE)
    try:
        entry = remove_node(devnet_dir(args.dir), validator, timeout=args.timeout)
    except DevnetError as exc:
        raise CliError(str(exc)) from exc
    print_json(entry)
    print(f"{validator} is stopped; the others certify without it from height {entry['takes_effect_at']}",
          file=sys.stderr)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    try:
        rows = launcher.status(devnet_dir(args.dir))
    except DevnetError as exc:
        raise CliError(str(exc)) from exc
    if args.json:
        print_json(rows)
        return 0
    print(f"{'node':<7} {'role':<10} {'url':<24} {'height':>7} {'view':>5} {'primary':<8} {'ready':<6} health")
    for r in rows:
        h = "-" if r["height"] is None else str(r["height"])
        v = "-" if r["view"] is None else str(r["view"])
        p = "-" if r["primary"] is None else ("yes" if r["primary"] else "no")
        ready = "yes" if r["ready"] else "no"
        print(f"{r['node']:<7} {r['role']:<10} {r['url']:<24} {h:>7} {v:>5} {p:<8} {ready:<6} {r['health']}")
    return 0 if all(r["health"] == "ok" for r in rows) else EXIT_REJECTED


def add_commands(sub: Subcommands) -> None:
    dev = add_group(sub, "devnet", "a local multi-node network, as devnet/devnet.toml defines it")
    dir_help = "devnet directory (default: $LEDGER_DEVNET or ./.devnet)"
    p = add_command(dev, "up", "create keys and genesis, start the nodes, wait until healthy", UP_DETAILS)
    p.add_argument("--dir", help=dir_help)
    p.add_argument("--definition", help=f"devnet definition file (default: {DEFAULT_DEFINITION})")
    p.add_argument("--nodes", type=int, help="number of validators (default: the definition's; an existing "
                   "devnet keeps its own)")
    p.add_argument("--detach", action="store_true", help="return once the nodes are healthy (else run until Ctrl-C)")
    p.add_argument("--base-port", type=int, help="first HTTP port to try (default: the definition's)")
    p.add_argument("--batch-size", type=int, help="max transactions per block (default: the definition's)")
    p.add_argument("--batch-wait-ms", type=int,
                   help="how long the primary gathers a partial block (default: the definition's)")
    p.add_argument("--admins", type=int, metavar="K", help="admins in genesis: keys admin1 ... adminK in "
                   "devnet.json, admin1 being the definition's admin (default: the definition's, 1)")
    p.add_argument("--approvals", type=int, metavar="M", help="admin approvals an admin action needs "
                   "(default: the definition's, 1)")
    p.add_argument("--observers", type=int, metavar="K", help="observers: non-voting nodes that follow the "
                   "validators' certified blocks over HTTP, serve every read and forward writes (listed under "
                   "`observers` in devnet.json; an existing devnet keeps those it has and gains any missing)")
    p.add_argument("--link-delay-ms", type=float, metavar="D",
                   help="delay every peer link between the validators D ms each way, through relays (validators "
                        "in different plants, on one host); kept by later `up`s, which can change D")
    p.add_argument("--demo", action="store_true", help="load the demo data the definition names (prefixes, "
                   "equipment identifiers, a token with licences); loading it again changes nothing")
    p.add_argument("--ethereum", default=None,
                   help="anchoring chain: anvil (local, started here), none, or an http(s) RPC URL "
                        "(default: an existing devnet's current choice, else the definition's)")
    p.add_argument("--eth-key", default=None, help="deployer key file for --ethereum URL (default: Anvil dev key)")
    p.set_defaults(func=cmd_up)

    p = add_command(dev, "down", "stop the devnet's nodes, its observers (and its Anvil)",
                    "Keys, data and logs stay in DIR.")
    p.add_argument("--dir", help=dir_help)
    p.set_defaults(func=cmd_down)

    p = add_command(dev, "add-node", "add a validator to the running devnet by governance (no restarts)",
                    "Makes a key and a node home, starts the node, proposes validator.add with its address and "
                    "approves it with the devnet's admin keys up to the threshold, then waits until the node is "
                    "at the head. The change takes effect 16 blocks after it commits; the other validators "
                    "dial the new one from the address in the transaction. On a devnet that anchors, the node "
                    "gets an Ethereum key file of its own (eth.key, named by ethereum.key_file in its config), "
                    "funded on the devnet's Anvil, and the admins certify its address as a submitter "
                    "(anchor.settings).")
    p.add_argument("--state-sync", action="store_true",
                   help="the node joins from a certified snapshot of the running nodes' state (checked chunk by "
                        "chunk against the validators' certified state root) instead of replaying every block; "
                        "it holds no blocks below the snapshot")
    p.add_argument("--dir", help=dir_help)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the node to reach the head")
    p.set_defaults(func=cmd_add_node)

    p = add_command(dev, "remove-node", "take a validator out of the running devnet by governance",
                    "Proposes validator.remove and approves it with the devnet's admin keys up to the threshold; "
                    "on a devnet that anchors, also drops the node's Ethereum address from the certified "
                    "submitters (anchor.settings). Then stops the node (at once if the others running are a "
                    "quorum, else once the removal takes effect, 16 blocks after it commits) and lists it under "
                    "`removed` in devnet.json. Its home and keys stay.")
    p.add_argument("id", help="the validator's id (40 hex digits; `ledger devnet status --json` lists them)")
    p.add_argument("--dir", help=dir_help)
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds to wait for the removal to take effect, when the node must run until then")
    p.set_defaults(func=cmd_remove_node)

    p = add_command(dev, "status", "height, view, primary, readiness and health of each node and observer",
                    "Ready: caught up with the head the validators show (GET /readyz). Exits 1 unless every node "
                    "and observer answers.")
    p.add_argument("--dir", help=dir_help)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_status)
