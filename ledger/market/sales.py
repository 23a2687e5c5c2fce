"""The record of public sales, and the price statistics read from it.

Theory of operation. Every sale the market settles (`ledger.market.trading`: tokens; `ledger.market.licences`:
licences) appends one `Sale` (`market/sales` counts them) to the record of its group of SALE_GROUP, under
`market/s/<seq of the group's first:016d>` (each sale a 4-byte big-endian length then its canonical encoding; a
block's sales rewrite a few records, not one each), and entries in time indexes: a token sale in its token's
(`market/st/<token>/`) and its kind's (`market/sk/<kind>/`); a licence sale in each of its purposes'
(`market/sp/<purpose in hex>/`). An index is a run of chunks: a chunk holds the sales of
the index's scope at one block time, at most `prices.CHUNK_MAX`, as (seq, price) pairs of big-endian 64-bit
integers. The open chunk (the newest) is kept in the scope's live price record, which every sale rewrites anyway
(`prices.add_sale`); once closed (at the scope's first sale at a later block time, or full) it is written under
`<prefix><time>/<seq>` (time in ms and the seq of its first sale, 16 digits each). So a block's sales of one
kind or purpose write one index record, not one each, and a token sold once writes none. Block times never run
back, so each index is in (time, seq) order, and a window (the sales since T) is one forward scan from T, then the
open chunk, with no sale record read. All token sales have no index of their own (one key fewer per sale): they
are the sales of every kind, the kinds' scans merged by (time, seq). The records are written only by
`record_sale`, inside the transaction that sells.

The statistics (`price_stats`) are a read, not state: the last price, the median and the volume-weighted
average (VWAP) over each window, where each sale is one token or one licence, so the VWAP is the total paid
over the count.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ledger.codec import decode, encode
from ledger.market import prices
from ledger.nft.assets import KINDS
from ledger.state import StateView, TxContext, get_record

COUNT_KEY = b"market/sales"
DAY_MS = 86_400_000
# The windows an answer reports, in ms (None: every sale).
WINDOWS: dict[str, int | None] = {"24h": DAY_MS, "7d": 7 * DAY_MS, "30d": 30 * DAY_MS, "all": None}


@dataclass(frozen=True)
class Sale:
    seq: int  # from 1
    token: str
    kind: str  # the token's asset kind
    price: int  # credits the buyer paid
    royalty: int  # of the price, paid to the token's creator (a licence sale: the share passed up the tree)
    seller: str
    buyer: str
    via: str  # "listing" or "offer" (the token was sold), "licence" (a licence on it was)
    height: int
    timestamp: int  # ms, block time
    tx_id: bytes
    licence: str  # the licence sold; "" for a token sale
    purposes: tuple[str, ...]  # the licence's purposes; () for a token sale


SALE_GROUP = 16  # sales a sale record holds: a block's sales rewrite a few keys, not one each


def sale_key(seq: int) -> bytes:
    """The key of the record holding sale `seq`: named by the group's first seq (1, 17, 33, ...)."""
    return b"market/s/" + f"{seq - (seq - 1) % SALE_GROUP:016d}".encode()


def token_prefix(token: str) -> bytes:
    return b"market/st/" + token.encode() + b"/"


def kind_prefix(kind: str) -> bytes:
    return b"market/sk/" + kind.encode() + b"/"


# All token sales: the indexes of every kind, read together (a token's kind is one of KINDS, and never changes).
ALL_PREFIXES = tuple(kind_prefix(kind) for kind in KINDS)


def purpose_prefix(purpose: str) -> bytes:
    # A purpose may hold "/" (token ids and kinds cannot): in hex, no purpose's keys fall under another's prefix.
    return b"market/sp/" + purpose.encode().hex().encode() + b"/"


def _suffix(timestamp: int, seq: int) -> bytes:
    return f"{timestamp:016d}/{seq:016d}".encode()


def time_start(prefix: bytes, since_ms: int) -> bytes:
    """The first index key of `prefix` at or after `since_ms`."""
    return prefix + f"{max(0, since_ms):016d}/".encode()


def sale_count(view: StateView) -> int:
    return get_record(view, int, COUNT_KEY) or 0


def get_sale(view: StateView, seq: int) -> Sale | None:
    raw = view.get(sale_key(seq)) if seq >= 1 else None
    if raw is None:
        return None
    offset = 0
    for _ in range((seq - 1) % SALE_GROUP):  # the sales before it in its group
        offset += 4 + int.from_bytes(raw[offset:offset + 4], "big")
    if offset >= len(raw):
        return None
    size = int.from_bytes(raw[offset:offset + 4], "big")
    return decode(Sale, raw[offset + 4:offset + 4 + size], trusted=True)  # state bytes were encoded by this node


def record_sale(ctx: TxContext, token: str, kind: str, price: int, royalty: int, seller: str, buyer: str,
                via: str, licence: str = "", purposes: tuple[str, ...] = ()) -> Sale:
    seq = sale_count(ctx.state) + 1
    sale = Sale(seq, token, kind, price, royalty, seller, buyer, via, ctx.height, ctx.timestamp, ctx.tx_id, licence,
                purposes)
    encoded = encode(sale)
    entry = len(encoded).to_bytes(4, "big") + encoded
    # Appended to its group's record (the first of a group starts it): sales are numbered in order.
    key = sale_key(seq)
    ctx.state.put(key, entry if (seq - 1) % SALE_GROUP == 0 else (ctx.state.get(key) or b"") + entry)
    ctx.put(COUNT_KEY, seq)
    # (All token sales are read as those of every kind: `ALL_PREFIXES`, `prices.ALL_SCOPES`.)
    prefixes = [purpose_prefix(p) for p in purposes] if licence else [token_prefix(token), kind_prefix(kind)]
    scopes = ([prices.purpose_scope(p) for p in purposes] if licence
              else [prices.token_scope(token), prices.kind_scope(kind)])
    for prefix, closed in zip(prefixes, prices.add_sale(ctx, scopes, price, seq), strict=True):
        if closed is not None:  # the scope's chunk before this sale's, out of its live record into the index
            timestamp, first, pairs = closed
            ctx.state.put(prefix + _suffix(timestamp, first), pairs)
    return sale


def chunk_entries(timestamp: int, pairs: bytes) -> list[tuple[int, int, int]]:
    """(time, seq, price) of the sales of a chunk at block time `timestamp` holding `pairs`, oldest first."""
    return [(timestamp, seq, price) for seq, price in prices.CHUNK_PAIR.iter_unpack(pairs)]


def index_entries(key: bytes, pairs: bytes, prefix: bytes) -> list[tuple[int, int, int]]:
    """(time, seq, price) of the sales of the closed chunk under `key` (of the index `prefix`), oldest first."""
    return chunk_entries(int(key[len(prefix):].split(b"/")[0]), pairs)


def open_entries(view: StateView, scope: bytes) -> tuple[int, list[tuple[int, int, int]]]:
    """(seq of its first sale, its sales) of the scope's open chunk, in its live price record: the newest sales of
    the index, which has every sale before that seq (0, []: no sale yet)."""
    found = prices.open_chunk(view, scope)
    return (0, []) if found is None else (found[1], chunk_entries(found[0], found[2]))


def _median(prices: list[int]) -> int | float:
    middle = statistics.median(prices)
    return int(middle) if float(middle).is_integer() else float(middle)


def window_stats(prices: list[int]) -> dict[str, Any]:
    """Count, volume, last, median and VWAP of prices in time order (nulls for none)."""
    if not prices:
        return {"count": 0, "volume": 0, "last": None, "median": None, "vwap": None}
    volume = sum(prices)
    return {"count": len(prices), "volume": volume, "last": prices[-1], "median": _median(prices),
            "vwap": volume / len(prices)}


def price_stats(entries: Iterable[tuple[int, int]], now_ms: int) -> dict[str, dict[str, Any]]:
    """Each window of WINDOWS ending at `now_ms`, over (time, price) entries in time order."""
    listed = list(entries)
    out = {}
    for name, length in WINDOWS.items():
        since = None if length is None else now_ms - length
        out[name] = window_stats([price for t, price in listed if since is None or t >= since])
    return out
