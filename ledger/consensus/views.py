"""The view a replica is in, whether it is active in it, and the timers that watch the primary.

Theory of operation: a replica is *active* in a view once it installed it (view 0 from the start),
and *changing* after it left it for a higher one until that view's new-view message arrives
(viewchange.py). An installed view may force re-proposals (`expected`: height -> block hash) above
its base (`nv_base`); blocks at or below the base are certified and must be fetched, not ordered.

Two timers, in ticks, share one timeout that doubles with each consecutive view change (capped)
and resets on delivery: the progress timer (`last_progress`: in-flight work that makes no progress
means the primary is faulty) and the new-view timer (`vc_started`: a view change that installs no
view in time moves on to the next one). The request timer of timers.py doubles with them, from its
own timeout, as in Castro-Liskov. timers.py decides when they run out.

The pace: the timers that watch the primary's progress (the progress timer, and the request timer of
timers.py) allow for how long deliveries have been taking. A node whose blocks take longer to execute
and write than the configured timeouts (a large state on a busy machine) would otherwise suspect every
primary in turn, and each view change would stop ordering for a while. The allowance is `PACE_FACTOR`
times the longest wait for a delivery among the last `PACE_WINDOW` (a wait counts only while work was
in flight), and never more than `MAX_PACE_MULTIPLE` times the configured timeout: a primary that
delays its blocks on purpose gains at most that, and one that stops delivering is still suspected.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from ledger.consensus.membership import Membership
from ledger.consensus.messages import Envelope

PACE_WINDOW = 16  # deliveries whose waits the pace remembers
PACE_FACTOR = 3  # a timer allows this many times the longest recent wait...
MAX_PACE_MULTIPLE = 4  # ...but never more than this many times its configured timeout


class ViewState:
    def __init__(self, membership: Membership, base_timeout: int, max_backoff: int, request_timeout: int) -> None:
        self._membership = membership
        self._base_timeout = base_timeout
        self._request_timeout = request_timeout
        self._max_backoff = max_backoff
        self._view = 0
        self._active = True
        self._expected: dict[int, bytes] = {}
        self._nv_base = 0
        self._backoff = 0
        self._vc_started = 0
        self._last_progress = 0
        self._waits: deque[int] = deque(maxlen=PACE_WINDOW)

    @property
    def view(self) -> int:
        return self._view

    @property
    def active(self) -> bool:
        return self._active

    @property
    def primary(self) -> str:
        return self._membership.current.primary(self._view)

    @property
    def expected(self) -> Mapping[int, bytes]:
        """Re-proposals the installed new view forces: height -> block hash."""
        return self._expected

    @property
    def nv_base(self) -> int:
        """The highest base of a new view installed: certified, to be fetched rather than ordered."""
        return self._nv_base

    def _backed_off(self, configured: int) -> int:
        """`configured` ticks doubled per consecutive view change, capped."""
        return configured << min(self._backoff, self._max_backoff)

    def timeout(self) -> int:
        """The new-view timer's timeout, and the progress timer's before the pace."""
        return self._backed_off(self._base_timeout)

    @property
    def recent_wait(self) -> int:
        """The longest wait for a delivery (ticks of in-flight work) among the last PACE_WINDOW."""
        return max(self._waits, default=0)

    def paced(self, configured: int) -> int:
        """A timeout of `configured` ticks, allowing for the recent pace of deliveries (capped)."""
        return max(configured, min(PACE_FACTOR * self.recent_wait, MAX_PACE_MULTIPLE * configured))

    def progress_timeout(self) -> int:
        return max(self.timeout(), self.paced(self._base_timeout))

    def request_timeout(self) -> int:
        """The request timer's timeout (timers.py): doubled per consecutive view change like the others (a
        network slower than the configured timeout from the start has no pace measured yet), and paced."""
        return max(self._backed_off(self._request_timeout), self.paced(self._request_timeout))

    def is_progress_overdue(self, now: int) -> bool:
        return now - self._last_progress >= self.progress_timeout()

    def is_new_view_overdue(self, now: int) -> bool:
        return now - self._vc_started >= self.timeout()

    # --- transitions -----------------------------------------------------------------------------

    def leave(self, target: int, now: int) -> None:
        """Stop taking part in the current view; wait for `target`'s new view."""
        self._view, self._active = target, False
        self._vc_started = now
        self._backoff = min(self._backoff + 1, self._max_backoff)
        self._expected = {}

    def enter(self, view: int, expected: Mapping[int, bytes], base: int, now: int) -> None:
        """Install `view` as its new-view message says."""
        self._view, self._active = view, True
        self._expected = dict(expected)
        self._nv_base = max(self._nv_base, base)
        self._last_progress = self._vc_started = now

    def progressed(self, now: int) -> None:
        """Nothing holds the primary back (no work, or a block arrived): the progress timer restarts."""
        self._last_progress = now

    def delivered(self, now: int) -> None:
        """A block was decided in this view: the progress timer restarts and back-off resets."""
        self._waits.append(now - self._last_progress)
        self._last_progress = now
        self._backoff = 0

    def wait_for_quorum(self, now: int) -> None:
        """Fewer than 2f+1 want the new view yet: its timer does not run (Castro-Liskov)."""
        self._vc_started = now

    def forget_expected_upto(self, height: int) -> None:
        self._expected = {h: bh for h, bh in self._expected.items() if h > height}

    def restore(self, view: int, changing: bool) -> None:
        self._view, self._active = view, not changing


class FutureMessages:
    """Ordering messages for views this replica has not installed yet, bounded per sender."""

    def __init__(self, per_sender: int) -> None:
        self._per_sender = per_sender
        self._by_sender: dict[str, deque[tuple[int, Envelope, Any]]] = {}

    def __len__(self) -> int:
        return sum(len(b) for b in self._by_sender.values())

    def add(self, sender: str, view: int, env: Envelope, body: Any) -> None:
        buf = self._by_sender.get(sender)
        if buf is None:
            buf = self._by_sender[sender] = deque(maxlen=self._per_sender)
        buf.append((view, env, body))

    def take(self, view: int) -> list[tuple[str, Envelope, Any]]:
        """The messages of `view`; those of older views are dropped, later ones kept."""
        out: list[tuple[str, Envelope, Any]] = []
        for sender, buf in list(self._by_sender.items()):
            items = list(buf)
            buf.clear()
            for v, env, body in items:
                if v > view:
                    buf.append((v, env, body))
                elif v == view:
                    out.append((sender, env, body))
        return out
