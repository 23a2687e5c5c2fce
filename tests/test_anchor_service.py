"""The anchoring service's decisions, the `anchor.record` module, and the service on a real node with a fake chain."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from ledger.anchor.ethclient import AnchorConflict, derive_eth_key, eth_account_for
from ledger.anchor.records import AnchorRecord, get_anchor_record, latest_recorded_height
from ledger.anchor.recovery import AnchorReceipt
from ledger.anchor.service import AnchorService, anchor_due, backoff_delay, designated_index, takeover_rank
from ledger.assembly import build_node
from ledger.chaindb import ChainDB
from ledger.codec import encode
from ledger.config import EthereumConfig, NodeConfig, write_config
from ledger.crypto import SigningKey
from ledger.node import Node
from ledger.resolver.registry import IdRegister, ValueSpec
from ledger.store import MemoryStore
from ledger.tx import make_tx
from tests.nodeutil import CHAIN_ID, Home, make_home

CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
SUBMITTER = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"

# --------------------------------------------------------------------------------------------------
# Pure decisions
# --------------------------------------------------------------------------------------------------


def test_designation_rotates_with_view_and_anchors() -> None:
    assert [designated_index(0, last, 4) for last in (0, 1, 2, 3, 4)] == [0, 1, 2, 3, 0]
    assert designated_index(1, 0, 4) == 1  # a view change moves the designation too
    assert designated_index(7, 10, 1) == 0


def test_takeover_rank_orders_backups_after_the_designated_one() -> None:
    assert [takeover_rank(i, 2, 4) for i in range(4)] == [2, 3, 0, 1]
    assert takeover_rank(0, 0, 1) == 0


def test_backoff_doubles_and_is_capped() -> None:
    assert backoff_delay(0) == 0.0
    assert [backoff_delay(a, 0.5, 60) for a in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert backoff_delay(50, 0.5, 60) == 60
    assert backoff_delay(10_000, 1, 5) == 5


def test_anchor_due_by_blocks_or_time_only_with_unanchored_work() -> None:
    assert not anchor_due(head=10, work_height=5, last_anchored=5, interval_blocks=3, waited_s=99, interval_s=1)
    assert anchor_due(head=8, work_height=8, last_anchored=5, interval_blocks=3, waited_s=0, interval_s=60)
    assert not anchor_due(head=7, work_height=7, last_anchored=5, interval_blocks=3, waited_s=0, interval_s=60)
    assert anchor_due(head=7, work_height=7, last_anchored=5, interval_blocks=3, waited_s=60, interval_s=60)
    assert not anchor_due(head=5, work_height=5, last_anchored=5, interval_blocks=1, waited_s=60, interval_s=60)


def test_eth_key_is_deterministic_per_node_key() -> None:
    a, b = SigningKey.from_seed(b"a"), SigningKey.from_seed(b"b")
    assert derive_eth_key(a) == derive_eth_key(SigningKey.from_seed(b"a"))
    assert derive_eth_key(a) != derive_eth_key(b) and len(derive_eth_key(a)) == 32


def test_the_ethereum_account_is_the_key_file_or_derived_on_a_development_chain(tmp_path: Path) -> None:
    node_key = SigningKey.from_seed(b"a")
    key_file = tmp_path / "eth.key"
    key_file.write_text("0x" + "11" * 32 + "\n")
    key_file.chmod(0o600)
    from_file = eth_account_for(node_key, EthereumConfig(rpc="x", contract=CONTRACT, key_file=key_file))
    assert bytes(from_file.key) == bytes.fromhex("11" * 32)
    dev = EthereumConfig(rpc="x", contract=CONTRACT, chain_id=31337, dev_key_from_node_key=True)
    assert bytes(eth_account_for(node_key, dev).key) == derive_eth_key(node_key)


def test_ethereum_config_is_optional(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    assert NodeConfig.load(home.path).ethereum is None
    section = {"rpc": "http://x", "contract": CONTRACT, "chain_id": 5, "key_file": "k"}
    cfg = EthereumConfig.model_validate(section, context={"home": home.path})
    assert cfg.chain_id == 5 and cfg.key_file == home.path / "k" and cfg.interval_blocks == 1000
    assert cfg.deploy_block == 0  # scans of the contract's events start at its deployment block when given
    assert EthereumConfig(rpc="http://x", contract=CONTRACT, key_file=Path("k"), deploy_block=77).deploy_block == 77


# --------------------------------------------------------------------------------------------------
# The anchor.record module
# --------------------------------------------------------------------------------------------------


def _record(height: int, h: bytes = b"\x11" * 32) -> AnchorRecord:
    return AnchorRecord(height, h, 31337, CONTRACT, b"\x22" * 32, 7, SUBMITTER)


def _run_block(chain: ChainDB, txs: list[bytes]) -> list[tuple[bool, str]]:
    executed = chain.build_block(txs, 0, int(time.time() * 1000), "x")
    from ledger.chain import CommitCertificate

    chain.commit(executed, CommitCertificate(executed.block.header.height, 0, executed.block_hash, ()))
    return [(r.ok, r.reason) for r in executed.results]


def test_anchor_record_only_from_validators_and_only_that_kind(tmp_path: Path) -> None:
    home = make_home(tmp_path, prefixes=(("88.1", "org1"),))
    chain = ChainDB(MemoryStore(), home.genesis)
    v = home.validator
    assert _run_block(chain, []) == []
    txs = [
        make_tx(v, CHAIN_ID, 1, "anchor.record", _record(1)),  # ok
        make_tx(v, CHAIN_ID, 2, "anchor.record", _record(1, b"\x33" * 32)),  # height recorded already
        make_tx(v, CHAIN_ID, 3, "anchor.record", _record(2)),  # not below the recording block
        make_tx(home.org1, CHAIN_ID, 1, "anchor.record", _record(1)),  # a member is not a validator
        make_tx(v, CHAIN_ID, 4, "id.register", IdRegister("88.1/x", (ValueSpec(1, "URL", "u"),))),
    ]
    results = _run_block(chain, [encode(t) for t in txs])
    assert results[0] == (True, "")
    assert results[1] == (False, "already_exists")
    assert results[2] == (False, "invalid_value")
    assert results[3] == (False, "unauthorized")
    assert results[4] == (False, "unauthorized")  # a validator sends system kinds only
    rec = get_anchor_record(chain.latest, 1)
    assert rec is not None and rec.block_hash == b"\x11" * 32
    assert latest_recorded_height(chain.latest) == 1


def test_anchor_record_rejects_bad_fields(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    chain = ChainDB(MemoryStore(), home.genesis)
    _run_block(chain, [])
    _run_block(chain, [])
    bad = [
        AnchorRecord(1, b"\x11" * 31, 1, CONTRACT, b"\x22" * 32, 1, SUBMITTER),
        AnchorRecord(1, b"\x11" * 32, 1, "0x1234", b"\x22" * 32, 1, SUBMITTER),
        AnchorRecord(1, b"\x11" * 32, 0, CONTRACT, b"\x22" * 32, 1, SUBMITTER),
        AnchorRecord(0, b"\x11" * 32, 1, CONTRACT, b"\x22" * 32, 1, SUBMITTER),
    ]
    txs = [encode(make_tx(home.validator, CHAIN_ID, i + 1, "anchor.record", r)) for i, r in enumerate(bad)]
    assert [r[1] for r in _run_block(chain, txs)] == ["invalid_value"] * 4


# --------------------------------------------------------------------------------------------------
# The service on a real single-validator node, with a fake chain
# --------------------------------------------------------------------------------------------------


class FakeChain:
    """An in-memory LedgerAnchor: same rules (heights increase, once each)."""

    def __init__(self) -> None:
        self.roots: dict[int, bytes] = {}
        self.latest = 0
        self.down = False
        self.calls = 0
        self.submits: list[int] = []
        self.events: list[AnchorReceipt] = []

    def anchor(self, height: int, root: bytes, submitter: str = SUBMITTER) -> AnchorReceipt:
        """Anchor as the contract would, emitting the event (tx hash and block derive from the height)."""
        if height <= self.latest:
            raise AnchorConflict("HeightNotIncreasing" if height not in self.roots else "AlreadyAnchored")
        self.roots[height] = root
        self.latest = height
        receipt = AnchorReceipt(height, root, height.to_bytes(32, "big"), 100 + height, submitter)
        self.events.append(receipt)
        return receipt

    def client(self) -> FakeClient:
        if self.down:
            raise ConnectionError("fake RPC is down")
        return FakeClient(self)


class FakeClient:
    chain_id = 31337
    contract = CONTRACT
    address = SUBMITTER

    def __init__(self, chain: FakeChain) -> None:
        self.chain = chain

    def latest_height(self) -> int:
        if self.chain.down:
            raise ConnectionError("fake RPC is down")
        return self.chain.latest

    def submit(self, height: int, root: bytes) -> AnchorReceipt:
        c = self.chain
        if c.down:
            raise ConnectionError("fake RPC is down")
        receipt = c.anchor(height, root)
        c.submits.append(height)
        return receipt

    def anchored_since(self, from_block: int) -> list[AnchorReceipt]:
        if self.chain.down:
            raise ConnectionError("fake RPC is down")
        return [r for r in self.chain.events if r.eth_block >= from_block]


def _cfg(**kw: float) -> EthereumConfig:
    base = {"interval_blocks": 3, "interval_s": 60.0, "grace_s": 1.0, "max_backoff_s": 0.2}
    base.update(kw)
    return EthereumConfig(rpc="fake", contract=CONTRACT, chain_id=31337, dev_key_from_node_key=True,
                          **base)  # type: ignore[arg-type]


async def _until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


def _with_node(home: Home, body: Callable[[Node], Awaitable[None]]) -> None:
    async def main() -> None:
        node = Node(NodeConfig.load(home.path))
        await node.start()
        try:
            await body(node)
        finally:
            await node.stop()

    asyncio.run(asyncio.wait_for(main(), 60))


async def _register(node: Node, home: Home, nonce: int) -> None:
    tx = make_tx(home.org1, CHAIN_ID, nonce, "id.register",
                 IdRegister(f"88.100.1/a{nonce}", (ValueSpec(1, "URL", "https://x"),)))
    (adm,) = node.submit([encode(tx)])
    assert adm.accepted, adm
    (out,) = await node.wait_committed([adm.tx_id], timeout=10)
    assert out is not None and out.ok


def test_service_anchors_every_k_blocks_and_records_the_receipt(tmp_path: Path) -> None:
    home = make_home(tmp_path, prefixes=(("88.100.1", "org1"),))
    fake = FakeChain()

    async def body(node: Node) -> None:
        svc = AnchorService(node, _cfg(), client_factory=fake.client, backoff_base=0.05)
        node.anchoring = svc
        svc.start()
        for n in range(1, 4):
            await _register(node, home, n)
        await _until(lambda: latest_recorded_height(node.chain.latest) >= 3)
        assert fake.submits == [3]
        rec = get_anchor_record(node.chain.latest, 3)
        assert rec is not None
        block3 = node.chain.get_block(3)
        assert block3 is not None
        from ledger.chain import compute_block_hash

        assert rec.block_hash == compute_block_hash(block3.header) == fake.roots[3]
        assert rec.tx_hash == (3).to_bytes(32, "big") and rec.eth_block == 103
        # The record's own block is not work: nothing more is anchored while idle.
        await asyncio.sleep(0.5)
        assert fake.submits == [3]
        s = node.status()["anchoring"]
        assert s["enabled"] and s["last_anchored_height"] == 3 and s["last_error"] is None
        assert s["tx_hash"] == "0x" + (3).to_bytes(32, "big").hex() and s["pending"] == node.chain.height - 3
        await svc.stop()

    _with_node(home, body)


def test_service_anchors_after_interval_s_with_few_blocks(tmp_path: Path) -> None:
    home = make_home(tmp_path, prefixes=(("88.100.1", "org1"),))
    fake = FakeChain()

    async def body(node: Node) -> None:
        svc = AnchorService(node, _cfg(interval_blocks=100, interval_s=0.3), client_factory=fake.client)
        node.anchoring = svc
        svc.start()
        await _register(node, home, 1)
        await asyncio.sleep(0.1)
        assert fake.submits == []
        await _until(lambda: fake.submits == [1], timeout=5)
        await svc.stop()

    _with_node(home, body)


def test_rpc_down_backs_off_and_resumes_without_double_anchors(tmp_path: Path) -> None:
    home = make_home(tmp_path, prefixes=(("88.100.1", "org1"),))
    fake = FakeChain()

    async def body(node: Node) -> None:
        svc = AnchorService(node, _cfg(), client_factory=fake.client, backoff_base=0.05)
        node.anchoring = svc
        svc.start()
        fake.down = True
        for n in range(1, 4):
            await _register(node, home, n)  # the ledger does not wait for Ethereum
        await _until(lambda: svc.attempt >= 3)
        assert fake.submits == [] and "down" in (node.status()["anchoring"]["last_error"] or "")
        fake.down = False
        await _until(lambda: latest_recorded_height(node.chain.latest) == 3)
        assert fake.submits == [3] and svc.last_error is None
        await svc.stop()
        # A restarted service (fresh memory) reads the contract and the ledger: no second anchor.
        svc2 = AnchorService(node, _cfg(), client_factory=fake.client)
        node.anchoring = svc2
        svc2.start()
        await asyncio.sleep(0.5)
        assert fake.submits == [3] and svc2.conflicts == 0
        for n in range(4, 7):
            await _register(node, home, n)
        await _until(lambda: len(fake.submits) == 2)
        assert fake.submits[1] > 3
        await svc2.stop()

    _with_node(home, body)


def test_conflict_from_the_contract_is_not_an_error(tmp_path: Path) -> None:
    home = make_home(tmp_path, prefixes=(("88.100.1", "org1"),))
    fake = FakeChain()

    async def body(node: Node) -> None:
        for n in range(1, 4):
            await _register(node, home, n)
        # Someone else anchored a higher height, which this node has not seen yet: the contract says no.
        fake.roots[50], fake.latest = b"\x01" * 32, 50
        svc = AnchorService(node, _cfg(), client_factory=fake.client)
        svc.chain_latest = 0
        await svc.step()
        assert fake.submits == [] and svc.last_error is None and svc.chain_latest == 50

        # A submit racing another validator: reads said 0 until the contract refused the anchor.
        fake2 = FakeChain()
        svc2 = AnchorService(node, _cfg(), client_factory=fake2.client)
        client = fake2.client()
        orig_latest, orig_submit = client.latest_height, client.submit
        refused: list[int] = []

        def stale_latest() -> int:
            return orig_latest() if refused else 0

        def racing_submit(height: int, root: bytes) -> AnchorReceipt:
            refused.append(height)
            return orig_submit(height, root)

        fake2.anchor(3, b"\x02" * 32)
        client.latest_height = stale_latest  # type: ignore[method-assign]
        client.submit = racing_submit  # type: ignore[method-assign]
        svc2._client = client
        await svc2.step()
        assert refused == [3]
        assert svc2.conflicts == 1 and svc2.last_error is None and svc2.chain_latest == 3
        await svc.stop()
        await svc2.stop()

    _with_node(home, body)


def test_status_and_anchor_route_without_ethereum(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from ledger.api.server import create_app

    home = make_home(tmp_path)
    with TestClient(create_app(home.path)) as c:
        s = c.get("/v1/status").json()["anchoring"]
        assert s["enabled"] is False and s["last_anchored_height"] is None
        r = c.get("/v1/anchors/1")
        assert r.status_code == 404
        assert c.get("/v1/anchors/0").status_code == 400


def test_build_node_attaches_the_anchoring_service_only_when_configured(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    plain = build_node(NodeConfig.load(home.path))
    assert plain.anchoring is None and plain.status()["anchoring"]["enabled"] is False
    asyncio.run(plain.stop())
    settings = json.loads((home.path / "config.json").read_text())
    write_config(home.path, {**settings, "ethereum": {"rpc": "http://127.0.0.1:9", "contract": CONTRACT,
                                                      "chain_id": 31337, "dev_key_from_node_key": True}})
    node = build_node(NodeConfig.load(home.path))
    try:
        assert isinstance(node.anchoring, AnchorService) and node.anchoring.node is node
        status = node.status()["anchoring"]
        assert status["enabled"] is True and status["rpc"] == "http://127.0.0.1:9" and status["contract"] == CONTRACT
    finally:
        asyncio.run(node.stop())


def test_validator_admission_refuses_other_kinds(tmp_path: Path) -> None:
    home = make_home(tmp_path, prefixes=(("88.100.1", "org1"),))

    async def body(node: Node) -> None:
        tx = make_tx(home.validator, CHAIN_ID, 1, "id.register",
                     IdRegister("88.100.1/v", (ValueSpec(1, "URL", "u"),)))
        (adm,) = node.submit([encode(tx)])
        assert not adm.accepted and adm.reason == "unauthorized"

    _with_node(home, body)


def _mp(tx: object) -> bytes:
    import msgpack

    return bytes(msgpack.packb(encode(tx), use_bin_type=True))


@pytest.mark.parametrize("height", [1])
def test_anchor_route_returns_a_record(tmp_path: Path, height: int) -> None:
    from fastapi.testclient import TestClient

    from ledger.api.server import create_app

    home = make_home(tmp_path, prefixes=(("88.100.1", "org1"),))
    with TestClient(create_app(home.path)) as c:
        node: Node = c.app.state.node  # type: ignore[attr-defined]
        tx1 = make_tx(home.org1, CHAIN_ID, 1, "id.register", IdRegister("88.100.1/r", (ValueSpec(1, "URL", "u"),)))
        assert c.post("/v1/tx", content=_mp(tx1), params={"wait": "true"},
                      headers={"content-type": "application/msgpack"}).status_code == 200
        rec = AnchorRecord(height, node.chain.head_hash, 31337, CONTRACT, b"\x22" * 32, 9, SUBMITTER)
        tx2 = make_tx(home.validator, CHAIN_ID, 1, "anchor.record", rec)
        r = c.post("/v1/tx", content=_mp(tx2), params={"wait": "true"},
                   headers={"content-type": "application/msgpack"})
        assert r.status_code == 200 and r.json()["ok"], r.text
        body = c.get(f"/v1/anchors/{height}").json()
        assert body["block_hash"] == rec.block_hash.hex() and body["height"] == height
        assert body["contract"] == CONTRACT and body["eth_block"] == 9
        assert c.get("/v1/anchors/latest").json()["height"] == height
