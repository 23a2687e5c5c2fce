"""Freed heap goes back to the operating system (ledger/memtrim.py)."""

from __future__ import annotations

import asyncio
import gc

import pytest

from ledger import memtrim


def _anon_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise AssertionError("no RssAnon in /proc/self/status")


def _fragmented_free_space_mb(mb: int) -> list[bytes]:
    """Allocate `mb` MB in 4 KB blocks (glibc's heap, not Python's small-object arenas), then free all but
    one block in 64: the free space lies between live blocks, where glibc does not give it back by itself."""
    blocks = [bytes(4096) for _ in range(mb * 256)]
    kept = blocks[::64]
    del blocks
    gc.collect()
    return kept


def test_trim_returns_free_heap_pages_between_live_blocks() -> None:
    kept = _fragmented_free_space_mb(128)
    before = _anon_kb()
    assert memtrim.trim()
    after = _anon_kb()
    assert before - after > 64 * 1024, f"RssAnon {before} kB before the trim, {after} kB after"
    assert len(kept) == 128 * 4


def test_arena_cap_is_accepted() -> None:
    assert memtrim.limit_arenas()


def test_periodic_trim_runs_until_cancelled(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def counted_trim() -> bool:
        calls.append(1)
        return True

    monkeypatch.setattr(memtrim, "trim", counted_trim)

    async def run() -> None:
        task = asyncio.create_task(memtrim.trim_periodically(every_s=0.01))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    assert len(calls) >= 3
