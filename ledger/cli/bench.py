"""`ledger bench`: a throughput and latency benchmark on a devnet of its own (see ledger.benchmark)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ledger.cli.common import Subcommands, add_command


def cmd_bench(args: argparse.Namespace) -> int:
    from ledger.bench_preload import PreloadFailed
    from ledger.benchmark import run_bench  # imported here: it loads the devnet launcher and web clients
    from ledger.chart import PlotUnavailable
    from ledger.profiling import ProfilerMissing

    if args.link_delay_ms < 0:
        raise SystemExit("--link-delay-ms must be 0 or more")
    if args.preload < 0:
        raise SystemExit("--preload must be 0 or more")
    if args.open_tables is not None and args.open_tables < 20:
        raise SystemExit("--open-tables must be 20 or more (a node's leveldb_open_files)")
    if args.table_mb is not None and not 1 <= args.table_mb <= 256:
        raise SystemExit("--table-mb must be 1 to 256 (a node's leveldb_table_mb)")
    if args.rate is not None and args.rate <= 0:
        raise SystemExit("--rate must be above 0 tx/s")
    if args.rate is not None and args.workload == "market":
        raise SystemExit("--rate: the market workload runs only as a closed loop (each batch buys what the batch "
                         "before listed, so it is sent once that one committed); use --workload register or mixed")
    try:
        result = run_bench(args.nodes, args.txs, args.clients, args.batch, args.batch_wait_ms, args.workload,
                           link_delay_ms=args.link_delay_ms, plot=args.plot, base_port=args.base_port,
                           profile=args.profile, export_every=args.export_every,
                           eager_inflight=args.eager_inflight, rate=args.rate,
                           relay_links=args.relay_links, preload=args.preload, open_tables=args.open_tables,
                           table_mb=args.table_mb)
    except (PlotUnavailable, ProfilerMissing, PreloadFailed) as exc:
        raise SystemExit(str(exc)) from exc
    print(json.dumps(result))
    return 0


def add_commands(sub: Subcommands) -> None:
    p = add_command(sub, "bench", "start a devnet, load it, print figures as one JSON line last",
                    "Starts N node processes in a temporary directory (no Ethereum anchoring), pre-signs the "
                    "transactions from --clients members, has each submit msgpack batches over HTTP to its own "
                    "node, and prints committed tx/s, latency percentiles, the Ed25519 verification ceiling and "
                    "the largest node's memory. Progress goes to stderr. --link-delay-ms runs the validators as if "
                    "in different plants (every peer link delayed, both ways); --plot draws the run; --profile samples "
                    "every node with py-spy while the load runs and writes a per-stage table and a flame graph.")
    p.add_argument("--nodes", type=int, default=1, help="validators (default 1)")
    p.add_argument("--txs", type=int, default=20_000, help="transactions in all (default 20000)")
    p.add_argument("--clients", type=int, default=4, help="concurrent submitting members (default 4)")
    p.add_argument("--batch", type=int, default=175, help="transactions per HTTP request (default 175)")
    p.add_argument("--batch-wait-ms", type=int, default=30, help="how long the primary gathers a partial block")
    p.add_argument("--eager-inflight", type=int, choices=range(0, 5), metavar="N",
                   help="the primary cuts a partial batch at once while fewer than N of its blocks are in flight "
                        "(default 0: always waits --batch-wait-ms, the node's default batch_eager_inflight)")
    p.add_argument("--workload", choices=("register", "mixed", "market"), default="register",
                   help="identifier registrations; asset mints, licence grants and transfers (mixed); or mints, "
                        "licence grants, listings, licence offers and purchases of both (market)")
    p.add_argument("--link-delay-ms", type=float, default=0.0, metavar="D",
                   help="one-way delay on every peer link, through relays (default 0: direct links)")
    p.add_argument("--relay-links", action="store_true",
                   help="route the peer links through the relays even with no delay: the fair 0 ms baseline "
                        "for --link-delay-ms runs (the relay's own CPU cost counted in both)")
    p.add_argument("--rate", type=float, metavar="R",
                   help="an open loop: offer R tx/s in all, each client sending its batches on a fixed schedule "
                        "(R / clients tx/s each, several requests in flight, never waiting for a commit), and "
                        "print the offered and committed rates and how far behind schedule the requests went out "
                        "(send_lag). Default: a closed loop, each client sending its next batch once the one "
                        "before committed (throughput is then about clients x batch / latency). Register and "
                        "mixed workloads only: the market's purchases need the batch before committed")
    p.add_argument("--plot", type=Path, metavar="FILE.png",
                   help="draw committed tx/s and commit latency over the run, one line per node (needs Pillow)")
    p.add_argument("--profile", type=Path, metavar="DIR",
                   help="sample every node process with py-spy during the load (needs py-spy: the 'profile' "
                        "extra); writes DIR/nodeN.collapsed, DIR/stages.md and DIR/flame.svg")
    p.add_argument("--base-port", type=int, default=18700,
                   help="first HTTP port tried for the devnet (default 18700; ports in use are skipped)")
    p.add_argument("--export-every", type=int, metavar="N",
                   help="every node's sync.export_every, with no minimum interval between exports (1: a state "
                        "export of the head after every commit while none runs: exporting throughout the load); "
                        "default: the nodes' defaults")
    p.add_argument("--open-tables", type=int, metavar="N",
                   help="every node's leveldb_open_files: LevelDB tables held open (default: the nodes' default, "
                        "200). More makes reads of a large state cheaper and maps more of the store into memory")
    p.add_argument("--table-mb", type=int, metavar="MB",
                   help="every node's leveldb_table_mb: the size of LevelDB's table files (default: the nodes' "
                        "default, 2). Larger tables are fewer to hold open")
    p.add_argument("--preload", type=int, default=0, metavar="N",
                   help="register N identifiers (members and prefixes of their own, through consensus) before the "
                        "timed load, to measure it on a large state; reported as preloaded, preload_tx_per_s "
                        "(default 0)")
    p.set_defaults(func=cmd_bench)
