"""The validator sets by height, as the committed chain decides them: which set orders and certifies a height.

Theory of operation: the replica starts with the set of the height after its head and the driver
hands it every later set as it applies the block that decided it (`Replica.schedule_validators`).
A change committed at height h governs heights from `h + delay` on, so once the application holds
block d the replica knows the set of every height up to `d + delay` (`knows`; the application's
height, not the delivered one: within one call the replica may deliver blocks the driver applies,
and learns their sets from, only after the call). The replica drops messages about heights beyond
that, which retransmission and catch-up bring back later.

Messages about height x count against the set of x (`at`). The primary and the view-change
quorums follow `current`, the set of the height this replica delivers next. The pipeline never
spans an activation height (`crosses`): a primary proposes height a only after it delivered a-1, so
every block in flight in a view belongs to one set, and a replica that delivers a-1 switches its
current set between two blocks, never inside an ordering round.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

from ledger.consensus.head import Head
from ledger.consensus.quorum import Quorums

# A validator set the chain decided: the first height it certifies, its ids in rotation order, their keys.
DecidedSet = tuple[int, tuple[str, ...], dict[str, bytes]]


class UnknownSet(LookupError):
    """The set of a height this replica cannot know yet (it lies beyond its head plus the delay)."""


class Membership:
    def __init__(self, validators: Sequence[str], head: Head, delay: int, active_from: int = 1) -> None:
        self._head = head
        self._delay = delay
        self._starts: list[int] = [active_from]
        self._sets: list[Quorums] = [Quorums.of(validators)]

    @property
    def delay(self) -> int:
        return self._delay

    def schedule(self, active_from: int, validators: Sequence[str]) -> bool:
        """The set certifying heights from `active_from` on; False when it was known already."""
        i = bisect_right(self._starts, active_from) - 1
        quorums = Quorums.of(validators)
        if i >= 0 and self._starts[i] == active_from:
            if self._sets[i] == quorums:
                return False
            self._sets[i] = quorums
            return True
        self._starts.insert(i + 1, active_from)
        self._sets.insert(i + 1, quorums)
        return True

    def knows(self, height: int) -> bool:
        return height <= self._head.applied + self._delay

    def at(self, height: int) -> Quorums:
        """The set that orders and certifies `height`; raises UnknownSet beyond what can be known."""
        if not self.knows(height):
            raise UnknownSet(f"the validators of height {height} are not known at height {self._head.applied}")
        return self._sets[max(bisect_right(self._starts, height) - 1, 0)]

    @property
    def current(self) -> Quorums:
        """The set of the height this replica delivers next: the primary's and the view change's."""
        return self.at(self._head.height + 1)

    def crosses(self, low: int, high: int) -> bool:
        """A set takes effect at some height in (low, high]."""
        return any(low < s <= high for s in self._starts[1:])

    def is_member(self, validator: str, height: int) -> bool:
        return self.knows(height) and validator in self.at(height).validators

    def everyone(self) -> set[str]:
        """Every validator of a set this replica knows of (whose messages it may need to check)."""
        return {v for q in self._sets for v in q.validators}
