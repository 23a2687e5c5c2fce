"""Peer-to-peer transport: delivery, request/response, TLS and authentication, framing limits,
heartbeats and dead links, reconnects, bounds on pending handshakes and queues.

Every test is a sync function running one `asyncio.run(scenario())` on 127.0.0.1, with its own
deadline (`run`), so a hang fails fast instead of stalling the suite. Connections from "another
address" come from 127.0.0.2 (Linux routes all of 127/8 to the loopback interface).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.config import Endpoint, Peer
from ledger.crypto import SigningKey
from ledger.net import Transport, TransportError, certs
from ledger.net.frames import LENGTH, FrameType, encode_frame, read_frame
from ledger.net.gate import HandshakeGate, address_key
from ledger.net.handshake import LinkTls, accept_handshake, dial_handshake, validators_by_key
from ledger.net.heartbeat import ECHO, MAX_STALL_ALLOWANCE, STALL, HeartbeatWatcher, announced_stall, round_trip
from ledger.net.link import LinkState
from ledger.net.peers import PeerSeen, describe_peer

CHAIN = "test-chain"
KEYS = [SigningKey.from_seed(b"transport-test-%d" % i) for i in range(4)]
VALIDATORS = {k.id: k.public_key for k in KEYS}
OUTSIDER = SigningKey.from_seed(b"transport-test-outsider")


def run(scenario: Coroutine[Any, Any, None], limit: float = 10.0) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(limit):
            await scenario

    asyncio.run(bounded())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class Inbox:
    """Collects on_message calls per sender."""

    def __init__(self) -> None:
        self.by_sender: dict[str, list[bytes]] = defaultdict(list)

    def __call__(self, sender: str, payload: bytes) -> None:
        self.by_sender[sender].append(payload)

    def count(self) -> int:
        return sum(len(v) for v in self.by_sender.values())


class Node:
    """A transport with its inbox and port, restartable on the same port."""

    def __init__(
        self,
        key: SigningKey,
        port: int,
        peers: list[Peer],
        *,
        chain_id: str = CHAIN,
        validators: dict[str, bytes] | None = None,
        on_request: Callable[[str, bytes], Awaitable[bytes]] | None = None,
        **kwargs: Any,
    ) -> None:
        self.key = key
        self.port = port
        self.peer = Peer(id=key.id, host="127.0.0.1", port=port)
        self.inbox = Inbox()
        self.transport = Transport(
            key,
            chain_id,
            Endpoint(host="127.0.0.1", port=port),
            peers,
            VALIDATORS if validators is None else validators,
            self.inbox,
            on_request=on_request,
            **kwargs,
        )


def cluster(n: int, **kwargs: Any) -> list[Node]:
    ports = [free_port() for _ in range(n)]
    peers = [Peer(id=KEYS[i].id, host="127.0.0.1", port=ports[i]) for i in range(n)]
    return [Node(KEYS[i], ports[i], [p for p in peers if p.id != KEYS[i].id], **kwargs) for i in range(n)]


async def start_all(nodes: list[Node]) -> None:
    for node in nodes:
        await node.transport.start()


async def stop_all(nodes: list[Node]) -> None:
    for node in nodes:
        await node.transport.stop()


async def connected(nodes: list[Node], timeout: float = 5.0) -> None:
    await wait_for(
        lambda: all(len(n.transport.connected_peers()) == len(nodes) - 1 for n in nodes), timeout, "all links up"
    )


async def raw_connect(port: int, source: str = "127.0.0.1") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def tls_connect(
    port: int, key: SigningKey, expected: str, chain_id: str = CHAIN
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A dialer's connection as `key`, through the real handshake (TLS, identity, READY)."""
    reader, writer = await raw_connect(port)
    await dial_handshake(reader, writer, LinkTls(key, chain_id), validators_by_key(VALIDATORS), key.id, expected)
    return reader, writer


async def closed_by_peer(reader: asyncio.StreamReader, timeout: float = 2.0) -> bool:
    """True once the other end closes the connection (EOF or reset), reading and discarding data."""
    try:
        async with asyncio.timeout(timeout):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


# --- delivery ----------------------------------------------------------------------------------


def test_broadcast_all_to_all_exactly_once_in_order() -> None:
    count = 300

    async def scenario() -> None:
        nodes = cluster(3)
        try:
            await start_all(nodes)
            # the first messages are queued before any link is up
            for i in range(count):
                for node in nodes:
                    assert node.transport.broadcast(b"%s:%d" % (node.key.id.encode(), i)) == 2
            await wait_for(lambda: all(n.inbox.count() == 2 * count for n in nodes), what="all messages")
            await asyncio.sleep(0.2)  # nothing more (no duplicates) arrives later
            for node in nodes:
                assert node.inbox.count() == 2 * count
                assert set(node.inbox.by_sender) == {n.key.id for n in nodes if n is not node}
                for sender, payloads in node.inbox.by_sender.items():
                    assert payloads == [b"%s:%d" % (sender.encode(), i) for i in range(count)]
                m = node.transport.metrics
                assert m["frames_sent"] - m["heartbeats_sent"] == 2 * count
                assert m["frames_received"] - m["heartbeats_received"] == 2 * count
                assert node.transport.metrics["handshake_failures"] == 0
            assert sorted(nodes[0].transport.connected_peers()) == sorted(n.key.id for n in nodes[1:])
        finally:
            await stop_all(nodes)

    run(scenario())


def test_large_payload_up_to_max_frame() -> None:
    async def scenario() -> None:
        a, b = nodes = cluster(2, max_frame=1 << 20)
        try:
            await start_all(nodes)
            big = os.urandom((1 << 20) - 1)  # payload + type byte == max_frame
            assert a.transport.send(b.key.id, big)
            assert not a.transport.send(b.key.id, big + b"x")
            assert a.transport.metrics["dropped_too_large"] == 1
            await wait_for(lambda: b.inbox.count() == 1)
            assert b.inbox.by_sender[a.key.id] == [big]
        finally:
            await stop_all(nodes)

    run(scenario())


def test_send_to_unknown_peer_and_after_stop() -> None:
    async def scenario() -> None:
        (a,) = cluster(1)
        await a.transport.start()
        assert not a.transport.send(KEYS[3].id, b"x")
        assert not a.transport.send("nobody", b"x")
        assert a.transport.metrics["dropped_unknown_peer"] == 2
        await a.transport.stop()
        await a.transport.stop()  # idempotent
        assert a.transport.broadcast(b"x") == 0

    run(scenario())


def test_constructor_rejects_peers_outside_the_validator_set() -> None:
    # Its own key may be outside: a validator being added runs before its peers know it
    # (tests/test_validator_set_links.py); peers it would dial may not.
    Node(OUTSIDER, free_port(), [])
    with pytest.raises(ValueError):
        Node(KEYS[0], free_port(), [Peer(id=OUTSIDER.id, host="127.0.0.1", port=1)])


# --- request / response ------------------------------------------------------------------------


def test_request_response() -> None:
    async def answer(sender: str, payload: bytes) -> bytes:
        if payload == b"fail":
            raise RuntimeError("no such block")
        if payload.startswith(b"slow"):
            await asyncio.sleep(0.05)
        return sender.encode() + b"/" + payload

    async def scenario() -> None:
        a, b = nodes = cluster(2, on_request=answer)
        try:
            await start_all(nodes)
            # the request waits for the link to come up
            assert await a.transport.request(b.key.id, b"block 7", timeout=5) == a.key.id.encode() + b"/block 7"
            assert await b.transport.request(a.key.id, b"x", timeout=5) == b.key.id.encode() + b"/x"
            # concurrent requests are matched to their answers by request id
            payloads = [b"slow%d" % i if i % 2 else b"%d" % i for i in range(16)]
            answers = await asyncio.gather(*(a.transport.request(b.key.id, p, timeout=5) for p in payloads))
            assert answers == [a.key.id.encode() + b"/" + p for p in payloads]
            # a failing handler becomes a TransportError at the requester; the link stays up
            with pytest.raises(TransportError, match="RuntimeError"):
                await a.transport.request(b.key.id, b"fail", timeout=5)
            assert await a.transport.request(b.key.id, b"after", timeout=5) == a.key.id.encode() + b"/after"
            assert b.transport.metrics["requests_served"] == 18
            assert b.transport.metrics["requests_refused"] == 1
            with pytest.raises(TransportError, match="unknown peer"):
                await a.transport.request("nobody", b"x", timeout=1)
        finally:
            await stop_all(nodes)

    run(scenario())


def test_request_to_dead_peer_times_out() -> None:
    async def scenario() -> None:
        a, b = cluster(2)  # b is never started
        try:
            await a.transport.start()
            started = time.monotonic()
            with pytest.raises(TransportError, match="timed out"):
                await a.transport.request(b.key.id, b"block 1", timeout=0.3)
            assert time.monotonic() - started < 1.0
            assert a.transport.metrics["requests_failed"] == 1
            assert a.transport.metrics["connect_failures"] >= 1
        finally:
            await a.transport.stop()

    run(scenario())


def test_request_fails_when_the_link_drops() -> None:
    async def hang(sender: str, payload: bytes) -> bytes:
        await asyncio.sleep(30)
        return b""

    async def scenario() -> None:
        a, b = nodes = cluster(2, on_request=hang)
        try:
            await start_all(nodes)
            await connected(nodes)
            pending = asyncio.create_task(a.transport.request(b.key.id, b"x", timeout=8))
            await asyncio.sleep(0.1)
            started = time.monotonic()
            await b.transport.stop()
            with pytest.raises(TransportError):
                await pending
            assert time.monotonic() - started < 2.0
        finally:
            await stop_all(nodes)

    run(scenario())


def test_outstanding_and_served_requests_are_bounded() -> None:
    async def hang(sender: str, payload: bytes) -> bytes:
        await asyncio.sleep(30)
        return b""

    async def scenario() -> None:
        ports = [free_port(), free_port()]
        peers = [Peer(id=KEYS[i].id, host="127.0.0.1", port=ports[i]) for i in (0, 1)]
        # a keeps at most 2 requests open; a answers at most 1 request at a time
        a = Node(KEYS[0], ports[0], [peers[1]], on_request=hang, max_requests_per_peer=2, max_serving_per_link=1)
        b = Node(KEYS[1], ports[1], [peers[0]], on_request=hang)
        nodes = [a, b]
        try:
            await start_all(nodes)
            await connected(nodes)
            hanging = [asyncio.create_task(a.transport.request(b.key.id, b"%d" % i, timeout=5)) for i in range(2)]
            await asyncio.sleep(0.1)
            with pytest.raises(TransportError, match="too many outstanding"):
                await a.transport.request(b.key.id, b"one more", timeout=1)
            # b asks a three things at once: a serves one and refuses the others as busy
            asked = [asyncio.create_task(b.transport.request(a.key.id, b"%d" % i, timeout=0.5)) for i in range(3)]
            results = await asyncio.gather(*asked, return_exceptions=True)
            assert sorted(str(r).split(": ")[-1] for r in results) == [
                "busy",
                "busy",
                f"request to {a.key.id} timed out after 0.5 s",
            ]
            assert a.transport.metrics["requests_refused"] == 2
            for task in hanging:
                task.cancel()
        finally:
            await stop_all(nodes)

    run(scenario())


def test_request_without_handler_is_refused() -> None:
    async def scenario() -> None:
        a, b = nodes = cluster(2)  # no on_request anywhere
        try:
            await start_all(nodes)
            with pytest.raises(TransportError, match="no request handler"):
                await a.transport.request(b.key.id, b"x", timeout=5)
            assert b.transport.metrics["requests_refused"] == 1
        finally:
            await stop_all(nodes)

    run(scenario())


# --- TLS and authentication ----------------------------------------------------------------------


def test_links_are_tls_13_with_the_validator_keys_as_certificates() -> None:
    async def scenario() -> None:
        (b,) = cluster(1)
        try:
            await b.transport.start()
            reader, writer = await tls_connect(b.port, KEYS[1], b.key.id)
            tls = writer.get_extra_info("ssl_object")
            assert tls.version() == "TLSv1.3" and tls.selected_alpn_protocol() == "ledger-p2p/2"
            assert tls.cipher()[0] in ("TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256",
                                       "TLS_AES_128_GCM_SHA256")
            assert x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw) == b.key.public_key
            writer.write(encode_frame(FrameType.MESSAGE, b"over tls"))
            await wait_for(lambda: b.inbox.by_sender == {KEYS[1].id: [b"over tls"]})
            writer.close()
        finally:
            await b.transport.stop()

    run(scenario())


def test_a_non_validator_key_is_refused_and_its_dialer_never_sees_a_link() -> None:
    async def scenario() -> None:
        (b,) = cluster(1)
        outsider_validators = {**VALIDATORS, OUTSIDER.id: OUTSIDER.public_key}  # the outsider's own view
        outsider = Transport(
            OUTSIDER, CHAIN, Endpoint(host="127.0.0.1", port=free_port()), [b.peer], outsider_validators,
            lambda s, p: None,
        )
        try:
            await b.transport.start()
            await outsider.start()
            assert outsider.send(b.key.id, b"let me in")
            await wait_for(lambda: b.transport.metrics["handshake_failures"] >= 2
                           and outsider.metrics["handshake_failures"] >= 2, what="rejections")
            assert b.inbox.count() == 0
            # the listener refused it after TLS: the dialer waits for READY and sees a failed handshake
            assert outsider.connected_peers() == [] and outsider.metrics["links_established"] == 0
        finally:
            await outsider.stop()
            await b.transport.stop()

    run(scenario())


def forged_certificate(subject: str, key: SigningKey, chain_id: str = CHAIN) -> x509.Certificate:
    """A certificate the public link issuer signs for any subject and key: what anyone can make."""
    issuer_key, issuer_cert = certs.issuer(chain_id)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, subject)]))
               .issuer_name(issuer_cert.subject).public_key(Ed25519PublicKey.from_public_bytes(key.public_key))
               .serial_number(7).not_valid_before(certs.NOT_BEFORE).not_valid_after(certs.NOT_AFTER))
    return issuer_key.sign_certificate(builder)


def client_context(cert: x509.Certificate, key: SigningKey) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # this dialer does not care who answers
    ctx.set_alpn_protocols(["ledger-p2p/2"])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "id.pem"
        path.write_bytes(certs.pem(cert) + key.to_pem())
        ctx.load_cert_chain(path)
    return ctx


def test_a_certificate_naming_a_validator_but_carrying_another_key_is_refused() -> None:
    async def scenario() -> None:
        (b,) = cluster(1)
        try:
            await b.transport.start()
            # the subject names validator KEYS[1]; the key (the one TLS makes it prove) is the outsider's
            forged = forged_certificate(KEYS[1].id, OUTSIDER)
            reader, writer = await raw_connect(b.port)
            await writer.start_tls(client_context(forged, OUTSIDER))  # TLS 1.3: the dialer is done first...
            writer.write(encode_frame(FrameType.MESSAGE, b"forged"))
            assert await closed_by_peer(reader)  # ...but no READY comes, only the close
            await wait_for(lambda: b.transport.metrics["handshake_failures"] == 1)
            assert b.inbox.count() == 0
        finally:
            await b.transport.stop()

    run(scenario())


def test_a_certificate_with_a_validator_key_is_useless_without_that_key() -> None:
    # What a man in the middle could make: a certificate for b's public key, issued by the public
    # link issuer. OpenSSL will not even take it with any other private key, because TLS would make
    # it sign with b's.
    cert = forged_certificate(KEYS[1].id, KEYS[1])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mitm.pem"
        path.write_bytes(certs.pem(cert) + OUTSIDER.to_pem())
        with pytest.raises(ssl.SSLError, match="KEY_VALUES_MISMATCH|key values mismatch"):
            ctx.load_cert_chain(path)


def test_dialer_rejects_a_different_validator_at_the_address() -> None:
    async def scenario() -> None:
        port_c = free_port()
        # b believes a listens at port_c, but c is there
        b = Node(KEYS[1], free_port(), [Peer(id=KEYS[0].id, host="127.0.0.1", port=port_c)])
        c = Node(KEYS[2], port_c, [])
        try:
            await b.transport.start()
            await c.transport.start()
            assert b.transport.send(KEYS[0].id, b"for a only")
            await wait_for(lambda: b.transport.metrics["handshake_failures"] >= 2, what="rejections")
            assert b.transport.connected_peers() == []
            assert c.inbox.count() == 0
        finally:
            await b.transport.stop()
            await c.transport.stop()

    run(scenario())


def test_wrong_chain_id_is_rejected() -> None:
    async def scenario() -> None:
        ports = [free_port(), free_port()]
        a = Node(KEYS[0], ports[0], [Peer(id=KEYS[1].id, host="127.0.0.1", port=ports[1])], chain_id="other-chain")
        b = Node(KEYS[1], ports[1], [Peer(id=KEYS[0].id, host="127.0.0.1", port=ports[0])])
        try:
            await start_all([a, b])
            assert a.transport.send(b.key.id, b"x") and b.transport.send(a.key.id, b"y")
            await wait_for(
                lambda: (
                    a.transport.metrics["handshake_failures"] >= 3 and b.transport.metrics["handshake_failures"] >= 3
                ),
                what="rejections",
            )
            assert a.inbox.count() == b.inbox.count() == 0
            assert a.transport.connected_peers() == b.transport.connected_peers() == []
        finally:
            await stop_all([a, b])

    run(scenario())


def test_plaintext_gets_nothing_and_the_listener_keeps_serving() -> None:
    async def scenario() -> None:
        a, b = nodes = cluster(2, handshake_timeout=1.0)
        try:
            await b.transport.start()
            garbage = [
                os.urandom(1000),
                b"\x00\x00\x00\x00",  # an empty frame
                encode_frame(FrameType.MESSAGE, b"unauthenticated"),
                encode_frame(FrameType.READY, b""),
                LENGTH.pack(0xFFFFFFFF),  # a frame announcing 4 GiB
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                b"\x16\x03\x01\x00\x05hello",  # a TLS record header with a bogus handshake
            ]
            for blob in garbage:
                reader, writer = await raw_connect(b.port)
                writer.write(blob)
                async with asyncio.timeout(3):
                    received = await reader.read()  # until the listener closes
                assert received == b"" or received[0] == 0x15  # nothing, or at most a TLS alert
                writer.close()
            await wait_for(lambda: b.transport.metrics["handshake_failures"] == len(garbage))
            assert b.inbox.count() == 0 and b.transport.metrics["frames_received"] == 0
            await a.transport.start()
            assert a.transport.send(b.key.id, b"still works")
            await wait_for(lambda: b.inbox.count() == 1)
        finally:
            await stop_all(nodes)

    run(scenario())


# --- pending handshakes -------------------------------------------------------------------------


def test_silent_connections_time_out_and_one_address_holds_at_most_its_share() -> None:
    async def scenario() -> None:
        a, b = nodes = cluster(2, handshake_timeout=0.5, max_pending_handshakes=6, max_pending_per_address=2)
        try:
            await b.transport.start()
            silent = [await raw_connect(b.port, "127.0.0.2") for _ in range(8)]  # connect, never say anything
            await wait_for(lambda: b.transport.metrics["handshakes_evicted"] == 6, what="evictions")
            # the oldest six were pushed out by their own address's newer ones; the last two time out
            closed = await asyncio.gather(*(closed_by_peer(r, timeout=2) for r, _ in silent))
            assert all(closed)
            assert b.transport.metrics["handshake_failures"] == 8
            for _, w in silent:
                w.close()
        finally:
            await stop_all(nodes)

    run(scenario())


def test_slow_handshakes_from_one_address_do_not_keep_a_validator_out() -> None:
    async def scenario() -> None:
        a, b = nodes = cluster(2, handshake_timeout=30.0, max_pending_handshakes=16, max_pending_per_address=4)
        try:
            await b.transport.start()
            # 200 connections from another address, each trickling a TLS ClientHello, held for 30 s each
            slow = [await raw_connect(b.port, "127.0.0.2") for _ in range(200)]
            for _, w in slow:
                w.write(b"\x16\x03\x01")
            await wait_for(lambda: b.transport.metrics["handshakes_evicted"] == 196, what="evictions")
            started = time.monotonic()
            await a.transport.start()
            assert a.transport.send(b.key.id, b"in")
            await wait_for(lambda: b.inbox.count() == 1, timeout=2, what="the validator's link")
            assert time.monotonic() - started < 1.0
            assert b.transport._listener.pending_from("127.0.0.2") == 4
            for _, w in slow:
                w.close()
        finally:
            await stop_all(nodes)

    run(scenario(), limit=20)


def test_many_addresses_push_out_the_oldest_pending_handshakes_not_the_newest() -> None:
    async def scenario() -> None:
        a, b = nodes = cluster(2, handshake_timeout=30.0, max_pending_handshakes=8, max_pending_per_address=4)
        try:
            await b.transport.start()
            held = [await raw_connect(b.port, f"127.0.0.{2 + i % 6}") for i in range(24)]  # 6 addresses, 4 each
            await wait_for(lambda: b.transport.metrics["handshakes_evicted"] == 16, what="evictions")
            await a.transport.start()  # the newest: it gets its slot, and 8 new ones would be needed to push it out
            assert a.transport.send(b.key.id, b"in")
            await wait_for(lambda: b.inbox.count() == 1, timeout=2, what="the validator's link")
            for _, w in held:
                w.close()
        finally:
            await stop_all(nodes)

    run(scenario(), limit=20)


# --- incoming links and framing ----------------------------------------------------------------


def test_new_link_from_a_peer_replaces_the_old_one() -> None:
    async def scenario() -> None:
        (b,) = cluster(1)  # default: one incoming link per peer
        try:
            await b.transport.start()
            old_reader, old_writer = await tls_connect(b.port, KEYS[1], b.key.id)
            new_reader, new_writer = await tls_connect(b.port, KEYS[1], b.key.id)
            assert await closed_by_peer(old_reader, timeout=1)
            old_writer.write(encode_frame(FrameType.MESSAGE, b"old"))
            new_writer.write(encode_frame(FrameType.MESSAGE, b"new"))
            await wait_for(lambda: b.inbox.count() == 1)
            await asyncio.sleep(0.05)
            assert b.inbox.by_sender == {KEYS[1].id: [b"new"]}
            assert b.transport.metrics["incoming_replaced"] == 1
            old_writer.close()
            new_writer.close()
        finally:
            await b.transport.stop()

    run(scenario())


def test_incoming_links_per_peer_are_bounded() -> None:
    async def scenario() -> None:
        (b,) = cluster(1, max_incoming_per_peer=2)
        try:
            await b.transport.start()
            conns = [await tls_connect(b.port, KEYS[1], b.key.id) for _ in range(5)]  # one validator, many links
            await wait_for(lambda: b.transport.metrics["incoming_replaced"] == 3)
            for reader, _ in conns[:3]:
                assert await closed_by_peer(reader, timeout=1)
            for _, writer in conns[3:]:  # the newest two still deliver
                writer.write(encode_frame(FrameType.MESSAGE, b"still here"))
            await wait_for(lambda: b.inbox.count() == 2)
            for _, writer in conns:
                writer.close()
        finally:
            await b.transport.stop()

    run(scenario())


def test_oversized_and_malformed_frames_close_an_authenticated_link() -> None:
    async def scenario() -> None:
        a, b = nodes = cluster(2, max_frame=64 * 1024)
        try:
            await b.transport.start()
            reader, writer = await tls_connect(b.port, a.key, b.key.id)
            writer.write(encode_frame(FrameType.MESSAGE, b"ok"))
            writer.write(LENGTH.pack(64 * 1024 + 1) + b"\x10")
            assert await closed_by_peer(reader)
            assert b.transport.metrics["oversized_frames"] == 1
            assert b.inbox.by_sender == {a.key.id: [b"ok"]}
            writer.close()
            # an unknown frame type, a RESPONSE on an incoming link, a short request, an empty frame
            for bad in (LENGTH.pack(2) + b"\x7fx", LENGTH.pack(9) + b"\x12" + bytes(8), LENGTH.pack(3) + b"\x11ab",
                        LENGTH.pack(0)):
                reader, writer = await tls_connect(b.port, a.key, b.key.id)
                writer.write(bad)
                assert await closed_by_peer(reader)
                writer.close()
            assert b.transport.metrics["malformed_frames"] == 4
            await a.transport.start()  # the listener still serves a legitimate peer
            assert a.transport.send(b.key.id, b"after")
            await wait_for(lambda: b.inbox.count() == 2)
        finally:
            await stop_all(nodes)

    run(scenario())


def test_on_message_exception_does_not_break_the_link() -> None:
    async def scenario() -> None:
        a, b = nodes = cluster(2)
        seen: list[bytes] = []

        def picky(sender: str, payload: bytes) -> None:
            if payload == b"boom":
                raise ValueError("bad message")
            seen.append(payload)

        b.transport._on_message = picky
        try:
            await start_all(nodes)
            for p in (b"1", b"boom", b"2"):
                a.transport.send(b.key.id, p)
            await wait_for(lambda: len(seen) == 2)
            assert seen == [b"1", b"2"]
            assert b.transport.metrics["callback_errors"] == 1
        finally:
            await stop_all(nodes)

    run(scenario())


# --- heartbeats and dead links -----------------------------------------------------------------


class Relay:
    """A TCP relay between a dialer and a listener that can go silent: it stops forwarding on the
    connections it has, without closing them (a link that died silently), while new connections
    are forwarded again."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.connections: list[dict[str, Any]] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        state = {"silent": False, "writers": (writer, up_writer)}
        self.connections.append(state)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    if state["silent"]:
                        continue  # swallowed: neither end hears anything more, nor a close
                    dst.write(data)
                    await dst.drain()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    def silence_existing(self) -> None:
        for state in self.connections:
            state["silent"] = True

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for state in self.connections:
            for w in state["writers"]:
                w.transport.abort()


def test_a_link_that_dies_silently_is_closed_and_comes_back() -> None:
    async def scenario() -> None:
        ports = [free_port(), free_port()]
        relay = Relay(ports[1])
        # a reaches b only through the relay; b reaches a directly
        a = Node(KEYS[0], ports[0], [Peer(id=KEYS[1].id, host="127.0.0.1", port=relay.port)],
                 heartbeat_interval=0.1, dead_after=0.5)
        b = Node(KEYS[1], ports[1], [a.peer], heartbeat_interval=0.1, dead_after=0.5)
        try:
            await relay.start()
            await start_all([a, b])
            await wait_for(lambda: a.transport.link_state(b.key.id).connected
                           and b.transport.link_state(a.key.id).connected, what="links up")
            first_since = a.transport.link_state(b.key.id).connected_since
            relay.silence_existing()
            silenced, silenced_wall = time.monotonic(), time.time()
            # both ends of the silent connection notice, and a's dial loop brings up a new one
            await wait_for(lambda: a.transport.metrics["links_dead"] >= 1 and b.transport.metrics["links_dead"] >= 1,
                           timeout=3, what="both ends closing the silent link")
            await wait_for(lambda: a.transport.metrics["reconnects"] >= 1 and a.transport.link_state(b.key.id).connected
                           and b.transport.link_state(a.key.id).incoming, timeout=3, what="the link back")
            back_after = time.monotonic() - silenced
            assert 0.5 <= back_after < 1.5, back_after
            # the network view dates the link from its return, as both ends recorded it
            assert first_since is not None and first_since < silenced_wall
            for node, other in ((a, b), (b, a)):
                since = node.transport.link_state(other.key.id).connected_since
                assert since is not None and silenced_wall + 0.5 <= since <= time.time(), (since, silenced_wall)
            assert a.transport.send(b.key.id, b"after")
            await wait_for(lambda: b.inbox.by_sender.get(a.key.id) == [b"after"])
            assert len(relay.connections) == 2
        finally:
            await stop_all([a, b])
            await relay.stop()

    run(scenario())


def test_heartbeats_keep_an_idle_link_up_and_measure_its_round_trip() -> None:
    async def scenario() -> None:
        a, b = nodes = cluster(2, heartbeat_interval=0.05, dead_after=0.2)
        try:
            await start_all(nodes)
            await connected(nodes)
            await asyncio.sleep(1.0)  # idle: only heartbeats travel
            for node, other in ((a, b), (b, a)):
                state = node.transport.link_state(other.key.id)
                assert state.connected and state.rtt_ms is not None and state.rtt_ms < 100
                # when the link came up, not when asked
                assert state.connected_since is not None and time.time() - state.connected_since >= 1.0
                assert state.last_heard is not None and time.time() - state.last_heard < 0.2
                assert node.transport.metrics["links_dead"] == 0 and node.transport.metrics["reconnects"] == 0
                assert node.transport.metrics["heartbeats_received"] >= 20
        finally:
            await stop_all(nodes)

    run(scenario())


def test_a_stalled_node_does_not_drop_links_whose_frames_it_has_not_read_yet() -> None:
    async def scenario() -> None:
        a, b = nodes = cluster(2, heartbeat_interval=0.05, dead_after=0.2)
        try:
            await start_all(nodes)
            await connected(nodes)
            time.sleep(1.0)  # the whole loop blocks for five times dead_after (as a SIGSTOP would)
            await asyncio.sleep(0.5)
            for node in nodes:
                assert node.transport.metrics["links_dead"] == 0 and node.transport.metrics["links_lost"] == 0
            assert a.transport.link_state(b.key.id).connected and b.transport.link_state(a.key.id).connected
        finally:
            await stop_all(nodes)

    run(scenario())


class OwnLoop:
    """A node's transport on an event loop of its own thread, as in another process; each message it gets
    blocks that loop for `blocking(payload)` seconds, as executing a block does, and is kept in `handled`."""

    def __init__(self, node: Node, blocking: Callable[[bytes], float]) -> None:
        self._node = node
        self.handled: list[bytes] = []

        def handle(sender: str, payload: bytes) -> None:
            time.sleep(blocking(payload))
            self.handled.append(payload)

        node.transport._on_message = handle
        self._done = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        await self._node.transport.start()
        while not self._done.is_set():
            await asyncio.sleep(0.02)
        await self._node.transport.stop()

    async def start_beside(self, other: Node) -> None:
        """Start `other` on this loop and the node on its own; return once `other`'s link to it is up."""
        await other.transport.start()
        self._thread.start()
        await wait_for(lambda: other.transport.link_state(self._node.key.id).connected, 5, "the links up")

    def stop(self) -> None:
        self._done.set()
        self._thread.join(5)


def test_a_long_run_of_slow_messages_does_not_keep_heartbeats_waiting() -> None:
    # As a validator catching up after a restart: a backlog of messages, each handled on its loop for
    # a while (a block to execute). Its peer, in another process (here: a loop on another thread),
    # must keep hearing it, or it drops links that are alive.
    a, b = cluster(2, heartbeat_interval=0.05, dead_after=0.5)
    b_loop = OwnLoop(b, lambda payload: 0.08)
    handled = b_loop.handled

    async def scenario() -> None:
        try:
            await b_loop.start_beside(a)
            for i in range(30):  # 2.4 s of work for b, about five times dead_after
                assert a.transport.send(b.key.id, b"m%d" % i)
            await wait_for(lambda: len(handled) == 30, 10, "b to handle the backlog")
            assert handled == [b"m%d" % i for i in range(30)]  # in order, each once
            assert a.transport.metrics["links_dead"] == 0 and b.transport.metrics["links_dead"] == 0
            assert a.transport.link_state(b.key.id).connected
        finally:
            b_loop.stop()
            await a.transport.stop()

    run(scenario())


def test_a_peer_that_announced_its_stalls_keeps_its_links_through_the_next_one() -> None:
    # As a validator on a large state: executing a block blocks its loop for longer than dead_after. The
    # first such stall costs its links (nothing announced it); its heartbeats then say how long its loop
    # was blocked, and its peer waits that much longer before closing the next time.
    a, b = cluster(2, heartbeat_interval=0.05, dead_after=0.3)
    b_loop = OwnLoop(b, lambda payload: float(payload.decode()))  # the message says how long
    handled = b_loop.handled

    async def scenario() -> None:
        try:
            await b_loop.start_beside(a)
            assert a.transport.send(b.key.id, b"0.9")  # three times dead_after, unannounced
            await wait_for(lambda: len(handled) == 1, 10, "b's first stall")
            await wait_for(lambda: a.transport.link_state(b.key.id).connected, 5, "the links back")
            first = a.transport.metrics["links_dead"]
            assert first >= 1  # closed: a could not tell a busy peer from a dead link
            await asyncio.sleep(0.3)  # heartbeats announce b's stall
            assert a.transport.send(b.key.id, b"0.8")
            await wait_for(lambda: len(handled) == 2, 10, "b's second stall")
            await asyncio.sleep(0.2)
            assert a.transport.metrics["links_dead"] == first  # this time a waited for it
            assert b.transport.metrics["links_dead"] == 0  # b's own stall never counts against a
            assert a.transport.link_state(b.key.id).connected
        finally:
            b_loop.stop()
            await a.transport.stop()

    run(scenario(), limit=30)


def test_a_heartbeat_announces_a_stall_only_in_the_new_body_and_never_beyond_the_cap() -> None:
    ping = encode_frame(FrameType.PING, ECHO.pack(5_000_000_000) + STALL.pack(2_500))
    assert announced_stall(ping[4:]) == 2.5 and round_trip(ping[4:], 6.0) == 1.0
    old = encode_frame(FrameType.PONG, ECHO.pack(5_000_000_000))  # an older node's: the echo only
    assert announced_stall(old[4:]) == 0.0 and round_trip(old[4:], 5.5) == 0.5
    watcher = HeartbeatWatcher(0.05, 0.3, {}, list, list, lambda link, frame: None)
    watcher.heard("liar", encode_frame(FrameType.PING, ECHO.pack(0) + STALL.pack(2**32 - 1))[4:])
    assert watcher.patience("liar") == 0.3 + MAX_STALL_ALLOWANCE * 0.3
    assert watcher.patience("quiet") == 0.3  # a peer that announced nothing


def test_the_network_view_of_a_peer_is_the_transports_account_of_both_directions() -> None:
    now = 1000.0
    stale = PeerSeen(last_seen=now - 132, view=24, height=7)  # its last consensus message: long ago
    alive = LinkState(outgoing=True, incoming=True, last_heard=now - 0.1, rtt_ms=0.42, connected_since=now - 3)
    out = describe_peer(stale, alive, now)
    assert out["connected"] and out["last_seen_ago_ms"] == 100 and out["rtt_ms"] == 0.4 and out["view"] == 24
    assert out["connected_since"] == 997_000
    one_way = describe_peer(stale, LinkState(outgoing=True, incoming=False, last_heard=now - 0.1, rtt_ms=None), now)
    assert not one_way["connected"] and one_way["outgoing"] and not one_way["incoming"]
    assert describe_peer(PeerSeen(), None, now)["connected"] is False


# --- reconnection and bounds -------------------------------------------------------------------


def test_reconnect_after_peer_restart() -> None:
    async def scenario() -> None:
        a, b = nodes = cluster(2, queue_limit=50)
        b2: Node | None = None
        try:
            await start_all(nodes)
            assert a.transport.send(b.key.id, b"before")
            await wait_for(lambda: b.inbox.count() == 1)
            await b.transport.stop()
            await wait_for(lambda: a.transport.connected_peers() == [], what="link down")
            # keep sending while b is down: the queue fills, then send refuses
            results = [a.transport.send(b.key.id, b"m%d" % i) for i in range(80)]
            assert results == [True] * 50 + [False] * 30
            assert a.transport.metrics["dropped_queue_full"] == 30
            assert a.transport.queue_depth(b.key.id) == 50
            await asyncio.sleep(0.3)  # a few failed dials
            # restart b on the same port (a new process would look the same)
            b2 = Node(b.key, b.port, [a.peer])
            await b2.transport.start()
            await wait_for(lambda: b2 is not None and b2.inbox.count() == 50, what="queued messages")
            assert b2.inbox.by_sender[a.key.id] == [b"m%d" % i for i in range(50)]
            assert a.transport.metrics["reconnects"] == 1
            assert a.transport.metrics["connect_failures"] >= 1
            assert a.transport.send(b.key.id, b"after")
            await wait_for(lambda: b2 is not None and b2.inbox.count() == 51)
        finally:
            await stop_all(nodes)
            if b2 is not None:
                await b2.transport.stop()

    run(scenario())


def test_queue_bound_with_unreachable_peer() -> None:
    async def scenario() -> None:
        a, b = cluster(2, queue_limit=100, queue_bytes=10_000)
        try:
            await a.transport.start()
            assert [a.transport.send(b.key.id, b"x") for _ in range(150)] == [True] * 100 + [False] * 50
            assert a.transport.metrics["dropped_queue_full"] == 50
            assert a.transport.queue_depth(b.key.id) == 100
        finally:
            await a.transport.stop()
        # the byte bound applies too
        a, b = cluster(2, queue_limit=100, queue_bytes=10_000)
        try:
            await a.transport.start()
            assert [a.transport.send(b.key.id, bytes(3000)) for _ in range(5)] == [True] * 3 + [False] * 2
        finally:
            await a.transport.stop()

    run(scenario())


def test_queue_bound_with_peer_that_never_reads() -> None:
    async def scenario() -> None:
        # heartbeats far apart: this is about the queue, not about noticing the stuck peer
        a, b = cluster(2, queue_limit=16, heartbeat_interval=10.0, dead_after=30.0)
        handshakes: list[str] = []
        release = asyncio.Event()

        async def stuck_listener(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            # authenticates as b, then never reads again
            handshakes.append(await accept_handshake(writer, validators_by_key(VALIDATORS), b.key.id))
            await release.wait()
            writer.close()

        server = await asyncio.start_server(stuck_listener, "127.0.0.1", b.port, ssl=LinkTls(b.key, CHAIN).server)
        try:
            await a.transport.start()
            await wait_for(lambda: a.transport.connected_peers() == [b.key.id])
            payload = bytes(256 * 1024)
            sent = 0
            for _ in range(400):  # at most ~100 MiB offered; socket buffers hold a few MiB
                if not a.transport.send(b.key.id, payload):
                    break
                sent += 1
                await asyncio.sleep(0.002)
            assert a.transport.metrics["dropped_queue_full"] == 1
            assert a.transport.queue_depth(b.key.id) == 16
            assert sent < 200
            assert handshakes == [a.key.id]
        finally:
            await a.transport.stop()
            release.set()
            server.close()
            await asyncio.sleep(0.01)

    run(scenario())


def test_the_gate_pushes_out_the_oldest_of_an_address_then_the_oldest_overall() -> None:
    gate: HandshakeGate[str] = HandshakeGate(total=4, per_address=2)
    assert gate.admit("a1", "10.0.0.1") == [] and gate.admit("a2", "10.0.0.1") == []
    assert gate.admit("a3", "10.0.0.1") == ["a1"]  # its own address's oldest, not anyone else's
    assert gate.admit("b1", "10.0.0.2") == [] and gate.admit("c1", "10.0.0.3") == []
    assert gate.admit("d1", "10.0.0.4") == ["a2"]  # full: the oldest overall
    gate.release("b1")
    gate.release("b1")  # harmless twice
    assert len(gate) == 3 and gate.pending_from("10.0.0.1") == 1
    # IPv6 counts per /64; an IPv4-mapped address counts as its IPv4 address
    assert address_key("2001:db8:1:2::5") == address_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::5") != address_key("2001:db8:1:2::5")
    assert address_key("::ffff:10.0.0.1") == "10.0.0.1"


def test_certificates_are_deterministic_and_carry_the_validator_key() -> None:
    cert = certs.node_certificate(KEYS[0], CHAIN)
    assert cert == certs.node_certificate(KEYS[0], CHAIN)  # Ed25519 signatures and fixed fields
    assert certs.certificate_key(cert.public_bytes(serialization.Encoding.DER)) == KEYS[0].public_key
    assert certs.issuer(CHAIN)[0].public_key != certs.issuer("other-chain")[0].public_key
    assert certs.certificate_key(b"not a certificate") is None


def test_frames_roundtrip_and_limit() -> None:
    async def scenario() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(encode_frame(FrameType.MESSAGE, b"abc") + LENGTH.pack(100))
        reader.feed_eof()
        assert await read_frame(reader, 10) == (FrameType.MESSAGE, b"\x10abc")
        with pytest.raises(TransportError):
            await read_frame(reader, 10)

    run(scenario())
