"""`ledger keygen` and `ledger node run`: a key file, and one node from its home directory."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ledger.cli.common import EXIT_USAGE, CliError, Subcommands, add_command, add_group, print_json
from ledger.crypto import KeyFileError, SigningKey
from ledger.keyfiles import ENV_PASSPHRASE, new_passphrase

if TYPE_CHECKING:
    from ledger.config import NodeConfig


def cmd_keygen(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not args.force:
        raise CliError(f"{out} exists (use --force to overwrite)", EXIT_USAGE)
    try:
        passphrase = new_passphrase(out) if args.encrypt else None
    except KeyFileError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    key = SigningKey.generate()
    key.save(out, passphrase)
    print_json({"id": key.id, "public_key": key.public_key.hex(), "file": str(out), "encrypted": bool(args.encrypt)})
    return 0


def cmd_node_run(args: argparse.Namespace) -> int:
    # Imported here: the server's dependencies would slow every other command's start.
    import gc

    from ledger import logfmt, memtrim
    from ledger.api.server import create_app, serve
    from ledger.config import ConfigError, NodeConfig
    from ledger.genesis import load_genesis
    from ledger.keyfiles import load_node_key
    from ledger.store import LevelDBStore, StoreError

    memtrim.limit_arenas()  # before any thread starts: later threads share these heaps
    logfmt.configure(json_lines=args.log_json)
    try:
        config = NodeConfig.load(args.home)
    except ConfigError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    if config.log_format == "json" and not args.log_json:
        logfmt.configure(json_lines=True)
    try:  # the key too: a key file others can read, or an encrypted one without its passphrase, stops here
        key = load_node_key(config)
    except KeyFileError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    if config.role == "observer" and key.id in load_genesis(config.genesis).validator_ids():
        raise CliError(f"{config.node_key}: an observer needs a key of its own, not a validator's "
                       "(`ledger keygen --out FILE`)", EXIT_USAGE)
    if args.state_sync or config.sync.mode == "state":
        _state_sync(config)
    try:  # open the store once up front, so a locked or damaged home fails with a clear message
        LevelDBStore(config.data_dir / "ledger.db").close()
    except StoreError as exc:
        raise CliError(str(exc)) from exc
    # The node keeps many long-lived objects (state-tree cache, queues); collect young garbage less
    # often so full collections do not rescan them at every burst of allocations.
    gc.set_threshold(50_000, 20, 20)
    serve(create_app(args.home), config)
    return 0


def _state_sync(config: NodeConfig) -> None:
    """Fill an empty home from a certified snapshot of the peers' state; a home with blocks is left as it is."""
    import logging

    from ledger.genesis import load_genesis
    from ledger.snapshot.statesync import StateSyncError, state_sync, wants_state_sync
    from ledger.store import StoreError

    log = logging.getLogger("ledger.statesync")
    sources = config.sync_sources()
    if not sources:
        raise CliError("state sync needs the peers' HTTP URLs: \"sync\": {\"sources\": [...]} in config.json "
                       "(an observer uses its validators)", EXIT_USAGE)
    try:
        if not wants_state_sync(config.data_dir):
            log.info("state sync: the home holds blocks already; catching up by blocks")
            return
        state_sync(config.data_dir, load_genesis(config.genesis), sources, chunk_bytes=config.sync.chunk_bytes,
                   fetchers=config.sync.fetchers)
    except (StateSyncError, StoreError) as exc:
        raise CliError(str(exc)) from exc


def add_commands(sub: Subcommands) -> None:
    p = add_command(sub, "keygen", "create an Ed25519 key file (PEM, mode 0600), encrypted with --encrypt",
                    "Prints the key's id (a member or validator id) and public key as JSON. With --encrypt the file "
                    f"is encrypted with a passphrase taken from ${ENV_PASSPHRASE}, or typed twice on the terminal "
                    "(never a command-line argument: others can read those). A node reads its key's passphrase "
                    f"from ${ENV_PASSPHRASE} or from the file config.json names in node_key_passphrase.file.")
    p.add_argument("--out", required=True, help="where to write the key")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.add_argument("--encrypt", action="store_true",
                   help="encrypt the file with a passphrase (OpenSSH format, bcrypt-pbkdf)")
    p.set_defaults(func=cmd_keygen)

    node = add_group(sub, "node", "run a node")
    p = add_command(node, "run", "run the node configured in HOME/config.json",
                    "HOME holds config.json (ports, peers, genesis, data directory; see README), the node's key and "
                    "its data. Runs in the foreground until SIGINT or SIGTERM. With \"role\": \"observer\" and an "
                    "\"observer\": {\"validators\": [HTTP URLs]} section it runs an observer: it follows the "
                    "validators' certified blocks, serves every read and forwards writes, and never votes. "
                    "GET /healthz answers while the process runs; GET /readyz answers 200 once it is caught up.")
    p.add_argument("--home", required=True, help="node home directory (config.json, key, data)")
    p.add_argument("--state-sync", action="store_true",
                   help="if the home holds no blocks yet, join from a certified snapshot of the peers' state "
                        "(sync.sources in config.json; an observer's validators by default): every chunk is "
                        "checked against a state root certified by the validators, a peer serving a bad one is "
                        "passed over; then catch up the blocks after it. The node holds no blocks or state "
                        "below the snapshot. Same as \"sync\": {\"mode\": \"state\"}")
    p.add_argument("--log-json", action="store_true",
                   help="log one JSON object per line (time, level, logger, message), for log collectors; "
                        "or set \"log_format\": \"json\" in config.json")
    p.set_defaults(func=cmd_node_run)
