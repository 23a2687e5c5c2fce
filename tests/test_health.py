"""Readiness judged from validators' claimed heights: at most f liars can neither hide nor fake a head."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ledger.health import MAX_LAG, honest_head, judge


@st.composite
def claims_with_liars(draw: st.DrawFn) -> tuple[int, list[int], list[int]]:
    """n validators, of which at most f lie about their height (any value); all of them answered."""
    n = draw(st.integers(1, 13))
    f = (n - 1) // 3
    liars = draw(st.integers(0, f))
    honest = draw(st.lists(st.integers(0, 10_000), min_size=n - liars, max_size=n - liars))
    lies = draw(st.lists(st.integers(0, 2**62), min_size=liars, max_size=liars))
    return n, honest, lies


@given(claims_with_liars())
def test_the_head_is_one_an_honest_validator_holds(case: tuple[int, list[int], list[int]]) -> None:
    n, honest, lies = case
    head = honest_head(honest + lies, n)
    assert head is not None
    assert min(honest) <= head <= max(honest)


def test_one_liar_claiming_a_huge_height_does_not_make_a_node_unready() -> None:
    assert judge(100, [100, 100, 100, 2**60], 4).ready
    assert not judge(100, [100, 2**60, 2**60], 4).ready  # two claims of four: beyond f = 1 liar


def test_a_node_behind_the_honest_head_by_more_than_the_lag_is_not_ready() -> None:
    at_lag = judge(100 - MAX_LAG, [100, 100, 0], 4)
    assert at_lag.ready and at_lag.head == 100
    behind = judge(99 - MAX_LAG, [100, 100, 0], 4)
    assert not behind.ready
    assert behind.reason == f"catching up: {MAX_LAG + 1} blocks behind"


def test_without_f_plus_one_claims_the_head_is_unknown_and_the_node_not_ready() -> None:
    alone = judge(5, [5], 4)
    assert not alone.ready and alone.head is None
    assert alone.reason == "heard from 1 of the 2 validators needed to know the head"
    assert judge(5, [5], 1).ready  # a single validator is the head
