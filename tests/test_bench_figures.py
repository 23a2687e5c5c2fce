"""The benchmark's figures computed from what its clients saw (ledger/benchmark.py)."""

from __future__ import annotations

from ledger.benchmark import block_figures, rates_by_share


def test_rates_by_share_follow_the_order_requests_were_answered() -> None:
    # 300 transactions in thirds: the last third took twice as long, so its rate is half.
    ends = [(4.0, 100), (1.0, 100), (2.0, 100)]
    assert rates_by_share(ends, origin=0.0, parts=3) == [100.0, 100.0, 50.0]


def test_rates_by_share_count_every_transaction_of_a_part() -> None:
    ends = [(1.0, 50), (2.0, 50), (3.0, 50), (4.0, 50)]
    assert rates_by_share(ends, origin=0.0, parts=2) == [50.0, 50.0]
    # The second part ran from 0.5 s to 2 s.
    assert rates_by_share([(0.5, 10), (1.0, 0), (2.0, 10)], origin=0.0, parts=2) == [20.0, 6.7]


def test_no_transactions_no_rates() -> None:
    assert rates_by_share([], origin=0.0) == []
    assert rates_by_share([(1.0, 0)], origin=0.0) == []


def test_block_figures_read_blocks_block_sizes_and_the_consensus_events_that_happened() -> None:
    metrics = "\n".join([
        "# HELP ledger_blocks_committed_total Blocks committed",
        "ledger_blocks_committed_total 4.0",
        "ledger_tx_committed_total 350.0",
        "ledger_tx_failed_total 50.0",
        "ledger_block_commit_seconds_sum 0.2",
        "ledger_block_commit_seconds_count 4.0",
        'ledger_consensus_total{event="blocks_delivered"} 4.0',
        'ledger_consensus_total{event="view_changes"} 0.0',
        'ledger_consensus_total{event="suspected_stalled"} 2.0',
    ])
    assert block_figures(metrics) == {"blocks": 4, "txs_per_block": 100.0, "block_commit_ms_mean": 50.0,
                                      "consensus_events": {"blocks_delivered": 4, "suspected_stalled": 2}}
    assert block_figures("") == {"blocks": 0, "txs_per_block": None, "block_commit_ms_mean": None,
                                 "consensus_events": {}}
