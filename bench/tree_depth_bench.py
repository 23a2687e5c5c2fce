"""The state tree's own work per block as the state grows, with no store in the way.

Builds a tree of N random keys over a dict (the node's key layout, `ledger.tree_store`, with the node's
cache and pinned levels), then applies `--blocks` blocks of `--block-keys` new random keys and prints, for
each N, one JSON line: milliseconds a block, tree nodes built per changed key, and the ceiling beside them:
the milliseconds that hashing those nodes alone takes (sha256 of 65 bytes, measured in the same run).

A block's keys share the top levels of their paths (about log2 of the block's keys); below them each key
has a path of its own, about log2(N / block keys) nodes long, so the work per key grows with the state
whatever the store does. docs/performance.md, "The state alone, in one process", reads these figures.

    .venv/bin/python bench/tree_depth_bench.py --sizes 20000,100000,1000000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import time

from ledger.chaindb import TREE_CACHE_NODES, TREE_PIN_DEPTH
from ledger.smt import EMPTY, SparseMerkleTree
from ledger.tree_store import node_getter, node_puts, root_birth_getter


def measure(size: int, blocks: int, block_keys: int, rng: random.Random) -> dict[str, float]:
    store: dict[bytes, bytes] = {}
    tree = SparseMerkleTree(node_getter(store.get), root_birth=root_birth_getter(store.get),
                            cache_size=TREE_CACHE_NODES, pin_depth=TREE_PIN_DEPTH)
    root, height = EMPTY, 0

    def block(keys: int) -> int:
        nonlocal root, height
        height += 1
        changes = {rng.randbytes(20): rng.randbytes(60) for _ in range(keys)}
        root, nodes = tree.update(root, changes, birth=height)
        store.update(node_puts(height, nodes, root, tree.new_root_birth))
        return len(nodes)

    while height * 10_000 < size:
        block(min(10_000, size - height * 10_000))
    block(block_keys)  # one untimed block, so every timed one starts from a cache a block has used
    built = 0
    started = time.perf_counter()
    for _ in range(blocks):
        built += block(block_keys)
    ms = (time.perf_counter() - started) / blocks * 1000
    per_key = built / (blocks * block_keys)
    return {"state_keys": size, "block_keys": block_keys, "ms_a_block": round(ms, 1),
            "nodes_built_per_key": round(per_key, 2),
            "ceiling_hashing_ms_a_block": round(per_key * block_keys / sha256_per_ms(), 2)}


def sha256_per_ms() -> float:
    data = b"\x01" * 65
    started = time.perf_counter()
    for _ in range(200_000):
        hashlib.sha256(data).digest()
    return 200_000 / ((time.perf_counter() - started) * 1000)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="20000,100000,1000000", help="state sizes, comma-separated")
    ap.add_argument("--blocks", type=int, default=20, help="timed blocks per size")
    ap.add_argument("--block-keys", type=int, default=1_000, help="new keys a block")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    for size in (int(s) for s in args.sizes.split(",")):
        print(json.dumps(measure(size, args.blocks, args.block_keys, rng)), flush=True)


if __name__ == "__main__":
    main()
