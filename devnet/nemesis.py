"""`make nemesis FAULTS=N SEED=S`: a 4-validator devnet of real processes under client load and a
seeded schedule of faults, one validator at a time, each healed before the next; then the checks.

    python -m devnet.nemesis --faults 20 [--seed S] [--dir DIR] [--clients 4] [--rows 60]

Faults (`FAULT_WEIGHTS`), on the primary in about 40% of them, at random points of the load:
- `kill`: kill -9, down for 0.3-2 s, then started again;
- `restart`: SIGTERM, then started again at once;
- `pause`: SIGSTOP for 0.5-4 s, then SIGCONT;
- `partition`: the validator's peer links cut at the socket level (`devnet.faultproxy`;
  its HTTP still answers, so clients keep writing to it) for 0.5-4 s, then healed.
After a heal the nemesis waits until every link is up again (`/v1/network` on every validator; the
*link outage* ends when the last link came up, as the validators' transports recorded it), then
until the healed validator has caught up with the height the others had at the
heal and all stand in one view (*recovered*), then waits 0.3-2 s and does the next fault. A fault
not recovered within `RECOVERY_S` is reported and the run fails.

Clients (`devnet.nemesis_load`) write all along through random live validators and log what was
acknowledged. The figures: batches acknowledged without manual retry; the longest pause in commits
from a fault until its recovery (the highest height any validator reports, polled every 0.1 s);
the longest link outage after a heal; then `devnet.nemesis_check`'s verdict. The run passes when
every fault recovered, every batch was acknowledged (by hand after at most 3 retries if need be),
nothing acknowledged is lost or doubled, and all validators hold one chain. The seed fixes the
schedule (kinds, targets, durations, gaps), not the timing of the load around it. The last line
printed is the figures as JSON. The devnet directory (logs, the clients' logs, `faults.jsonl`) is kept when the run
fails or with --keep.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from devnet.nemesis_check import Verdict, check
from devnet.nemesis_load import Batch, Client, Poller, commit_times
from devnet.nemesis_net import NemesisNet
from ledger.client import LedgerClient, Signer
from ledger.crypto import SigningKey
from ledger.resolver.registry import PrefixCreate

NODES = 4
FAULT_WEIGHTS = {"kill": 3, "pause": 3, "partition": 3, "restart": 1}
PRIMARY_SHARE = 0.4
RECOVERY_S = 90.0
LINK_TIMEOUT_S = 30.0
CLIENT_GIVE_UP_S = 120.0  # deliver's own patience before a client retries by hand


@dataclass
class Fault:
    index: int
    kind: str
    node: int
    on_primary: bool
    hold_s: float
    started: float = 0.0
    healed: float = 0.0
    link_outage_s: float | None = None  # heal to every link up
    recovered_s: float | None = None  # heal to caught up, one view
    commit_pause_s: float = 0.0


class Nemesis:
    def __init__(self, net: NemesisNet, seed: int, clients: int, rows: int, batch: int, say: Any = print) -> None:
        self.seed, self.rng, self.say = seed, random.Random(seed), say
        self.net = net
        directory = net.dir
        self.faulty: set[int] = set()
        self.faults: list[Fault] = []
        keys = self.net.data["keys"]
        admin = Signer(SigningKey.load(keys["admin"]), LedgerClient(self.net.urls[0]))
        self.clients: list[Client] = []
        for k in range(clients):
            key = SigningKey.load(keys[f"load{k}"])
            admin.send("prefix.create", PrefixCreate(f"88.300.{k}", key.id))
            self.clients.append(Client(
                k, "import" if k % 2 == 0 else "txs", key, f"88.300.{k}", self.net.urls, self.live, rows, batch,
                CLIENT_GIVE_UP_S, seed * 1000 + k, directory / f"client{k}.jsonl"))
        self.pollers = [Poller(i, u) for i, u in enumerate(self.net.urls)]

    def live(self) -> list[int]:
        return [i for i in range(NODES) if i not in self.faulty]

    def run(self, faults: int) -> None:
        for p in self.pollers:
            p.start()
        for c in self.clients:
            c.start()
        _wait(self.net.all_linked, 60, "every link up before the first fault")
        _wait(lambda: sum(len(c.log) for c in self.clients) >= len(self.clients), 120, "the clients' first batches")
        for n in range(faults):
            # A short gap after the last fault recovered (one draw whatever its range, so a seed's kinds
            # and targets stay as they were).
            time.sleep(self.rng.uniform(0.2, 1.0))
            fault = self._draw(n)
            self._inject(fault)
            self.faults.append(fault)
            with (self.net.dir / "faults.jsonl").open("a") as log:
                log.write(json.dumps(asdict(fault)) + "\n")  # times beside the nodes' logs
            self.say(f"fault {n + 1}/{faults}: {fault.kind} node{fault.node}{' (primary)' if fault.on_primary else ''}"
                     f" {fault.hold_s:.1f} s; links up {_s(fault.link_outage_s)} after the heal, recovered "
                     f"{_s(fault.recovered_s)} after it")

    def _draw(self, n: int) -> Fault:
        kind = self.rng.choices(list(FAULT_WEIGHTS), weights=list(FAULT_WEIGHTS.values()))[0]
        on_primary = self.rng.random() < PRIMARY_SHARE
        other = self.rng.randrange(NODES - 1)  # drawn always, so the schedule does not depend on timing
        hold = self.rng.uniform(0.3, 2.0) if kind == "kill" else 0.0 if kind == "restart" else self.rng.uniform(0.5, 4)
        primary = self.net.primary(self.live())
        if primary is None:
            primary = 0
        node = primary if on_primary else [i for i in range(NODES) if i != primary][other]
        return Fault(n, kind, node, on_primary, hold)

    def _inject(self, f: Fault) -> None:
        i = f.node
        self.faulty.add(i)
        f.started = time.time()
        if f.kind == "kill":
            self.net.kill(i)
        elif f.kind == "restart":
            self.net.terminate(i)
        elif f.kind == "pause":
            self.net.pause(i)
        else:
            self.net.cut(i)
        time.sleep(f.hold_s)
        if f.kind in ("kill", "restart"):
            self.net.start(i)
        elif f.kind == "pause":
            self.net.resume(i)
        else:
            self.net.heal(i)
        f.healed = time.time()
        heights = [h for h in (self._height(j) for j in range(NODES) if j != i) if h is not None]
        target = max(heights, default=0)
        self.faulty.discard(i)
        # Its links were broken (a new process, or the relays closed them at the heal) unless it was paused.
        linked = self.net.when_linked(LINK_TIMEOUT_S, None if f.kind == "pause" else i, f.started)
        if linked is not None:
            f.link_outage_s = max(0.0, linked - f.healed)  # 0: no link of it went down (a short pause)
        if _wait(lambda: self._caught_up(i, target), RECOVERY_S, None):
            f.recovered_s = time.time() - f.healed

    def _height(self, i: int) -> int | None:
        try:
            return int(self.net.status(i, timeout=1)["height"])
        except Exception:  # noqa: BLE001 - busy or down: no answer
            return None

    def _caught_up(self, i: int, target: int) -> bool:
        statuses = [self.net.status(j, timeout=1) for j in range(NODES)]
        return statuses[i]["height"] >= target and len({s["view"] for s in statuses}) == 1

    def finish(self) -> tuple[list[Batch], Verdict]:
        for c in self.clients:
            c.stopping.set()
        for c in self.clients:
            c.join(CLIENT_GIVE_UP_S * 2)
        _wait(self._one_head, 60, None)
        for p in self.pollers:
            p.stopping.set()
        batches = [b for c in self.clients for b in c.log]
        return batches, check(self.net.urls, batches)

    def _one_head(self) -> bool:
        heads = {(s["height"], s["block_hash"]) for s in (self.net.status(i) for i in range(NODES))}
        return len(heads) == 1

    def pauses(self) -> None:
        """Each fault's longest gap between commits, from its start until it recovered."""
        times = commit_times(self.pollers)
        for f in self.faults:
            end = f.healed + (f.recovered_s if f.recovered_s is not None else RECOVERY_S)
            inside = [f.started, *(t for t in times if f.started < t <= end), end]
            f.commit_pause_s = max(b - a for a, b in zip(inside, inside[1:], strict=False))


def _wait(cond: Any, timeout: float, what: str | None, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return True
        except Exception:  # noqa: BLE001 - a node busy or restarting: not yet
            pass
        time.sleep(interval)
    if what is not None:
        raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
    return False


def _s(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f} s"


def figures(seed: int, faults: list[Fault], batches: list[Batch], verdict: Verdict, elapsed: float) -> dict[str, Any]:
    first = sum(1 for b in batches if b.first_try_ok)
    failed = [b for b in batches if len(b.acked) < b.rows]
    outages = [f.link_outage_s for f in faults if f.link_outage_s is not None]
    worst_pause = max(faults, key=lambda f: f.commit_pause_s, default=None)
    worst_link = max(faults, key=lambda f: f.link_outage_s or 0.0, default=None)
    unrecovered = [f.index + 1 for f in faults if f.recovered_s is None or f.link_outage_s is None]
    return {
        "seed": seed, "faults": len(faults),
        "fault_kinds": {k: sum(1 for f in faults if f.kind == k) for k in FAULT_WEIGHTS},
        "faults_on_primary": sum(1 for f in faults if f.on_primary),
        "batches": len(batches), "batches_acknowledged_first_try": first,
        "batches_acknowledged_first_try_pct": round(100 * first / len(batches), 2) if batches else 0.0,
        "batches_retried_by_hand": sum(1 for b in batches if b.manual_retries and len(b.acked) == b.rows),
        "batches_failed": len(failed),
        # What the client was told, for the batches that needed a hand (the first few of each).
        "batches_retried_or_failed": [
            {"client": b.client, "kind": b.kind, "node": b.node, "acked": len(b.acked), "rows": b.rows,
             "manual_retries": b.manual_retries, "errors": b.errors[:3]}
            for b in batches if b.manual_retries or len(b.acked) < b.rows][:5],
        "import_batches": sum(1 for b in batches if b.kind == "import"),
        "longest_batch_s": round(max((b.ended - b.started for b in batches), default=0.0), 2),
        "transactions_acknowledged": verdict.acknowledged, "lost": len(verdict.lost),
        "doubled": len(verdict.doubled), "repeated_tx_ids": verdict.repeated_tx_ids,
        "missing_on_nodes": verdict.missing_on, "one_chain": verdict.chains_agree,
        "height": verdict.height, "head_hash": verdict.head_hash,
        "longest_commit_pause_s": round(worst_pause.commit_pause_s, 2) if worst_pause else None,
        "longest_commit_pause_fault": (f"{worst_pause.index + 1} {worst_pause.kind} node{worst_pause.node}"
                                       if worst_pause else None),
        "median_commit_pause_s": round(statistics.median(f.commit_pause_s for f in faults), 2) if faults else None,
        "longest_link_outage_s": round(max(outages), 2) if outages else None,
        "longest_link_outage_fault": (f"{worst_link.index + 1} {worst_link.kind} node{worst_link.node}"
                                      if worst_link else None),
        "median_link_outage_s": round(statistics.median(outages), 2) if outages else None,
        "faults_not_recovered": unrecovered, "elapsed_s": round(elapsed, 1),
        "passed": verdict.ok and not failed and not unrecovered,
    }


def summary(fig: dict[str, Any]) -> str:
    return "\n".join([
        f"seed {fig['seed']}: {fig['faults']} faults {fig['fault_kinds']}, {fig['faults_on_primary']} on the primary, "
        f"{fig['elapsed_s']} s",
        f"batches acknowledged without manual retry: {fig['batches_acknowledged_first_try']} of {fig['batches']} "
        f"({fig['batches_acknowledged_first_try_pct']}%; target 99%); retried by hand and acknowledged: "
        f"{fig['batches_retried_by_hand']}; failed: {fig['batches_failed']}; longest batch {fig['longest_batch_s']} s",
        f"transactions acknowledged: {fig['transactions_acknowledged']}, checked on all {NODES} validators: lost "
        f"{fig['lost']}, doubled {fig['doubled']}, missing per node {fig['missing_on_nodes']}; tx ids in two blocks: "
        f"{fig['repeated_tx_ids']}",
        f"one chain: {fig['one_chain']}, height {fig['height']}, head {fig['head_hash'][:16]}",
        f"longest pause in commits after a fault: {fig['longest_commit_pause_s']} s (fault "
        f"{fig['longest_commit_pause_fault']}; median {fig['median_commit_pause_s']} s; target 5 s)",
        f"longest link outage after a heal: {fig['longest_link_outage_s']} s "
        f"(fault {fig['longest_link_outage_fault']}; "
        f"median {fig['median_link_outage_s']} s; target 2 s)",
        f"faults not recovered within {RECOVERY_S:.0f} s: {fig['faults_not_recovered'] or 'none'}",
        *(f"batch retried by hand or failed: {json.dumps(b)}" for b in fig["batches_retried_or_failed"]),
        "PASSED" if fig["passed"] else "FAILED",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devnet.nemesis", description=__doc__.split("\n\n")[0])
    parser.add_argument("--faults", type=int, default=20)
    parser.add_argument("--seed", type=int, help="default: drawn at random (and printed)")
    parser.add_argument("--dir", help="the devnet directory (default: a new temporary one)")
    parser.add_argument("--clients", type=int, default=4, help="load clients; even ones import CSVs (default 4)")
    parser.add_argument("--rows", type=int, default=60, help="identifiers per client batch (default 60)")
    parser.add_argument("--batch", type=int, default=30, help="rows per request of an import (default 30)")
    parser.add_argument("--keep", action="store_true", help="keep the devnet directory")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    directory = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="nemesis-"))
    print(f"nemesis: seed {seed}, {args.faults} faults, devnet in {directory}", flush=True)
    started = time.monotonic()
    net = None
    passed = False
    try:
        net = NemesisNet(directory, NODES, args.clients)
        nemesis = Nemesis(net, seed, args.clients, args.rows, args.batch, say=lambda text: print(text, flush=True))
        nemesis.run(args.faults)
        batches, verdict = nemesis.finish()
        nemesis.pauses()
        fig = figures(seed, nemesis.faults, batches, verdict, time.monotonic() - started)
        for problem in [*verdict.problems, *(f"lost: {h}" for h in verdict.lost[:10]),
                        *(f"doubled: {h}" for h in verdict.doubled[:10])]:
            print(problem)
        print(summary(fig))
        print(json.dumps(fig), flush=True)
        passed = bool(fig["passed"])
    finally:
        if net is not None:
            net.stop()
        if passed and not args.keep and not args.dir:
            shutil.rmtree(directory, ignore_errors=True)
        else:
            print(f"nemesis: devnet directory kept: {directory}", file=sys.stderr)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
