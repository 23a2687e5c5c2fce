"""Block commit time and read latency in a ledger state of N identifiers (default 1,000,000), beside the
commit time of the same blocks in an empty state, measured first in the same run.

The state is built by committing real blocks of signed `id.register` transactions through
`ChainDB` on LevelDB. Each block's transactions are admitted first by a node's mempool (signatures
verified there, once), and the execution reuses that (the VerifiedCache); the timed figures are then:
- commit of a block of 1,000 registrations: execute + sparse-Merkle root + one synced LevelDB batch;
- read latency of an identifier at the head (flat index) and at an older height (tree walk).
The ceiling printed beside them: sha256 of 65 bytes per second and LevelDB synced batch writes,
measured in the same run. Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import sys
import tempfile
import time

from ledger.chain import CommitCertificate, ValidatorSignature, compute_commit_vote
from ledger.chaindb import ChainDB
from ledger.codec import encode
from ledger.crypto import DOMAIN_COMMIT, SigningKey
from ledger.genesis import Genesis, GenesisMember, GenesisPrefix, GenesisValidator
from ledger.mempool import MAX_VERIFIED, Mempool
from ledger.resolver.registry import IdRegister, ValueSpec, get_identifier
from ledger.state import VerifiedCache
from ledger.store import LevelDBStore
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
    args = parser.parse_args()
    validator, org = SigningKey.from_seed(b"v"), SigningKey.from_seed(b"org")
    genesis = Genesis(CHAIN, 0, (GenesisValidator("v", validator.public_key),),
                      (GenesisMember("admin", validator.public_key, ("admin",)),
                       GenesisMember("org", org.public_key, ("registrar",))),
                      (GenesisPrefix("88.100.1", org.id),))
    db = ChainDB(LevelDBStore(tempfile.mkdtemp(prefix="state-bench-")), genesis, verified=VerifiedCache(MAX_VERIFIED))
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

    data = b"\x01" * 65
    t = time.perf_counter()
    for _ in range(200_000):
        hashlib.sha256(data).digest()
    sha_per_s = 200_000 / (time.perf_counter() - t)
    t = time.perf_counter()
    for i in range(50):
        db.store.write_batch([(b"x/" + i.to_bytes(4, "big"), b"y")], sync=True)
    synced_batch_ms = (time.perf_counter() - t) / 50 * 1000

    print(json.dumps({
        "identifiers": args.keys,
        "block_txs": 1000,
        "block_commit_ms_median": round(statistics.median(block_ms), 1),
        "block_commit_ms_max": round(max(block_ms), 1),
        "empty_state_block_commit_ms_median": round(statistics.median(empty_ms), 1),
        # Blocks per second at N identifiers as a share of the empty state's: the state's part of throughput.
        "commit_rate_vs_empty": round(statistics.median(empty_ms) / statistics.median(block_ms), 3),
        "read_head_us_median": round(statistics.median(head_us), 1),
        "read_old_height_us_median": round(statistics.median(old_us), 1),
        "ceiling_sha256_65B_per_s": round(sha_per_s),
        "ceiling_leveldb_synced_batch_ms": round(synced_batch_ms, 2),
    }))


if __name__ == "__main__":
    main()
