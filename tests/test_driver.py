"""The replica's driver (ledger/driver.py): the one piece of code that performs a replica's actions,
for the real node and for the simulation. What it must keep: persist before send, write a decided
block before anything else happens, catch up only on certified blocks, forward messages a receiver
accepts, and stop (not guess) when the application fails."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgpack
import pytest

from ledger.chain import Block, CommitCertificate, ValidatorSignature
from ledger.codec import encode
from ledger.config import NodeConfig
from ledger.consensus.actions import Broadcast, Deliver, FetchBlocks, ForwardTxs, Persist, Send
from ledger.consensus.application import ApplicationError
from ledger.consensus.replica import Replica
from ledger.crypto import SigningKey
from ledger.driver import (
    MAX_FORWARD_BYTES,
    MSG_CONSENSUS,
    MSG_FORWARD,
    PAUSE,
    CatchUpRound,
    Driver,
    decode_forwarded,
    encode_forwards,
)
from ledger.mempool import MAX_FORWARDED_PER_MESSAGE, Refusal
from ledger.net.sync import BlockBatch, BlockRequest, CertifiedBlock
from ledger.node import Node
from ledger.resolver.registry import IdRegister, ValueSpec
from ledger.store import NS, MemoryStore
from ledger.tx import compute_tx_id, make_tx
from tests.nodeutil import CHAIN_ID, make_home
from tests.sim.network import Committed, FakeApp, Network, default_config
from tests.test_chain_state import sign_cert

KEYS = [SigningKey.from_seed(f"driver-validator-{i}".encode()) for i in range(4)]
IDS = tuple(k.id for k in KEYS)
VALIDATOR_KEYS = {k.id: k.public_key for k in KEYS}
CHAIN = "driver-test"


class RecordingStore(MemoryStore):
    def __init__(self, events: list[str]) -> None:
        super().__init__()
        self.events = events

    def write_batch(self, puts: Any, deletes: Any = (), sync: bool = True) -> None:
        puts, deletes = list(puts), list(deletes)
        self.events.append(f"write {len(puts)}+{len(deletes)} sync={sync}")
        super().write_batch(puts, deletes, sync)


class RecordingLinks:
    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.sent: list[tuple[str, bytes]] = []

    def send(self, peer: str, payload: bytes) -> None:
        self.events.append(f"send {peer}")
        self.sent.append((peer, payload))

    def broadcast(self, payload: bytes) -> None:
        self.events.append("broadcast")

    def start_catch_up(self) -> None:
        self.events.append("catch-up")


class RecordingHost:
    """The driver's host: admits what `admit_if` allows, and notes what it is told."""

    def __init__(self, events: list[str], admit_if: Callable[[bytes], bool] = lambda tx: True) -> None:
        self.events = events
        self.admit_if = admit_if
        self.admitted: list[list[bytes]] = []

    def admit(self, txs: Sequence[bytes]) -> list[bytes]:
        self.admitted.append(list(txs))
        return [t for t in txs if self.admit_if(t)]

    def on_committed(self, result: Committed) -> None:
        self.events.append(f"committed {result.block.header.height}")

    def on_dropped(self, txs: Sequence[bytes], reason: str) -> None:
        self.events.append(f"dropped {len(txs)} {reason}")

    def on_evidence(self, first: bytes, second: bytes) -> None:
        self.events.append("evidence")


def _driver(app: FakeApp | None = None, events: list[str] | None = None) -> tuple[Driver[Committed], list[str]]:
    events = events if events is not None else []
    app = app if app is not None else FakeApp(CHAIN, VALIDATOR_KEYS, store=RecordingStore(events))
    replica = Replica(default_config(CHAIN, IDS), KEYS[1], app, VALIDATOR_KEYS)
    return Driver(replica, app, app.store, RecordingLinks(events), RecordingHost(events)), events


def _certify(app: FakeApp, txs: Sequence[bytes]) -> tuple[Any, CommitCertificate]:
    """The next block on `app`'s head with a certificate signed by three validators."""
    from ledger.chain import CommitVote, compute_block_hash
    from ledger.crypto import DOMAIN_COMMIT

    block = app.propose(list(txs), 0, IDS[0], None)
    block_hash = compute_block_hash(block.header)
    vote = CommitVote(CHAIN, block.header.height, 0, block_hash)
    sigs = sorted((ValidatorSignature(k.id, k.sign(DOMAIN_COMMIT, vote)) for k in KEYS[:3]), key=lambda s: s.validator)
    return block, CommitCertificate(block.header.height, 0, block_hash, tuple(sigs))


def test_persist_is_written_synced_before_anything_leaves() -> None:
    driver, events = _driver()
    driver.perform([
        Persist(b"accepted/a", b"1"), Persist(b"view", b"2"), Broadcast(b"m1"),
        Persist(b"vote/b", b"3"), Send(IDS[2], b"m2"), Persist(b"gone", b""),
    ])
    assert events == [
        "write 2+0 sync=True", "broadcast", "write 1+0 sync=True", f"send {IDS[2]}", "write 0+1 sync=True",
    ]
    assert driver.app.store.get(NS.CONSENSUS + b"view") == b"2"
    assert Driver.persisted(driver.app.store) == {b"accepted/a": b"1", b"view": b"2", b"vote/b": b"3"}


def test_a_decided_block_is_written_and_acknowledged_before_the_next_action() -> None:
    driver, events = _driver()
    block, cert = _certify(FakeApp(CHAIN, VALIDATOR_KEYS), [b"t1"])
    driver.perform([Deliver(block, cert), Broadcast(b"after")])
    assert events == ["committed 1", "broadcast"]
    assert driver.app.committed_height() == 1
    driver.perform([Deliver(block, cert)])  # applied already (by catch-up, say): not written twice
    assert events == ["committed 1", "broadcast"]


def test_a_failed_write_of_a_decided_block_is_an_application_error() -> None:
    class FullDisk(FakeApp):
        def commit(self, block: Any, cert: CommitCertificate, records: Any = (), deleted: Any = ()) -> Committed:
            raise OSError("no space left on device")

    driver, events = _driver(FullDisk(CHAIN, VALIDATOR_KEYS))
    block, cert = _certify(FakeApp(CHAIN, VALIDATOR_KEYS), [b"t1"])
    with pytest.raises(ApplicationError, match="no space left"):
        driver.perform([Deliver(block, cert), Broadcast(b"after")])
    assert events == []  # nothing acknowledged, nothing sent


def test_forwards_are_split_into_messages_a_receiver_accepts() -> None:
    many = [f"tx-{i}".encode() for i in range(2 * MAX_FORWARDED_PER_MESSAGE + 5)]
    messages = list(encode_forwards(many))
    assert len(messages) == 3
    assert all(m[0] == MSG_FORWARD for m in messages)
    assert [t for m in messages for t in decode_forwarded(m[1:])] == many
    big = [bytes([i % 256]) * 60_000 for i in range(150)]  # 9 MB in all
    messages = list(encode_forwards(big))
    assert all(len(m) <= MAX_FORWARD_BYTES + 4096 for m in messages) and len(messages) == 3
    assert [t for m in messages for t in decode_forwarded(m[1:])] == big
    assert list(encode_forwards([])) == []
    # A forward action goes out as those messages.
    driver, events = _driver()
    driver.perform([ForwardTxs(IDS[0], tuple(many))])
    assert events == [f"send {IDS[0]}"] * 3
    assert decode_forwarded(msgpack.packb([b"a"] * (MAX_FORWARDED_PER_MESSAGE + 1))) == []  # over the limit: dropped


def test_a_fetch_starts_a_catch_up_round() -> None:
    driver, events = _driver()
    driver.perform([FetchBlocks(1)])
    assert events == ["catch-up"]


def test_peer_messages_reach_the_replica_and_forwards_go_through_admission() -> None:
    app = FakeApp(CHAIN, VALIDATOR_KEYS)
    replica = Replica(default_config(CHAIN, IDS), KEYS[1], app, VALIDATOR_KEYS)
    host = RecordingHost([], admit_if=lambda tx: tx != b"bad")
    admitted = host.admitted
    driver = Driver(replica, app, app.store, RecordingLinks([]), host)
    driver.on_peer_message(IDS[0], bytes([MSG_FORWARD]) + msgpack.packb([b"ok", b"bad"], use_bin_type=True))
    assert admitted == [[b"ok", b"bad"]] and replica.pending == 1
    driver.on_peer_message(IDS[0], bytes([MSG_FORWARD]) + b"\xc1garbage")
    driver.on_peer_message(IDS[0], bytes([MSG_CONSENSUS]) + b"garbage")
    driver.on_peer_message(IDS[0], b"")
    assert admitted == [[b"ok", b"bad"]] and replica.metrics["dropped_malformed"] == 1


def _serving(chain_app: FakeApp) -> Any:
    def serve(request: bytes) -> bytes:
        from ledger.codec import decode

        return encode(chain_app.serve_blocks(decode(BlockRequest, request)))

    return serve


def _run_round(round_: CatchUpRound, peers: dict[str, Any]) -> list[str]:
    """Drive a catch-up round like the node does; returns the peers asked, in order."""
    asked: list[str] = []
    answer: bytes | None = None
    step = next(round_)
    while True:
        if step is not PAUSE:
            peer, request = step  # type: ignore[misc]
            asked.append(peer)
            answer = peers[peer](request)
        try:
            step = round_.send(None if step is PAUSE else answer)
        except StopIteration:
            return asked


def test_catch_up_applies_certified_blocks_in_order_and_skips_liars_and_dead_peers() -> None:
    source = FakeApp(CHAIN, VALIDATOR_KEYS)
    for i in range(70):  # more than one reply's worth
        block, cert = _certify(source, [f"t{i}".encode()])
        source.commit(block, cert)
    liar = FakeApp(CHAIN, VALIDATOR_KEYS)
    block, cert = _certify(liar, [b"forged"])
    forged = CommitCertificate(cert.height, cert.view, cert.block_hash, cert.signatures[:1])  # one signature
    liar.commit(block, forged)
    driver, events = _driver()

    def dead(request: bytes) -> None:
        return None

    asked = _run_round(driver.catch_up(["liar", "dead", "honest"]), {
        "liar": _serving(liar), "dead": dead, "honest": _serving(source),
    })
    assert asked == ["liar", "dead", "honest", "honest"]  # 64 blocks, then the rest
    assert driver.app.committed_height() == 70
    assert [e for e in events if e.startswith("committed")] == [f"committed {h}" for h in range(1, 71)]
    assert driver.replica.height == 70  # told about every block


def test_an_application_failure_stops_the_node_and_nothing_is_acknowledged(tmp_path: Path) -> None:
    home = make_home(tmp_path, prefixes=(("88.100.1", "org1"),))
    fatal: list[BaseException] = []
    node = Node(NodeConfig.load(home.path), on_fatal=fatal.append)

    def broken_commit(*args: Any) -> Any:
        raise OSError("input/output error")

    node.app.commit = broken_commit  # type: ignore[method-assign]
    raw = encode(make_tx(home.org1, CHAIN_ID, 1, "id.register",
                         IdRegister("88.100.1/EQ-1", (ValueSpec(1, "URL", "https://twin.example/1"),))))

    try:
        admitted, outcomes = asyncio.run(_submit_and_tick(node, raw))
    finally:
        asyncio.run(node.stop())
    assert admitted[0].accepted
    assert len(fatal) == 1 and isinstance(fatal[0], ApplicationError) and "input/output" in str(fatal[0])
    assert node.failed is fatal[0]
    assert outcomes == [None]  # never acknowledged
    assert node.chain.height == 0


async def _submit_and_tick(node: Node, raw: bytes) -> tuple[list[Any], list[Any]]:
    admitted = node.submit([raw])
    for _ in range(50):  # the primary cuts the partial batch after batch_wait_ms of ticks
        node._drive(node.driver.tick)
        if node.failed is not None:
            break
    return admitted, await node.wait_committed([compute_tx_id(raw)], timeout=0.2)


@pytest.mark.parametrize(("eager", "height"), [(2, 1), (None, 0)])
def test_the_node_cuts_a_lone_transaction_at_once_only_with_eager_batches_on(
    tmp_path: Path, eager: int | None, height: int,
) -> None:
    """`batch_eager_inflight` reaches the replica: with 2 and nothing in flight the primary proposes on
    submit, before any tick; by default (0) it waits `batch_wait_ms` of ticks."""
    home = make_home(tmp_path, prefixes=(("88.100.1", "org1"),))
    if eager is not None:
        config = json.loads((home.path / "config.json").read_text())
        (home.path / "config.json").write_text(json.dumps({**config, "batch_eager_inflight": eager}))
    node = Node(NodeConfig.load(home.path), on_fatal=pytest.fail)
    raw = encode(make_tx(home.org1, CHAIN_ID, 1, "id.register",
                         IdRegister("88.100.1/EQ-1", (ValueSpec(1, "URL", "https://twin.example/1"),))))

    async def submit() -> None:
        assert node.submit([raw])[0].accepted

    try:
        asyncio.run(submit())
        assert node.chain.height == height
    finally:
        asyncio.run(node.stop())


def test_a_senders_requests_sent_without_waiting_commit_in_nonce_order(tmp_path: Path) -> None:
    """Nonce 2 reaches the node before nonce 1, and nonce 4 before nonce 3, which commits through a block the
    node did not order itself (catch-up): every one commits, none failed `nonce_gap`."""
    home = make_home(tmp_path, prefixes=(("88.100.1", "org1"),))
    node = Node(NodeConfig.load(home.path), on_fatal=pytest.fail)
    urls = (ValueSpec(1, "URL", "https://twin.example/1"),)
    raws = [encode(make_tx(home.org1, CHAIN_ID, n, "id.register", IdRegister(f"88.100.1/EQ-{n}", urls)))
            for n in (1, 2, 3, 4)]

    async def scenario() -> list[Any]:
        assert node.submit([raws[1]])[0].accepted  # waits for nonce 1
        assert node.submit([raws[0]])[0].accepted
        for _ in range(50):
            node._drive(node.driver.tick)
        assert node.submit([raws[3]])[0].accepted  # waits for nonce 3
        # Nonce 3 arrives in a certified block fetched from a peer (it was sent to another validator).
        header = node.chain.build_block([raws[2]], 0, node.chain.head.timestamp + 1, "node0").block.header
        cert = sign_cert(CHAIN_ID, header, [home.validator])
        fetch = node.driver.catch_up(["peer"])
        next(fetch)
        fetch.send(encode(BlockBatch(header.height, (CertifiedBlock(Block(header, (raws[2],)), cert),))))
        assert node.chain.height == header.height
        await asyncio.sleep(0)  # the release runs after the commit's step
        for _ in range(50):
            node._drive(node.driver.tick)
        return await node.wait_committed([compute_tx_id(raw) for raw in raws], timeout=1.0)

    try:
        outcomes = asyncio.run(scenario())
    finally:
        asyncio.run(node.stop())
    assert [(o.ok, o.reason) for o in outcomes] == [(True, "")] * 4, outcomes


def test_a_transaction_waiting_for_its_predecessor_is_refused_in_time_when_nothing_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nonce 2 arrives alone on an idle chain: its client hears `nonce_gap` once the wait is over, without any
    commit or other submission to notice it."""
    monkeypatch.setattr("ledger.mempool.GAP_WAIT_S", 0.3)
    home = make_home(tmp_path, prefixes=(("88.100.1", "org1"),))
    node = Node(NodeConfig.load(home.path), on_fatal=pytest.fail)
    urls = (ValueSpec(1, "URL", "https://twin.example/2"),)
    raw = encode(make_tx(home.org1, CHAIN_ID, 2, "id.register", IdRegister("88.100.1/EQ-2", urls)))

    async def scenario() -> list[Any]:
        await node.start()
        assert node.submit([raw])[0].accepted  # waits for nonce 1, which never comes
        return await node.wait_committed([compute_tx_id(raw)], timeout=5.0)

    try:
        outcomes = asyncio.run(scenario())
    finally:
        asyncio.run(node.stop())
    # (None: no answer within the 5 s)
    assert [(type(o), getattr(o, "reason", None)) for o in outcomes] == [(Refusal, "nonce_gap")], outcomes
    assert node.chain.height == 0  # nothing committed: the node's ticks refused it


def test_the_simulation_runs_this_driver() -> None:
    net = Network(4, 1)
    assert all(type(n.driver).__mro__[1] is Driver for n in net.nodes)
    net.submit([b"a", b"b", b"c", b"d"])
    assert net.run_until(lambda: net.all_committed([b"a", b"b", b"c", b"d"]), 500)
