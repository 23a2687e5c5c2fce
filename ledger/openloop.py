"""The open-loop load of `ledger bench --rate R`: requests sent on a fixed schedule, not after commits.

A closed loop (each client sends its next batch once the one before committed) measures latency: its
throughput is about (transactions in flight) / latency, whatever the ledger could take. An open loop offers
R transactions per second in all and measures what the ledger commits of them: each of the C clients sends
its batches at R / C transactions per second, the clients staggered so that the requests of all of them are
evenly spaced, and a request is sent at its time whether or not the ones before have been answered (each
runs on a thread of its own). A sender that falls behind its schedule (a slow client machine) is not
hidden: the lag of every request, from its scheduled time to when it was sent, is returned.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple


class Send(NamedTuple):
    at: float  # seconds after the schedule's start
    client: int
    number: int  # the client's request number, from 0
    size: int  # transactions in the request


def open_loop_schedule(sizes: Sequence[Sequence[int]], rate: float) -> list[Send]:
    """Every request of every client, in the order of their times. `sizes[i][k]`: transactions in client i's
    request k. Client i sends at rate / C tx/s: its request k at its offset plus the time its earlier
    requests' transactions take at that rate; the offsets (i times one request's share of the total rate)
    interleave the clients."""
    if rate <= 0:
        raise ValueError("the offered rate must be above 0 tx/s")
    clients = len(sizes)
    per_client = rate / clients
    sends: list[Send] = []
    for i, batches in enumerate(sizes):
        offset = i * (batches[0] if batches else 0) / rate
        before = 0
        for k, size in enumerate(batches):
            sends.append(Send(offset + before / per_client, i, k, size))
            before += size
    sends.sort()
    return sends


def schedule_seconds(sizes: Sequence[Sequence[int]], rate: float) -> float:
    """How long the schedule offers load: its transactions at `rate` (the last request's own share included)."""
    return sum(sum(s) for s in sizes) / rate


def send_on_schedule(
    sends: Sequence[Send],
    send: Callable[[Send, float], None],
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> list[float]:
    """Dispatch each request at its time on a thread of its own, never waiting for one to be answered, then
    wait for all. `send(request, started)` posts it; `started` is the clock when it was dispatched (its
    latency counts from there). Returns each request's lag behind its schedule (seconds, 0 or more), in
    the order of `sends`."""
    origin = clock()
    lags: list[float] = []
    workers: list[threading.Thread] = []
    for request in sends:
        due = origin + request.at
        wait = due - clock()
        if wait > 0:
            sleep(wait)
        started = clock()
        lags.append(max(0.0, started - due))
        worker = threading.Thread(target=send, args=(request, started), daemon=True)
        worker.start()
        workers.append(worker)
    for worker in workers:
        worker.join()
    return lags


def lag_figures(lags: Sequence[float], interval: float) -> dict[str, float | int]:
    """How far behind schedule the senders fell: median, 99th percentile and largest lag (ms), and how many
    requests went out more than half an interval (between two requests of all clients) late."""
    if not lags:
        return {"p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0, "late": 0}
    ordered = sorted(lags)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
        "late": sum(1 for lag in ordered if lag > interval / 2),
    }


def steady_rate(answered: Sequence[tuple[float, int]], origin: float, schedule_end: float) -> float | None:
    """Committed tx/s while the load was offered: the transactions answered between the first answer and
    the schedule's end, over that time (the ramp before the first commit and the drain after the last send
    left out). `answered`: (when, transactions committed) per request, on the clock of `origin`; the end
    is seconds after `origin`. None when no request was answered before the schedule ended."""
    times = sorted(t - origin for t, n in answered if n > 0)
    if not times or times[0] >= schedule_end:
        return None
    first = times[0]
    committed = sum(n for t, n in answered if first < t - origin <= schedule_end)
    return round(committed / (schedule_end - first), 1)
