"""Prometheus metrics of one node, in a registry of its own (several nodes may share a process in tests)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector


class _CountersFrom(Collector):
    """Exposes a component's own counters dict (the replica's, the transport's) at scrape time."""

    def __init__(self, name: str, documentation: str, source: Callable[[], Mapping[str, int]]) -> None:
        self.name = name
        self.documentation = documentation
        self.source = source

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation, labels=["event"])
        for event, value in sorted(self.source().items()):
            family.add_metric([event], value)
        yield family


class _GaugesFrom(_CountersFrom):
    """Exposes a component's current sizes (open connections, cache entries) at scrape time."""

    def collect(self) -> Iterator[GaugeMetricFamily]:  # type: ignore[override]
        family = GaugeMetricFamily(self.name, self.documentation, labels=["what"])
        for what, value in sorted(self.source().items()):
            family.add_metric([what], value)
        yield family


class NodeMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.height = Gauge("ledger_height", "Height of the last committed block", registry=r)
        self.view = Gauge("ledger_view", "Current consensus view", registry=r)
        self.mempool = Gauge("ledger_mempool_txs", "Admitted transactions not yet committed", registry=r)
        self.blocks_committed = Counter("ledger_blocks_committed", "Blocks committed", registry=r)
        self.tx_admitted = Counter("ledger_tx_admitted", "Transactions admitted", registry=r)
        self.tx_rejected = Counter(
            "ledger_tx_rejected", "Transactions refused at admission", ["reason"], registry=r
        )
        self.tx_committed = Counter("ledger_tx_committed", "Committed transactions that succeeded", registry=r)
        self.tx_failed = Counter("ledger_tx_failed", "Committed transactions that failed", registry=r)
        self.block_commit_seconds = Histogram(
            "ledger_block_commit_seconds", "Time to write and apply a committed block", registry=r,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.http_errors = Counter("ledger_http_errors", "HTTP requests answered with 4xx/5xx", ["status"], registry=r)

    def expose_counters(self, name: str, documentation: str, source: Callable[[], Mapping[str, int]]) -> None:
        self.registry.register(_CountersFrom(name, documentation, source))

    def expose_gauges(self, name: str, documentation: str, source: Callable[[], Mapping[str, int]]) -> None:
        self.registry.register(_GaugesFrom(name, documentation, source))

    def render(self) -> bytes:
        return generate_latest(self.registry)
