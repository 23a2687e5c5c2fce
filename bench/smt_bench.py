"""Benchmark for ledger.smt: block commit latency and read latency on a large tree.

Builds an N-key tree (default 1,000,000) in big batches with an in-memory dict
as the node store, then measures

* commit: 10 blocks of 1,000 new-key updates each (update + all hashing, root
  included, + writing the new nodes into the store); median ms per block;
* read: median latency of ``get`` of the latest value over 10,000 random
  present keys, in microseconds;
* ceiling: raw sha256 throughput on 65-byte inputs (the size of every node
  hash preimage) in this same process, as a yardstick for the commit figure.

The last line printed is one JSON object with all figures.

    .venv/bin/python bench/smt_bench.py [--keys N]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger.smt import EMPTY, SparseMerkleTree, verify_proof  # noqa: E402


def sha256_ceiling(seconds: float = 1.0) -> float:
    """sha256(65 bytes).digest() calls per second from a tight Python loop."""
    data = b"\x01" + bytes(range(64))
    sha = hashlib.sha256
    n = 0
    batch = 10_000
    t0 = time.perf_counter()
    while True:
        for _ in range(batch):
            sha(data).digest()
        n += batch
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return n / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, default=1_000_000, help="keys in the base tree")
    ap.add_argument("--batch", type=int, default=100_000, help="keys per update while building")
    ap.add_argument("--blocks", type=int, default=10)
    ap.add_argument("--block-size", type=int, default=1_000)
    ap.add_argument("--reads", type=int, default=10_000)
    ap.add_argument("--cache-size", type=int, default=1_000_000)
    ap.add_argument("--pin-depth", type=int, default=0, help="top levels kept in memory (a node pins 16)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    rng = random.Random(args.seed)
    store: dict[bytes, bytes] = {}
    tree = SparseMerkleTree(lambda birth, h: store.get(h), cache_size=args.cache_size,  # all born at 0
                            pin_depth=args.pin_depth)
    root = EMPTY

    t0 = time.perf_counter()
    for start in range(0, args.keys, args.batch):
        end = min(start + args.batch, args.keys)
        changes: dict[bytes, bytes | None] = {b"key:%d" % i: rng.randbytes(32) for i in range(start, end)}
        root, nodes = tree.update(root, changes)
        store.update(nodes)
    build_s = time.perf_counter() - t0
    print(f"built {args.keys} keys in {build_s:.1f} s; {len(store)} nodes stored", flush=True)

    # Commit blocks of brand-new keys on top of the big tree.
    gc.collect()
    block_ms: list[float] = []
    nodes_per_block: list[int] = []
    next_key = args.keys
    for _ in range(args.blocks):
        changes = {b"key:%d" % i: rng.randbytes(32) for i in range(next_key, next_key + args.block_size)}
        next_key += args.block_size
        t0 = time.perf_counter()
        root, nodes = tree.update(root, changes)
        store.update(nodes)
        block_ms.append((time.perf_counter() - t0) * 1e3)
        nodes_per_block.append(len(nodes))
    total_keys = next_key
    print(f"commit ms per block: {[round(x, 1) for x in block_ms]}", flush=True)

    # Latest-value reads of random present keys, timed one by one.
    probe = [b"key:%d" % rng.randrange(total_keys) for _ in range(args.reads)]
    read_us: list[float] = []
    clock = time.perf_counter_ns
    get = tree.get
    for k in probe:
        t0n = clock()
        v = get(root, k)
        read_us.append((clock() - t0n) / 1e3)
        assert v is not None
    p = tree.prove(root, probe[0])
    assert verify_proof(root, probe[0], tree.get(root, probe[0]), p)

    ceiling = sha256_ceiling()
    median_block = statistics.median(block_ms)
    hashes_per_block = statistics.median(nodes_per_block)  # one hash per new node (+1 value hash per leaf)
    result = {
        "keys": total_keys,
        "build_s": round(build_s, 2),
        "block_size": args.block_size,
        "commit_ms_median": round(median_block, 2),
        "commit_ms_max": round(max(block_ms), 2),
        "new_nodes_per_block_median": hashes_per_block,
        "proof_depth_sample": len(p.siblings),
        "read_us_median": round(statistics.median(read_us), 2),
        "read_us_p99": round(sorted(read_us)[int(len(read_us) * 0.99) - 1], 2),
        "sha256_65B_ceiling_per_s": round(ceiling),
        "node_hash_floor_ms_per_block": round((hashes_per_block + args.block_size) / ceiling * 1e3, 2),
        "cache_size": args.cache_size,
        "pin_depth": args.pin_depth,
        "python": sys.version.split()[0],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
