"""The pace the timers that watch the primary allow for (ledger/consensus/views.py): what it remembers,
what it counts, and its cap; and the request timer's back-off. The simulations `slowing_network`,
`silent_primary_on_a_slow_network` and `slow_from_the_start` (tests/sim/scenarios.py) show what they are
for, and that a silent primary is still replaced."""

from __future__ import annotations

from ledger.consensus.head import Head
from ledger.consensus.membership import Membership
from ledger.consensus.views import MAX_PACE_MULTIPLE, PACE_FACTOR, PACE_WINDOW, ViewState

BASE = 20  # ticks: the progress timeout before any back-off
REQUEST = 50  # ticks: the request timeout


def make_views() -> ViewState:
    return ViewState(Membership(("a", "b", "c", "d"), Head(0), 16), BASE, 6, REQUEST)


def deliver_after(views: ViewState, start: int, waits: list[int]) -> int:
    """Deliveries that each waited `waits[i]` ticks of in-flight work; returns the time after them."""
    now = start
    for wait in waits:
        now += wait
        views.delivered(now)
    return now


def test_timeouts_are_the_configured_ones_until_deliveries_take_longer() -> None:
    views = make_views()
    deliver_after(views, 0, [2, 3, 2])
    assert views.progress_timeout() == BASE and views.request_timeout() == REQUEST


def test_the_allowance_is_a_multiple_of_the_longest_recent_wait() -> None:
    views = make_views()
    deliver_after(views, 0, [10, 30, 12])
    assert views.recent_wait == 30
    assert views.progress_timeout() == min(PACE_FACTOR * 30, MAX_PACE_MULTIPLE * BASE)
    assert views.request_timeout() == PACE_FACTOR * 30


def test_the_allowance_never_exceeds_the_cap_however_slow_the_deliveries() -> None:
    """A primary that delays its blocks on purpose gains at most MAX_PACE_MULTIPLE times a timeout."""
    views = make_views()
    deliver_after(views, 0, [10_000] * PACE_WINDOW)
    assert views.progress_timeout() == MAX_PACE_MULTIPLE * BASE
    assert views.request_timeout() == MAX_PACE_MULTIPLE * REQUEST
    assert views.is_progress_overdue(PACE_WINDOW * 10_000 + MAX_PACE_MULTIPLE * BASE)


def test_only_the_last_window_of_deliveries_counts() -> None:
    views = make_views()
    now = deliver_after(views, 0, [60])
    now = deliver_after(views, now, [2] * (PACE_WINDOW - 1))
    assert views.recent_wait == 60
    deliver_after(views, now, [2])
    assert views.recent_wait == 2 and views.progress_timeout() == BASE


def test_time_without_work_in_flight_is_not_a_wait() -> None:
    """An idle hour before a block is proposed does not make the next delivery look slow."""
    views = make_views()
    views.progressed(3600)  # the timers restart the clock every tick there is nothing in flight
    views.delivered(3605)
    assert views.recent_wait == 5


def test_back_off_after_view_changes_still_applies_above_the_pace() -> None:
    views = make_views()
    deliver_after(views, 0, [10])
    views.leave(1, 100)
    views.leave(2, 200)
    assert views.progress_timeout() == BASE << 2


def test_the_request_timer_doubles_per_consecutive_view_change_and_resets_on_delivery() -> None:
    """As in Castro-Liskov: with no pace measured yet (a network restarted on a large state), blocks
    slower than the request timeout would otherwise have every view suspected in turn, for ever."""
    views = make_views()
    views.leave(1, 100)
    views.enter(1, {}, 0, 110)
    views.leave(2, 300)
    assert views.request_timeout() == REQUEST << 2
    views.enter(2, {}, 0, 310)
    views.delivered(315)  # quickly: no pace to allow for
    assert views.request_timeout() == REQUEST


def test_the_request_timer_back_off_is_capped_like_the_others() -> None:
    views = make_views()
    for view in range(1, 20):
        views.leave(view, view * 100)
    assert views.request_timeout() == REQUEST << 6 and views.progress_timeout() == BASE << 6
