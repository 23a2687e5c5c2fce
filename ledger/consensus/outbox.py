"""The actions one call of a replica returns, and the per-height keys it keeps on disk.

Every component of a replica writes what it wants done into the one `Outbox`; the replica hands the
list to its driver at the end of the call, in the order written (see actions.py for the ordering
rules the driver keeps). The outbox also remembers which per-height consensus keys are persisted,
so that garbage collection below a stable checkpoint can delete exactly those.

With a single validator nothing is persisted or sent: no peer can ever see a conflicting message,
so only `Deliver` actions come out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from ledger.chain import Block, CommitCertificate
from ledger.consensus.actions import (
    Action,
    Broadcast,
    Deliver,
    DropTxs,
    Evidence,
    FetchBlocks,
    ForwardTxs,
    Persist,
    Send,
)
from ledger.consensus.log import parse_height_key
from ledger.consensus.messages import Envelope, encode_envelope


class Outbox:
    def __init__(self, single: Callable[[], bool], metrics: dict[str, int]) -> None:
        self._is_single = single  # the set is this replica alone: nothing to send or persist
        self._metrics = metrics
        self._actions: list[Action] = []
        self._height_keys: dict[int, set[bytes]] = {}

    def take(self) -> list[Action]:
        """The actions written since the last take, in order."""
        out, self._actions = self._actions, []
        return out

    # --- writing -----------------------------------------------------------------------------

    def persist(self, key: bytes, value: bytes) -> None:
        """Store `value` under `key` durably before anything written after it leaves (empty: delete)."""
        if self._is_single():
            return
        parsed = parse_height_key(key)
        if parsed is not None:
            keys = self._height_keys.setdefault(parsed[1], set())
            if value:
                keys.add(key)
            else:
                keys.discard(key)
        self._actions.append(Persist(key, value))

    def broadcast(self, env: Envelope) -> None:
        self.broadcast_raw(encode_envelope(env))

    def broadcast_raw(self, message: bytes) -> None:
        if not self._is_single():
            self._actions.append(Broadcast(message))

    def send(self, to: str, env: Envelope) -> None:
        self.send_raw(to, encode_envelope(env))

    def send_raw(self, to: str, message: bytes) -> None:
        if not self._is_single():
            self._actions.append(Send(to, message))

    def forward(self, txs: Sequence[bytes], targets: Iterable[str]) -> None:
        """Hand client transactions to other validators (the primary, or all of them)."""
        if self._is_single():
            return
        for v in targets:
            self._actions.append(ForwardTxs(v, tuple(txs)))
        self._metrics["txs_forwarded"] += len(txs)

    def deliver(self, block: Block, certificate: CommitCertificate) -> None:
        self._actions.append(Deliver(block, certificate))

    def fetch(self, from_height: int) -> None:
        self._actions.append(FetchBlocks(from_height))

    def drop(self, txs: Sequence[bytes], reason: str) -> None:
        self._actions.append(DropTxs(tuple(txs), reason))

    def evidence(self, first: bytes, second: bytes) -> None:
        self._actions.append(Evidence(first, second))

    # --- the per-height keys on disk -----------------------------------------------------------

    def note_persisted(self, keys: Iterable[bytes]) -> None:
        """After a restart: these keys are on disk already."""
        for key in keys:
            parsed = parse_height_key(key)
            if parsed is not None:
                self._height_keys.setdefault(parsed[1], set()).add(key)

    def delete_upto(self, height: int) -> None:
        """Delete every per-height key at or below `height` (covered by a stable checkpoint)."""
        for h in sorted(h for h in self._height_keys if h <= height):
            for key in sorted(self._height_keys.pop(h)):
                self._actions.append(Persist(key, b""))
