"""A dependency-free progress bar on stderr (redrawn in place on a terminal at most every 0.1 s, a line per
10% otherwise): a million advances must not cost a million terminal writes."""

from __future__ import annotations

import sys
import time
from typing import TextIO

REDRAW_S = 0.1


class Progress:
    def __init__(self, total: int, label: str = "", stream: TextIO | None = None, width: int = 30) -> None:
        self.total = max(total, 1)
        self.label = label
        self.stream = stream or sys.stderr
        self.width = width
        self.done = 0
        self.failed = 0
        self.started = time.monotonic()
        self._tty = self.stream.isatty()
        self._last_decile = -1
        self._last_draw = 0.0

    def advance(self, n: int = 1, failed: int = 0) -> None:
        self.done += n
        self.failed += failed
        self._draw()

    def _draw(self, final: bool = False) -> None:
        now = time.monotonic()
        frac = min(self.done / self.total, 1.0)
        if self._tty:
            if not final and now - self._last_draw < REDRAW_S:
                return
            self._last_draw = now
        else:
            decile = int(frac * 10)
            if decile == self._last_decile:
                return
            self._last_decile = decile
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        filled = int(frac * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        text = (f"{self.label} [{bar}] {self.done}/{self.total} {frac:6.1%} "
                f"{rate:,.0f}/s failed={self.failed}")
        self.stream.write("\r" + text + ("\n" if final else "") if self._tty else text + "\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        """A line of its own (what the work is waiting for), the bar drawn again below it."""
        self.stream.write(("\r\033[K" if self._tty else "") + text + "\n")
        self.stream.flush()
        self._last_draw = 0.0
        self._draw()

    def close(self) -> None:
        self._draw(final=True)
