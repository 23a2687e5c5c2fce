"""Restoring a backup into a node's home: load into a scratch store, check everything, then move it in place.

A refused backup leaves the home as it was: the scratch store lies beside the node's store and is removed
on any failure; the node's store appears only once every check passed. Restore never overwrites a store.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ledger.genesis import Genesis
from ledger.progress import Progress
from ledger.snapshot.archive import BackupError, BackupReader
from ledger.snapshot.checks import (
    CheckedHead,
    CheckFailed,
    check_births,
    check_chain,
    check_root_birth,
    check_state,
    check_state_node,
    write_head,
)
from ledger.store import LevelDBStore

LOAD_BATCH_BYTES = 8 << 20


class RestoreRefused(ValueError):
    """The backup failed a check (the message says which), or the home cannot take it."""


@dataclass(frozen=True)
class Restored:
    height: int
    block_hash: str
    state_root: str
    records: int


def store_path(data_dir: Path) -> Path:
    return data_dir / "ledger.db"


def restore(backup: Path, data_dir: Path, genesis: Genesis, stream: TextIO | None = None) -> Restored:
    """Check `backup` against `genesis` and make it the store under `data_dir`; raises RestoreRefused."""
    target = store_path(data_dir)
    if target.exists() and any(target.iterdir()):
        raise RestoreRefused(f"{target} exists: restore never overwrites a store (stop the node, move it away)")
    scratch = data_dir / f"ledger.db.restoring-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    store: LevelDBStore | None = None
    try:
        try:
            reader = BackupReader(backup)
        except OSError as exc:
            raise RestoreRefused(f"cannot read {backup}: {exc.strerror}") from None
        try:
            header = reader.header
            if header.get("chain_id") != genesis.chain_id or header.get("genesis_hash") != genesis.hash().hex():
                raise BackupError(f"the backup is of chain {header.get('chain_id')!r} (genesis "
                                     f"{str(header.get('genesis_hash'))[:16]}...), this home's genesis is "
                                     f"{genesis.chain_id!r} ({genesis.hash().hex()[:16]}...)")
            store = LevelDBStore(scratch)
            records = _load(reader, store, stream)
            manifest = reader.manifest
            assert manifest is not None  # set once every record was read
        finally:
            reader.close()
        counts = {p.name: p.records for p in manifest.parts}
        births = Progress(counts["state_nodes"] + counts.get("state_nodes_at", 0), "restore: checking node links",
                          stream)
        check_births(store, births.advance)
        births.close()
        blocks = Progress(counts["blocks"], "restore: checking blocks", stream)
        head = check_chain(store, genesis, counts["blocks"], counts["certificates"], counts["tx_index"],
                           lambda _: blocks.advance())
        blocks.close()
        claimed = (manifest.height, manifest.block_hash, manifest.state_root)
        if claimed != (head.height, head.block_hash.hex(), head.state_root.hex()):
            raise CheckFailed(f"the manifest names block {manifest.height} ({manifest.block_hash[:16]}...), the "
                              f"blocks lead to {head.height} ({head.block_hash.hex()[:16]}...)")
        state = Progress(counts["state"], "restore: checking state", stream)
        check_state(store, head, counts["state"], state.advance)
        state.close()
        write_head(store, genesis, head)
        store.close()
        store = None
        scratch.rename(target)
        return _result(head, records)
    except (BackupError, CheckFailed) as exc:
        raise RestoreRefused(f"backup refused: {exc}") from None
    finally:
        if store is not None:
            store.close()
        shutil.rmtree(scratch, ignore_errors=True)


def _load(reader: BackupReader, store: LevelDBStore, stream: TextIO | None) -> int:
    """Every record into `store`, each state node checked against its hash on the way."""
    progress = Progress(reader.size, "restore: reading", stream)
    batch: list[tuple[bytes, bytes]] = []
    size = records = 0
    done = reader.offset
    for part, key, value in reader.records():
        if part in ("state_nodes", "state_nodes_at"):
            check_state_node(key, value)
        elif part == "root_births":
            check_root_birth(key, value)
        batch.append((key, value))
        size += len(key) + len(value)
        records += 1
        if size >= LOAD_BATCH_BYTES:
            store.write_batch(batch, sync=False)
            batch, size = [], 0
            progress.advance(reader.offset - done)
            done = reader.offset
    store.write_batch(batch, sync=False)
    progress.advance(reader.size - done)
    progress.close()
    return records


def _result(head: CheckedHead, records: int) -> Restored:
    return Restored(head.height, head.block_hash.hex(), head.state_root.hex(), records)


__all__ = ["RestoreRefused", "Restored", "restore", "store_path"]
