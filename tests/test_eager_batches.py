"""The primary cuts a partial batch at once while few of its blocks are in flight (`eager_inflight`),
and after `batch_ticks` once the pipeline is busy; the fault scenarios stay safe and live so."""

from __future__ import annotations

import pytest

from ledger.consensus.actions import Action, Broadcast
from ledger.consensus.messages import KIND_PREPREPARE, decode_body, decode_envelope
from ledger.consensus.settings import ReplicaConfig, check_config
from ledger.errors import ConfigError
from tests.sim.checks import assert_live, finish
from tests.sim.network import Network, configured
from tests.sim.scenarios import SCENARIOS

PATIENT = {"batch_size": 100, "batch_ticks": 1000}  # a partial batch never waits out its ticks here


def _proposed_heights(actions: list[Action]) -> list[int]:
    heights = []
    for a in actions:
        if isinstance(a, Broadcast) and (env := decode_envelope(a.message)).kind == KIND_PREPREPARE:
            heights.append(decode_body(env).height)
    return heights


def _submit_to_primary(net: Network, txs: list[bytes]) -> list[int]:
    """Heights the primary pre-prepared in answer to `txs`, before any tick (the actions are performed)."""
    primary = net.nodes[0]
    actions = primary.replica.submit(txs)
    net.perform(primary, actions)
    return _proposed_heights(actions)


def test_idle_primary_cuts_a_partial_batch_at_once() -> None:
    net = Network(4, 1, config={**PATIENT, "eager_inflight": 1})
    assert _submit_to_primary(net, [b"a"]) == [1]
    assert_live(net, [b"a"])
    finish(net)


def test_without_eager_inflight_a_partial_batch_waits_for_its_ticks() -> None:
    net = Network(4, 1, config={**PATIENT, "eager_inflight": 0})
    assert _submit_to_primary(net, [b"a"]) == []
    assert net.nodes[0].replica.pending == 1


def test_busy_pipeline_holds_a_partial_batch_until_a_block_is_delivered() -> None:
    net = Network(4, 1, config={**PATIENT, "eager_inflight": 2})
    assert _submit_to_primary(net, [b"a"]) == [1]
    assert _submit_to_primary(net, [b"b"]) == [2]  # one block in flight: still eager
    assert _submit_to_primary(net, [b"c"]) == []  # two in flight: it waits and gathers
    assert _submit_to_primary(net, [b"d"]) == []
    # Once block 1 is delivered, the waiting transactions go out together, in one block.
    assert_live(net, [b"a", b"b", b"c", b"d"])
    blocks = [b for b in net.nodes[0].app.blocks if {b"c", b"d"} & set(b.txs)]  # type: ignore[attr-defined]
    assert len(blocks) == 1 and set(blocks[0].txs) == {b"c", b"d"}
    finish(net)


def test_eager_inflight_beyond_the_pipeline_is_refused() -> None:
    check_config(ReplicaConfig("c", ("a",), max_inflight=4, eager_inflight=4))
    for bad in (5, -1):
        with pytest.raises(ConfigError, match="eager_inflight"):
            check_config(ReplicaConfig("c", ("a",), max_inflight=4, eager_inflight=bad))


@pytest.mark.parametrize("name", sorted(SCENARIOS))
@pytest.mark.parametrize("seed", range(2))
def test_scenarios_with_eager_batches(name: str, seed: int) -> None:
    """Every fault scenario (crashes, loss, equivocation, censorship, partitions) with eager cuts while
    fewer than two blocks are in flight (`batch_eager_inflight: 2`)."""
    with configured(eager_inflight=2):
        SCENARIOS[name](seed)
