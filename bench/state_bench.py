"""Block commit time and read latency in a ledger state of N identifiers (default 1,000,000), beside the
commit time of the same blocks in an empty state, measured first in the same run.

The state is built by committing real blocks of signed `id.register` transactions through
`ChainDB` on LevelDB. Each block's transactions are admitted first by a node's mempool (signatures
verified there, once), and the execution reuses that (the VerifiedCache); the timed figures are then:
- commit of a block of 1,000 registrations: execute + sparse-Merkle root + one synced LevelDB batch;
- read latency of an identifier at the head (flat index) and at an older height (tree walk).
The ceiling printed beside them: sha256 of 65 bytes per second and LevelDB synced batch writes,
measured in the same run. Then the same blocks again on the settled store (after a full compaction: right
after the load LevelDB is still compacting beside them) and, with --prune-keep K, on the store pruned to its
last K heights (`ledger.pruning.prune_now`, then a compaction): a pruning node's store holds the head's tree
nodes with few old versions around them. Each phase reports the store's table files and
the pages of them left mapped (`RssFile`; a compaction in this process maps what it reads too).
--open-tables and --table-mb set the store as a node's `leveldb_open_files` and `leveldb_table_mb` would.
Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time

from smt_bench import sha256_ceiling

from ledger.benchmark import proc_memory_mb
from ledger.chain import CommitCertificate, ValidatorSignature, compute_commit_vote
from ledger.chaindb import ChainDB
from ledger.codec import encode
from ledger.crypto import DOMAIN_COMMIT, SigningKey
from ledger.genesis import Genesis, GenesisMember, GenesisPrefix, GenesisValidator
from ledger.mempool import MAX_VERIFIED, Mempool
from ledger.pruning import prune_now
from ledger.resolver.registry import IdRegister, ValueSpec, get_identifier
from ledger.state import VerifiedCache
from ledger.store import MAX_OPEN_FILES, LevelDBStore
from ledger.tx import make_tx

CHAIN = "bench"


def commit(db: ChainDB, mempool: Mempool, key: SigningKey, txs: list[bytes]) -> float:
    started = time.perf_counter()
    executed = db.build_block(txs, 0, int(time.time() * 1000), key.id)
    vote = compute_commit_vote(CHAIN, executed.block.header)
    cert = CommitCertificate(vote.height, vote.view, vote.block_hash,
                             (ValidatorSignature(key.id, key.sign(DOMAIN_COMMIT, vote)),))
    db.commit(executed, cert)
    elapsed = time.perf_counter() - started
    mempool.remove_committed(r.tx_id for r in executed.results)
    failed = [r for r in executed.results if not r.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} txs failed, first: {failed[0]}")
    return elapsed


def admit(mempool: Mempool, raws: list[bytes]) -> None:
    refused = [a for a in mempool.admit(raws) if not a.accepted]
    if refused:
        raise RuntimeError(f"{len(refused)} txs refused, first: {refused[0]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=1_000_000, help="identifiers in the state")
    parser.add_argument("--load-block", type=int, default=10_000, help="txs per block while loading")
    parser.add_argument("--open-tables", type=int, default=MAX_OPEN_FILES, help="LevelDB tables held open")
    parser.add_argument("--table-mb", type=int, default=2, help="the size of LevelDB's table files")
    parser.add_argument("--prune-keep", type=int, default=0,
                        help="then prune the store to its last K heights and time the blocks again (0: not)")
    args = parser.parse_args()
    validator, org = SigningKey.from_seed(b"v"), SigningKey.from_seed(b"org")
    genesis = Genesis(CHAIN, 0, (GenesisValidator("v", validator.public_key),),
                      (GenesisMember("admin", validator.public_key, ("admin",)),
                       GenesisMember("org", org.public_key, ("registrar",))),
                      (GenesisPrefix("88.100.1", org.id),))
    path = tempfile.mkdtemp(prefix="state-bench-")
    store = LevelDBStore(path, max_open_files=args.open_tables, max_file_mb=args.table_mb)
    db = ChainDB(store, genesis, verified=VerifiedCache(MAX_VERIFIED))
    mempool = Mempool(db, verify_threads=2)
    nonce = 0

    def txs(n: int) -> list[bytes]:
        nonlocal nonce
        out = []
        for _ in range(n):
            nonce += 1
            out.append(encode(make_tx(org, CHAIN, nonce, "id.register", IdRegister(
                f"88.100.1/EQ-{nonce:09d}", (ValueSpec(1, "URL", f"https://twin.example/{nonce}"),)))))
        return out

    def timed_blocks() -> list[float]:
        times = []
        for _ in range(10):
            batch = txs(1000)
            admit(mempool, batch)
            times.append(commit(db, mempool, validator, batch) * 1000)
        return times

    empty_ms = timed_blocks()  # the first 10,000 identifiers: the empty-state figure
    t0 = time.perf_counter()
    while nonce < args.keys:
        batch = txs(min(args.load_block, args.keys - nonce))
        admit(mempool, batch)
        commit(db, mempool, validator, batch)
        print(f"loaded {nonce:,} identifiers ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    loaded_height = db.height

    block_ms = timed_blocks()
    phases = {"loaded": phase(block_ms, path)}
    rng = random.Random(1)
    names = [f"88.100.1/EQ-{rng.randrange(1, args.keys + 1):09d}" for _ in range(10_000)]
    head_us = []
    for name in names:
        t = time.perf_counter()
        rec = get_identifier(db.latest, name)
        head_us.append((time.perf_counter() - t) * 1e6)
        assert rec is not None
    old_view = db.view_at(loaded_height)
    old_us = []
    for name in names[:2000]:
        t = time.perf_counter()
        get_identifier(old_view, name)
        old_us.append((time.perf_counter() - t) * 1e6)

    sha_per_s = sha256_ceiling()
    t = time.perf_counter()
    for i in range(50):
        db.store.write_batch([(b"x/" + i.to_bytes(4, "big"), b"y")], sync=True)
    synced_batch_ms = (time.perf_counter() - t) / 50 * 1000

    started = time.perf_counter()
    store.compact()
    phases["settled"] = phase(timed_blocks(), path, compaction_s=time.perf_counter() - started)
    if args.prune_keep:
        started = time.perf_counter()
        pruned = prune_now(db, args.prune_keep)
        prune_s = time.perf_counter() - started
        store.compact()
        phases["pruned"] = phase(timed_blocks(), path, prune_s=prune_s, compaction_s=time.perf_counter() - started
                                 - prune_s, nodes_kept=pruned.marked if pruned else 0,
                                 nodes_deleted=pruned.deleted if pruned else 0)

    mempool.close()
    store.close()
    shutil.rmtree(path, ignore_errors=True)
    empty = statistics.median(empty_ms)
    print(json.dumps({
        "identifiers": args.keys,
        "block_txs": 1000,
        "open_tables": args.open_tables,
        "table_mb": args.table_mb,
        "block_commit_ms_median": round(statistics.median(block_ms), 1),
        "block_commit_ms_max": round(max(block_ms), 1),
        "empty_state_block_commit_ms_median": round(statistics.median(empty_ms), 1),
        # Blocks per second at N identifiers as a share of the empty state's: the state's part of throughput.
        "commit_rate_vs_empty": round(statistics.median(empty_ms) / statistics.median(block_ms), 3),
        "read_head_us_median": round(statistics.median(head_us), 1),
        "read_old_height_us_median": round(statistics.median(old_us), 1),
        "ceiling_sha256_65B_per_s": round(sha_per_s),
        "ceiling_leveldb_synced_batch_ms": round(synced_batch_ms, 2),
        # Blocks at N identifiers per phase, each beside the empty state's median (the ceiling).
        "phases": {name: {**p, "commit_rate_vs_empty": round(empty / p["block_commit_ms_median"], 3)}
                   for name, p in phases.items()},
    }))


def phase(block_ms: list[float], path: str, **seconds_and_counts: float) -> dict[str, float]:
    """A phase's figures: its blocks' median commit, the store's table files and the table pages left mapped."""
    return {"block_commit_ms_median": round(statistics.median(block_ms), 1),
            "table_files": sum(1 for name in os.listdir(path) if name.endswith(".ldb")),
            "mapped_table_mb": round(proc_memory_mb(os.getpid(), "RssFile"), 1),
            **{k: round(v, 1) for k, v in seconds_and_counts.items()}}


if __name__ == "__main__":
    main()
