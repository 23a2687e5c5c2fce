"""Quorum arithmetic and primary rotation: the one place they are computed.

n validators tolerate f = (n - 1) // 3 Byzantine ones. A quorum is the smallest set any two of
which intersect in f + 1 validators (2f + 1 when n = 3f + 1); a weak quorum, f + 1, holds at least
one honest validator. The primary of view v is the (v mod n)-th validator in rotation order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


def max_faulty(n: int) -> int:
    """The largest f with n >= 3f + 1."""
    if n < 1:
        raise ValueError("a validator set needs at least one validator")
    return (n - 1) // 3


def quorum_size(n: int) -> int:
    """Smallest quorum such that any two quorums intersect in at least f + 1 validators."""
    f = max_faulty(n)
    return (n + f + 2) // 2  # ceil((n + f + 1) / 2)


def weak_quorum_size(n: int) -> int:
    """f + 1: enough matching messages that at least one came from an honest validator."""
    return max_faulty(n) + 1


def compute_primary(validators: Sequence[str], view: int) -> str:
    return validators[view % len(validators)]


@dataclass(frozen=True)
class Quorums:
    """A validator set in primary-rotation order with its quorum sizes."""

    validators: tuple[str, ...]
    quorum: int  # 2f+1
    weak: int  # f+1

    @classmethod
    def of(cls, validators: Sequence[str]) -> Quorums:
        n = len(validators)
        return cls(tuple(validators), quorum_size(n), weak_quorum_size(n))

    @property
    def n(self) -> int:
        return len(self.validators)

    def primary(self, view: int) -> str:
        return compute_primary(self.validators, view)

    def others(self, me: str) -> tuple[str, ...]:
        return tuple(v for v in self.validators if v != me)
