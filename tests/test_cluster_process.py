"""A real 4-validator devnet (separate processes, real sockets) under faults: kill -9, restart, SIGSTOP."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devnet.processes import is_alive, start_node, stop_pid, wait_healthy
from ledger.client import LedgerClient, LedgerError, Signer
from ledger.crypto import SigningKey
from ledger.resolver.registry import IdRegister, PrefixCreate, ValueSpec
from tests.devnetutil import devnet_up, wait_until

pytestmark = pytest.mark.slow


def status(node: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = httpx.get(f"{node['http']}/v1/status", timeout=2).json()
    return result


class Cluster:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.data = devnet_up(directory, 4)
        self.nodes: list[dict[str, Any]] = self.data["nodes"]
        self.extra_pids: list[int] = []

    def kill9(self, i: int) -> None:
        pid = self.nodes[i]["pid"]
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not is_alive(pid), 10, "the killed node to exit")

    def restart(self, i: int) -> None:
        node = self.nodes[i]
        proc = start_node(node["home"], self.dir / "logs")
        node["pid"] = proc.pid
        self.extra_pids.append(proc.pid)
        wait_healthy(node["http"], proc, self.dir / "logs" / f"node{i}.log")

    def primary_index(self, among: list[int]) -> int:
        primary = status(self.nodes[among[0]])["primary"]
        return next(i for i, n in enumerate(self.nodes) if n["id"] == primary)

    def stop(self) -> None:
        for n in self.nodes:
            if is_alive(n.get("pid")):
                # A stopped process must be continued before it can act on SIGTERM.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(n["pid"], signal.SIGCONT)
                stop_pid(n["pid"])


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path / "devnet")
    try:
        admin = Signer(SigningKey.load(c.data["keys"]["admin"]), LedgerClient(c.nodes[0]["http"]))
        admin.send("prefix.create", PrefixCreate("88.100.1", SigningKey.load(c.data["keys"]["org1"]).id))
        yield c
    finally:
        c.stop()


class Load:
    """org1 registers identifiers in small batches through the live nodes; remembers what was acknowledged."""

    def __init__(self, cluster: Cluster, targets: list[int]) -> None:
        self.cluster = cluster
        self.targets = list(targets)
        self.acknowledged: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.key = SigningKey.load(cluster.data["keys"]["org1"])
        self.n = 0

    def _run(self) -> None:
        turn = 0
        signer: Signer | None = None
        while not self.stop.is_set():
            node = self.cluster.nodes[self.targets[turn % len(self.targets)]]
            turn += 1
            try:
                client = LedgerClient(node["http"], timeout=10)
                if signer is None or signer.client.url != client.url:
                    signer = Signer(self.key, client)
                txs = [signer.sign("id.register", IdRegister(f"88.100.1/L-{self.n + i}", (ValueSpec(1, "URL", "u"),)))
                       for i in range(20)]
                results = client.submit(txs, wait=True, timeout=8)
                self.acknowledged.extend(f"88.100.1/L-{self.n + i}" for i, r in enumerate(results) if r.get("ok"))
                self.n += 20
                if not all(r.get("ok") for r in results):
                    signer = None  # resync the nonce from a node next time
            except (LedgerError, httpx.HTTPError, OSError):
                signer = None
                time.sleep(0.2)

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def committed_everywhere(cluster: Cluster, indexes: list[int], handles: list[str]) -> None:
    for i in indexes:
        with httpx.Client(base_url=cluster.nodes[i]["http"], timeout=5) as http:
            for handle in handles:
                assert http.get(f"/api/handles/{handle}").json()["responseCode"] == 1, (i, handle)


def same_head(cluster: Cluster, indexes: list[int]) -> bool:
    """All the given nodes agree on the block hash at the lowest of their heights."""
    heights = [status(cluster.nodes[i])["height"] for i in indexes]
    h = min(heights)
    hashes = {httpx.get(f"{cluster.nodes[i]['http']}/v1/blocks/{h}", timeout=5).json()["hash"] for i in indexes}
    return len(hashes) == 1 and max(heights) == h


def test_primary_crash_view_change_and_rejoin(cluster: Cluster) -> None:
    everyone = [0, 1, 2, 3]
    primary = cluster.primary_index(everyone)
    others = [i for i in everyone if i != primary]
    view_before = status(cluster.nodes[others[0]])["view"]
    with Load(cluster, others) as load:
        wait_until(lambda: len(load.acknowledged) >= 100, 30, "load to commit")
        cluster.kill9(primary)
        killed_at = time.monotonic()
        acked = len(load.acknowledged)

        def committed_in_new_view() -> bool:
            latest = httpx.get(f"{cluster.nodes[others[0]]['http']}/v1/blocks/latest", timeout=2).json()
            return int(latest["header"]["view"]) > view_before

        wait_until(committed_in_new_view, 30, "a block committed in a new view after the primary crash")
        resumed_after = time.monotonic() - killed_at
        wait_until(lambda: len(load.acknowledged) >= acked + 100, 60, "clients' commits to resume")
        assert all(status(cluster.nodes[i])["view"] > view_before for i in others)
        cluster.restart(primary)
        wait_until(lambda: len(load.acknowledged) >= acked + 300, 60, "more commits with the restarted node back")
    wait_until(lambda: same_head(cluster, everyone), 60, "all four nodes to reach the same block hash")
    committed_everywhere(cluster, everyone, load.acknowledged)
    print(f"commits resumed {resumed_after:.1f}s after the primary was killed")
    assert resumed_after < 10, f"commits resumed only {resumed_after:.1f}s after the primary crash"


def test_paused_node_rejoins(cluster: Cluster) -> None:
    everyone = [0, 1, 2, 3]
    paused = 3 if cluster.primary_index(everyone) != 3 else 2
    others = [i for i in everyone if i != paused]
    with Load(cluster, others) as load:
        wait_until(lambda: len(load.acknowledged) >= 60, 30, "load to commit")
        os.kill(cluster.nodes[paused]["pid"], signal.SIGSTOP)
        before = len(load.acknowledged)
        time.sleep(12)  # several view-change timeouts (2 s, doubling): long enough to stall a view on it
        acked = len(load.acknowledged)
        assert acked > before + 100, "the other three kept committing while one node was paused"
        os.kill(cluster.nodes[paused]["pid"], signal.SIGCONT)
        wait_until(lambda: len(load.acknowledged) >= acked + 100, 60, "commits after resuming")
    wait_until(lambda: same_head(cluster, everyone), 60, "the paused node to catch up")
    committed_everywhere(cluster, [paused], load.acknowledged)


def test_losing_quorum_then_resuming_does_not_loop_view_changes(cluster: Cluster) -> None:
    everyone = [0, 1, 2, 3]
    paused = [2, 3]
    with Load(cluster, [0, 1]) as load:
        wait_until(lambda: len(load.acknowledged) >= 60, 30, "load to commit")
        for i in paused:
            os.kill(cluster.nodes[i]["pid"], signal.SIGSTOP)
        time.sleep(10)  # no quorum: nothing can commit, the live two time out (2 s, 4 s, ...) and ask for view changes
        for i in paused:
            os.kill(cluster.nodes[i]["pid"], signal.SIGCONT)
        acked = len(load.acknowledged)
        wait_until(lambda: len(load.acknowledged) >= acked + 200, 90, "commits to resume after quorum returned")
        views = [status(cluster.nodes[i])["view"] for i in everyone]
        time.sleep(5)
        later = [status(cluster.nodes[i])["view"] for i in everyone]
    assert views == later, f"views kept changing after recovery: {views} -> {later}"
    assert len(set(later)) == 1
    wait_until(lambda: same_head(cluster, everyone), 60, "one block hash on all nodes")
