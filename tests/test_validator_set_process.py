"""Validator-set changes on a real 4-validator devnet (separate processes, real TLS links): `ledger devnet
add-node` while imports keep committing, then `ledger validator remove`, then a proof verified with only
the genesis file."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from devnet.processes import stop_pid
from tests.devnetutil import ledger, wait_until
from tests.test_cluster_process import Cluster, Load, cluster, status  # noqa: F401, F811 - the fixture

pytestmark = pytest.mark.slow


def _block_times(node: dict[str, Any], low: int, high: int) -> list[int]:
    with httpx.Client(base_url=node["http"], timeout=5) as http:
        return [int(http.get(f"/v1/blocks/{h}").json()["header"]["timestamp"]) for h in range(low, high + 1)]


def _sets(node: dict[str, Any]) -> list[dict[str, Any]]:
    return list(httpx.get(f"{node['http']}/v1/validators", timeout=5).json()["sets"])


def test_add_node_under_load_then_remove_then_a_proof_verifies(cluster: Cluster, tmp_path: Path) -> None:  # noqa: F811
    devnet = str(cluster.dir)
    with Load(cluster, [1, 2]) as load:
        wait_until(lambda: len(load.acknowledged) >= 60, 60, "load to commit")
        start_height = status(cluster.nodes[0])["height"]
        added = json.loads(ledger("devnet", "add-node", "--dir", devnet).stdout)
        nodes = json.loads((cluster.dir / "devnet.json").read_text())["nodes"]
        cluster.nodes.append(nodes[4])  # stopped with the cluster
        assert nodes[4]["id"] == added["id"] and len(nodes) == 5
        # The others learn it from the transaction: five validators from the activation height on.
        active = added["active_from"]
        wait_until(lambda: status(cluster.nodes[4])["height"] >= active + 5, 60, "the new set to govern")
        acked = len(load.acknowledged)
        wait_until(lambda: len(load.acknowledged) >= acked + 60, 60, "commits under the new set")
        end_height = status(cluster.nodes[0])["height"]
    # Commits never stopped for long while the node joined (block times, proposer clocks on one machine).
    times = _block_times(cluster.nodes[0], start_height, end_height)
    worst_gap_ms = max(b - a for a, b in zip(times, times[1:], strict=False))
    print(f"add-node: decided in {added['seconds_to_decide']} s, at the head {added['seconds_to_head']} s later, "
          f"longest gap between blocks {worst_gap_ms} ms over heights {start_height}-{end_height}")
    assert worst_gap_ms <= 5000
    assert added["seconds_to_head"] <= 30
    # The new validator signs certificates from the activation height on.
    with httpx.Client(base_url=cluster.nodes[0]["http"], timeout=5) as http:
        signers = {s["validator"] for h in range(active, end_height + 1)
                   for s in http.get(f"/v1/blocks/{h}").json()["certificate"]["signatures"]}
    assert added["id"] in signers
    # Remove validator 3, wait until the removal governs, stop it: the four left go on.
    removed = cluster.nodes[3]["id"]
    out = json.loads(ledger("validator", "remove", removed, "--dir", devnet, "--node", cluster.nodes[0]["http"]).stdout)
    with Load(cluster, [0, 4]) as load:
        wait_until(lambda: status(cluster.nodes[0])["height"] >= out["takes_effect_at"] + 2, 60, "the removal")
        stop_pid(cluster.nodes[3]["pid"])
        acked = len(load.acknowledged)
        wait_until(lambda: len(load.acknowledged) >= acked + 40, 60, "commits without the removed validator")
        handle = load.acknowledged[-1]
    assert [v["id"] for v in _sets(cluster.nodes[0])[0]["validators"]] == [
        n["id"] for i, n in enumerate(cluster.nodes) if i != 3]
    listed = ledger("validator", "list", "--node", cluster.nodes[4]["http"]).stdout
    assert added["id"] in listed and removed not in listed.split("set 2")[-1]
    # A proof from after both changes verifies with only the genesis file.
    time.sleep(0.5)
    proof = ledger("resolve", handle, "--proof", "--node", cluster.nodes[4]["http"]).stdout
    (tmp_path / "proof.json").write_text(proof)
    assert json.loads(proof)["proof"]["height"] > out["takes_effect_at"]
    ledger("verify", str(tmp_path / "proof.json"), "--genesis", cluster.data["genesis"])
