"""Logical time: the replica counts ticks, the only time it knows (the driver turns seconds into ticks)."""

from __future__ import annotations


class Clock:
    def __init__(self) -> None:
        self._now = 0

    @property
    def now(self) -> int:
        return self._now

    def tick(self) -> None:
        self._now += 1
