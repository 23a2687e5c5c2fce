"""The chain a replica has delivered: its height and hash, recent hashes, the last certificate.

Blocks reach the head two ways: the replica delivers them itself (`record_delivered`: the driver
applies them after the call that returned the `Deliver`), or the driver applied a certified block
fetched by catch-up and says so (`record_applied`). `applied` is the height the application holds:
within one call, blocks above it were delivered but not applied yet, and the replica builds on them
only if the application executed them (see ordering.py).
"""

from __future__ import annotations

from ledger.chain import CommitCertificate


class Head:
    def __init__(self, height: int) -> None:
        self._height = height
        self._applied = height
        self._hash: bytes | None = None  # None: not known since a restart (no certificate persisted)
        self._hashes: dict[int, bytes] = {}
        self._last_cert: CommitCertificate | None = None
        self._last_delivery = 0  # tick

    @property
    def height(self) -> int:
        return self._height

    @property
    def hash(self) -> bytes | None:
        return self._hash

    @property
    def last_cert(self) -> CommitCertificate | None:
        return self._last_cert

    @property
    def last_delivery(self) -> int:
        return self._last_delivery

    def hash_at(self, height: int) -> bytes | None:
        return self._hashes.get(height)

    @property
    def applied(self) -> int:
        """The height the application holds (the driver applied every block up to it)."""
        return self._applied

    def is_applied(self, height: int) -> bool:
        return height <= self._applied

    def begin_call(self) -> None:
        """The driver applied every Deliver returned so far."""
        self._applied = self._height

    def record_delivered(self, height: int, block_hash: bytes, cert: CommitCertificate, now: int) -> None:
        self._height = height
        self._hash = block_hash
        self._hashes[height] = block_hash
        self._last_cert = cert
        self._last_delivery = now

    def record_applied(self, height: int, block_hash: bytes, cert: CommitCertificate | None, now: int) -> None:
        """The driver applied a certified block (catch-up); `cert` when it is that block's."""
        self._height = self._applied = height
        self._hash = block_hash
        self._hashes[height] = block_hash
        if cert is not None:
            self._last_cert = cert
        self._last_delivery = now

    def forget_below(self, floor: int) -> None:
        for h in [h for h in self._hashes if h < floor and h != self._height]:
            del self._hashes[h]

    def restore(self, cert: CommitCertificate | None) -> None:
        """After a restart: the persisted certificate of the last delivered block."""
        self._last_cert = cert
        if cert is not None and cert.height == self._height:
            self._hash = cert.block_hash
            self._hashes[self._height] = cert.block_hash
