"""`ledger bench --preload N`: a devnet's state filled with N identifiers before the timed load.

Issue 17 asks whether throughput holds up with a large state (1,000,000 identifiers against an empty one).
The identifiers go in the honest way, as signed `id.register` transactions committed by the validators'
consensus, so every node's state tree, flat index and LevelDB tables are what that many registrations make.
Members of their own (`preload0`...) with prefixes of their own (`88.901.N`) send them, so the timed load that
follows (its members, prefixes and nonces) is the same as without a preload. Not timed as the load is: only
its rate is reported. Signing is lazy, a batch at a time, so a million transactions never sit in memory.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO

from ledger.bench_members import add_bench_members
from ledger.client import LedgerClient, Signer, deliver
from ledger.id_import import NONCE_REFUSALS
from ledger.progress import Progress
from ledger.resolver.registry import IdRegister, ValueSpec

PRELOAD_BATCH = 1000  # transactions per request: fewer round trips than the load's 175, the same path
PRELOAD_SENDERS = 4
MAX_RESIGNS = 5  # times a batch's nonce-refused rest is signed again before the preload gives up


class PreloadFailed(RuntimeError):
    """A preload transaction was refused: the state would not hold the identifiers asked for."""


def preload_identifier(sender: int, n: int) -> IdRegister:
    return IdRegister(f"88.901.{sender}/PRE-{n:08d}", (ValueSpec(1, "URL", f"https://twin.example/pre/{n}"),))


def _split(count: int, parts: int) -> list[int]:
    return [count // parts + (1 if i < count % parts else 0) for i in range(parts)]


def preload(net: dict[str, Any], count: int, senders: int = PRELOAD_SENDERS, batch: int = PRELOAD_BATCH,
            log: TextIO | None = None) -> dict[str, Any]:
    """Register `count` identifiers on the devnet `net` (its launcher record) from `senders` members of their own,
    each sending to a node of its own in turn; returns the figures. PreloadFailed if any is refused."""
    log = log or sys.stderr
    nodes = [n["http"] for n in net["nodes"]]
    keys = add_bench_members(net, senders, "preload", "88.901", ("registrar",))
    progress = Progress(count, "preloading identifiers", stream=log)
    lock = threading.Lock()
    refused: list[str] = []

    def send(i: int, share: int) -> None:
        client = LedgerClient(nodes[i % len(nodes)])
        signer = Signer(keys[i], client, net["chain_id"])
        try:
            for start in range(0, share, batch):
                if refused:
                    return
                todo = [preload_identifier(i, n) for n in range(start, min(start + batch, share))]
                for _ in range(MAX_RESIGNS + 1):
                    answers = deliver(client, [signer.sign("id.register", p) for p in todo], wait_s=120.0)
                    signer.learn(answers)
                    failed = [(p, a.get("reason") or a.get("status", "?")) for p, a in zip(todo, answers, strict=True)
                              if a.get("status") != "committed" or not a.get("ok")]
                    # Refused for its nonce alone (one refused under load before it left a gap): not registered,
                    # signed again with the signer's nonce, as `ledger id import` does.
                    again = [p for p, reason in failed if reason in NONCE_REFUSALS]
                    bad = [str(reason) for _, reason in failed if reason not in NONCE_REFUSALS]
                    with lock:
                        refused.extend(bad)
                        progress.advance(len(todo) - len(failed), failed=len(bad))
                    if bad or not again:
                        break
                    signer.resync()
                    todo = again
                else:
                    with lock:
                        refused.extend(["nonce_gap (signed again too often)"] * len(todo))
        finally:
            client.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=send, args=(i, share)) for i, share in enumerate(_split(count, senders))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    progress.close()
    if refused:
        raise PreloadFailed(f"{len(refused)} preload transactions were refused (first: {refused[0]})")
    return {"preloaded": count, "preload_seconds": round(seconds, 1),
            "preload_tx_per_s": round(count / seconds, 1) if seconds > 0 else None}
