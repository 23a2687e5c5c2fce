"""The answer cache's byte budget and segments, and the token buckets of the rate limits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.api.hotcache import ENTRY_OVERHEAD, SegmentedCache, cache_key, make_entry
from ledger.api.limits import MAX_CLIENTS, Bucket, ClientTable, client_key


def entry(size: int = 1000) -> object:
    return make_entry(200, [(b"content-type", b"application/json")], b"x" * size)


def test_a_stream_of_distinct_misses_does_not_evict_the_hot_answers() -> None:
    cache = SegmentedCache(1_000_000)
    hot = [b"/api/handles/88.100.1/HOT-%d" % n for n in range(300)]
    for key in hot:
        cache.put(key, entry())  # type: ignore[arg-type]
        assert cache.get(key) is not None  # asked for again: protected
    for n in range(100_000):  # each asked for once, as an attacker's invented URLs are
        cache.put(b"/api/handles/88.100.1/ONCE-%d" % n, entry())  # type: ignore[arg-type]
        assert cache.size <= cache.budget
    assert all(cache.get(key) is not None for key in hot)


@given(st.lists(st.tuples(st.integers(0, 500), st.integers(0, 5000), st.booleans()), max_size=300))
def test_the_cache_never_holds_more_than_its_budget(operations: list[tuple[int, int, bool]]) -> None:
    cache = SegmentedCache(50_000)
    for key, size, read in operations:
        name = b"k%d" % key
        if read:
            cache.get(name)
        else:
            cache.put(name, entry(size))  # type: ignore[arg-type]
        assert cache.size <= cache.budget and cache.protected_bytes <= cache.protected_budget
        assert cache.size == sum(s for _, s in cache.probation.values()) + sum(s for _, s in cache.protected.values())
    assert ENTRY_OVERHEAD > 0


def test_requests_differing_only_in_unknown_parameters_or_encoding_share_a_key() -> None:
    path = b"/api/handles/88.100.1/EQ-1"
    assert cache_key(path, b"") == cache_key(path, b"utm=1&x=2") == cache_key(b"/api/handles/88.100.1/%45Q-1", b"")
    assert cache_key(path, b"proof=true&z=1") == cache_key(path, b"%70roof=yes")  # the route's parser decides
    assert cache_key(path, b"proof=true") != cache_key(path, b"")
    assert cache_key(path, b"index=1&type=URL") != cache_key(path, b"index=2")
    assert cache_key(path, b"proof=maybe") is None  # the route answers 400: never cached


def test_a_bucket_grants_its_burst_then_its_rate_and_says_when() -> None:
    bucket = Bucket(rate=10, burst=20, now=0.0)
    assert all(bucket.take(1, 0.0) == 0 for _ in range(20))
    assert bucket.take(1, 0.0) == pytest.approx(0.1)  # one token refills in 1/10 s
    assert bucket.take(1, 0.1) == 0
    assert bucket.take(10, 1.0) == pytest.approx(0.1)  # nine refilled: ten are not there yet
    assert bucket.take(9, 1.0) == 0 and bucket.take(1, 1.0) == pytest.approx(0.1)
    bucket.charge(30)  # a batch paid after the fact leaves a debt
    assert bucket.take(1, 1.0) > 3
    assert bucket.take(1000, 100.0) == 0  # a cost above the burst is capped at it


def test_clients_are_addresses_and_ipv6_slash_64s_and_the_table_is_bounded() -> None:
    assert client_key("10.0.0.7") == "10.0.0.7"
    assert client_key("2001:db8::1") == client_key("2001:db8::ffff:1") == "2001:db8::/64"
    assert client_key("::ffff:10.0.0.7") == "10.0.0.7"
    table = ClientTable((1, 1), (1, 1), (), lambda: 0.0)
    busy = table.get("192.0.2.1")
    busy.connections = 1
    for n in range(MAX_CLIENTS + 10):
        table.get(f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}")
    assert len(table) <= MAX_CLIENTS and table.get("192.0.2.1") is busy  # a client with connections stays
