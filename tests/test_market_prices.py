"""Price aggregates (ledger.market.prices): the windows read from day and all-time buckets equal the scan of every
sale (ledger.market.sales.price_stats), and no record grows with the number of distinct prices."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.api.routes import market as market_routes
from ledger.api.routes.market import read_windows
from ledger.market import prices
from ledger.market.prices import WindowReader, get_bucket, part_key, partial_day, unpack_part
from ledger.market.sales import (
    ALL_PREFIXES,
    DAY_MS,
    WINDOWS,
    Sale,
    get_sale,
    index_entries,
    kind_prefix,
    open_entries,
    purpose_prefix,
    record_sale,
    sale_count,
    time_start,
    token_prefix,
    window_stats,
)
from ledger.state import Overlay, TxContext
from ledger.store import NS, MemoryStore

T0 = 1_700_000_000_000 - 1_700_000_000_000 % DAY_MS + 12_345  # not on a day boundary


class EmptyView:
    def get(self, key: bytes) -> bytes | None:
        return None


def record(state: Overlay, sales: list[tuple[int, int, str, str, str]]) -> None:
    """Sales of (time, price, token, kind, purpose); a purpose makes it a licence sale."""
    for n, (t, price, token, kind, purpose) in enumerate(sales):
        ctx = TxContext(state, "org1", (), n + 1, t, n.to_bytes(32, "big"))
        if purpose:
            record_sale(ctx, token, kind, price, 0, "org1", "org2", "licence", f"L-{n}", (purpose,))
        else:
            record_sale(ctx, token, kind, price, 0, "org1", "org2", "listing")


def scan(state: Overlay, scopes: tuple[bytes, ...], prefixes: tuple[bytes, ...], since: int,
         until: int | None = None) -> Iterator[tuple[int, int]]:
    """(time, price) of the index entries of `prefixes` in [since, until), oldest first (as the route scans): the
    closed chunks, and the open one in each scope's live record."""
    found = []
    for scope, prefix in zip(scopes, prefixes, strict=True):
        low, high = time_start(prefix, since), time_start(prefix, until) if until is not None else prefix + b"\xff"
        for key, value in state.changes.items():
            if value is not None and low <= key < high:
                found.extend(index_entries(key, value, prefix))
        found.extend(e for e in open_entries(state, scope)[1] if since <= e[0] < (until or 2**63))
    for timestamp, _, price in sorted(found):
        yield timestamp, price


def indexed_in(sale: Sale) -> list[bytes]:
    """The indexes a sale belongs in, from its record."""
    return [purpose_prefix(p) for p in sale.purposes] if sale.licence else [token_prefix(sale.token),
                                                                            kind_prefix(sale.kind)]


def sales_in(state: Overlay, prefixes: tuple[bytes, ...]) -> list[Sale]:
    """The sale records (not the indexes) of the indexes `prefixes`, in (time, seq) order."""
    found = [get_sale(state, seq) for seq in range(1, sale_count(state) + 1)]
    return [sale for sale in found if sale is not None and set(indexed_in(sale)) & set(prefixes)]


class Reader:
    """A scope's windows as the route reads them: buckets from the state, the partial day from the index."""

    def __init__(self, state: Overlay, scopes: tuple[bytes, ...], prefixes: tuple[bytes, ...]) -> None:
        self.state, self.scopes, self.prefixes = state, scopes, prefixes
        self.buckets = WindowReader(state, scopes)
        self.entries = 0

    def window(self, since: int | None, now: int) -> dict[str, object]:
        span = None if since is None else partial_day(since)
        partial = [] if span is None else [p for _, p in scan(self.state, self.scopes, self.prefixes, *span)]
        self.entries += len(partial)
        return self.buckets.window(since, now, partial)


def reference(state: Overlay, prefixes: tuple[bytes, ...], since: int | None) -> dict[str, object]:
    """A window's statistics from the sale records themselves: what the index and the aggregates must give."""
    return window_stats([s.price for s in sales_in(state, prefixes) if since is None or s.timestamp >= since])


# All token sales (every kind's scope and index read together), one token's, one kind's, one purpose's.
SCOPES = [(prices.ALL_SCOPES, ALL_PREFIXES), ((prices.token_scope("T-1"),), (token_prefix("T-1"),)),
          ((prices.kind_scope("data"),), (kind_prefix("data"),)),
          ((prices.purpose_scope("a/b"),), (purpose_prefix("a/b"),))]

sale_lists = st.lists(
    # hour, ms within it (often its first: several sales at one block time share an index chunk)
    st.tuples(st.integers(0, 40 * DAY_MS // 3_600_000), st.one_of(st.just(0), st.integers(0, 3_599_999)),
              st.one_of(st.integers(1, 12), st.integers(1, 2**53 - 1)),  # repeated and distinct prices
              st.sampled_from(["T-1", "T-2"]), st.sampled_from(["data", "model", "equipment"]),
              st.sampled_from(["", "a/b", "c"])),
    max_size=60)


@settings(max_examples=150)
@given(sale_lists, st.lists(st.integers(-DAY_MS, 45 * DAY_MS), max_size=4), st.sampled_from([2, 3, 128]),
       st.sampled_from([1, 2, 64]))
def test_windows_from_buckets_equal_the_scan_of_every_sale(
        drawn: list[tuple[int, int, int, str, str, str]], offsets: list[int], part_max: int, chunk_max: int) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(prices, "PART_MAX", part_max)  # small parts: splits happen often
        patch.setattr(prices, "CHUNK_MAX", chunk_max)  # small chunks: full ones close often
        timed = sorted((hour * 3_600_000 + ms, price, token, kind, purpose)
                       for hour, ms, price, token, kind, purpose in drawn)
        state = Overlay(EmptyView())
        record(state, [(T0 + t, price, token, kind, purpose) for t, price, token, kind, purpose in timed])
    now = T0 + (timed[-1][0] if timed else 0) + 1_000
    windows = [None, now - DAY_MS, now - 7 * DAY_MS, now - 30 * DAY_MS, now, *(T0 + o for o in offsets)]
    for scope, prefix in SCOPES:
        read = Reader(state, scope, prefix)
        for since in windows:
            assert read.window(since, now) == reference(state, prefix, since), (scope, since)


def test_a_window_starting_at_midnight_reads_whole_days_and_scans_nothing() -> None:
    state = Overlay(EmptyView())
    midnight = T0 - T0 % DAY_MS + 3 * DAY_MS
    record(state, [(midnight - 1, 7, "T-1", "data", ""), (midnight, 5, "T-1", "data", ""),
                   (midnight + 10, 9, "T-1", "data", ""), (midnight + 20, 1, "T-1", "data", "")])
    read = Reader(state, prices.ALL_SCOPES, ALL_PREFIXES)
    assert read.window(midnight, midnight + 30) == {"count": 3, "volume": 15, "last": 1, "median": 5, "vwap": 5.0}
    assert read.entries == 0
    assert read.window(midnight - 1, midnight + 30) == {"count": 4, "volume": 22, "last": 1, "median": 6,
                                                        "vwap": 5.5}
    assert read.entries == 1  # the one sale of the day before, at or after the window's start


def part_sizes(state: Overlay, period: bytes) -> list[int]:
    """Distinct prices in each part of the data kind's bucket of `period`, checking the parts against the bucket."""
    bucket = get_bucket(state, prices.kind_scope("data"), period)
    assert bucket is not None
    assert bucket.lows[0] == 0 and list(bucket.lows) == sorted(set(bucket.lows))
    sizes, total, volume = [], 0, 0
    for n, (low, count) in enumerate(zip(bucket.lows, bucket.parts, strict=True)):
        part = state.get(part_key(prices.kind_scope("data"), period, low))
        single = len(bucket.lows) == 1
        assert (part is None) == single and (bucket.first != ([], [])) == (single and count > 0)
        found, counts = bucket.first if single else unpack_part(part) if part else ([], [])
        high = bucket.lows[n + 1] if n + 1 < len(bucket.lows) else 2**64
        assert sum(counts) == count and all(low <= p < high for p in found)
        sizes.append(len(found))
        total += count
        volume += sum(p * c for p, c in zip(found, counts, strict=True))
    assert total == bucket.count and volume == bucket.volume
    return sizes


def test_a_flood_of_distinct_prices_splits_parts_and_no_record_outgrows_its_bound() -> None:
    state = Overlay(EmptyView())
    # One member sells at 1,000 distinct prices in one day, scattered so that every part fills and splits.
    largest = 0
    for n in range(1000):
        record(state, [(T0 + n, 1 + (n * 7919) % 1000, "T-1", "data", "")])
        sizes = part_sizes(state, prices.day_period(T0))
        largest = max(largest, *sizes)
        assert largest <= prices.PART_MAX
    assert largest == prices.PART_MAX  # parts do fill up to the bound before splitting
    assert len(part_sizes(state, prices.ALL_PERIOD)) >= 1000 // prices.PART_MAX
    read = Reader(state, prices.ALL_SCOPES, ALL_PREFIXES)
    assert read.window(None, T0 + DAY_MS) == reference(state, ALL_PREFIXES, None)


def test_a_volume_past_64_bits_is_kept_exactly() -> None:
    state = Overlay(EmptyView())
    top = 2**53 - 1
    record(state, [(T0 + n, top, "T-1", "data", "") for n in range(3000)])  # 3,000 * (2^53 - 1) > 2^64
    stats = Reader(state, prices.ALL_SCOPES, ALL_PREFIXES).window(None, T0 + 3000)
    assert stats is not None and stats["volume"] == 3000 * top > 2**64


def test_the_route_reads_the_same_windows_and_nulls_one_whose_partial_day_is_over_the_scan_limit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    state = Overlay(EmptyView())
    now = T0 + 30 * DAY_MS
    # Three sales in the 24h window's first (partial) day, one in the 7d window's, one today; of several kinds,
    # so that all token sales are read from every kind's index and aggregates.
    record(state, [(now - 7 * DAY_MS, 7, "T-1", "data", "")]
           + [(now - DAY_MS + n, 10 + n, "T-1", ("model", "data", "equipment")[n], "") for n in range(3)]
           + [(now - 1, 99, "T-2", "model", "")])  # in time order, as block times are
    store = MemoryStore()
    store.write_batch([(NS.STATE_LATEST + k, v) for k, v in sorted(state.changes.items()) if v is not None])
    latest = LatestView(store)
    loop = asyncio.new_event_loop()
    try:
        windows, cost = loop.run_until_complete(read_windows(store, latest, prices.ALL_SCOPES, ALL_PREFIXES, now))
        assert windows == {name: reference(state, ALL_PREFIXES, None if length is None else now - length)
                           for name, length in WINDOWS.items()}
        assert cost > 0
        monkeypatch.setattr(market_routes, "MAX_SCAN", 2)
        windows, _ = loop.run_until_complete(read_windows(store, latest, prices.ALL_SCOPES, ALL_PREFIXES, now))
    finally:
        loop.close()
    assert windows["24h"] is None  # its partial day holds 3 sales
    assert windows["7d"] == reference(state, ALL_PREFIXES, now - 7 * DAY_MS) and windows["7d"]["count"] == 5
    assert windows["all"] is not None and windows["all"]["count"] == 5


def test_the_latest_sales_of_all_tokens_are_every_kinds_merged_newest_first() -> None:
    state = Overlay(EmptyView())
    kinds = ("data", "model", "equipment")
    # Two sales a millisecond (the seq orders them), kinds in turn, every fourth a licence sale (not a token's).
    record(state, [(T0 + n // 2, 10 + n, f"T-{n}", kinds[n % 3], "a/b" if n % 4 == 3 else "") for n in range(14)])
    store = MemoryStore()
    store.write_batch([(NS.STATE_LATEST + k, v) for k, v in sorted(state.changes.items()) if v is not None])
    latest = market_routes._latest_sales(store, LatestView(store), prices.ALL_SCOPES, ALL_PREFIXES, 6)
    newest_first = [sale for sale in (get_sale(state, seq) for seq in range(14, 0, -1)) if sale and not sale.licence]
    assert [sale.seq for sale in latest] == [sale.seq for sale in newest_first[:6]]
    assert {sale.kind for sale in latest} == set(kinds)


def test_a_blocks_sales_of_one_kind_share_index_chunks_of_at_most_chunk_max(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prices, "CHUNK_MAX", 4)
    state = Overlay(EmptyView())
    data = (prices.kind_scope("data"),), (kind_prefix("data"),)
    # Ten token sales of one kind at one block time, then two at the next; one licence sale among the first.
    record(state, [(T0, 10 + n, f"T-{n}", "data", "") for n in range(10)] + [(T0, 5, "T-0", "data", "a/b")]
           + [(T0 + 500, 30 + n, f"T-{n}", "data", "") for n in range(2)])
    chunks = {key: value for key, value in state.changes.items() if key.startswith(kind_prefix("data"))}
    sizes = [len(index_entries(key, value, kind_prefix("data"))) for key, value in sorted(chunks.items())]
    assert sizes == [4, 4, 2]  # full chunks close, and the rest when a later block time opens a new one
    assert sorted(chunks)[1] == kind_prefix("data") + f"{T0:016d}/{5:016d}".encode()  # named by its first sale
    assert open_entries(state, data[0][0]) == (12, [(T0 + 500, 12, 30), (T0 + 500, 13, 31)])  # in the live record
    assert [p for _, p in scan(state, *data, T0)] == [*range(10, 20), 30, 31]
    assert [key for key in state.changes if key.startswith(token_prefix("T-2"))] == []  # sold once: all inline
    assert len([key for key in state.changes if key.startswith(token_prefix("T-1"))]) == 1  # then sold later
    store = MemoryStore()
    store.write_batch([(NS.STATE_LATEST + k, v) for k, v in sorted(state.changes.items()) if v is not None])
    latest = market_routes._latest_sales(store, LatestView(store), *data, 5)
    assert [sale.price for sale in latest] == [31, 30, 19, 18, 17]
    read = Reader(state, *data)
    assert read.window(T0 + 1, T0 + 600) == reference(state, (kind_prefix("data"),), T0 + 1)
    assert read.window(T0 - 1, T0 + 600) == reference(state, (kind_prefix("data"),), T0 - 1)
    assert read.window(T0 - 1, T0 + 600)["count"] == 12


def test_sales_are_kept_sixteen_to_a_record_and_each_is_read_back_by_its_seq() -> None:
    state = Overlay(EmptyView())
    record(state, [(T0 + n // 5, 100 + n, f"T-{n}", "data", "a" if n % 3 else "") for n in range(40)])
    records = sorted(key for key in state.changes if key.startswith(b"market/s/"))
    assert records == [b"market/s/" + f"{first:016d}".encode() for first in (1, 17, 33)]
    assert [(sale.seq, sale.price) for sale in map(lambda n: get_sale(state, n), range(1, 41)) if sale] == [
        (n + 1, 100 + n) for n in range(40)]
    assert get_sale(state, 0) is None and get_sale(state, 41) is None and get_sale(state, 49) is None


def test_a_query_reading_a_live_record_older_than_the_index_lists_each_sale_once() -> None:
    state = Overlay(EmptyView())
    data = (prices.kind_scope("data"),), (kind_prefix("data"),)
    record(state, [(T0 + n // 3, 10 + n, f"T-{n}", "data", "") for n in range(7)])  # the open chunk: T0 + 2
    before = Overlay(EmptyView())
    before.changes = dict(state.changes)
    # A block commits between the query's read of the live record and its scan: the open chunk closes.
    record(state, [(T0 + 10, 99, "T-9", "data", "")])
    store = MemoryStore()
    store.write_batch([(NS.STATE_LATEST + k, v) for k, v in sorted(state.changes.items()) if v is not None])
    latest = market_routes._latest_sales(store, before, *data, 20)
    assert [sale.price for sale in latest] == list(range(16, 9, -1))  # as of the live record read: each once
    entries = market_routes._index_entries(store, before, data[1][0], data[0][0], T0, T0 + DAY_MS)
    assert [price for _, _, price in entries] == list(range(10, 17))


class LatestView:
    def __init__(self, store: MemoryStore) -> None:
        self.store = store

    def get(self, key: bytes) -> bytes | None:
        return self.store.get(NS.STATE_LATEST + key)
