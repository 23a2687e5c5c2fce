"""CPU per transaction of the `ledger bench` workloads, in one process: where a market transaction's time goes.

The benchmark's own transactions (`ledger.benchmark`: the mixed workload's mints, grants and transfers, the
market workload's mints, grants, listings, licence offers and purchases) are executed and committed as blocks
through `ChainDB` on LevelDB, one client's batch a block, clients in turn (as `ledger bench` has each client
send a batch once the one before committed). Signatures are verified at execution (no mempool ran before).

Figures, each the minimum over --runs fresh ledgers (the machine is shared: the minimum is the least disturbed):
- `tx_us` per kind: CPU time (`time.process_time`) of executing one transaction, signature check included;
- `keys_per_tx` per kind: state keys the transaction writes (each a state-tree leaf and a LevelDB write);
- per workload, `block_leaves_per_tx`: the blocks' distinct changed keys (the writes of one key by several
  transactions of a block are one leaf), and `tree_nodes_per_tx`: the state-tree nodes the blocks wrote;
- per workload: execution, state-tree update and commit (the synced LevelDB batch) per transaction.
The ceiling printed beside them: Ed25519 verifications per second on one core, measured in the same run.
Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

from ledger.benchmark import _market_batches, _mixed, measure_verify_ceiling
from ledger.chain import CommitCertificate, ValidatorSignature, compute_commit_vote
from ledger.chaindb import ChainDB
from ledger.codec import encode
from ledger.crypto import DOMAIN_COMMIT, SigningKey
from ledger.genesis import Genesis, GenesisMember, GenesisValidator
from ledger.market.credits import CreditsIssue
from ledger.store import LevelDBStore
from ledger.tx import decode_tx, make_tx

CHAIN = "market-cpu-bench"
CLIENTS = 4
VALIDATOR = SigningKey.from_seed(b"bench-validator")
TREASURY = SigningKey.from_seed(b"bench-treasury")
SELLERS = [SigningKey.from_seed(f"bench-seller-{i}".encode()) for i in range(CLIENTS)]
BUYERS = [SigningKey.from_seed(f"bench-buyer-{i}".encode()) for i in range(CLIENTS)]


def genesis(now_ms: int) -> Genesis:
    members = [GenesisMember("treasury", TREASURY.public_key, ("admin", "treasury"))]
    members += [GenesisMember(f"bench{i}", k.public_key, ("issuer", "registrar")) for i, k in enumerate(SELLERS)]
    members += [GenesisMember(f"buyer{i}", k.public_key, ()) for i, k in enumerate(BUYERS)]
    return Genesis(CHAIN, now_ms, (GenesisValidator("v", VALIDATOR.public_key),), tuple(members), ())


def workload_blocks(workload: str, txs: int, batch: int) -> list[list[bytes]]:
    """The blocks: one client's batch each, clients in turn, as `ledger bench` builds and sends them."""
    net = {"chain_id": CHAIN}
    per_client = txs // CLIENTS
    batches: list[list[list[bytes]]] = []
    for i, seller in enumerate(SELLERS):
        other = SELLERS[(i + 1) % CLIENTS].id
        if workload == "market":
            batches.append(_market_batches(net, seller, BUYERS[i], other, i, per_client, batch))
        else:
            raws = [encode(make_tx(seller, CHAIN, n + 1, *_mixed(SELLERS, i, n))) for n in range(per_client)]
            batches.append([raws[j:j + batch] for j in range(0, per_client, batch)])
    return [b[r] for r in range(max(len(b) for b in batches)) for b in batches if r < len(b)]


class Timed:
    """Accumulates CPU seconds of a wrapped call under a label the call's arguments give."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = collections.defaultdict(float)
        self.calls: dict[str, int] = collections.defaultdict(int)

    def wrap(self, fn: Callable[..., Any], label: Callable[..., str]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                name = label(*args, **kwargs)
                self.seconds[name] += time.process_time() - start
                self.calls[name] += 1
        return timed


def run_once(workload: str, blocks: list[list[bytes]], now_ms: int) -> dict[str, Any]:
    directory = tempfile.mkdtemp(prefix="market-cpu-bench-")
    try:
        db = ChainDB(LevelDBStore(directory), genesis(now_ms))
        clock = now_ms

        def commit(txs: list[bytes]) -> None:
            nonlocal clock
            clock += 500
            executed = db.build_block(txs, 0, clock, VALIDATOR.id)
            failed = [r for r in executed.results if not r.ok]
            if failed:
                raise RuntimeError(f"{len(failed)} of {len(txs)} txs failed, first: {failed[0]}")
            vote = compute_commit_vote(CHAIN, executed.block.header)
            cert = CommitCertificate(vote.height, vote.view, vote.block_hash,
                                     (ValidatorSignature(VALIDATOR.id, VALIDATOR.sign(DOMAIN_COMMIT, vote)),))
            timer.wrap(db.commit, lambda *a: "commit")(executed, cert)

        timer = Timed()
        if workload == "market":  # the buyers' credits, as `ledger bench` issues them
            commit([encode(make_tx(TREASURY, CHAIN, n + 1, "credits.issue", CreditsIssue(k.id, 10**12)))
                    for n, k in enumerate(BUYERS)])
        timer = Timed()
        machine = db.machine
        machine.execute_tx = timer.wrap(  # type: ignore[method-assign]
            machine.execute_tx, lambda block_state, raw, *a, **k: decode_tx(raw).kind)
        counts: dict[str, int] = collections.defaultdict(int)
        update = db.smt.update

        def counted_update(root: bytes, changes: Any) -> tuple[bytes, dict[bytes, bytes]]:
            new_root, nodes = update(root, changes)
            counts["leaves"] += len(changes)  # the block's distinct changed keys: its txs' writes of one key merge
            counts["nodes"] += len(nodes)
            return new_root, nodes

        db.smt.update = timer.wrap(counted_update, lambda *a: "state_tree")  # type: ignore[method-assign]
        for txs in blocks:
            commit(txs)
        return {"seconds": dict(timer.seconds), "calls": dict(timer.calls), "height": db.height,
                "txs": sum(len(b) for b in blocks), "counts": dict(counts)}
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def keys_per_kind(blocks: list[list[bytes]], now_ms: int, workload: str) -> dict[str, float]:
    """State keys each kind of transaction writes (its own overlay's, and its nonce), on a ledger in memory."""
    from ledger.chaindb import default_modules
    from ledger.genesis import genesis_state
    from ledger.members import lookup_sender
    from ledger.state import Overlay, StateMachine

    class View:
        def __init__(self, data: dict[bytes, bytes]) -> None:
            self.data = data

        def get(self, key: bytes) -> bytes | None:
            return self.data.get(key)

    g = genesis(now_ms)
    state = Overlay(View(genesis_state(g)))
    machine = StateMachine(CHAIN, default_modules(g), lookup_sender)
    written: dict[str, list[int]] = collections.defaultdict(list)
    merge = Overlay.merge_into
    last = [0]

    def counting_merge(self: Overlay, target: Overlay) -> None:
        last[0] = len(self.changes) + 1
        merge(self, target)

    clock, height = now_ms, 0
    if workload == "market":
        height += 1
        machine.execute_block(state, [encode(make_tx(TREASURY, CHAIN, n + 1, "credits.issue", CreditsIssue(
            k.id, 10**12))) for n, k in enumerate(BUYERS)], height, clock, prev_hash=bytes(32))
    Overlay.merge_into = counting_merge  # type: ignore[method-assign]
    try:
        for txs in blocks:
            height += 1
            clock += 500
            machine.execute_block(state, [], height, clock, prev_hash=bytes(32))
            for raw in txs:
                last[0] = 0
                result = machine.execute_tx(state, raw, height, clock)
                assert result.ok, result
                written[decode_tx(raw).kind].append(last[0])
    finally:
        Overlay.merge_into = merge  # type: ignore[method-assign]
    return {kind: round(sum(n) / len(n), 2) for kind, n in sorted(written.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--txs", type=int, default=12_000, help="transactions per workload (all clients)")
    parser.add_argument("--batch", type=int, default=180, help="transactions per client batch (= per block)")
    parser.add_argument("--runs", type=int, default=3, help="fresh ledgers per workload; the minimum is kept")
    args = parser.parse_args()
    now_ms = int(time.time() * 1000)
    out: dict[str, Any] = {"txs": args.txs, "batch": args.batch, "runs": args.runs,
                           "load_average": [round(x, 2) for x in os.getloadavg()]}
    for workload in ("mixed", "market"):
        blocks = workload_blocks(workload, args.txs, args.batch)
        runs = [run_once(workload, blocks, now_ms) for _ in range(args.runs)]
        kinds = sorted(runs[0]["calls"])
        best = {k: min(r["seconds"][k] for r in runs) for k in kinds}
        total = sum(len(b) for b in blocks)
        tx_kinds = [k for k in kinds if k not in ("state_tree", "commit")]
        execute = sum(best[k] for k in tx_kinds)
        out[workload] = {
            "tx_us": {k: round(best[k] / runs[0]["calls"][k] * 1e6, 1) for k in tx_kinds},
            "keys_per_tx": keys_per_kind(blocks, now_ms, workload),
            "block_leaves_per_tx": round(runs[0]["counts"]["leaves"] / total, 2),
            "tree_nodes_per_tx": round(runs[0]["counts"]["nodes"] / total, 2),
            "execute_us_per_tx": round(execute / total * 1e6, 1),
            "state_tree_us_per_tx": round(best["state_tree"] / total * 1e6, 1),
            "commit_us_per_tx": round(best["commit"] / total * 1e6, 1),
            "total_us_per_tx": round((execute + best["state_tree"] + best["commit"]) / total * 1e6, 1),
        }
    out["ceiling_ed25519_verify_per_core_per_s"] = round(measure_verify_ceiling(threads=1))
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
