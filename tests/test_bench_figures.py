"""The benchmark's figures computed from what its clients saw (ledger/benchmark.py)."""

from __future__ import annotations

from ledger.benchmark import rates_by_share


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
