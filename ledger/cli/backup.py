"""`ledger backup` and `ledger restore`: a checked, point-in-time copy of a node's store."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ledger.cli.common import EXIT_USAGE, CliError, Subcommands, add_command, print_json
from ledger.progress import Progress

DOWNLOAD_TIMEOUT_S = 600.0  # between two chunks: a busy node may pause, but not for ever


def _genesis(config: Any) -> Any:
    from ledger.genesis import InvalidGenesis, load_genesis

    try:
        return load_genesis(config.genesis)
    except InvalidGenesis as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc


def _config(home: str) -> Any:
    from ledger.config import ConfigError, NodeConfig

    try:
        return NodeConfig.load(home)
    except ConfigError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc


def _store_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.glob("*") if f.is_file()) if path.is_dir() else 0


def _local_url(config: Any) -> str:
    host = config.http.host
    if host in ("0.0.0.0", "::", ""):  # listening everywhere: the loopback address reaches it
        host = "127.0.0.1"
    return f"http://{'[' + host + ']' if ':' in host else host}:{config.http.port}"


def _from_running_node(config: Any, url: str) -> Iterator[bytes]:
    import httpx

    from ledger.crypto import KeyFileError
    from ledger.keyfiles import load_node_key
    from ledger.snapshot.auth import HEADER, make_token

    try:
        key = load_node_key(config)
    except KeyFileError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    token = make_token(key, _genesis(config).chain_id, time.time_ns() // 1_000_000)
    try:
        with httpx.stream("GET", f"{url}/v1/admin/backup", headers={HEADER: token},
                          timeout=httpx.Timeout(DOWNLOAD_TIMEOUT_S, connect=10.0)) as response:
            if response.status_code != 200:
                response.read()
                try:
                    reason = response.json().get("message", response.text)
                except ValueError:
                    reason = response.text
                raise CliError(f"the node at {url} refused the backup ({response.status_code}): {reason}")
            yield from response.iter_bytes()
    except httpx.HTTPError as exc:
        raise CliError(f"the backup from {url} failed: {exc} (is the node running? a stopped node is backed up "
                       f"from its store directly)") from exc


def _from_stopped_node(store: Any, genesis: Any) -> Iterator[bytes]:
    from ledger.snapshot.archive import write_stream

    snapshot = store.snapshot()
    try:
        yield from write_stream(snapshot, genesis)
    finally:
        snapshot.close()
        store.close()


def _header(path: Path) -> dict[str, Any]:
    from ledger.snapshot.archive import MAGIC

    with path.open("rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            raise CliError(f"the node sent something other than a backup (kept as {path})")
        value: dict[str, Any] = json.loads(f.read(int.from_bytes(f.read(4), "big")))
        return value


def cmd_backup(args: argparse.Namespace) -> int:
    from ledger.snapshot.archive import store_not_archive
    from ledger.snapshot.restore import store_path
    from ledger.store import LevelDBStore, StoreError

    config = _config(args.home)
    out = Path(args.out)
    if out.exists() and not args.force:
        raise CliError(f"{out} exists (use --force to overwrite)", EXIT_USAGE)
    db_path = store_path(config.data_dir)
    if not db_path.is_dir():
        raise CliError(f"{db_path} does not exist: nothing to back up in {args.home}", EXIT_USAGE)
    estimate = _store_bytes(db_path)
    source = "running node"
    if args.node is None:
        try:  # a stopped node's store opens; a running node holds its lock and serves the backup itself
            store = LevelDBStore(db_path)
        except StoreError:
            chunks = _from_running_node(config, _local_url(config))
        else:
            problem = store_not_archive(store)
            if problem is not None:  # refused now: a file no restore accepts is no backup
                store.close()
                raise CliError(f"cannot back up {args.home}: {problem}")
            chunks = _from_stopped_node(store, _genesis(config))
            source = "store (node stopped)"
    else:
        chunks = _from_running_node(config, args.node.rstrip("/"))
    started = time.monotonic()
    partial = out.with_name(out.name + ".partial")
    digest = hashlib.sha256()
    progress = Progress(max(estimate, 1), f"backup ({source}): bytes", None)
    try:
        with partial.open("wb") as f:
            for chunk in chunks:
                f.write(chunk)
                digest.update(chunk)
                progress.advance(len(chunk))
        progress.total = max(progress.done, 1)
        progress.close()
        header = _header(partial)
        partial.replace(out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    print_json({"file": str(out), "bytes": out.stat().st_size, "sha256": digest.hexdigest(),
                "chain_id": header.get("chain_id"), "height": header.get("height"),
                "block_hash": header.get("block_hash"), "state_root": header.get("state_root"),
                "seconds": round(time.monotonic() - started, 2)})
    return 0


def cmd_restore(args: argparse.Namespace) -> int:

    from ledger.snapshot.restore import RestoreRefused, restore

    config = _config(args.home)
    started = time.monotonic()
    try:
        restored = restore(Path(args.file), config.data_dir, _genesis(config))
    except RestoreRefused as exc:
        raise CliError(str(exc)) from exc
    print_json({"home": args.home, "height": restored.height, "block_hash": restored.block_hash,
                "state_root": restored.state_root, "records": restored.records,
                "seconds": round(time.monotonic() - started, 2)})
    return 0


def add_commands(sub: Subcommands) -> None:
    p = add_command(sub, "backup", "copy a node's store, as of one moment, into a backup file",
                    "Works on a running node: the node streams a LevelDB snapshot of its store (later commits are "
                    "not in it) over its HTTP port, to its own host only, for a request signed with the node's "
                    "key read from HOME (an encrypted key takes its passphrase as `ledger node run` does). A "
                    "stopped node's store is read directly. The file holds the blocks, certificates, state tree, "
                    "latest state and tx index, with a manifest (chain id, height, block hash, state root, each "
                    "part's records, bytes and sha256) and a closing sha256. Prints the file's size, sha256 and "
                    "the height it holds.")
    p.add_argument("--home", required=True, help="the node's home directory (config.json, key, data)")
    p.add_argument("--out", required=True, help="the backup file to write")
    p.add_argument("--node", help="the node's HTTP URL (default: from HOME/config.json, on the loopback address)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=cmd_backup)

    p = add_command(sub, "restore", "check a backup file and make it a node's store",
                    "Checks everything before using anything: the file's digests; block 0 against HOME's genesis; "
                    "every block's hash link, tx root and history root; every certificate against the validator "
                    "set in force at its height (followed from genesis through the certified state); every "
                    "state-tree node against its hash; the latest state against the head's certified state root; "
                    "the tx index against the blocks. A backup that fails any check is refused with what failed, "
                    "and the home is left as it was. Restore never overwrites a store: stop the node and move "
                    "HOME's data directory away first. Then start the node (`ledger node run --home HOME`): it "
                    "catches up from its peers to the head.")
    p.add_argument("file", help="the backup file")
    p.add_argument("--home", required=True, help="the node's home directory (config.json with its genesis)")
    p.set_defaults(func=cmd_restore)
