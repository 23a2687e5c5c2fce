"""Readiness: is this node caught up with the chain, judged from what other nodes claim?

`/readyz` answers 200 only when the node is within `MAX_LAG` blocks of the head that the chain's
validators show. Their claimed heights are unchecked (a lying validator can claim any height), so
the head is taken as the (f+1)-th highest claim: at least one honest validator holds it. One liar
can then neither make a node look behind (claiming a huge height) nor hide that it is (claiming a
low one), as long as at most f lie.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MAX_LAG = 3  # blocks behind the head that still count as caught up


@dataclass(frozen=True)
class Readiness:
    ready: bool
    height: int
    head: int | None  # the head at least one honest validator holds, when f+1 claims are known
    reason: str  # "" when ready

    def to_json(self) -> dict[str, Any]:
        return {"ready": self.ready, "height": self.height, "head": self.head,
                **({"reason": self.reason} if self.reason else {})}


def honest_head(claims: Sequence[int], validators: int) -> int | None:
    """The highest height at least f+1 of `validators` claim (so one honest one holds it); None with
    fewer than f+1 claims."""
    weak = (validators - 1) // 3 + 1
    if len(claims) < weak:
        return None
    return sorted(claims, reverse=True)[weak - 1]


def judge(height: int, claims: Sequence[int], validators: int, max_lag: int = MAX_LAG) -> Readiness:
    """Readiness of a node at `height`, given the heights validators claim (this node's own, if it is
    one of them, among them)."""
    head = honest_head(claims, validators)
    if head is None:
        return Readiness(False, height, None, f"heard from {len(claims)} of the {(validators - 1) // 3 + 1} "
                                              "validators needed to know the head")
    if height + max_lag < head:
        return Readiness(False, height, head, f"catching up: {head - height} blocks behind")
    return Readiness(True, height, head, "")
