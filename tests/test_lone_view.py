"""No validator left alone in another view (issue 18 item 2), on the simulated network with real replicas.

- A primary that keeps its new-view message from one replica does not leave that replica waiting for
  the next view change: every replica that installed the view passes the message on (it proves itself).
- A replica alone in a higher view, which cannot go back (its view change may be in a later new view),
  still keeps the others' height: f+1 validators' certificate votes above its head tell it a block it
  lacks was decided, and it fetches it, though no checkpoint passes and a faulty validator keeps its
  vote from it (so no certificate forms there).
"""

from __future__ import annotations

from ledger.codec import encode
from ledger.consensus.log import KEY_VIEW, ViewRecord
from ledger.store import NS
from tests.sim.checks import assert_live, load, make_txs
from tests.sim.network import Network


def _states(net: Network) -> str:
    return ", ".join(f"node {n.index} h{n.height} v{n.replica.view}{'' if n.replica.views.active else '*'}"
                     for n in net.nodes)


def test_a_new_view_the_primary_withholds_reaches_its_replica_through_the_others() -> None:
    net = Network(4, 11)
    sent = make_txs("before", 6)
    load(net, sent)
    assert_live(net, sent)
    # Node 1, the primary of view 1, is faulty: it will never send anything to node 3. Node 0, view 0's
    # primary, is cut off until the others have moved to view 1.
    net.partition([0], [1, 2, 3])
    net.blocked.add((1, 3))
    stuck = make_txs("stuck", 3)
    net.submit(stuck, 2)
    in_view_1 = [net.nodes[1].replica, net.nodes[2].replica]
    assert net.run_until(lambda: all(r.view == 1 and r.views.active for r in in_view_1), 3000), _states(net)
    net.blocked = {(1, 3)}  # node 0 is back
    more = make_txs("after", 6)
    load(net, more, index=0)
    assert_live(net, sent + stuck + more, nodes=[0, 1, 2])
    net.run(600)  # several new-view timeouts: node 3 would have given up on view 1 by now
    third = net.nodes[3].replica
    assert (third.view, third.views.active) == (1, True), f"node 3 not in view 1 with the others: {_states(net)}"
    assert {n.replica.view for n in net.nodes} == {1}, _states(net)


def test_a_replica_alone_in_a_higher_view_keeps_the_others_height() -> None:
    net = Network(4, 12)
    sent = make_txs("before", 3)
    load(net, sent)
    assert_live(net, sent)
    lone = net.nodes[3]
    # It crashed right after it persisted a move to view 1 that nobody else made: it restarts alone there.
    net.crash(3)
    lone.app.store.write_batch([(NS.CONSENSUS + KEY_VIEW, encode(ViewRecord(1, True)))], [], sync=True)
    net.restart(3)
    assert (lone.replica.view, lone.replica.views.active) == (1, False)
    net.block(2, 3)  # node 2 is faulty and tells it nothing: only f+1 others vote to it, no certificate forms
    more = make_txs("after", 6)  # fewer blocks than a checkpoint interval: no checkpoint tells it
    load(net, more, index=1)
    assert net.run_until(lambda: net.all_committed(more, net.nodes[:3]), 2000), _states(net)
    top = max(n.height for n in net.nodes[:3])
    assert net.run_until(lambda: lone.height >= top, 1500), f"the lone replica fell behind: {_states(net)}"
    assert {n.replica.view for n in net.nodes[:3]} == {0}, f"the others changed view for it: {_states(net)}"
    assert lone.replica.metrics["fetch_requests"] >= 1
