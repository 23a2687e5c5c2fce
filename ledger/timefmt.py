"""Times as users write them: milliseconds since the Unix epoch, or ISO 8601 (a naive time means UTC)."""

from __future__ import annotations

from datetime import UTC, datetime


def parse_time_ms(text: str) -> int:
    """Milliseconds since the epoch from digits or ISO 8601; ValueError for anything else."""
    if text.isdigit():
        return int(text)
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))  # raises ValueError
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)
