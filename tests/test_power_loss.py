"""Power loss: a node reopened after a power cut holds every block it acknowledged, and never two
different blocks for one height (tests/powerloss.py models what a power cut keeps of the disk).

Three levels: the chain database committing blocks (a cut during any write), four validators in the
simulation running the node's driver over the real application (a cut instead of each crash, so
what the replica persisted before speaking must be synced), and a validator node driven in-process
by its own event loop (a cut while clients wait for their transactions)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest

from ledger.chain import (
    Block,
    CommitCertificate,
    ValidatorSignature,
    check_certificate,
    compute_block_hash,
    compute_commit_vote,
)
from ledger.chaindb import ChainDB, ExecutedBlock
from ledger.codec import encode
from ledger.config import NodeConfig
from ledger.crypto import DOMAIN_COMMIT, SigningKey, derive_id
from ledger.genesis import Genesis, GenesisMember, GenesisPrefix, GenesisValidator
from ledger.ledger_app import LedgerApp
from ledger.net.sync import BlockBatch, BlockRequest, serve_blocks
from ledger.node import Node
from ledger.resolver.registry import IdRegister, ValueSpec, get_identifier
from ledger.state import get_nonce
from ledger.store import MemoryStore
from ledger.tx import compute_tx_id, make_tx
from tests.nodeutil import CHAIN_ID, make_home
from tests.powerloss import PowerCut, PowerLossStore
from tests.sim.checks import assert_live, finish
from tests.sim.network import Network, SafetyViolation

CHAIN = "power-chain"
T0 = 1_767_225_600_000
VALIDATOR = SigningKey.from_seed(b"power-validator")
ORG = SigningKey.from_seed(b"power-org")
ADMIN = SigningKey.from_seed(b"power-admin")
GENESIS = Genesis(
    CHAIN, T0, validators=(GenesisValidator("v0", VALIDATOR.public_key),),
    members=(GenesisMember("admin", ADMIN.public_key, ("admin",)),
             GenesisMember("org", ORG.public_key, ("registrar",))),
    prefixes=(GenesisPrefix("77", ORG.id),),
)


def _register(nonce: int, name: str) -> bytes:
    return encode(make_tx(ORG, CHAIN, nonce, "id.register", IdRegister(f"77/{name}", (ValueSpec(
        1, "URL", f"https://example.org/{name}"),))))


# --- the model ---------------------------------------------------------------------------------


def test_power_loss_store_keeps_synced_writes_and_loses_the_rest() -> None:
    store = PowerLossStore(rng=random.Random(1))
    store.write_batch([(b"a", b"1")], sync=True)
    store.write_batch([(b"b", b"2")], sync=False)
    assert store.get(b"b") == b"2" and store.unsynced == 1  # visible, not yet durable
    store.write_batch([(b"c", b"3"), (b"d", b"4")], [b"a"], sync=True)  # syncs b too: the log is sequential
    assert store.unsynced == 0
    store.write_batch([(b"e", b"5")], sync=False)
    for seed in range(20):
        probe = PowerLossStore(MemoryStore(), random.Random(seed))
        probe.write_batch([(b"x", b"1"), (b"y", b"1")], sync=False)
        probe.write_batch([(b"z", b"1")], sync=False)
        after = probe.crash()
        kept = [k for k in (b"x", b"y", b"z") if after.get(k)]
        assert kept in ([], [b"x", b"y"], [b"x", b"y", b"z"])  # whole batches, oldest first
    after = store.crash()
    assert [after.get(k) for k in (b"a", b"b", b"c", b"d")] == [None, b"2", b"3", b"4"]
    assert after.get(b"e") in (None, b"5")
    with pytest.raises(PowerCut):
        store.get(b"c")  # the crashed process is gone


def test_a_cut_during_a_synced_write_leaves_it_whole_or_absent() -> None:
    outcomes = set()
    for seed in range(30):
        store = PowerLossStore(rng=random.Random(seed), cut_after_writes=2)
        store.write_batch([(b"old", b"1")], sync=True)
        with pytest.raises(PowerCut):
            store.write_batch([(b"k1", b"v"), (b"k2", b"v")], sync=True)
        after = store.crash()
        assert after.get(b"old") == b"1"
        outcomes.add((after.get(b"k1"), after.get(b"k2")))
    assert outcomes == {(None, None), (b"v", b"v")}


# --- the chain database ------------------------------------------------------------------------


def _commit_next(db: ChainDB) -> ExecutedBlock:
    """The next block of a fixed, deterministic chain: the same at a height however often it is built."""
    height = db.height + 1
    nonce = get_nonce(db.latest, ORG.id) + 1
    txs = [_register(nonce + i, f"h{height}-{i}") for i in range(1 + height % 4)]
    executed = db.build_block(txs, view=0, timestamp=T0 + height * 1000, proposer=VALIDATOR.id)
    vote = compute_commit_vote(CHAIN, executed.block.header)
    signature = ValidatorSignature(VALIDATOR.id, VALIDATOR.sign(DOMAIN_COMMIT, vote))
    db.commit(executed, CommitCertificate(height, 0, vote.block_hash, (signature,)))
    return executed


def _check_chain(db: ChainDB, acknowledged: dict[int, bytes]) -> None:
    """Every acknowledged block is there, with its hash; the chain links and certifies; the state at
    the head is what its header commits to."""
    assert db.height >= max(acknowledged, default=0), "an acknowledged block was lost"
    prev = db.get_block(0)
    assert prev is not None
    for h in range(1, db.height + 1):
        block, cert = db.get_block(h), db.get_certificate(h)
        assert block is not None and cert is not None, h
        check_certificate(cert, CHAIN, block.header, GENESIS.validator_keys())
        assert block.header.prev_hash == compute_block_hash(prev.header)
        if h in acknowledged:
            assert compute_block_hash(block.header) == acknowledged[h], f"another block at height {h}"
        for i in range(1 + h % 4):
            assert get_identifier(db.latest, f"77/h{h}-{i}") is not None
        prev = block
    assert db.head_hash == compute_block_hash(prev.header) and db.get_block(db.height + 1) is None
    assert db.state_root_at(db.height) == prev.header.state_root


def test_chain_database_keeps_every_acknowledged_block_through_power_cuts() -> None:
    """Sixty power cuts, each during a random write (the genesis write included): the reopened chain
    holds every block whose commit returned, one block per height, and goes on from there."""
    rng = random.Random(20260101)
    durable = MemoryStore()
    acknowledged: dict[int, bytes] = {}
    reached = 0
    for _ in range(60):
        store = PowerLossStore(durable, rng, cut_after_writes=rng.randint(1, 6))
        try:
            db = ChainDB(store, GENESIS)
            _check_chain(db, acknowledged)
            while True:
                executed = _commit_next(db)
                acknowledged[executed.block.header.height] = executed.block_hash  # commit returned
        except PowerCut:
            pass
        durable = store.crash().durable
        reached = max(reached, max(acknowledged, default=0))
    final = ChainDB(PowerLossStore(durable), GENESIS)
    _check_chain(final, acknowledged)
    assert reached >= 60, reached  # the cuts fell at every stage of commits, not only at the start


# --- four validators in the simulation ----------------------------------------------------------


SIM_KEYS = [SigningKey.from_seed(f"power-validator-{i}".encode()) for i in range(4)]
SIM_GENESIS = Genesis(
    chain_id="power-sim", timestamp=T0,
    validators=tuple(GenesisValidator(f"v{i}", k.public_key) for i, k in enumerate(SIM_KEYS)),
    members=(GenesisMember("admin", ADMIN.public_key, ("admin",)),),
    prefixes=(GenesisPrefix("88.100", derive_id(ADMIN.public_key)),),
)


class PowerLossLedgerApp(LedgerApp):
    """The real application over a PowerLossStore: a restart is a power cut."""

    @property
    def store(self) -> PowerLossStore:
        store = self.chain.store
        assert isinstance(store, PowerLossStore)
        return store

    def serve_blocks(self, request: BlockRequest) -> BlockBatch:
        return serve_blocks(self.chain, request)

    def restarted(self) -> PowerLossLedgerApp:
        return PowerLossLedgerApp(ChainDB(self.store.crash(), SIM_GENESIS), self.clock_ms)

    def committed(self, result: Any) -> tuple[Block, CommitCertificate]:
        assert isinstance(result, ExecutedBlock)
        cert = self.chain.get_certificate(result.block.header.height)
        assert cert is not None
        return result.block, cert


@pytest.mark.parametrize("seed", [3, 4])
def test_validators_cut_off_from_power_one_at_a_time_lose_nothing_they_acknowledged(seed: int) -> None:
    """Every crash is a power cut (unsynced writes lost, perhaps some kept). Each restarted validator
    holds every block it acknowledged before, with the same hash; the network never sees two blocks at
    a height; what a replica signed was synced before it left (the network checks against the durable
    data); and all transactions commit."""
    net_ref: list[Network] = []

    def factory() -> PowerLossLedgerApp:
        clock = lambda: T0 + 10 * (net_ref[0].time if net_ref else 0)  # noqa: E731
        return PowerLossLedgerApp(ChainDB(PowerLossStore(rng=random.Random(seed)), SIM_GENESIS), clock)

    net = Network(4, seed, keys=SIM_KEYS, chain_id=SIM_GENESIS.chain_id, drop=0.02,
                  app_factory=factory,  # type: ignore[arg-type]  # LedgerApp.validate's `fresh` has no default
                  config={"batch_size": 4})
    net_ref.append(net)
    txs = [encode(make_tx(ADMIN, SIM_GENESIS.chain_id, i + 1, "id.register", IdRegister(
        f"88.100/PL-{i:04d}", (ValueSpec(1, "URL", f"https://twin.example/PL-{i}"),)))) for i in range(48)]
    entry = 0  # one client, one node: nonces in order
    cuts = 0
    for i in range(0, len(txs), 4):
        net.submit(txs[i:i + 4], entry)
        net.run(net.rng.randint(3, 12))
        if i % 8 == 4:
            victim = net.rng.choice([1, 2, 3])
            acknowledged = list(net.nodes[victim].committed)
            net.crash(victim)
            net.run(net.rng.randint(0, 30))
            net.restart(victim)
            cuts += 1
            app = net.nodes[victim].app
            assert isinstance(app, PowerLossLedgerApp)
            for h, (block_hash, _) in enumerate(acknowledged[1:], start=1):
                block = app.chain.get_block(h)
                assert block is not None and compute_block_hash(block.header) == block_hash, (victim, h)
    assert_live(net, txs, within=6000, retry_every=500)
    finish(net)
    assert cuts == 6
    heads = {n.app.chain.head_hash for n in net.nodes}  # type: ignore[attr-defined]
    assert len(heads) == 1


class UnsyncedStore(PowerLossStore):
    """A disk (or a driver) that never syncs: every write is only in the page cache."""

    def write_batch(self, puts: Any, deletes: Any = (), sync: bool = True) -> None:
        super().write_batch(puts, deletes, sync=False)


def test_the_simulation_catches_a_replica_that_speaks_before_syncing() -> None:
    """The check above can fail: a replica whose records are not synced when its prepare leaves is
    caught at once."""
    from tests.sim.apps import FakeApp

    net = Network(4, 1)
    unsynced = Network(4, 1, app_factory=lambda: FakeApp(net.chain_id, net.validator_keys, store=UnsyncedStore()))
    unsynced.submit([b"a", b"b", b"c", b"d"])
    with pytest.raises(SafetyViolation, match="had not persisted"):
        unsynced.run(50)


# --- a node driven in-process -------------------------------------------------------------------


async def _load_until_cut(node: Node, home: Any, count: int) -> dict[bytes, int]:
    """One client sends up to `count` transactions one after the other (nonces in order) until the
    power goes out; returns those it was told committed (tx id -> height)."""
    acknowledged: dict[bytes, int] = {}
    await node.start()
    first = get_nonce(node.chain.latest, home.org1.id) + 1
    for nonce in range(first, first + count):
        raw = encode(make_tx(home.org1, CHAIN_ID, nonce, "id.register", IdRegister(
            f"88.100.1/PW-{nonce}", (ValueSpec(1, "URL", f"https://twin.example/PW-{nonce}"),))))
        if node.failed is not None or not node.submit([raw])[0].accepted:
            break
        outcome = (await node.wait_committed([compute_tx_id(raw)], timeout=2))[0]
        if outcome is None or node.failed is not None:
            break
        acknowledged[compute_tx_id(raw)] = outcome.height  # type: ignore[union-attr]
    return acknowledged


def test_a_node_reopened_after_a_power_cut_holds_every_transaction_it_acknowledged(tmp_path: Path) -> None:
    """A single-validator node on its own event loop; the power goes out during one of its writes
    (a block, its consensus records); the node reopened over what survived has every transaction a
    client was told committed, at the height it was told, and goes on committing."""
    home = make_home(tmp_path, prefixes=(("88.100.1", "org1"),))
    config = NodeConfig.load(home.path)
    rng = random.Random(7)
    survived = MemoryStore()
    total: dict[bytes, int] = {}
    for _ in range(4):
        store = PowerLossStore(survived, rng, cut_after_writes=rng.randint(3, 12))
        fatal: list[BaseException] = []
        node = Node(config, store=store, on_fatal=fatal.append)
        for tx_id, height in total.items():  # everything acknowledged before is still there
            loc = node.chain.get_tx_location(tx_id)
            assert loc is not None and loc.height == height
        start = node.chain.height
        acknowledged = asyncio.run(_run_and_stop(node, home, 40))
        assert fatal, "the power never went out"
        total.update(acknowledged)
        survived = store.crash().durable
        assert all(h > start for h in acknowledged.values())
    reopened = Node(config, store=PowerLossStore(survived), on_fatal=lambda exc: None)
    for tx_id, height in total.items():
        loc = reopened.chain.get_tx_location(tx_id)
        assert loc is not None and loc.height == height and loc.ok
    assert len(total) >= 10, len(total)
    asyncio.run(reopened.stop())


async def _run_and_stop(node: Node, home: Any, count: int) -> dict[bytes, int]:
    try:
        return await _load_until_cut(node, home, count)
    finally:
        await node.stop()
