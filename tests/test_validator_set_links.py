"""Peer links follow the validator set (`Transport.follow_validators`): real TLS transports on real sockets.
A validator the chain adds is dialed and accepted without a restart; one it removes is dropped and refused."""

from __future__ import annotations

import asyncio

from ledger.config import Peer
from tests.test_transport import KEYS, Node, free_port, run, wait_for


def test_links_follow_an_added_then_removed_validator() -> None:
    async def scenario() -> None:
        ports = [free_port() for _ in range(3)]
        peers = [Peer(id=KEYS[i].id, host="127.0.0.1", port=ports[i]) for i in range(3)]
        two = {k.id: k.public_key for k in KEYS[:2]}
        three = {k.id: k.public_key for k in KEYS[:3]}
        # The newcomer (2) knows the founders from its configuration; they know nothing of it yet.
        nodes = [Node(KEYS[i], ports[i], [p for p in peers[:2] if p.id != KEYS[i].id], validators=two)
                 for i in range(3)]
        try:
            for node in nodes:
                await node.transport.start()
            await wait_for(lambda: nodes[0].transport.connected_peers() == [KEYS[1].id], what="founders linked")
            await asyncio.sleep(1.0)
            # Its handshakes are refused: its key is no validator's.
            assert nodes[2].transport.connected_peers() == []
            assert KEYS[2].id not in nodes[0].transport.connected_peers()
            # The chain adds it: everyone follows, the founders dial it from the address the change carries.
            for node in nodes:
                node.transport.follow_validators(three, [p for p in peers if p.id != node.key.id])
            everyone = sorted(three)
            await wait_for(lambda: all(n.transport.connected_peers() == sorted(set(everyone) - {n.key.id})
                                       for n in nodes), what="the newcomer linked both ways")
            assert nodes[0].transport.send(KEYS[2].id, b"welcome")
            await wait_for(lambda: nodes[2].inbox.by_sender[KEYS[0].id] == [b"welcome"], what="a message to it")
            # The chain removes it: the founders drop it and refuse it from then on.
            for node in nodes[:2]:
                node.transport.follow_validators(two, [p for p in peers if p.id != node.key.id])
            await wait_for(lambda: nodes[0].transport.connected_peers() == [KEYS[1].id], what="the link dropped")
            await asyncio.sleep(1.5)  # longer than a redial
            assert nodes[0].transport.connected_peers() == [KEYS[1].id]
            assert nodes[2].transport.connected_peers() == []
            assert not nodes[0].transport.send(KEYS[2].id, b"gone")
        finally:
            for node in nodes:
                await node.transport.stop()

    run(scenario(), limit=30.0)
