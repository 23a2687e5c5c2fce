"""What every simulated scenario drives and checks: client load, liveness, and the end state.

`assert_live` raises `LivenessFailure` when transactions do not commit in time; `finish` checks
agreement, no internal error, and that every honest running node reached the same height.
`SafetyViolation` (tests/sim/apps.py) is raised by the network itself the moment two honest nodes
decide differently.
"""

from __future__ import annotations

from tests.sim.network import Network

LIVENESS_STEPS = 4000  # 800 ticks at tick_every=5
CONVERGENCE_STEPS = 1000


class LivenessFailure(AssertionError):
    """Honest nodes did not commit what they were given, or did not reach one height, in time."""


def make_txs(prefix: str, count: int) -> list[bytes]:
    return [f"{prefix}-{i}".encode() for i in range(count)]


def load(net: Network, batch: list[bytes], every: int = 6, chunk: int = 3, index: int | None = None) -> None:
    """Submit `batch` in chunks, `every` steps apart, to node `index` (a random honest one by default)."""
    for i in range(0, len(batch), chunk):
        net.submit(batch[i:i + chunk], index)
        net.run(every)


def assert_live(
    net: Network, batch: list[bytes], within: int = LIVENESS_STEPS, nodes: list[int] | None = None,
    retry_every: int = 0,
) -> int:
    """All of `batch` commits on every honest running node within `within` steps; returns steps taken.

    With `retry_every`, clients resubmit what is not committed anywhere that often (a crashed node
    loses its queue, like a real mempool).
    """
    start = net.time
    which = [net.nodes[i] for i in nodes] if nodes is not None else None
    ok = False
    while net.time - start < within and not ok:
        budget = min(retry_every or within, within - (net.time - start))
        ok = net.run_until(lambda: net.all_committed(batch, which), budget)
        if not ok and retry_every:
            committed = set().union(*(n.committed_txs for n in net.honest_running()))
            missing = [t for t in batch if t not in committed]
            if missing:
                net.submit(missing)
    if not ok:
        raise LivenessFailure(f"no liveness after {within} steps: {describe_nodes(net)}")
    return net.time - start


def clients_go_on(net: Network, sent: list[bytes], within: int = 8000) -> None:
    """After the heal: clients send a few more transactions (a replica that missed the last blocks
    learns it from new traffic; on an idle network nothing tells it) and resubmit what is not
    committed anywhere (a replica gives up on a transaction it could not get ordered, and says so);
    everything they sent commits on every honest running node."""
    after = make_txs(f"after-{net.time}", 4)
    load(net, after, index=net.rng.choice([n.index for n in net.honest_running()]))
    assert_live(net, sent + after, within=within, retry_every=400)


def describe_nodes(net: Network) -> str:
    return ", ".join(
        f"node {n.index} h{n.height} v{n.replica.view}{'' if n.replica.views.active else '*'}"
        f"{'' if n.honest else ' faulty'}{'' if n.running else ' down'}" for n in net.nodes
    )


def finish(net: Network) -> None:
    """Agreement, no internal error, honest traffic never misattributed, and every honest running
    node at the same height within CONVERGENCE_STEPS."""
    net.check_agreement()
    for node in net.nodes:
        assert node.replica.metrics["internal_errors"] == 0, f"internal error in node {node.index}"
        if not net.injected:
            # Honest traffic is never misattributed (e.g. no relayed messages).
            assert node.replica.metrics["dropped_sender_mismatch"] == 0, node.index
    honest = net.honest_running()
    top = max(n.height for n in honest)
    # Blocks may still come (a twin's clients): at one height at some step, at least as high as now.
    if not net.run_until(lambda: len({n.height for n in honest}) == 1 and honest[0].height >= top,
                         CONVERGENCE_STEPS):
        raise LivenessFailure(f"honest nodes not at one height {CONVERGENCE_STEPS} steps after the end: "
                              f"{describe_nodes(net)}")
    net.check_agreement()
