"""Block commit time and read latency in a ledger state of N identifiers (default 1,000,000).

The state is built by committing real blocks of signed `id.register` transactions through
`ChainDB` on LevelDB. Signatures are verified once, as the node's admission does, and the
execution reuses that (the node's VerifiedCache); the timed figures are then:
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
from concurrent.futures import ThreadPoolExecutor

from ledger.chain import CommitCertificate, ValidatorSignature, compute_commit_vote
from ledger.chaindb import ChainDB
from ledger.codec import encode
from ledger.crypto import DOMAIN_COMMIT, DOMAIN_TX, SigningKey, signing_digest, verify_digest
from ledger.genesis import Genesis, GenesisMember, GenesisPrefix, GenesisValidator
from ledger.resolver.registry import IdRegister, ValueSpec, get_identifier
from ledger.store import LevelDBStore
from ledger.tx import check_tx_stateless, compute_tx_id, decode_tx, make_tx

CHAIN = "bench"


def commit(db: ChainDB, key: SigningKey, txs: list[bytes]) -> float:
    started = time.perf_counter()
    executed = db.build_block(txs, 0, int(time.time() * 1000), key.id)
    vote = compute_commit_vote(CHAIN, executed.block.header)
    cert = CommitCertificate(vote.height, vote.view, vote.block_hash,
                             (ValidatorSignature(key.id, key.sign(DOMAIN_COMMIT, vote)),))
    db.commit(executed, cert)
    failed = [r for r in executed.results if not r.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} txs failed, first: {failed[0]}")
    return time.perf_counter() - started


def admit(db: ChainDB, raws: list[bytes], pool: ThreadPoolExecutor, public_key: bytes) -> None:
    """What the node's admission does: decode, check, verify (on all cores), remember."""
    decoded = [decode_tx(r) for r in raws]
    payloads = [check_tx_stateless(t, CHAIN) for t in decoded]
    digests = [signing_digest(DOMAIN_TX, t.body()) for t in decoded]
    ok = list(pool.map(lambda i: verify_digest(public_key, digests[i], decoded[i].signature), range(len(raws)),
                       chunksize=256))
    if not all(ok):
        raise RuntimeError("signature failed")
    for raw, tx, payload in zip(raws, decoded, payloads, strict=True):
        db.verified.add(compute_tx_id(raw), public_key, tx, payload)


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
    db = ChainDB(LevelDBStore(tempfile.mkdtemp(prefix="state-bench-")), genesis)
    pool = ThreadPoolExecutor(2)
    nonce = 0

    def txs(n: int) -> list[bytes]:
        nonlocal nonce
        out = []
        for _ in range(n):
            nonce += 1
            out.append(encode(make_tx(org, CHAIN, nonce, "id.register", IdRegister(
                f"88.100.1/EQ-{nonce:09d}", (ValueSpec(1, "URL", f"https://twin.example/{nonce}"),)))))
        return out

    t0 = time.perf_counter()
    while nonce < args.keys:
        batch = txs(min(args.load_block, args.keys - nonce))
        admit(db, batch, pool, org.public_key)
        commit(db, validator, batch)
        print(f"loaded {nonce:,} identifiers ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    loaded_height = db.height

    block_ms = []
    for _ in range(10):
        batch = txs(1000)
        admit(db, batch, pool, org.public_key)
        block_ms.append(commit(db, validator, batch) * 1000)

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
        "read_head_us_median": round(statistics.median(head_us), 1),
        "read_old_height_us_median": round(statistics.median(old_us), 1),
        "ceiling_sha256_65B_per_s": round(sha_per_s),
        "ceiling_leveldb_synced_batch_ms": round(synced_batch_ms, 2),
    }))


if __name__ == "__main__":
    main()
