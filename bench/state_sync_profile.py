"""Where a state sync's time goes: one sync run in-process, split into serving and joining work.

It opens a stopped node's store (`--store`, a `data/ledger.db` no process holds) and syncs a new scratch store
from it with `ledger.snapshot.statesync.state_sync`, the HTTP client replaced by a transport that calls the
functions the `/v1/sync/*` routes call. So both sides run in this one process. The wall time is split into:

* serving, timed with a clock and never profiled (it runs on the sync's worker threads, or with the profiler
  paused): walking the tree out of LevelDB (`preorder_from`: its reads and the walk) and encoding the chunk;
* joining, under cProfile (which slows Python code): decoding the chunk, checking it (`Cursor.accept`: hashing
  every node) and writing to LevelDB (`LevelDBStore.write_batch`);
* what is left: the sync's own bookkeeping, the transport, and (with more than one fetcher) waiting.

HTTP itself (a socket, the web framework) is not in it: compare the total with the same sync between two
processes (bench/state_sync_bench.py) for that. The last line is one JSON object.

    .venv/bin/python bench/state_sync_profile.py --store DEVNET/nodes/NODE/data/ledger.db --genesis DEVNET/genesis.json
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from ledger.chaindb import ChainDB
from ledger.codec import encode
from ledger.genesis import load_genesis
from ledger.snapshot.offer import StateChunk, make_offer
from ledger.snapshot.statesync import state_sync
from ledger.snapshot.treewalk import preorder_from
from ledger.store import LevelDBStore
from ledger.tree_store import node_getter, root_birth_getter

# (label, file suffix, function name): cumulative time of these functions of the joining side.
PARTS = [
    ("join: decode the chunk", "codec.py", "decode"),
    ("join: check the chunk (hash every node)", "treewalk.py", "accept"),
    ("join: write to LevelDB", "store.py", "write_batch"),
]


class Serving:
    """The routes' work, with a clock on each part (seconds summed over every request)."""

    def __init__(self, chain: ChainDB, profile: cProfile.Profile) -> None:
        self.chain = chain
        self.profile = profile
        self.walk_s = self.encode_s = 0.0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/sync/snapshot":
            return httpx.Response(200, content=encode(make_offer(self.chain)))
        on_main = threading.current_thread() is threading.main_thread()
        if on_main:
            self.profile.disable()
        q = request.url.params
        t0 = time.perf_counter()
        root = bytes.fromhex(q["root"])
        nodes = preorder_from(node_getter(self.chain.store.get), root, int(q["depth"]), int(q["path"], 16),
                              int(q["max_bytes"]), int(q.get("within", 0)),
                              root_birth_getter(self.chain.store.get)(root))
        t1 = time.perf_counter()
        body = encode(StateChunk(tuple(nodes)))
        t2 = time.perf_counter()
        self.walk_s += t1 - t0
        self.encode_s += t2 - t1
        if on_main:
            self.profile.enable()
        return httpx.Response(200, content=body)


def cumulative(stats: pstats.Stats, suffix: str, name: str) -> float:
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]  # pstats keeps them here
    return sum(v[3] for (file, _, func), v in raw.items() if func == name and file.endswith(suffix))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True, help="a stopped node's data/ledger.db")
    parser.add_argument("--genesis", required=True, help="its genesis.json")
    parser.add_argument("--chunk-bytes", type=int, default=1 << 20, help="bytes per chunk asked (default 1 MiB)")
    parser.add_argument("--fetchers", type=int, default=1, help="requests in flight (keep 1 for the split: with "
                        "more, serving overlaps the rest)")
    parser.add_argument("--top", type=int, default=25, help="also print this many functions by own time")
    args = parser.parse_args()
    genesis = load_genesis(args.genesis)
    store = LevelDBStore(args.store)
    chain = ChainDB(store, genesis)
    print(f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; block {chain.height}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="state-sync-profile-") as work:
        profile = cProfile.Profile()
        serving = Serving(chain, profile)
        started = time.perf_counter()
        profile.enable()
        report = state_sync(Path(work), genesis, ["http://source"], chunk_bytes=args.chunk_bytes,
                            fetchers=args.fetchers, client=httpx.Client(transport=httpx.MockTransport(serving)))
        profile.disable()
        wall = time.perf_counter() - started
    store.close()
    stats = pstats.Stats(profile)
    split = {"serve: walk the tree out of LevelDB": round(serving.walk_s, 2),
             "serve: encode the chunk": round(serving.encode_s, 2)}
    split.update({label: round(cumulative(stats, suffix, name), 2) for label, suffix, name in PARTS})
    # With one fetcher the parts follow each other; with more, serving overlaps the joining side.
    split["the rest (bookkeeping, transport, waiting)"] = round(wall - sum(split.values()), 2)
    for label, seconds in split.items():
        print(f"{seconds:8.2f} s  {100 * seconds / wall:5.1f} %  {label}", file=sys.stderr)
    print(f"{wall:8.2f} s  total (under cProfile, which slows Python code); {report.chunks} chunks, "
          f"{report.nodes} nodes, {report.bytes / 2**20:.1f} MiB", file=sys.stderr)
    stats.sort_stats("tottime").print_stats(args.top)
    print(json.dumps({"wall_s": round(wall, 2), "chunks": report.chunks, "nodes": report.nodes,
                      "mib": round(report.bytes / 2**20, 1), "split_s": split,
                      "load_avg": round(os.getloadavg()[0], 2)}))


if __name__ == "__main__":
    main()
