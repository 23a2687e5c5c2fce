"""The open loop of `ledger bench --rate R` (ledger/openloop.py): its schedule, and senders that never wait."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.openloop import (
    Send,
    lag_figures,
    open_loop_schedule,
    schedule_seconds,
    send_on_schedule,
    steady_rate,
)


class FakeClock:
    """Time that passes only when the dispatcher sleeps (plus `oversleep` each time: a slow sender)."""

    def __init__(self, oversleep: float = 0.0) -> None:
        self.now = 100.0
        self.oversleep = oversleep

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds + self.oversleep


def test_the_schedule_spaces_every_clients_requests_evenly_at_the_offered_rate() -> None:
    # 4 clients, 3 requests of 100 each, 1,000 tx/s in all: a request every 0.1 s, each client every 0.4 s.
    sends = open_loop_schedule([[100, 100, 100]] * 4, 1000.0)
    assert [round(s.at, 9) for s in sends] == [round(0.1 * k, 9) for k in range(12)]
    assert [(s.client, s.number) for s in sends[:5]] == [(0, 0), (1, 0), (2, 0), (3, 0), (0, 1)]
    assert schedule_seconds([[100, 100, 100]] * 4, 1000.0) == pytest.approx(1.2)


def test_a_smaller_request_brings_the_next_one_forward_by_its_share() -> None:
    sends = open_loop_schedule([[100, 50, 100]], 100.0)
    assert [s.at for s in sends] == [0.0, 1.0, 1.5]
    assert schedule_seconds([[100, 50, 100]], 100.0) == 2.5


@given(st.lists(st.lists(st.integers(1, 500), min_size=1, max_size=20), min_size=1, max_size=8),
       st.floats(10.0, 10_000.0))
def test_the_schedule_offers_exactly_the_rate_without_drift(sizes: list[list[int]], rate: float) -> None:
    sends = open_loop_schedule(sizes, rate)
    assert len(sends) == sum(len(b) for b in sizes)
    assert [s.at for s in sends] == sorted(s.at for s in sends)
    per_client = rate / len(sizes)
    for i, batches in enumerate(sizes):
        mine = [s for s in sends if s.client == i]
        # Each request at the time its client's earlier transactions take at the client's rate: the k-th
        # request's time does not depend on when the ones before were answered, nor accumulate rounding.
        offset = mine[0].at
        assert offset == pytest.approx(i * batches[0] / rate)
        for k, send in enumerate(mine):
            assert send.number == k and send.size == batches[k]
            assert send.at - offset == pytest.approx(sum(batches[:k]) / per_client, rel=1e-9, abs=1e-9)


def test_a_rate_of_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="above 0"):
        open_loop_schedule([[10]], 0.0)


def test_the_senders_never_wait_for_a_request_to_be_answered() -> None:
    sends = open_loop_schedule([[10] * 5] * 3, 100.0)  # a request every 0.1 s
    fake = FakeClock()
    all_sent = threading.Event()
    started: list[tuple[Send, float]] = []
    finished_early: list[Send] = []
    lock = threading.Lock()

    def send(request: Send, at: float) -> None:
        with lock:
            started.append((request, at))
            if len(started) == len(sends):
                all_sent.set()
        # The "commit" comes only once every request went out: a loop that waited for answers would
        # leave this wait on its timeout and record the request as answered before the others were sent.
        if not all_sent.wait(timeout=2):
            finished_early.append(request)

    lags = send_on_schedule(sends, send, clock=fake.clock, sleep=fake.sleep)
    assert not finished_early
    assert sorted((r.at, at) for r, at in started) == [(s.at, 100.0 + s.at) for s in sends]
    assert lags == [0.0] * len(sends)


def test_a_sender_that_falls_behind_shows_its_lag_and_the_schedule_does_not_drift() -> None:
    sends = open_loop_schedule([[10] * 10], 100.0)  # every 0.1 s
    fake = FakeClock(oversleep=0.07)  # each wake-up 70 ms late
    times: list[float] = []
    lags = send_on_schedule(sends, lambda request, at: times.append(at), clock=fake.clock, sleep=fake.sleep)
    # Each request 70 ms late, never more: the schedule is kept from the start, not from the last send.
    assert lags == pytest.approx([0.0] + [0.07] * 9)
    assert times[-1] == pytest.approx(100.0 + 0.9 + 0.07)
    figures = lag_figures(lags, interval=0.1)
    assert figures["max_ms"] == 70.0 and figures["p50_ms"] == 70.0 and figures["late"] == 9


def test_lag_figures_of_no_requests_are_zero() -> None:
    assert lag_figures([], interval=0.1) == {"p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0, "late": 0}


def test_the_steady_rate_counts_what_was_answered_while_load_was_offered() -> None:
    # First answer at 1 s; until the schedule's end at 5 s, 400 more transactions: 100 tx/s. The drain
    # after the end (at 6 s) is left out, and so are answers that committed nothing.
    answered = [(11.0, 100), (12.0, 200), (13.0, 0), (15.0, 200), (16.0, 500)]
    assert steady_rate(answered, origin=10.0, schedule_end=5.0) == 100.0
    assert steady_rate([(16.0, 100)], origin=10.0, schedule_end=5.0) is None
    assert steady_rate([], origin=10.0, schedule_end=5.0) is None


@pytest.mark.parametrize(("argv", "message"), [
    (["--rate", "0"], "--rate must be above 0 tx/s"),
    (["--rate", "-5"], "--rate must be above 0 tx/s"),
    (["--rate", "100", "--workload", "market"], "the market workload runs only as a closed loop"),
])
def test_bench_refuses_a_rate_it_cannot_offer_before_starting_anything(argv: list[str], message: str) -> None:
    from ledger.cli import main

    with pytest.raises(SystemExit, match=message):
        main(["bench", "--nodes", "4", *argv])


def test_bench_refuses_fewer_open_tables_than_a_node_accepts() -> None:
    from ledger.cli import main

    with pytest.raises(SystemExit, match="--open-tables must be 20 or more"):
        main(["bench", "--open-tables", "5"])


def test_bench_refuses_a_table_size_a_node_does_not_accept() -> None:
    from ledger.cli import main

    with pytest.raises(SystemExit, match="--table-mb must be 1 to 256"):
        main(["bench", "--table-mb", "0"])


@pytest.mark.parametrize("workload", ["register", "mixed"])
def test_each_open_loop_request_is_one_senders_whole_batch_from_its_first_nonce(workload: str) -> None:
    import msgpack

    from ledger.benchmark import presign_one_request_each
    from ledger.crypto import SigningKey
    from ledger.tx import decode_payload, decode_tx

    keys = [SigningKey.generate() for _ in range(6)]  # 1,000 transactions in requests of 175: 6 senders
    bodies = presign_one_request_each({"chain_id": "bench-test"}, keys, 1000, 175, 4, workload)
    assert [len(b) for b in bodies] == [2, 2, 1, 1]  # client i sends requests i and i + 4
    requests = [bodies[0][0], bodies[1][0], bodies[2][0], bodies[3][0], bodies[0][1], bodies[1][1]]
    total = 0
    for j, body in enumerate(requests):
        txs = [decode_tx(raw) for raw in msgpack.unpackb(body)]
        assert {tx.sender for tx in txs} == {keys[j].id}  # request j: sender j only
        assert [tx.nonce for tx in txs] == list(range(1, len(txs) + 1))  # needs no other request first
        if workload == "mixed":
            # Every grant and transfer is of a token minted earlier in the same request.
            minted: set[str] = set()
            for tx in txs:
                payload = decode_payload(tx)
                token = payload.token if tx.kind == "licence.grant" else payload.id
                if tx.kind == "asset.mint":
                    minted.add(token)
                else:
                    assert token in minted, tx
        total += len(txs)
    assert total == 1000
    with pytest.raises(ValueError, match="cannot carry"):
        presign_one_request_each({"chain_id": "bench-test"}, keys[:5], 1000, 175, 4, workload)
