"""A node's side of private data, in-process: three nodes (org1, org2, org3) over one committed chain, their
peer requests routed to each other's handlers. Who is sent the plaintext, what a node keeps, purges on disk."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import pytest

from ledger.chaindb import ChainDB, ExecutedBlock
from ledger.codec import decode, encode
from ledger.crypto import SigningKey
from ledger.genesis import Genesis, GenesisMember, GenesisValidator
from ledger.private.module import CollectionCreate, PrivatePurge, PrivatePut
from ledger.private.records import NodeOrg, commitment
from ledger.private.service import FETCH, FetchAnswer, FetchRequest, LinkSources, PrivateData, PutRefused
from ledger.private.sidestore import SideStore
from ledger.state import VerifiedCache, get_nonce
from ledger.store import MemoryStore
from ledger.tx import make_tx
from tests.test_chain_state import sign_cert

CHAIN = "private-service"
ADMIN, ORG1, ORG2, ORG3 = (SigningKey.from_seed(s) for s in (b"s-admin", b"s-org1", b"s-org2", b"s-org3"))
NODES = [SigningKey.from_seed(f"s-node{i}".encode()) for i in range(3)]  # of org1, org2, org3
V0 = NODES[0]


class Network:
    def __init__(self) -> None:
        genesis = Genesis(
            CHAIN, 1_700_000_000_000, (GenesisValidator("v0", V0.public_key),),
            members=(GenesisMember("admin", ADMIN.public_key, ("admin",)), GenesisMember("org1", ORG1.public_key, ()),
                     GenesisMember("org2", ORG2.public_key, ()), GenesisMember("org3", ORG3.public_key, ())),
            prefixes=(), node_orgs=tuple(NodeOrg(k.id, f"org{i + 1}") for i, k in enumerate(NODES)),
        )
        self.store = MemoryStore()
        self.chain = ChainDB(self.store, genesis, verified=VerifiedCache(1000))
        self.hosts: dict[str, Host] = {}
        self.liars: dict[str, bytes] = {}  # node id -> what it answers every fetch with

    def commit(self, key: SigningKey, kind: str, payload: object) -> None:
        raw = encode(make_tx(key, CHAIN, get_nonce(self.chain.latest, key.id) + 1, kind, payload))
        executed = self.chain.build_block([raw], view=0, timestamp=self.chain.head.timestamp + 1000, proposer=V0.id)
        assert executed.results[0].ok, executed.results[0].message
        self.chain.commit(executed, sign_cert(CHAIN, executed.block.header, [V0]))
        for host in self.hosts.values():
            for listener in host.listeners:
                listener(executed)


class Host:
    """What PrivateData needs of a node: the chain, commit listeners, requests to peers."""

    def __init__(self, net: Network, node: SigningKey) -> None:
        self.net, self.node_id = net, node.id
        self.chain, self.store = net.chain, net.store
        self.listeners: list[Callable[[ExecutedBlock], None]] = []
        self.handlers: dict[int, Callable[[str, bytes], Awaitable[bytes]]] = {}
        net.hosts[node.id] = self

    def add_commit_listener(self, listener: Callable[[ExecutedBlock], None]) -> None:
        self.listeners.append(listener)

    def add_peer_request_handler(self, kind: int, handler: Callable[[str, bytes], Awaitable[bytes]]) -> None:
        self.handlers[kind] = handler

    def member_peers(self) -> Sequence[str]:
        return [n for n in self.net.hosts if n != self.node_id]

    async def request_peer(self, peer: str, payload: bytes, timeout: float) -> bytes | None:
        if peer in self.net.liars:
            return self.net.liars[peer]
        return await self.net.hosts[peer].handlers[payload[0]](self.node_id, payload)


def files_holding(path: Path, needle: bytes) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.fixture
def net() -> Network:
    network = Network()
    network.commit(ADMIN, "collection.create", CollectionCreate("deals", ("org1", "org2")))
    return network


def start(net: Network, tmp_path: Path, index: int) -> PrivateData:
    host = Host(net, NODES[index])
    service = PrivateData(host, NODES[index].id, tmp_path / f"node{index}" / "private.db", LinkSources(host))
    return service


def put(net: Network, writer_node: PrivateData, value: bytes, key: str = "k1") -> bytes:
    salt = os.urandom(32)
    digest = commitment("deals", key, salt, value)
    writer_node.expect("deals", key, salt, value, digest)
    net.commit(ORG1, "private.put", PrivatePut("deals", key, digest))
    return digest


def test_the_plaintext_reaches_member_nodes_only_and_is_checked_against_the_commitment(
        net: Network, tmp_path: Path) -> None:
    async def run() -> None:
        nodes = [start(net, tmp_path, i) for i in range(3)]
        for n in nodes:
            n.start()
        secret = b"SECRET-" + os.urandom(8).hex().encode()
        put(net, nodes[0], secret)
        for _ in range(50):
            if nodes[1].readable("deals", "k1"):
                break
            await asyncio.sleep(0.01)
        assert nodes[0].readable("deals", "k1") is not None  # kept from the put
        found = nodes[1].readable("deals", "k1")  # fetched from a member peer
        assert found is not None and found[1].value == secret
        assert nodes[2].readable("deals", "k1") is None  # org3's node never asked, never given
        assert not files_holding(tmp_path / "node2", secret)
        # org3's node asking directly is refused; so is it through another member.
        entry = found[0]
        request = bytes([FETCH]) + encode(FetchRequest("deals", "k1", entry.commitment))
        assert await nodes[0].serve_fetch(NODES[2].id, request) == b""
        assert nodes[0].counters["refused_peer"] == 1
        assert decode(FetchAnswer, await nodes[0].serve_fetch(NODES[1].id, request)).value == secret
        for n in nodes:
            await n.stop()

    asyncio.run(run())


def test_a_node_keeps_nothing_a_lying_peer_sends_and_fetches_what_it_missed_after_a_restart(
        net: Network, tmp_path: Path) -> None:
    async def run() -> None:
        writer = start(net, tmp_path, 0)
        writer.start()
        net.liars[NODES[0].id] = encode(FetchAnswer(bytes(32), b"forged"))
        late = start(net, tmp_path, 1)
        late.start()
        put(net, writer, b"the real terms")
        await asyncio.sleep(0.05)
        assert late.readable("deals", "k1") is None and late.counters["bad_answers"] >= 1
        await late.stop()
        # Down while the put committed, back later with an honest peer: it asks again at start.
        del net.liars[NODES[0].id]
        net.hosts.pop(NODES[1].id)
        again = start(net, tmp_path, 1)
        again.start()
        for _ in range(50):
            if again.readable("deals", "k1"):
                break
            await asyncio.sleep(0.01)
        found = again.readable("deals", "k1")
        assert found is not None and found[1].value == b"the real terms"
        await again.stop()
        await writer.stop()

    asyncio.run(run())


def test_a_put_is_refused_by_a_non_member_node_and_for_a_value_that_is_not_the_committed_one(
        net: Network, tmp_path: Path) -> None:
    member, outsider = start(net, tmp_path, 0), start(net, tmp_path, 2)
    salt = bytes(32)
    digest = commitment("deals", "k1", salt, b"v")
    with pytest.raises(PutRefused) as refused:
        outsider.expect("deals", "k1", salt, b"v", digest)
    assert refused.value.status == 403
    with pytest.raises(PutRefused) as refused:
        member.expect("deals", "k1", salt, b"other", digest)
    assert refused.value.reason == "bad_commitment"


def test_a_purge_removes_the_plaintext_from_the_side_store_files(net: Network, tmp_path: Path) -> None:
    async def run() -> None:
        nodes = [start(net, tmp_path, i) for i in range(2)]
        for n in nodes:
            n.start()
        secret, kept = b"PURGE-ME-" + os.urandom(8).hex().encode(), b"KEEP-ME-" + os.urandom(8).hex().encode()
        put(net, nodes[0], secret)
        put(net, nodes[0], kept, key="k2")
        for _ in range(50):
            if nodes[1].readable("deals", "k1") and nodes[1].readable("deals", "k2"):
                break
            await asyncio.sleep(0.01)
        assert files_holding(tmp_path / "node1", secret)
        net.commit(ORG2, "private.purge", PrivatePurge("deals", "k1"))
        for i, n in enumerate(nodes):
            assert n.readable("deals", "k1") is None
            assert not files_holding(tmp_path / f"node{i}", secret)
            found = n.readable("deals", "k2")
            assert found is not None and found[1].value == kept  # the other entry stays
        for n in nodes:
            await n.stop()

    asyncio.run(run())


def test_a_purge_interrupted_by_a_crash_finishes_at_the_next_start(tmp_path: Path) -> None:
    from ledger.private.sidestore import SideEntry

    path = tmp_path / "private.db"
    store = SideStore(path)
    store.put("c", "k", SideEntry(bytes(32), bytes(32), b"CRASHED-PURGE"))
    store._db.delete(b"c\x00k", sync=True)  # the purge's delete, then a crash before the rewrite
    store.close()
    (tmp_path / "private.db.purging").touch()
    assert files_holding(path, b"CRASHED-PURGE")
    SideStore(path).close()
    assert not files_holding(path, b"CRASHED-PURGE")


def test_a_purge_of_an_entry_not_held_leaves_the_store_as_it_is(tmp_path: Path) -> None:
    from ledger.private.sidestore import SideEntry

    path = tmp_path / "private.db"
    store = SideStore(path)
    store.put("c", "kept", SideEntry(bytes(32), bytes(32), b"KEPT"))
    before = path.stat().st_ino
    assert store.purge("c", "other") is False  # a node outside the collection, say
    assert path.stat().st_ino == before, "the store was rewritten for an entry it never held"
    assert not (tmp_path / "private.db.purging").exists()
    assert store.purge("c", "kept") is True
    assert path.stat().st_ino != before  # a purge of what it holds rewrites it
    store.close()


def test_a_node_holds_a_bounded_amount_of_values_waiting_for_their_commit(net: Network, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from ledger.private import service as service_module

    monkeypatch.setattr(service_module, "MAX_PENDING_BYTES", 10)
    member = start(net, tmp_path, 0)
    member.expect("deals", "a", bytes(32), b"123456", commitment("deals", "a", bytes(32), b"123456"))
    with pytest.raises(PutRefused) as refused:
        member.expect("deals", "b", bytes(32), b"123456", commitment("deals", "b", bytes(32), b"123456"))
    assert refused.value.status == 503
    member.forget(commitment("deals", "a", bytes(32), b"123456"))
    member.expect("deals", "b", bytes(32), b"123456", commitment("deals", "b", bytes(32), b"123456"))


def test_a_value_whose_put_never_commits_is_let_go_after_a_while(net: Network, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from ledger.private import service as service_module

    monkeypatch.setattr(service_module, "MAX_PENDING_BYTES", 10)
    member = start(net, tmp_path, 0)
    member.expect("deals", "a", bytes(32), b"123456", commitment("deals", "a", bytes(32), b"123456"))
    later = service_module.time.monotonic() + service_module.PENDING_TTL_S + 1
    monkeypatch.setattr(service_module.time, "monotonic", lambda: later)
    member.expect("deals", "b", bytes(32), b"123456", commitment("deals", "b", bytes(32), b"123456"))
