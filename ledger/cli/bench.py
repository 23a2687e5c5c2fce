"""`ledger bench`: a throughput and latency benchmark on a devnet of its own (see ledger.benchmark)."""

from __future__ import annotations

import argparse
import json

from ledger.cli.common import Subcommands, add_command


def cmd_bench(args: argparse.Namespace) -> int:
    from ledger.benchmark import run_bench  # imported here: it loads the devnet launcher and web clients

    result = run_bench(args.nodes, args.txs, args.clients, args.batch, args.batch_wait_ms, args.workload)
    print(json.dumps(result))
    return 0


def add_commands(sub: Subcommands) -> None:
    p = add_command(sub, "bench", "start a devnet, load it, print figures as one JSON line last",
                    "Starts N node processes in a temporary directory (no Ethereum anchoring), pre-signs the "
                    "transactions from --clients members, has each submit msgpack batches over HTTP to its own "
                    "node, and prints committed tx/s, latency percentiles, the Ed25519 verification ceiling and "
                    "the largest node's memory. Progress goes to stderr.")
    p.add_argument("--nodes", type=int, default=1, help="validators (default 1)")
    p.add_argument("--txs", type=int, default=20_000, help="transactions in all (default 20000)")
    p.add_argument("--clients", type=int, default=4, help="concurrent submitting members (default 4)")
    p.add_argument("--batch", type=int, default=175, help="transactions per HTTP request (default 175)")
    p.add_argument("--batch-wait-ms", type=int, default=30, help="how long the primary gathers a partial block")
    p.add_argument("--workload", choices=("register", "mixed", "market"), default="register",
                   help="identifier registrations; asset mints, licence grants and transfers (mixed); or mints, "
                        "licence grants, listings, licence offers and purchases of both (market)")
    p.set_defaults(func=cmd_bench)
