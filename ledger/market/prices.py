"""Price aggregates kept in state, so a price query reads O(days in its window) records, not O(sales).

Theory of operation. Every sale `ledger.market.sales.record_sale` records is also added, in the same transaction,
to two buckets of each scope it belongs to (all token sales, the token, its kind; or a licence's purposes): the
bucket of its UTC day and the bucket of all time. A bucket is a `PriceBucket` (count, volume, last price, the
lows and counts of its parts), and its prices' histogram (price -> sales at that price) is split into parts of at
most PART_MAX distinct prices: part i holds the prices from `lows[i]` (the first is 0) up to the next part's low.
A scope's all-time bucket and the bucket of the day of its latest sale are one record, its `Live` record under
`market/pl/<scope>` (which also holds the scope's open time-index chunk: a token sold once has no index record of
its own), so a sale reads and writes one record per scope; the first sale of a later day moves the
day before's bucket to its own record under `market/pb/<scope>/<day>` (once per scope and day that had sales).
While a bucket has one part (most do: a token's, or a day's of a few prices) it is kept in the bucket itself;
once it splits, each is under `market/pp/<scope>/<period>/<low>` (period: the day, or `all`).
A full part splits in two, so however many distinct prices a member sells at, no part grows past PART_MAX
prices and a sale rewrites, per scope, its live record and at most two parts of each of its two buckets (a
bucket's list of parts grows by one per PART_MAX / 2 distinct prices).

A window (the sales at or after `since`, up to the head) is read as: the sales of `since`'s day at or after it,
from the time index (`ledger.market.sales`, at most one day of sales), then the buckets of the following days
whole (no sale is later than the head). `all` is the all-time bucket. The median merges the histograms read; the
answer is exactly the scan's (`ledger.market.sales.price_stats`), which the property tests check.

Deterministic: integers only, parts split at a fixed size, keys and values in fixed formats. Live records,
buckets and parts are packed big-endian integers, not msgpack records: they are read and rewritten at every
sale of their scope, and the strict codec's decoding was most of that cost.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ledger.nft.assets import KINDS
from ledger.state import StateView, TxContext

DAY_MS = 86_400_000
PART_MAX = 128  # distinct prices a histogram part holds before it splits in two
# Sales of one scope at one block time a time-index chunk holds (`ledger.market.sales`): a block's sales of a kind
# or purpose share one state key, and rewriting a chunk in the block's overlay stays cheap.
CHUNK_MAX = 64
CHUNK_PAIR = struct.Struct(">2Q")  # a chunk's (seq, price) of one sale
ALL_PERIOD = b"all"


@dataclass(frozen=True)
class PriceBucket:
    count: int  # sales
    volume: int  # their total price (below 2^128: stored as two 64-bit halves)
    last: int  # the latest sale's price
    last_seq: int  # ... and its sequence number (`ledger.market.sales`): which of several scopes' buckets is latest
    lows: tuple[int, ...]  # the lowest price of each histogram part, ascending; the first is 0
    parts: tuple[int, ...]  # sales in each part
    first: tuple[list[int], list[int]]  # the only part (prices, sales at each) while there is one; else empty


def empty_bucket() -> PriceBucket:
    return PriceBucket(0, 0, 0, 0, (0,), (0,), ([], []))


def pack_bucket(bucket: PriceBucket) -> bytes:
    """count, last, last_seq, volume (high and low 64 bits), the number of parts, their lows, their counts, then
    the only part as `pack_part` writes it (nothing once there are more): big-endian 64-bit unsigned integers (raw,
    not msgpack: a bucket is read and rewritten at every sale of its scope)."""
    volume, n = bucket.volume, len(bucket.lows)
    prices, counts = bucket.first
    return struct.pack(f">6Q{2 * n + 2 * len(prices)}Q", bucket.count, bucket.last, bucket.last_seq, volume >> 64,
                       volume & _LOW64, n, *bucket.lows, *bucket.parts, *prices, *counts)


def unpack_bucket(data: bytes) -> PriceBucket:
    flat = struct.unpack(f">{len(data) // 8}Q", data)
    n = flat[5]
    first = flat[6 + 2 * n:]
    half = len(first) // 2
    return PriceBucket(flat[0], (flat[3] << 64) | flat[4], flat[1], flat[2], flat[6:6 + n], flat[6 + n:6 + 2 * n],
                       (list(first[:half]), list(first[half:])))


_LOW64 = (1 << 64) - 1


def token_scope(token: str) -> bytes:
    return b"t/" + token.encode()


def kind_scope(kind: str) -> bytes:
    return b"k/" + kind.encode()


def purpose_scope(purpose: str) -> bytes:
    return b"p/" + purpose.encode().hex().encode()  # a purpose may hold "/"


# All token sales: the scopes of every kind, read together (a token's kind is one of KINDS, and never changes).
ALL_SCOPES = tuple(kind_scope(kind) for kind in KINDS)


def day_period(timestamp: int) -> bytes:
    return f"{timestamp // DAY_MS:08d}".encode()


def bucket_key(scope: bytes, period: bytes) -> bytes:
    # Periods are 8 digits or "all" and token ids hold no "/": no bucket's key is another's prefix.
    return b"market/pb/" + scope + b"/" + period


def part_key(scope: bytes, period: bytes, low: int) -> bytes:
    return b"market/pp/" + scope + b"/" + period + b"/" + f"{low:016d}".encode()


def pack_part(prices: list[int], counts: list[int]) -> bytes:
    """A part's value: its prices ascending, then the sales at each, as big-endian 64-bit unsigned integers."""
    return struct.pack(f">{2 * len(prices)}Q", *prices, *counts)


def unpack_part(data: bytes) -> tuple[list[int], list[int]]:
    flat = struct.unpack(f">{len(data) // 8}Q", data)
    half = len(flat) // 2
    return list(flat[:half]), list(flat[half:])


# --- the scope's live record: its all-time bucket and the bucket of its latest day, one record -------------------


@dataclass(frozen=True)
class Live:
    day: int  # the UTC day (days since 1970) of the scope's latest sale
    all_time: PriceBucket
    today: PriceBucket  # the buckets of earlier days are under `bucket_key`
    # The scope's open time-index chunk (`ledger.market.sales`), kept here until it closes: the block time of its
    # sales, the seq of its first, and its (seq, price) pairs (CHUNK_PAIR each, at most CHUNK_MAX).
    chunk_time: int = 0
    chunk_seq: int = 0
    chunk: bytes = b""


def live_key(scope: bytes) -> bytes:
    return b"market/pl/" + scope


def pack_live(live: Live) -> bytes:
    """The day, the open index chunk's time, first seq and number of sales, the all-time bucket's length in 64-bit
    words, the two buckets as `pack_bucket` writes them, then the open chunk's (seq, price) pairs."""
    all_time = pack_bucket(live.all_time)
    head = struct.pack(">5Q", live.day, live.chunk_time, live.chunk_seq, len(live.chunk) // CHUNK_PAIR.size,
                       len(all_time) // 8)
    return head + all_time + pack_bucket(live.today) + live.chunk


def unpack_live(data: bytes) -> Live:
    day, chunk_time, chunk_seq, chunk_len, words = struct.unpack_from(">5Q", data)
    split, chunk_at = 40 + 8 * words, len(data) - chunk_len * CHUNK_PAIR.size
    return Live(day, unpack_bucket(data[40:split]), unpack_bucket(data[split:chunk_at]), chunk_time, chunk_seq,
                data[chunk_at:])


def open_chunk(view: StateView, scope: bytes) -> tuple[int, int, bytes] | None:
    """The scope's open time-index chunk: (block time, seq of its first sale, its pairs); None before any sale."""
    live = get_live(view, scope)
    return None if live is None else (live.chunk_time, live.chunk_seq, live.chunk)


def get_live(view: StateView, scope: bytes) -> Live | None:
    raw = view.get(live_key(scope))
    return None if raw is None else unpack_live(raw)


def get_bucket(view: StateView, scope: bytes, period: bytes) -> PriceBucket | None:
    """The bucket of `period` (a day, or `all`): from the live record, or, for an earlier day, its own record."""
    live = get_live(view, scope)
    return None if live is None else _bucket_of(view, scope, live, period)


def _bucket_of(view: StateView, scope: bytes, live: Live, period: bytes) -> PriceBucket | None:
    if period == ALL_PERIOD:
        return live.all_time
    if _reads_record(live, period):
        raw = view.get(bucket_key(scope, period))
        return None if raw is None else unpack_bucket(raw)
    return live.today if int(period) == live.day else None  # no sale since the live day


def _reads_record(live: Live, period: bytes) -> bool:
    """Whether the bucket of `period` is a record of its own: a day before the live one."""
    return period != ALL_PERIOD and int(period) < live.day


# --- writing (inside the transaction that sells) ------------------------------------------------------------------


def add_sale(ctx: TxContext, scopes: Iterable[bytes], price: int, seq: int) -> list[tuple[int, int, bytes] | None]:
    """Add sale `seq` at `price` and the block's time to the day and all-time buckets of each scope: one record each
    (the live one), and the day before's bucket moved to its own record at the first sale of a later day; and to
    the scope's open time-index chunk, in the same record. Returns, per scope, the chunk this sale closed (time,
    first seq, pairs), for `ledger.market.sales` to write under its own key: a chunk closes at the scope's first
    sale of a later block time, or when it holds CHUNK_MAX sales."""
    day = ctx.timestamp // DAY_MS
    period = day_period(ctx.timestamp)
    pair = CHUNK_PAIR.pack(seq, price)
    closed: list[tuple[int, int, bytes] | None] = []
    for scope in scopes:
        live = get_live(ctx.state, scope)
        today = empty_bucket()
        if live is not None and live.day == day:
            today = live.today
        elif live is not None:  # block times never run back: the live day is over for good
            ctx.state.put(bucket_key(scope, day_period(live.day * DAY_MS)), pack_bucket(live.today))
        all_time = live.all_time if live is not None else empty_bucket()
        if live is not None and live.chunk_time == ctx.timestamp and len(live.chunk) < CHUNK_MAX * CHUNK_PAIR.size:
            chunk_seq, chunk = live.chunk_seq, live.chunk + pair
            closed.append(None)
        else:
            chunk_seq, chunk = seq, pair
            closed.append(None if live is None else (live.chunk_time, live.chunk_seq, live.chunk))
        ctx.state.put(live_key(scope), pack_live(Live(day, _add(ctx, scope, ALL_PERIOD, all_time, price, seq),
                                                      _add(ctx, scope, period, today, price, seq),
                                                      ctx.timestamp, chunk_seq, chunk)))
    return closed


def _add(ctx: TxContext, scope: bytes, period: bytes, bucket: PriceBucket, price: int, seq: int) -> PriceBucket:
    """`bucket` with one more sale at `price`; writes the parts it changes when it has more than one."""
    lows, parts = list(bucket.lows), list(bucket.parts)
    index = bisect.bisect_right(lows, price) - 1
    low = lows[index]
    if len(lows) == 1:
        prices, counts = list(bucket.first[0]), list(bucket.first[1])
    else:
        raw = ctx.state.get(part_key(scope, period, low))
        prices, counts = unpack_part(raw) if raw else ([], [])
    at = bisect.bisect_left(prices, price)
    if at < len(prices) and prices[at] == price:
        counts[at] += 1
    else:
        prices.insert(at, price)
        counts.insert(at, 1)
    parts[index] += 1
    if len(prices) > PART_MAX:  # split: the upper half becomes a part of its own
        half = len(prices) // 2
        upper_low = prices[half]
        ctx.state.put(part_key(scope, period, upper_low), pack_part(prices[half:], counts[half:]))
        lows.insert(index + 1, upper_low)
        parts.insert(index + 1, sum(counts[half:]))
        parts[index] -= parts[index + 1]
        prices, counts = prices[:half], counts[:half]
    if len(lows) == 1:
        first = (prices, counts)
    else:  # (a bucket that just split moves its first part out of its record)
        ctx.state.put(part_key(scope, period, low), pack_part(prices, counts))
        first = ([], [])
    return PriceBucket(bucket.count + 1, bucket.volume + price, price, seq, tuple(lows), tuple(parts), first)


# --- reading ------------------------------------------------------------------------------------------------------


def partial_day(since: int) -> tuple[int, int] | None:
    """The times [since, next midnight) a window from `since` reads from the time index, not from a bucket; None
    when `since` is a midnight (the window is whole days)."""
    since = max(0, since)
    return None if since % DAY_MS == 0 else (since, (since // DAY_MS + 1) * DAY_MS)


@dataclass
class Cost:
    records: int = 0  # bucket and part records read
    pairs: int = 0  # histogram pairs merged


Parts = list[tuple[list[int], list[int]]]


class WindowReader:
    """Reads windows of one scope, or of several together (all token sales: every kind's), from a state view (the
    head's), counting what it reads (its client pays)."""

    def __init__(self, view: StateView, scopes: Sequence[bytes]) -> None:
        self.view, self.scopes = view, tuple(scopes)
        self.cost = Cost()
        # A day read once for all windows, per scope; the live records, read once.
        self._buckets: dict[tuple[bytes, bytes], tuple[PriceBucket | None, Parts]] = {}
        self._live: dict[bytes, Live | None] = {}

    def _bucket(self, scope: bytes, period: bytes) -> tuple[PriceBucket | None, Parts]:
        cached = self._buckets.get((scope, period))
        if cached is not None:
            return cached
        if scope not in self._live:
            self.cost.records += 1
            self._live[scope] = get_live(self.view, scope)
        live = self._live[scope]
        if live is not None and _reads_record(live, period):
            self.cost.records += 1
        bucket = None if live is None else _bucket_of(self.view, scope, live, period)
        single = bucket is not None and len(bucket.lows) == 1
        parts: Parts = [bucket.first] if bucket is not None and single else []
        for low, count in zip(bucket.lows, bucket.parts, strict=True) if bucket is not None and not single else ():
            if count:
                self.cost.records += 1
                part = self.view.get(part_key(scope, period, low))
                if part:
                    parts.append(unpack_part(part))
        self._buckets[(scope, period)] = (bucket, parts)
        return bucket, parts

    def window(self, since: int | None, now_ms: int, partial: list[int]) -> dict[str, Any]:
        """Count, volume, last, median and VWAP of the sales at or after `since` (None: all), as
        `ledger.market.sales.window_stats` gives them from a scan. `partial`: the prices, oldest first, of the
        sales in `partial_day(since)` (read by the caller from the time indexes of the scopes)."""
        found: list[tuple[PriceBucket, Parts]] = []
        if since is None:
            periods = [ALL_PERIOD]
        else:
            first_full_day = -(-max(0, since) // DAY_MS)
            periods = [f"{day:08d}".encode() for day in range(first_full_day, now_ms // DAY_MS + 1)]
        for scope in self.scopes:
            for period in periods:
                bucket, parts = self._bucket(scope, period)
                if bucket is not None:
                    found.append((bucket, parts))
        return _combine(partial if since is not None else [], found, self.cost)


def _combine(scanned: list[int], buckets: list[tuple[PriceBucket, Parts]],
             cost: Cost) -> dict[str, Any]:
    count = len(scanned) + sum(b.count for b, _ in buckets)
    if not count:
        return {"count": 0, "volume": 0, "last": None, "median": None, "vwap": None}
    volume = sum(scanned) + sum(b.volume for b, _ in buckets)
    # Buckets (whole days) follow the scanned part in time; of several, the one with the latest sale.
    last = max(buckets, key=lambda found: found[0].last_seq)[0].last if buckets else scanned[-1]
    histogram: dict[int, int] = {}
    for price in scanned:
        histogram[price] = histogram.get(price, 0) + 1
    for _, parts in buckets:
        for prices, counts in parts:
            cost.pairs += len(prices)
            for price, n in zip(prices, counts, strict=True):
                histogram[price] = histogram.get(price, 0) + n
    return {"count": count, "volume": volume, "last": last, "median": _median(histogram, count),
            "vwap": volume / count}


def _median(histogram: dict[int, int], count: int) -> int | float:
    """statistics.median of the multiset, by ranks (the same arithmetic, so the same answer)."""
    ranks = [(count - 1) // 2, count // 2]
    found: list[int] = []
    seen = 0
    for price in sorted(histogram):
        seen += histogram[price]
        while ranks and ranks[0] < seen:
            found.append(price)
            ranks.pop(0)
        if not ranks:
            break
    middle = found[0] if count % 2 else (found[0] + found[1]) / 2
    return int(middle) if float(middle).is_integer() else float(middle)

