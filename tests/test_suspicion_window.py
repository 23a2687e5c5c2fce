"""Suspicions expire (ledger/consensus/viewchange.py, `suspicion_window`): f+1 suspicions of a view move
the replicas out of it only when they are heard within the window of each other. Two backups that were
each briefly unhappy far apart (a busy node during a long import, a slow disk) must not add up to a
view change, as they did when suspicions never expired; a second suspicion within the window still
does (the primary is suspected by f+1 at once)."""

from __future__ import annotations

from ledger.consensus.actions import Broadcast
from ledger.consensus.messages import Suspect, encode_envelope, sign_message
from tests.sim.checks import assert_live, load, make_txs
from tests.sim.network import Network, SimNode


def _suspects(net: Network, node: SimNode) -> None:
    """`node` says, as its progress timer would, that it suspects the primary of its view."""
    env = sign_message(node.key, net.chain_id, Suspect(node.replica.view))
    net.perform(node, [Broadcast(encode_envelope(env))])


def _window_steps(net: Network) -> int:
    return net.nodes[0].replica.viewchanger.suspicion_window() * net.tick_every


def _views(net: Network) -> set[int]:
    return {n.replica.view for n in net.nodes}


def test_two_suspicions_far_apart_do_not_change_the_view() -> None:
    net = Network(4, 3)
    sent = make_txs("early", 8)
    load(net, sent)
    _suspects(net, net.nodes[1])
    for round_ in range(3):  # more than the window passes, with blocks delivered in view 0
        batch = make_txs(f"busy-{round_}", 8)
        load(net, batch)
        sent += batch
        net.run(_window_steps(net))
    _suspects(net, net.nodes[2])
    net.run(_window_steps(net) // 2)
    assert _views(net) == {0}, f"views {_views(net)}: a suspicion older than the window still counted"
    assert net.total_metric("view_changes") == 0
    assert_live(net, sent)


def test_two_suspicions_within_the_window_change_the_view() -> None:
    net = Network(4, 3)
    sent = make_txs("early", 8)
    load(net, sent)
    _suspects(net, net.nodes[1])
    net.run(_window_steps(net) // 4)
    _suspects(net, net.nodes[2])
    assert net.run_until(lambda: _views(net) == {1}, 4 * _window_steps(net)), f"views {_views(net)}"
    more = make_txs("after", 8)
    load(net, more)
    assert_live(net, sent + more)
