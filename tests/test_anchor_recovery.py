"""Recovering anchor receipts the ledger lost (issue 6): the pure plan, and the service on a real
single-validator node against the in-memory contract of tests/test_anchor_service.py."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ledger.anchor.records import AnchorRecord, get_anchor_record, latest_recorded_height
from ledger.anchor.recovery import AnchorReceipt, plan_recovery, scan_start
from ledger.anchor.service import AnchorService
from ledger.chain import CommitCertificate, compute_block_hash
from ledger.chaindb import ChainDB
from ledger.codec import encode
from ledger.crypto import SigningKey
from ledger.genesis import Genesis, GenesisMember, GenesisValidator
from ledger.mempool import Admission, Outcome
from ledger.node import Node
from ledger.state import get_nonce
from ledger.store import MemoryStore
from ledger.tx import make_tx
from tests.nodeutil import CHAIN_ID, make_home
from tests.test_anchor_service import CONTRACT, SUBMITTER, FakeChain, _cfg, _register, _until, _with_node

OTHER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"  # another validator's Ethereum address


def _receipt(height: int, root: bytes, block: int) -> AnchorReceipt:
    return AnchorReceipt(height, root, height.to_bytes(32, "big"), block, OTHER)


def _root(height: int) -> bytes:
    return bytes([height]) * 32


# --------------------------------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------------------------------


def test_plan_records_unrecorded_heights_in_order_and_never_a_foreign_root() -> None:
    found = [_receipt(7, _root(7), 30), _receipt(3, _root(3), 10), _receipt(5, b"\xee" * 32, 20),
             _receipt(3, _root(3), 10), _receipt(2, _root(2), 5), _receipt(9, _root(9), 40)]
    plan = plan_recovery(found, recorded=lambda h: h == 2, head=8,
                         block_hash=lambda h: _root(h) if h <= 8 else None)
    assert [r.height for r in plan.record] == [3, 7]  # 2 is recorded; 3 listed twice is recorded once
    assert [r.height for r in plan.foreign] == [5]  # the contract's root is not our block 5
    assert plan.ahead  # 9 is above this node's head: it is still catching up


def test_scan_starts_at_the_latest_record_on_the_same_contract() -> None:
    rec = AnchorRecord(4, _root(4), 31337, CONTRACT, b"\x01" * 32, 120, SUBMITTER)
    assert scan_start(rec, 31337, CONTRACT.lower()) == 120
    assert scan_start(None, 31337, CONTRACT) == 0
    assert scan_start(rec, 1, CONTRACT) == 0  # another chain
    assert scan_start(rec, 31337, OTHER) == 0  # a redeployed contract: its events start afresh
    # Never before the contract's deployment block (public RPCs limit eth_getLogs ranges).
    assert scan_start(None, 31337, CONTRACT, deploy_block=90) == 90
    assert scan_start(rec, 31337, OTHER, deploy_block=90) == 90
    assert scan_start(rec, 31337, CONTRACT.lower(), deploy_block=90) == 120


# --------------------------------------------------------------------------------------------------
# The service
# --------------------------------------------------------------------------------------------------


def _block_hash(node: Node | _Backup, height: int) -> bytes:
    block = node.chain.get_block(height)
    assert block is not None
    return compute_block_hash(block.header)


def test_restart_records_the_anchor_sent_before_the_crash_without_anchoring_again(tmp_path: Path) -> None:
    home = make_home(tmp_path, prefixes=(("88.100.1", "org1"),))
    fake = FakeChain()

    async def body(node: Node) -> None:
        for n in range(1, 4):
            await _register(node, home, n)
        # The previous life of this validator anchored block 3, then died before recording it.
        fake.anchor(3, _block_hash(node, 3), submitter=OTHER)
        svc = AnchorService(node, _cfg(interval_blocks=100), client_factory=fake.client)
        node.anchoring = svc
        svc.start()
        await _until(lambda: latest_recorded_height(node.chain.latest) == 3)
        rec = get_anchor_record(node.chain.latest, 3)
        assert rec == AnchorRecord(3, fake.roots[3], 31337, CONTRACT, (3).to_bytes(32, "big"), 103, OTHER)
        status = node.status()["anchoring"]
        assert status["recovered"] == 1 and status["last_error"] is None and status["unrecorded"] == 0
        # Anchoring goes on above it, once there is new work.
        svc.cfg = _cfg()
        for n in range(4, 7):
            await _register(node, home, n)
        await _until(lambda: fake.submits != [])
        assert fake.submits[0] > 3 and len(fake.events) == 2
        await svc.stop()

    _with_node(home, body)


def test_two_unrecorded_anchors_are_both_recorded_lowest_first(tmp_path: Path) -> None:
    home = make_home(tmp_path, prefixes=(("88.100.1", "org1"),))
    fake = FakeChain()

    async def body(node: Node) -> None:
        for n in range(1, 5):
            await _register(node, home, n)
        # Two validators anchored at nearly the same time; both died before recording.
        fake.anchor(2, _block_hash(node, 2), submitter=OTHER)
        fake.anchor(4, _block_hash(node, 4), submitter=OTHER)
        svc = AnchorService(node, _cfg(interval_blocks=100), client_factory=fake.client)
        await svc.step()
        view = node.chain.latest
        assert [h for h in range(1, 5) if get_anchor_record(view, h)] == [2, 4]
        assert fake.submits == [] and svc.recovered == 2
        await svc.stop()

    _with_node(home, body)


def test_a_foreign_root_is_reported_not_recorded_and_anchoring_goes_on(tmp_path: Path) -> None:
    home = make_home(tmp_path, prefixes=(("88.100.1", "org1"),))
    fake = FakeChain()

    async def body(node: Node) -> None:
        for n in range(1, 3):
            await _register(node, home, n)
        fake.anchor(2, b"\xee" * 32, submitter=OTHER)  # not our block 2
        svc = AnchorService(node, _cfg(), client_factory=fake.client, backoff_base=0.05)
        node.anchoring = svc
        svc.start()
        await _until(lambda: svc.foreign == [2])
        status = node.status()["anchoring"]
        assert get_anchor_record(node.chain.latest, 2) is None
        assert status["foreign_heights"] == [2] and "not this ledger's block" in status["last_error"]
        for n in range(3, 6):
            await _register(node, home, n)
        await _until(lambda: latest_recorded_height(node.chain.latest) > 2)
        assert len(fake.submits) == 1 and fake.submits[0] > 2 and get_anchor_record(node.chain.latest, 2) is None
        await svc.stop()

    _with_node(home, body)


def test_an_anchor_above_the_head_waits_until_the_node_has_the_block(tmp_path: Path) -> None:
    home = make_home(tmp_path, prefixes=(("88.100.1", "org1"),))
    fake = FakeChain()

    async def body(node: Node) -> None:
        await _register(node, home, 1)
        fake.anchor(50, b"\x01" * 32, submitter=OTHER)  # the network is ahead of this (lagging) node
        svc = AnchorService(node, _cfg(), client_factory=fake.client)
        await svc.step()
        assert latest_recorded_height(node.chain.latest) == 0 and fake.submits == [] and svc.last_error is None
        await svc.stop()

    _with_node(home, body)


# --------------------------------------------------------------------------------------------------
# A backup of four validators: it waits its turn before recording a dead sender's anchor
# --------------------------------------------------------------------------------------------------


class _Backup:
    """Just enough of a node for the service: a 4-validator chain that commits each submitted tx at once."""

    def __init__(self, keys: list[SigningKey], me: int) -> None:
        validators = tuple(GenesisValidator(f"v{i}", k.public_key) for i, k in enumerate(keys))
        admin = GenesisMember("admin", SigningKey.from_seed(b"admin").public_key, ("admin",))
        self.genesis = Genesis(CHAIN_ID, 0, validators, members=(admin,), prefixes=())
        self.key = keys[me]
        self.chain = ChainDB(MemoryStore(), self.genesis)
        self.replica = SimpleNamespace(view=0)
        self.outcomes: dict[bytes, Outcome] = {}

    def add_commit_listener(self, listener: object) -> None:
        pass

    def submit(self, raws: list[bytes]) -> list[Admission]:
        executed = self.chain.build_block(raws, 0, int(time.time() * 1000), self.key.id)
        self.chain.commit(executed, CommitCertificate(executed.block.header.height, 0, executed.block_hash, ()))
        for index, r in enumerate(executed.results):
            self.outcomes[r.tx_id] = Outcome(r.tx_id, executed.block.header.height, index, r.ok, r.reason, r.message)
        return [Admission(r.tx_id, True) for r in executed.results]

    def submit_system(self, kind: str, payload: Any) -> Admission:
        nonce = get_nonce(self.chain.latest, self.key.id) + 1
        (admission,) = self.submit([encode(make_tx(self.key, CHAIN_ID, nonce, kind, payload))])
        return admission

    async def wait_committed(self, tx_ids: list[bytes], timeout: float) -> list[Outcome | None]:
        return [self.outcomes.get(t) for t in tx_ids]


def test_a_backup_records_a_dead_senders_anchor_only_when_its_turn_comes() -> None:
    keys = [SigningKey.from_seed(b"v%d" % i) for i in range(4)]
    node = _Backup(keys, me=2)  # validator 0 is designated after height 0; validator 2 is its second backup
    for _ in range(3):
        node.submit([])
    fake = FakeChain()
    fake.anchor(3, _block_hash(node, 3), submitter=OTHER)  # validator 0 anchored block 3, then died
    now = [1000.0]
    svc = AnchorService(node, _cfg(grace_s=10.0), client_factory=fake.client, clock=lambda: now[0])  # type: ignore[arg-type]

    async def look_at(t: float) -> int:
        now[0] = 1000.0 + t
        await svc.step()
        return latest_recorded_height(node.chain.latest)

    async def main() -> None:
        assert await look_at(0) == 0  # seen, but validator 0 and then 1 come first
        assert await look_at(19.9) == 0
        assert await look_at(20.0) == 3  # 2 * grace_s later, validator 2 records it
        await svc.stop()

    asyncio.run(main())
    rec = get_anchor_record(node.chain.latest, 3)
    assert rec is not None and rec.submitter == OTHER and rec.tx_hash == (3).to_bytes(32, "big")
    assert svc.recovered == 1 and fake.submits == []
