"""Validator-set changes in the deterministic simulation: the replica, through the node's driver, with a
set change decided by a transaction (`tests.sim.network.set_tx`, as `ledger.validators` decides one).

Every run also checks what every simulation checks (no two honest nodes commit different blocks, every
certificate verifies, here against the set in force at its height)."""

from __future__ import annotations

import os

import pytest

from ledger.chain import check_certificate
from tests.sim.apps import FakeApp, set_tx
from tests.sim.checks import assert_live, finish, load, make_txs
from tests.sim.network import Network, SimNode

SEEDS = int(os.environ.get("CONSENSUS_SIM_SEEDS", "20")) // 6 or 1  # long runs: fewer seeds than elsewhere
DELAY = 16


def _app(node: SimNode) -> FakeApp:
    assert isinstance(node.app, FakeApp)
    return node.app


def _decide(net: Network, ids: list[str], nonce: int) -> int:
    """Send the transaction deciding the set `ids` and run until it commits: the first height it governs."""
    tx = set_tx(ids, nonce)
    net.submit([tx])
    assert_live(net, [tx])
    app = _app(net.honest_running()[0])
    decided = next(h for h in range(1, app.committed_height() + 1) if tx in app.blocks[h].txs)
    return decided + DELAY


def _drive_to(net: Network, height: int, prefix: str, index: int | None = None) -> None:
    """Client traffic until every honest running node has committed `height`."""
    for round_ in range(200):
        if all(n.height >= height for n in net.honest_running()):
            return
        txs = make_txs(f"{prefix}-{round_}", 8)
        load(net, txs, index=index)
        assert_live(net, txs, retry_every=600)
    raise AssertionError(f"never reached {height}: {[(n.index, n.height) for n in net.nodes]}")


def _signers(node: SimNode, height: int) -> set[str]:
    cert = node.committed[height][1]
    assert cert is not None
    return {s.validator for s in cert.signatures}


def _check_certified_by_set(net: Network, node: SimNode, active: int, ids: list[str]) -> None:
    """From `active` on, `node`'s blocks carry certificates of the new set only, checked under its quorum."""
    app = _app(node)
    for h in range(active, node.height + 1):
        cert = node.committed[h][1]
        assert cert is not None
        check_certificate(cert, net.chain_id, app.blocks[h].header, {v: net.validator_keys[v] for v in ids})


@pytest.mark.parametrize("seed", range(SEEDS))
def test_a_fifth_validator_joins_then_a_founder_leaves(seed: int) -> None:
    net = Network(4, seed=seed, joiners=1, drop=0.02)
    four = list(net.config.validators)
    newcomer = net.nodes[4]
    # Before the change the newcomer follows (catch-up) but signs nothing.
    load(net, make_txs("before", 12), index=0)
    five = [*four, newcomer.id]
    added_at = _decide(net, five, 1)
    _drive_to(net, added_at + 6, "during", index=1)
    # From the activation height the newcomer takes part: it signs certificates.
    assert any(newcomer.id in _signers(net.nodes[1], h) for h in range(added_at, net.nodes[1].height + 1))
    assert not any(newcomer.id in _signers(net.nodes[1], h) for h in range(1, added_at))
    _check_certified_by_set(net, net.nodes[1], added_at, five)
    # Then validator 3 leaves; once the removal governs, it is stopped and the other four go on.
    four_left = [v for v in five if v != four[3]]
    removed_at = _decide(net, four_left, 2)
    _drive_to(net, removed_at, "removing", index=2)
    net.crash(3)
    more = make_txs("after", 40)
    load(net, more, index=4)
    assert_live(net, more)
    _check_certified_by_set(net, net.nodes[0], removed_at, four_left)
    finish(net)


@pytest.mark.parametrize("seed", range(SEEDS))
def test_a_view_change_spanning_the_change_is_safe(seed: int) -> None:
    """The primary of view 0 stops just before the new set governs: the view change that follows spans the
    activation height. Ordering goes on under the new set, the newcomer included, and nothing diverges."""
    net = Network(4, seed=seed, joiners=1)
    four = list(net.config.validators)
    newcomer = net.nodes[4]
    five = [*four, newcomer.id]
    active = _decide(net, five, 1)
    # Traffic up to a few heights before the activation, then the primary stops.
    _drive_to(net, active - 3, "fill", index=1)
    primary = net.nodes[1].replica.primary
    index = next(n.index for n in net.nodes if n.id == primary)
    net.crash(index)
    txs = make_txs("span", 60)
    load(net, txs, index=(index + 2) % 5)
    assert_live(net, txs, retry_every=600)
    live = [n for n in net.honest_running()]
    assert all(n.replica.view >= 1 for n in live)
    assert all(n.height >= active + 3 for n in live)
    _check_certified_by_set(net, live[0], active, five)
    assert net.total_metric("internal_errors") == 0
    finish(net)


def test_removed_validators_cannot_certify() -> None:
    """After their removal, validators' votes do not count: two removed ones and one left running would
    be a quorum of the old four, but not of the two left (which need both)."""
    net = Network(4, seed=7)
    two = list(net.config.validators)[:2]
    active = _decide(net, two, 1)
    _drive_to(net, active, "fill", index=0)
    net.crash(1)
    stuck = make_txs("stuck", 8)
    load(net, stuck, index=0)
    net.run(1500)
    heights = {n.index: n.height for n in net.honest_running()}
    assert not any(net.all_committed(stuck, [n]) for n in net.honest_running()), heights
    net.restart(1)
    assert_live(net, stuck, retry_every=600, nodes=[0, 1])
    _check_certified_by_set(net, net.nodes[0], active, two)
    finish(net)
