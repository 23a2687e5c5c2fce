"""Per-client budgets of the HTTP surface: a token bucket for reads and one for writes, and the
client's open connections.

A client is its IP address (IPv6 addresses by their /64, which one host usually holds whole). The
table of clients is bounded: clients without open connections are forgotten, those whose buckets
are full again first, once the table holds `MAX_CLIENTS`.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Iterable

MAX_CLIENTS = 50_000
PROOF_COST = 10.0  # a proof costs about ten cached answers to build (see README, resolve_bench)


class Bucket:
    """Tokens refill at `rate` per second up to `burst`; a request takes its cost, a batch may take more
    afterwards (`charge`) and so leave the bucket in debt, which delays the client's next requests."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def take(self, cost: float, now: float) -> float:
        """0.0 when `cost` is granted (and taken), else the seconds until it would be."""
        burst = self.burst
        tokens = self.tokens + (now - self.stamp) * self.rate
        if tokens > burst:
            tokens = burst
        self.stamp = now
        if cost > burst:
            cost = burst
        if tokens >= cost:
            self.tokens = tokens - cost
            return 0.0
        self.tokens = tokens
        return (cost - tokens) / self.rate

    def charge(self, cost: float) -> None:
        self.tokens -= cost

    def full(self, now: float) -> bool:
        return self.tokens + (now - self.stamp) * self.rate >= self.burst


class Client:
    __slots__ = ("key", "exempt", "reads", "writes", "connections")

    def __init__(self, key: str, exempt: bool, reads: Bucket, writes: Bucket) -> None:
        self.key = key
        self.exempt = exempt
        self.reads = reads
        self.writes = writes
        self.connections = 0


def client_key(host: str) -> str:
    """The client an address belongs to: the IPv4 address, or the /64 of an IPv6 address."""
    if ":" not in host:
        return host
    try:
        address = ipaddress.IPv6Address(host.split("%")[0])
    except ValueError:
        return host
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((int(address) >> 64 << 64, 64)))


class ClientTable:
    def __init__(
        self, reads: tuple[float, float], writes: tuple[float, float],
        exempt: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network], clock: Callable[[], float],
    ) -> None:
        self._reads = reads
        self._writes = writes
        self._exempt = tuple(exempt)
        self._clock = clock
        self._clients: dict[str, Client] = {}

    def __len__(self) -> int:
        return len(self._clients)

    def get(self, host: str) -> Client:
        key = client_key(host)
        client = self._clients.get(key)
        if client is None:
            if len(self._clients) >= MAX_CLIENTS:
                self._forget_idle()
            now = self._clock()
            client = Client(key, self._is_exempt(host), Bucket(*self._reads, now), Bucket(*self._writes, now))
            self._clients[key] = client
        return client

    def _is_exempt(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._exempt)

    def _forget_idle(self) -> None:
        """Forget clients without connections: those with full buckets, then the oldest, down to 3/4."""
        now = self._clock()
        idle = [k for k, c in self._clients.items() if c.connections == 0]
        keep = MAX_CLIENTS * 3 // 4
        full = [k for k in idle if self._clients[k].reads.full(now) and self._clients[k].writes.full(now)]
        for key in full:
            del self._clients[key]
        for key in idle:
            if len(self._clients) <= keep:
                break
            self._clients.pop(key, None)


def retry_after(seconds: float) -> int:
    """A `Retry-After` value: whole seconds, at least one."""
    return max(1, math.ceil(seconds))
