"""Stopping asyncio tasks reliably."""

from __future__ import annotations

import asyncio

CANCEL_AGAIN_S = 0.5


async def cancel_and_wait(task: asyncio.Task[object] | None) -> None:
    """Cancel `task` and wait until it has ended, cancelling again while it runs on.

    Python 3.11's `asyncio.wait_for` can lose a cancellation that arrives as its inner wait completes,
    so a loop built on it may survive one `cancel()`. Awaiting the task under `suppress(CancelledError)`
    would then hang, and would also swallow a cancellation meant for the caller; `asyncio.wait` does
    neither.
    """
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=CANCEL_AGAIN_S)
    if not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]
