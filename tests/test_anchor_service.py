"""The anchoring service: its decisions, its own transactions (confirmations, reorgs, fees), and the service on
a real single-validator node over an in-memory Ethereum (`tests/anchorfake.py`)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

from ledger.anchor.ethclient import GWEI, Fees, bumped, derive_eth_key, eth_account_for
from ledger.anchor.observe import Observed, read_anchors
from ledger.anchor.outgoing import Outgoing
from ledger.anchor.records import AnchorRecord, get_anchor_record, latest_effective_height
from ledger.anchor.service import (
    AnchorService,
    anchor_due,
    backoff_delay,
    config_mismatch,
    designated_index,
    takeover_rank,
)
from ledger.anchor.settings import AnchoringSettings
from ledger.assembly import build_node
from ledger.chain import compute_block_hash
from ledger.codec import encode
from ledger.config import EthereumConfig, NodeConfig, write_config
from ledger.crypto import SigningKey
from ledger.genesis import load_genesis, save_genesis
from ledger.node import Node
from ledger.resolver.registry import IdRegister, ValueSpec
from ledger.tx import make_tx
from tests.anchorfake import CHAIN_ID as ETH_CHAIN
from tests.anchorfake import CONTRACT, FakeChain
from tests.nodeutil import CHAIN_ID, Home, make_home

ME = "0x" + "a1" * 20  # the node's submitter address in the fake chain
LIAR = "0x" + "bb" * 20
STRANGER = "0x" + "cc" * 20  # not certified
SETTINGS = AnchoringSettings(ETH_CHAIN, CONTRACT, (ME, LIAR))

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
    from_file = eth_account_for(node_key, EthereumConfig(rpc="x", key_file=key_file))
    assert bytes(from_file.key) == bytes.fromhex("11" * 32)
    dev = EthereumConfig(rpc="x", chain_id=31337, dev_key_from_node_key=True)
    assert bytes(eth_account_for(node_key, dev).key) == derive_eth_key(node_key)


def test_ethereum_config_keeps_local_facts_and_may_state_expectations(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    assert NodeConfig.load(home.path).ethereum is None
    cfg = EthereumConfig.model_validate({"rpc": "http://x", "key_file": "k"}, context={"home": home.path})
    assert cfg.key_file == home.path / "k" and cfg.contract is None and cfg.chain_id is None
    assert cfg.interval_blocks == 1000 and cfg.confirmations == 3 and cfg.deploy_block == 0
    assert config_mismatch(cfg, SETTINGS) is None
    # An expectation that matches the certified settings (any case) is fine; another one stops anchoring.
    same = cfg.model_copy(update={"contract": CONTRACT.upper().replace("0X", "0x"), "chain_id": ETH_CHAIN})
    assert config_mismatch(same, SETTINGS) is None
    other = cfg.model_copy(update={"contract": "0x" + "66" * 20})
    assert "certifies" in (config_mismatch(other, SETTINGS) or "")
    assert "chain" in (config_mismatch(cfg.model_copy(update={"chain_id": 1}), SETTINGS) or "")


def _event(height: int, root: bytes, block: int, index: int = 0, submitter: str = ME) -> Observed:
    return Observed(height, root, bytes([height % 256, block % 256]) * 16, block, index, submitter)


def test_reading_attests_the_highest_confirmed_genuine_anchor_the_earliest_of_its_height() -> None:
    ours = {h: bytes([h]) * 32 for h in range(1, 30)}
    votes: dict[int, AnchorRecord] = {}

    def read(events: list[Observed], confirmed_through: int = 100, latest: int = 0, head: int = 29):
        return read_anchors(events, confirmed_through=confirmed_through, latest_effective=latest, head=head,
                            own_hash=ours.get, my_vote=votes.get, eth_chain_id=ETH_CHAIN, contract=CONTRACT)

    genuine_late = _event(20, ours[20], block=60, submitter=LIAR)
    genuine_early = _event(20, ours[20], block=50, index=3)
    lower = _event(10, ours[10], block=40)
    forged = _event(25, b"\x66" * 32, block=45, submitter=LIAR)
    huge = _event(2**64 - 1, b"\x66" * 32, block=46, submitter=LIAR)
    r = read([genuine_late, lower, forged, huge, genuine_early])
    assert r.attest is not None and (r.attest.height, r.attest.eth_block, r.attest.submitter) == (20, 50, ME)
    assert r.attest.contract == CONTRACT and r.genuine_above == 20
    assert r.foreign == [forged]  # (a height above the head is not this ledger's block yet: left alone)
    # Not confirmed yet: not attested, but known to be on its way.
    r = read([genuine_early], confirmed_through=49)
    assert r.attest is None and r.genuine_above == 20
    # Covered by the effective anchor, or voted already: nothing to attest.
    assert read([lower, genuine_early], latest=20).attest is None
    votes[20] = read([genuine_early]).attest  # type: ignore[assignment]
    assert read([genuine_early, genuine_late]).attest is None


def test_replacement_fees_rise_by_an_eighth_up_to_the_cap() -> None:
    old = Fees(40 * GWEI, 2 * GWEI)
    new = bumped(old, Fees(10 * GWEI, GWEI), cap=100 * GWEI)
    assert new is not None and new.max_fee >= old.max_fee * 1.125 and new.tip >= old.tip * 1.125
    assert bumped(old, Fees(90 * GWEI, GWEI), cap=100 * GWEI) == Fees(90 * GWEI, new.tip)  # the market moved
    assert bumped(old, Fees(10 * GWEI, GWEI), cap=43 * GWEI) is None  # 43 is not 10% above 40: at the cap
    assert bumped(Fees(100 * GWEI, GWEI), Fees(GWEI, GWEI), cap=100 * GWEI) is None


# --------------------------------------------------------------------------------------------------
# Our own anchor transaction
# --------------------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_own_anchor_is_followed_to_its_confirmations_and_sent_again_after_a_reorg_drops_it() -> None:
    fake, clock = FakeChain(), Clock()
    fake.blocks_per_look = 0
    client = fake.client(ME)
    out = Outgoing(confirmations=3, fee_bump_after_s=30, max_fee_gwei=100, clock=clock)
    assert out.send(client, 7, b"\x07" * 32) is not None
    assert out.follow(client, fake.tip) == "pending"
    fake.mine()
    assert out.follow(client, fake.tip) == "mined"
    fake.mine()
    assert out.follow(client, fake.tip) == "mined"  # 2 of 3 confirmations
    fake.reorg(2, drop=True)  # both blocks replaced; the transaction is gone
    assert out.follow(client, fake.tip) == "resent" and out.resent == 1
    fake.mine(3)
    assert out.follow(client, fake.tip) == "confirmed" and out.current is None
    assert fake.roots()[(ME, 7)] == b"\x07" * 32
    assert [tx.height for tx in fake.sent] == [7, 7]


def test_a_reorged_anchor_back_in_the_pool_is_waited_for_not_sent_twice() -> None:
    fake, clock = FakeChain(), Clock()
    fake.blocks_per_look = 0
    client = fake.client(ME)
    out = Outgoing(confirmations=2, fee_bump_after_s=30, max_fee_gwei=100, clock=clock)
    out.send(client, 7, b"\x07" * 32)
    fake.mine()
    assert out.follow(client, fake.tip) == "mined"
    fake.reorg(1)  # back in the pool
    assert out.follow(client, fake.tip) == "pending"
    fake.mine(2)
    assert out.follow(client, fake.tip) == "confirmed" and len(fake.sent) == 1


def test_an_anchor_stuck_on_fees_is_replaced_with_higher_fees_up_to_the_cap() -> None:
    fake, clock = FakeChain(), Clock()
    fake.blocks_per_look = 0
    client = fake.client(ME)
    out = Outgoing(confirmations=1, fee_bump_after_s=30, max_fee_gwei=10, clock=clock)
    out.send(client, 7, b"\x07" * 32)  # at 3 gwei (twice the base fee of 1, plus the tip)
    fake.base_fee = 5 * GWEI  # the market moves up: the anchor is stuck
    fake.mine()
    assert out.follow(client, fake.tip) == "pending"
    clock.t += 31
    assert out.follow(client, fake.tip) == "bumped" and out.current is not None
    assert out.current.fees.max_fee == 10 * GWEI and out.current.nonce == 0  # the cap; same nonce
    fake.base_fee = 50 * GWEI  # above the cap: it waits, and says so
    fake.mine()
    clock.t += 31
    assert out.follow(client, fake.tip) == "capped" and out.at_cap
    fake.base_fee = 8 * GWEI
    fake.mine()
    assert out.follow(client, fake.tip) == "confirmed"
    assert out.bumps == 1 and fake.nonce(ME) == 1 and fake.roots()[(ME, 7)] == b"\x07" * 32


# --------------------------------------------------------------------------------------------------
# The service on a real single-validator node (f+1 = 1), with a fake chain
# --------------------------------------------------------------------------------------------------


def _anchoring_home(tmp_path: Path, settings: AnchoringSettings | None = SETTINGS) -> Home:
    home = make_home(tmp_path, prefixes=(("88.100.1", "org1"),))
    genesis = replace(load_genesis(home.path / "genesis.json"), anchoring=settings)
    save_genesis(genesis, home.path / "genesis.json")
    return replace(home, genesis=genesis)


def _cfg(**kw: object) -> EthereumConfig:
    base: dict[str, object] = {"interval_blocks": 3, "interval_s": 60.0, "grace_s": 1.0, "max_backoff_s": 0.2,
                               "confirmations": 2}
    base.update(kw)
    return EthereumConfig(rpc="fake", chain_id=31337, dev_key_from_node_key=True, **base)  # type: ignore[arg-type]


def _service(node: Node, fake: FakeChain, cfg: EthereumConfig | None = None, address: str = ME) -> AnchorService:
    svc = AnchorService(node, cfg or _cfg(), client_factory=lambda contract, chain: fake.client(address),
                        backoff_base=0.05)
    node.anchoring = svc
    svc.start()
    return svc


async def _until(cond: Callable[[], object], timeout: float = 30.0) -> None:
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
            if node.anchoring is not None:
                await node.anchoring.stop()
                node.anchoring = None
            await node.stop()

    asyncio.run(asyncio.wait_for(main(), 60))


async def _register(node: Node, home: Home, nonce: int) -> None:
    tx = make_tx(home.org1, CHAIN_ID, nonce, "id.register",
                 IdRegister(f"88.100.1/a{nonce}", (ValueSpec(1, "URL", "https://x"),)))
    (adm,) = node.submit([encode(tx)])
    assert adm.accepted, adm
    (out,) = await node.wait_committed([adm.tx_id], timeout=10)
    assert out is not None and out.ok


def _hash(node: Node, height: int) -> bytes:
    block = node.chain.get_block(height)
    assert block is not None
    return compute_block_hash(block.header)


def test_service_anchors_every_k_blocks_and_the_anchor_takes_effect_after_its_confirmations(tmp_path: Path) -> None:
    home = _anchoring_home(tmp_path)
    fake = FakeChain()

    async def body(node: Node) -> None:
        svc = _service(node, fake)
        for n in range(1, 4):
            await _register(node, home, n)
        await _until(lambda: latest_effective_height(node.chain.latest) >= 3)
        assert [tx.height for tx in fake.sent] == [3]
        rec = get_anchor_record(node.chain.latest, 3)
        (mined, block, _) = next(iter(fake.mined.values()))
        assert rec == AnchorRecord(3, _hash(node, 3), ETH_CHAIN, CONTRACT, mined.hash, block, ME)
        assert fake.roots()[(ME, 3)] == _hash(node, 3)
        # The attestation's own block is not work: nothing more is anchored while idle.
        await asyncio.sleep(0.5)
        assert len(fake.sent) == 1
        s = node.status()["anchoring"]
        assert s["enabled"] and s["last_anchored_height"] == 3 and s["last_error"] is None
        assert s["tx_hash"] == "0x" + mined.hash.hex() and s["certified"]["contract"] == CONTRACT
        assert s["submitter_certified"] is True and s["attestations_sent"] == 1 and s["in_flight"] is None
        # With more work, the next anchor covers the new head.
        for n in range(4, 7):
            await _register(node, home, n)
        await _until(lambda: latest_effective_height(node.chain.latest) > 3)
        assert svc.outgoing.sent == 2

    _with_node(home, body)


def test_a_lying_submitters_anchors_never_take_effect_nor_stop_the_honest_ones(tmp_path: Path) -> None:
    home = _anchoring_home(tmp_path)
    fake = FakeChain()

    async def body(node: Node) -> None:
        await _register(node, home, 1)
        # A certified submitter anchors the largest height there is, and a false root at the next height.
        fake.anchor_directly(LIAR, 2**64 - 1, b"\x66" * 32)
        fake.anchor_directly(LIAR, 3, b"\x66" * 32)
        fake.anchor_directly(STRANGER, 3, b"\x77" * 32)  # (not certified: not even read)
        svc = _service(node, fake)
        for n in range(2, 4):
            await _register(node, home, n)
        await _until(lambda: latest_effective_height(node.chain.latest) >= 3)
        rec = get_anchor_record(node.chain.latest, latest_effective_height(node.chain.latest))
        assert rec is not None and rec.submitter == ME and rec.block_hash == _hash(node, rec.height)
        await _until(lambda: node.status()["anchoring"]["foreign_heights"] == [3])
        assert svc.last_error is None

    _with_node(home, body)


def test_a_genuine_anchor_by_another_submitter_is_attested_and_not_anchored_again(tmp_path: Path) -> None:
    home = _anchoring_home(tmp_path)
    fake = FakeChain()

    async def body(node: Node) -> None:
        for n in range(1, 4):
            await _register(node, home, n)
        # Another validator anchored our head already (we restarted, or were slower): we attest its anchor.
        tx = fake.anchor_directly(LIAR, 3, _hash(node, 3))
        _service(node, fake)
        await _until(lambda: latest_effective_height(node.chain.latest) == 3)
        rec = get_anchor_record(node.chain.latest, 3)
        assert rec is not None and rec.submitter == LIAR and rec.tx_hash == tx.hash
        assert fake.sent == []

    _with_node(home, body)


def test_config_naming_another_contract_refuses_to_anchor_loudly(tmp_path: Path) -> None:
    home = _anchoring_home(tmp_path)
    fake = FakeChain()

    async def body(node: Node) -> None:
        svc = _service(node, fake, _cfg(contract="0x" + "66" * 20))
        for n in range(1, 4):
            await _register(node, home, n)
        await _until(lambda: svc.last_error is not None)
        assert "certifies" in (node.status()["anchoring"]["last_error"] or "")
        await asyncio.sleep(0.3)
        assert fake.sent == [] and latest_effective_height(node.chain.latest) == 0

    _with_node(home, body)


def test_without_certified_settings_the_service_waits_quietly(tmp_path: Path) -> None:
    home = _anchoring_home(tmp_path, settings=None)
    fake = FakeChain()

    async def body(node: Node) -> None:
        svc = _service(node, fake)
        for n in range(1, 4):
            await _register(node, home, n)
        await _until(lambda: svc.note is not None)
        s = node.status()["anchoring"]
        assert s["certified"] is None and s["last_error"] is None and "no anchoring settings" in s["note"]
        assert fake.sent == []
        # The admin certifies the settings (a threshold of one: at once): anchoring starts, from the next blocks.
        tx = make_tx(home.admin, CHAIN_ID, 1, "anchor.settings", SETTINGS)
        (adm,) = node.submit([encode(tx)])
        assert adm.accepted
        for n in range(4, 8):
            await _register(node, home, n)
        await _until(lambda: latest_effective_height(node.chain.latest) > 0)

    _with_node(home, body)


def test_rpc_down_backs_off_and_resumes_without_double_anchors(tmp_path: Path) -> None:
    home = _anchoring_home(tmp_path)
    fake = FakeChain()

    async def body(node: Node) -> None:
        fake.down = True
        svc = _service(node, fake)
        for n in range(1, 4):
            await _register(node, home, n)  # the ledger does not wait for Ethereum
        await _until(lambda: svc.attempt >= 3)
        assert fake.sent == [] and "down" in (node.status()["anchoring"]["last_error"] or "")
        fake.down = False
        await _until(lambda: latest_effective_height(node.chain.latest) == 3)
        assert [tx.height for tx in fake.sent] == [3] and svc.last_error is None
        await svc.stop()
        # A restarted service (fresh memory) reads the contract and the ledger: no second anchor.
        svc2 = _service(node, fake)
        await asyncio.sleep(0.5)
        assert len(fake.sent) == 1 and svc2.last_error is None
        for n in range(4, 7):
            await _register(node, home, n)
        await _until(lambda: len(fake.sent) == 2)
        assert fake.sent[1].height > 3

    _with_node(home, body)


# --------------------------------------------------------------------------------------------------
# Routes, assembly, admission
# --------------------------------------------------------------------------------------------------


def test_status_and_anchor_routes_without_ethereum(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from ledger.api.server import create_app

    home = make_home(tmp_path)
    with TestClient(create_app(home.path)) as c:
        s = c.get("/v1/status").json()["anchoring"]
        assert s["enabled"] is False and s["last_anchored_height"] is None
        assert c.get("/v1/anchors/1").status_code == 404
        assert c.get("/v1/anchors/0").status_code == 400
        assert c.get("/v1/anchors").json() == {"settings": None, "attestations_needed": 1, "latest": None}


def test_build_node_attaches_the_anchoring_service_only_when_configured(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    plain = build_node(NodeConfig.load(home.path))
    assert plain.anchoring is None and plain.status()["anchoring"]["enabled"] is False
    asyncio.run(plain.stop())
    settings = json.loads((home.path / "config.json").read_text())
    write_config(home.path, {**settings, "ethereum": {"rpc": "http://127.0.0.1:9", "chain_id": 31337,
                                                      "dev_key_from_node_key": True}})
    node = build_node(NodeConfig.load(home.path))
    try:
        assert isinstance(node.anchoring, AnchorService) and node.anchoring.node is node
        status = node.status()["anchoring"]
        assert status["enabled"] is True and status["rpc"] == "http://127.0.0.1:9" and status["certified"] is None
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


def test_anchor_routes_show_votes_and_the_effective_record(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from ledger.api.server import create_app

    home = _anchoring_home(tmp_path)
    headers = {"content-type": "application/msgpack"}
    with TestClient(create_app(home.path)) as c:
        node: Node = c.app.state.node  # type: ignore[attr-defined]
        tx1 = make_tx(home.org1, CHAIN_ID, 1, "id.register", IdRegister("88.100.1/r", (ValueSpec(1, "URL", "u"),)))
        assert c.post("/v1/tx", content=_mp(tx1), params={"wait": "true"}, headers=headers).status_code == 200
        rec = AnchorRecord(1, node.chain.head_hash, ETH_CHAIN, CONTRACT, b"\x22" * 32, 9, ME)
        bad = replace(rec, contract="0x" + "66" * 20)
        r = c.post("/v1/tx", content=_mp(make_tx(home.validator, CHAIN_ID, 1, "anchor.attest", bad)),
                   params={"wait": "true"}, headers=headers)
        assert r.status_code == 200 and r.json()["ok"] is False and r.json()["reason"] == "invalid_value"
        assert c.get("/v1/anchors/1").status_code == 404
        r = c.post("/v1/tx", content=_mp(make_tx(home.validator, CHAIN_ID, 2, "anchor.attest", rec)),
                   params={"wait": "true"}, headers=headers)
        assert r.status_code == 200 and r.json()["ok"], r.text
        body = c.get("/v1/anchors/1").json()
        assert body["block_hash"] == rec.block_hash.hex() and body["height"] == 1
        assert body["contract"] == CONTRACT and body["eth_block"] == 9 and body["submitter"] == ME
        assert c.get("/v1/anchors/latest").json()["height"] == 1
        overview = c.get("/v1/anchors").json()
        assert overview["settings"]["contract"] == CONTRACT and overview["attestations_needed"] == 1
        assert overview["latest"]["height"] == 1
        assert c.get("/v1/anchors/1/votes").json()["votes"] == []

