"""The consensus simulation's scenarios: each builds a network from a seed, injects its faults, loads
it with client transactions and checks what PBFT promises under them.

Every run checks, besides its own assertions: no two honest nodes commit different blocks at one
height (checked on every Deliver and at the end), every committed block carries a certificate
`chain.check_certificate` accepts (checked on every Deliver and fetch), no replica hit an internal
error, and once at most f nodes are faulty every transaction given to an honest node commits on
every honest running node within a bounded number of steps, all of them at one height.

tests/test_consensus_sim.py runs them on fixed seeds, tests/sim/search.py on seeds drawn per run;
tests/sim/adversarial.py and tests/sim/twins.py add the Byzantine and partitioned ones.
"""

from __future__ import annotations

from ledger.codec import encode
from ledger.consensus.messages import (
    Envelope,
    Prepare,
    encode_envelope,
    sign_message,
)
from ledger.crypto import SigningKey
from tests.sim.byzantine import equivocator, whisperer
from tests.sim.checks import assert_live, describe_nodes, finish, load, make_txs
from tests.sim.network import Network

# --- scenarios -----------------------------------------------------------------------------------


def scenario_lossy(seed: int) -> None:
    """Drops, duplicates, reordering, variable delay; then the network turns clean."""
    net = Network(4, seed, drop=0.15, duplicate=0.1, max_delay=7)
    txs = make_txs("lossy", 36)
    load(net, txs)
    net.set_loss(0.0, 0.0)
    assert_live(net, txs)
    finish(net)


def scenario_crashed_primary(seed: int) -> None:
    """The primary of view 0 crashes: the backups change view and go on."""
    net = Network(4, seed, drop=0.02)
    first = make_txs("before", 12)
    load(net, first)
    net.crash(0)
    txs = make_txs("after", 24)
    load(net, txs)
    assert_live(net, first + txs, retry_every=400)
    assert all(n.replica.view > 0 for n in net.honest_running())
    finish(net)


def scenario_crash_restart(seed: int) -> None:
    """Nodes crash and restart from their persisted state, one at a time, under message loss."""
    net = Network(4, seed, drop=0.05, duplicate=0.05)
    txs = make_txs("cr", 48)
    for i in range(0, len(txs), 6):
        victim = net.rng.randrange(4)
        net.crash(victim)
        load(net, txs[i:i + 6], every=5)
        net.run(net.rng.randint(0, 40))
        net.restart(victim)
    net.set_loss(0.0, 0.0)
    assert_live(net, txs, retry_every=400)
    finish(net)


def scenario_pause_two(seed: int) -> None:
    """2 of 4 paused (no quorum), then resumed: one view, no view-change loop."""
    net = Network(4, seed)
    first = make_txs("p1", 9)
    load(net, first)
    a, b = net.rng.sample(range(4), 2)
    net.pause(a)
    net.pause(b)
    stuck = make_txs("p2", 12)
    load(net, stuck)
    net.run(net.rng.randint(200, 1500))
    net.heal()
    assert_live(net, first + stuck, within=6000)
    views = {n.replica.view for n in net.honest_running()}
    view_changes = net.total_metric("view_changes")
    more = make_txs("p3", 24)
    load(net, more)
    assert_live(net, more, within=2000)
    assert {n.replica.view for n in net.honest_running()} == views, "views moved again after convergence"
    assert len(views) == 1
    assert net.total_metric("view_changes") == view_changes, "view changes went on after the heal"
    finish(net)


def scenario_equivocating_primary(seed: int) -> None:
    """The primary sends one block to some backups and another to the rest (and both to one): no
    two honest nodes decide differently, and the equivocation is reported as evidence."""
    net = Network(4, seed, drop=0.02)
    net.make_byzantine(0, "equivocating primary").outgoing = equivocator(net)
    txs = make_txs("eq", 30)
    load(net, txs)
    assert_live(net, txs)
    # It equivocated, and an honest replica that met both pre-prepares reported the evidence.
    assert net.nodes[0].equivocated > 0, "the primary never equivocated"
    assert net.total_metric("equivocations") > 0
    found = {(e.validator, e.kind) for n in net.honest_running() for e in n.evidence}
    assert found == {(net.nodes[0].id, "preprepare")}
    finish(net)


def scenario_twins(seed: int) -> None:
    """Two nodes run with one validator key (each with its own clients)."""
    twin_of = seed % 4
    net = Network(4, seed, twins=(twin_of,), drop=0.02)
    twin_index = len(net.nodes) - 1
    txs = make_txs("tw", 30)
    for i in range(0, len(txs), 3):
        net.submit(txs[i:i + 3])
        net.submit([f"twin-a-{i}".encode()], twin_of)
        net.submit([f"twin-b-{i}".encode()], twin_index)
        net.run(6)
    assert_live(net, txs)
    finish(net)


def scenario_withhold(seed: int) -> None:
    """A validator withholds its messages from chosen peers (the primary at first)."""
    net = Network(4, seed)
    bad = 0 if seed % 2 == 0 else net.rng.randrange(4)
    net.make_byzantine(bad, "withholds its messages")
    victims = net.rng.sample([i for i in range(4) if i != bad], net.rng.randint(1, 2))
    for v in victims:
        net.block(bad, v)
    txs = make_txs("wh", 30)
    load(net, txs)
    assert_live(net, txs)
    finish(net)


def scenario_slow_primary(seed: int) -> None:
    """The primary's messages take 10 to 60 steps more than others': transactions still commit."""
    net = Network(4, seed)
    net.slow_down(0, net.rng.randint(10, 60))
    txs = make_txs("slow", 30)
    load(net, txs)
    assert_live(net, txs)
    finish(net)


def scenario_lagging_catch_up(seed: int) -> None:
    """A node cut off while the others move past the watermark window catches up by FetchBlocks,
    without a view change by the others, and then takes part (it is needed for a quorum)."""
    net = Network(4, seed)
    lag = 1 + seed % 3
    others = [i for i in range(4) if i != lag]
    net.partition(others, [lag])
    txs = make_txs("lag", 100)  # 25 blocks > window of 20
    load(net, txs, index=others[seed % 3], every=5)
    assert_live(net, txs, within=3000, nodes=others)
    views = {net.nodes[i].replica.view for i in others}
    view_changes = sum(net.nodes[i].replica.metrics["view_changes"] for i in others)
    net.heal()
    more = make_txs("lag2", 24)
    load(net, more, index=others[0])
    assert_live(net, txs + more)
    assert net.nodes[lag].caught_up > 0, "the lagging node never applied a block from a catch-up round"
    assert {net.nodes[i].replica.view for i in others} == views
    assert sum(net.nodes[i].replica.metrics["view_changes"] for i in others) == view_changes
    # Now the caught-up node is needed: crash another one.
    net.crash(others[-1] if net.nodes[others[-1]].replica.primary != net.nodes[others[-1]].id else others[-2])
    last = make_txs("lag3", 12)
    load(net, last, index=lag)
    assert_live(net, last)
    finish(net)


def scenario_forged_and_replayed(seed: int) -> None:
    """Garbage, forged, misattributed, non-validator and replayed messages change nothing."""
    net = Network(4, seed, drop=0.03)
    net.record_log = True
    net.injected = True
    outsider = SigningKey.from_seed(f"outsider-{seed}".encode())
    txs = make_txs("fr", 30)
    for i in range(0, len(txs), 3):
        net.submit(txs[i:i + 3])
        net.run(6)
        target = net.rng.choice(net.nodes)
        vid = net.rng.choice(net.config.validators)
        junk = net.rng.randbytes(net.rng.randint(0, 80))
        forged = Envelope("prepare", vid, encode(Prepare(0, 1 + i // 3, b"\x01" * 32)), b"\x02" * 64, b"")
        outsider_msg = sign_message(outsider, net.chain_id, Prepare(0, 1 + i // 3, b"\x03" * 32))
        for sender, raw in [(vid, junk), (vid, encode_envelope(forged)), (outsider.id, encode_envelope(outsider_msg))]:
            net.perform(target, target.replica.step(sender, raw))
        if net.log:
            for _ in range(5):
                sender, raw = net.rng.choice(net.log)
                dst = net.rng.choice(net.nodes)
                net.perform(dst, dst.replica.step(sender, raw))
                # The same bytes from the wrong sender.
                wrong = net.rng.choice([v for v in net.config.validators if v != sender])
                net.perform(dst, dst.replica.step(wrong, raw))
    net.set_loss(0.0)
    assert_live(net, txs)
    assert net.total_metric("dropped_bad_signature") > 0
    assert net.total_metric("dropped_non_validator") > 0
    assert net.total_metric("dropped_sender_mismatch") > 0
    assert net.total_metric("dropped_malformed") > 0
    finish(net)


def scenario_seven_nodes(seed: int) -> None:
    """n = 7, f = 2: two validators crash (one of them the first primary) under message loss."""
    net = Network(7, seed, drop=0.05, duplicate=0.05)
    first = make_txs("s1", 9)
    load(net, first)
    for victim in net.rng.sample(range(7), 2) if seed % 2 else [0, net.rng.randrange(1, 7)]:
        net.crash(victim)
    txs = make_txs("s2", 24)
    load(net, txs)
    net.set_loss(0.0, 0.0)
    assert_live(net, first + txs, retry_every=400)
    finish(net)


def scenario_draining_backlog(seed: int) -> None:
    """A backlog far longer than the request timeout, sent to a backup at once, drains without a
    view change: the request timer measures a lack of progress, not the age of a queue."""
    net = Network(4, seed, drop=0.02)
    backup = 1 + seed % 3
    txs = make_txs("backlog", 240)  # 60 blocks of 4: about ten request timeouts' worth of ordering
    net.submit(txs, backup)
    assert_live(net, txs, within=6000)
    assert net.total_metric("view_changes") == 0
    assert {n.replica.view for n in net.nodes} == {0}
    finish(net)


def scenario_censoring_primary(seed: int) -> None:
    """The primary orders everyone's transactions but some: blocks with room pass those over, the
    backups forward them again, then change the view; the next primary orders them."""
    net = Network(4, seed, drop=0.02)
    net.make_byzantine(0, "censoring primary").refuses = lambda tx: tx.startswith(b"censored")
    censored = make_txs("censored", 6)
    flowing = make_txs("flowing", 60)
    net.submit(censored[:3], 1)
    net.submit(censored[3:], 2)
    load(net, flowing, every=8, chunk=2, index=3)
    assert_live(net, censored + flowing)
    assert all(n.replica.view > 0 for n in net.honest_running())
    finish(net)


def scenario_unorderable_tx_is_given_up(seed: int) -> None:
    """A transaction every primary refuses causes at most max_tx_strikes view changes, then the
    backup that queued it drops it and tells its driver (the mempool refuses it: not pending)."""
    net = Network(4, seed)
    entry = 1 + seed % 3
    for node in net.nodes:
        if node.index != entry:
            node.refuses = lambda tx: tx == b"poison"
    net.submit([b"poison"], entry)
    good = make_txs("good", 12)
    load(net, good, index=0)
    assert net.run_until(lambda: b"poison" in net.nodes[entry].given_up, 4000)
    assert net.total_metric("view_changes") == 0  # one replica's suspicion moves nobody
    assert_live(net, good)
    finish(net)


def scenario_lone_suspicion(seed: int) -> None:
    """One honest backup suspects the primary (its forwards are lost) and a Byzantine validator joins
    its suspicion, to it alone: f+1 suspicions move that backup, and the suspicions it carries move
    every honest replica with it, so none is left alone outside the view the others are in."""
    net = Network(4, seed, drop=0.02)
    bad = 3
    net.make_byzantine(bad, "whispers suspicions")
    target = net.nodes[1 + seed % 2]

    net.nodes[bad].outgoing = whisperer(net, target)
    net.block(target.index, 0)  # what the target forwards never reaches the primary
    stuck = make_txs("lone", 12)
    load(net, stuck, index=target.index)
    assert net.run_until(lambda: target.replica.view > 0, 3000)
    net.unblock()
    more = make_txs("after", 12)
    load(net, more)
    assert_live(net, stuck + more)
    assert len({n.replica.view for n in net.honest_running()}) == 1
    finish(net)


def scenario_one_way_links(seed: int) -> None:
    """Links fail in one direction only (a sends to b, b's messages to a are lost), a different
    link every few hundred steps, one at a time."""
    net = Network(4, seed, drop=0.02)
    txs = make_txs("oneway", 40)
    for i in range(0, len(txs), 8):
        a, b = net.rng.sample(range(4), 2)
        net.unblock()
        net.block(a, b)
        load(net, txs[i:i + 8], every=8, chunk=2)
        net.run(net.rng.randint(50, 300))
    net.unblock()
    assert_live(net, txs)
    finish(net)


def scenario_pause_during_view_change(seed: int) -> None:
    """The primary crashes; while the others change view, one of them is paused at a random step of
    the change and resumed later: the view change completes, the paused one rejoins, all commit."""
    net = Network(4, seed, drop=0.02)
    first = make_txs("pv1", 12)
    load(net, first)
    net.crash(0)
    txs = make_txs("pv2", 12)
    load(net, txs, index=1 + seed % 3)
    victim = net.nodes[1 + (seed + 1) % 3]
    net.run(net.rng.randint(0, 300))  # somewhere in the suspicion, view change or new view
    net.pause(victim.index)
    net.run(net.rng.randint(50, 400))
    net.resume(victim.index)
    assert_live(net, first + txs, retry_every=400)
    assert len({n.replica.view for n in net.honest_running()}) == 1
    finish(net)


def scenario_restart_into_higher_view(seed: int) -> None:
    """A replica crashes as soon as it has moved to a new view (sent its view change, perhaps installed
    the view as its primary) and restarts after the others moved on: it finds the view the others
    are in and takes part again."""
    net = Network(4, seed, drop=0.02)
    first = make_txs("rh1", 12)
    load(net, first)
    net.crash(0)
    mover = net.nodes[1 + seed % 3]
    net.submit(make_txs("rh-waiting", 4), mover.index)  # work the crashed primary does not order
    assert net.run_until(lambda: mover.replica.view > 0, 3000)
    net.crash(mover.index)  # its view change is persisted; what came after is lost
    net.restart(0)
    net.run(net.rng.randint(100, 600))
    net.restart(mover.index)
    txs = make_txs("rh2", 16)
    load(net, txs, index=mover.index)
    assert_live(net, first + txs, retry_every=400)
    assert len({n.replica.view for n in net.honest_running()}) == 1
    finish(net)


# One-way delays (steps) of a network that slows down as a ledger's state grows: each no more than twice
# the one before, so the pace the replicas measured still covers the next. At the last, the primary
# waits about 25 ticks for a delivery: three times the progress timeout of default_config (8 ticks) and
# about its request timeout (24), within the cap of four times each.
SLOWING_DELAYS = (4, 8, 14, 22, 30)
SLOW_START_DELAY = 120  # steps a message takes: a block comes several request timeouts after its transaction


def _slow_down_gradually(net: Network, prefix: str) -> list[bytes]:
    """A steady stream of transactions to the backups while every link's delay grows step by step."""
    sent: list[bytes] = []
    for delay in SLOWING_DELAYS:
        net.min_delay, net.max_delay = delay, delay + 2
        txs = make_txs(f"{prefix}-{delay}", 24)
        for i in range(0, len(txs), 2):
            net.submit(txs[i:i + 2], 1 + (i // 2) % 3)
            net.run(delay * 2)
        sent += txs
        assert_live(net, sent, within=40 * delay * 6)
    return sent


def scenario_slowing_network(seed: int) -> None:
    """Deliveries slow down, gradually, to several times the configured timeouts (as blocks take longer
    to execute and write while a state grows on a busy machine): the replicas allow for the pace they
    measure, so an honest primary that keeps delivering is never suspected."""
    net = Network(4, seed)
    _slow_down_gradually(net, "slowing")
    assert net.total_metric("view_changes") == 0, describe_nodes(net)
    assert all(n.replica.view == 0 for n in net.nodes)
    finish(net)


def scenario_silent_primary_on_a_slow_network(seed: int) -> None:
    """On a network slowed down as above, the primary goes silent (crashes) with transactions waiting:
    the allowance for the pace is capped, so the backups still suspect it and change the view."""
    net = Network(4, seed)
    before = _slow_down_gradually(net, "before")
    net.crash(0)
    after = make_txs("after", 6)
    load(net, after, every=20, chunk=2, index=1)
    assert_live(net, before + after, within=20_000, retry_every=2000)
    assert all(n.replica.view > 0 for n in net.honest_running())
    finish(net)


def scenario_slow_from_the_start(seed: int) -> None:
    """Deliveries take longer than the request timeout from the first transaction on, with no pace
    measured yet (a network restarted on a large state, whose first blocks execute on cold caches): the
    backups suspect the primary, but each view change doubles the request timer too, as in Castro-Liskov,
    so a few view changes give a primary time to deliver and no transaction is given up. (With the
    request timer not doubling, its suspicions changed views for ever and nothing committed.)"""
    net = Network(4, seed, min_delay=SLOW_START_DELAY, max_delay=SLOW_START_DELAY + 2)
    txs = make_txs("slow-start", 24)
    load(net, txs, every=SLOW_START_DELAY, chunk=2, index=1)
    assert_live(net, txs, within=20_000)
    assert net.total_metric("txs_dropped_unordered") == 0, describe_nodes(net)
    assert max(n.replica.metrics["view_changes"] for n in net.nodes) <= 10, describe_nodes(net)
    finish(net)


SCENARIOS = {
    "seven_nodes": scenario_seven_nodes,
    "lossy": scenario_lossy,
    "crashed_primary": scenario_crashed_primary,
    "crash_restart": scenario_crash_restart,
    "pause_two": scenario_pause_two,
    "equivocating_primary": scenario_equivocating_primary,
    "twins": scenario_twins,
    "withhold": scenario_withhold,
    "slow_primary": scenario_slow_primary,
    "lagging_catch_up": scenario_lagging_catch_up,
    "forged_and_replayed": scenario_forged_and_replayed,
    "draining_backlog": scenario_draining_backlog,
    "censoring_primary": scenario_censoring_primary,
    "unorderable_tx_is_given_up": scenario_unorderable_tx_is_given_up,
    "lone_suspicion": scenario_lone_suspicion,
    "one_way_links": scenario_one_way_links,
    "pause_during_view_change": scenario_pause_during_view_change,
    "restart_into_higher_view": scenario_restart_into_higher_view,
    "slowing_network": scenario_slowing_network,
    "silent_primary_on_a_slow_network": scenario_silent_primary_on_a_slow_network,
    "slow_from_the_start": scenario_slow_from_the_start,
}
