"""Transactions a validator signs with its node key (anchor receipts, equivocation evidence).

Theory of operation: the node's key has one nonce sequence, and more than one service writes with
it. `SystemTxs` is its one owner: each new system transaction takes the next nonce above both the
committed one and those of its transactions still pending, so two services never collide, and a
refused transaction leaves no gap behind it. Asked again for the same (kind, payload) while its
transaction is pending, it gives the same bytes, which admission answers as a duplicate: already on
its way.
"""

from __future__ import annotations

from typing import Any

from ledger.codec import encode
from ledger.crypto import SigningKey
from ledger.mempool import Mempool
from ledger.state import StateView, get_nonce
from ledger.tx import compute_tx_id, make_tx


class SystemTxs:
    def __init__(self, key: SigningKey, chain_id: str, mempool: Mempool) -> None:
        self._key = key
        self._chain_id = chain_id
        self._mempool = mempool
        self._pending: dict[bytes, tuple[bytes, int, bytes]] = {}  # tx id -> (kind and payload, nonce, raw)

    def sign(self, state: StateView, kind: str, payload: Any) -> bytes:
        """The transaction carrying `payload` as `kind`, signed with the node key (see the module comment)."""
        what = kind.encode() + b"\0" + encode(payload)
        self._pending = {t: p for t, p in self._pending.items() if self._mempool.is_pending(t)}
        for what_pending, _, raw in self._pending.values():
            if what_pending == what:
                return raw
        nonce = max([get_nonce(state, self._key.id), *(n for _, n, _ in self._pending.values())]) + 1
        raw = encode(make_tx(self._key, self._chain_id, nonce, kind, payload))
        self._pending[compute_tx_id(raw)] = (what, nonce, raw)
        return raw
