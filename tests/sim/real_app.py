"""A simulated network of validators running the real application (LedgerApp over ChainDB on a
MemoryStore), with a block time that follows the simulation's clock: for scenarios that need real
transactions, state and certificates rather than FakeApp's hash chain."""

from __future__ import annotations

from typing import Any

from ledger.chain import Block, CommitCertificate
from ledger.chaindb import ChainDB, ExecutedBlock
from ledger.crypto import SigningKey
from ledger.genesis import Genesis
from ledger.ledger_app import LedgerApp
from ledger.net.sync import BlockBatch, BlockRequest, serve_blocks
from ledger.store import MemoryStore, Store
from tests.sim.network import Network

TICK_MS = 10  # block-time milliseconds per simulated step


def real_app_network(
    genesis: Genesis, keys: list[SigningKey], seed: int, config: dict[str, Any] | None = None
) -> Network:
    """A network of len(keys) validators of `genesis` (in its order), each running LedgerApp."""
    net_ref: list[Network] = []

    def clock() -> int:
        return genesis.timestamp + TICK_MS * (net_ref[0].time if net_ref else 0)

    class SimLedgerApp(LedgerApp):
        @property
        def store(self) -> Store:
            return self.chain.store

        def serve_blocks(self, request: BlockRequest) -> BlockBatch:
            return serve_blocks(self.chain, request)

        def restarted(self) -> SimLedgerApp:  # the same disk, a new process
            return SimLedgerApp(ChainDB(self.chain.store, genesis), clock)

        def committed(self, result: ExecutedBlock) -> tuple[Block, CommitCertificate]:
            cert = self.chain.get_certificate(result.block.header.height)
            assert cert is not None
            return result.block, cert

    def factory() -> SimLedgerApp:
        return SimLedgerApp(ChainDB(MemoryStore(), genesis), clock)

    net = Network(len(keys), seed, keys=keys, chain_id=genesis.chain_id,
                  app_factory=factory, config=config)  # type: ignore[arg-type]
    net_ref.append(net)
    return net
