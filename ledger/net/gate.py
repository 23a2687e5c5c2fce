"""Bounds on connections that have not finished their handshake: per remote address and in all.

Anyone can open TCP connections to a validator's peer port and then say nothing, or trickle a TLS
handshake a byte at a time. Each such connection is held only until its handshake times out, and
only while it is among the newest: when a new connection would exceed the bound for its address,
the oldest pending handshake *of that address* is dropped; when it would exceed the bound in all,
the oldest pending handshake overall is dropped. So one address, however many connections it
opens, holds at most `per_address` slots and cannot push out anyone else's; many addresses
together can push out a validator's handshake only by opening `total` new connections within the
few milliseconds that handshake takes. Dropping the oldest (rather than refusing the newest) keeps
a stalled slot from being held for a whole timeout while newcomers are turned away.

IPv6 addresses count per /64, the block one host usually has to itself.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Hashable
from typing import Generic, TypeVar

T = TypeVar("T", bound=Hashable)


def address_key(host: str) -> str:
    """The unit a per-address bound counts: an IPv4 address, or an IPv6 /64."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class HandshakeGate(Generic[T]):
    """Pending handshakes (any hashable ticket, e.g. the task running one), oldest first."""

    def __init__(self, total: int, per_address: int) -> None:
        if total < 1 or per_address < 1:
            raise ValueError("bounds must be at least 1")
        self.total = total
        self.per_address = per_address
        self._pending: dict[T, str] = {}  # ticket -> address key, in arrival order
        self._by_address: dict[str, dict[T, None]] = {}  # address key -> its tickets, in arrival order

    def __len__(self) -> int:
        return len(self._pending)

    def pending_from(self, host: str) -> int:
        return len(self._by_address.get(address_key(host), ()))

    def admit(self, ticket: T, host: str) -> list[T]:
        """Count `ticket` as pending from `host`; return the tickets it pushes out (already forgotten)."""
        key = address_key(host)
        evicted: list[T] = []
        same = self._by_address.get(key)
        if same is not None and len(same) >= self.per_address:
            evicted.append(next(iter(same)))
            self.release(evicted[-1])
        if len(self._pending) >= self.total:
            evicted.append(next(iter(self._pending)))
            self.release(evicted[-1])
        self._pending[ticket] = key
        self._by_address.setdefault(key, {})[ticket] = None
        return evicted

    def release(self, ticket: T) -> None:
        """The handshake ended (or was dropped); forgetting an unknown ticket is harmless."""
        key = self._pending.pop(ticket, None)
        if key is None:
            return
        same = self._by_address[key]
        del same[ticket]
        if not same:
            del self._by_address[key]
