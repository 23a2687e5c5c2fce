"""A Byzantine primary's bad proposals in the deterministic simulation, over the real LedgerApp/ChainDB.

The view-0 primary sends every backup a bad pre-prepare for a slot first (block time far in the future or
running back from its parent, transactions over the block budget, a message over the frame limit, a block
naming another proposer, an attachment that is no block), each signed with its real key, and the honest
block after it. The three backups are a quorum without the primary, so a bad block they accepted would
commit. Then it proposes only bad blocks, so the backups must change views to get anything done. Honest
work commits, no forged block is in any honest chain, and every replica ends on one chain.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest

from ledger.chain import Block, compute_block_hash
from ledger.codec import encode
from ledger.consensus.actions import Action, Broadcast, Send
from ledger.consensus.messages import (
    KIND_PREPREPARE,
    PrePrepare,
    decode_block,
    decode_body,
    decode_envelope,
    encode_envelope,
    sign_message,
)
from ledger.crypto import SigningKey, derive_id
from ledger.genesis import Genesis, GenesisMember, GenesisPrefix, GenesisValidator
from ledger.resolver.registry import IdRegister, ValueSpec
from ledger.tx import make_tx
from tests.misbehaving_node import PROPOSAL_KINDS, _parent, forge
from tests.sim.checks import assert_live, finish
from tests.sim.network import Network, SimNode
from tests.sim.real_app import TICK_MS, real_app_network

KEYS = [SigningKey.from_seed(f"bad-proposals-validator-{i}".encode()) for i in range(4)]
ADMIN = SigningKey.from_seed(b"bad-proposals-admin")
GENESIS = Genesis(
    chain_id="sim-bad-proposals", timestamp=1_767_225_600_000,
    validators=tuple(GenesisValidator(f"v{i}", k.public_key) for i, k in enumerate(KEYS)),
    members=(GenesisMember("admin", ADMIN.public_key, ("admin",)),),
    prefixes=(GenesisPrefix("88.100", derive_id(ADMIN.public_key)),),
)
# Each kind, what a backup's refusal of it is counted as (block time far ahead: on receipt).
KINDS = {
    "future": "untimely_blocks", "backwards": "invalid_blocks", "oversized": "invalid_blocks",
    "frame": "dropped_malformed", "other_proposer": "dropped_invalid", "not_a_block": "dropped_malformed",
}
assert set(PROPOSAL_KINDS) <= set(KINDS)


class BadPrimary:
    """Rewrites the pre-prepares a primary broadcasts (see the module's docstring); a retransmission
    sends the same messages again."""

    def __init__(self, net: Network) -> None:
        self.net = net
        self.sent: Counter[str] = Counter()
        self.forged: set[bytes] = set()  # hashes of the bad blocks it signed
        self.honest_slots: list[int] = []  # heights whose honest block went out after a bad one
        self._kinds = list(KINDS)
        self._slots = 0
        self._cache: dict[bytes, list[Action]] = {}

    def __call__(self, node: SimNode, actions: list[Action]) -> list[Action]:
        out: list[Action] = []
        for a in actions:
            env = decode_envelope(a.message) if isinstance(a, Broadcast) else None
            if not isinstance(a, Broadcast) or env is None or env.kind != KIND_PREPREPARE:
                out.append(a)
                continue
            if a.message not in self._cache:
                self._cache[a.message] = self._forge(node, a.message)
            out += self._cache[a.message]
        return out

    def _forge(self, node: SimNode, honest: bytes) -> list[Action]:
        env = decode_envelope(honest)
        body = decode_body(env)
        assert isinstance(body, PrePrepare)
        block = decode_block(env.attachment)
        peers = [v for v in self.net.config.validators if v != node.id]
        slot, self._slots = self._slots, self._slots + 1
        if slot < len(self._kinds):
            bad = self._bad(node, self._kinds[slot], body, block)
            self.honest_slots.append(body.height)
            return [Send(p, m) for p in peers for m in ([bad] if bad is not None else []) + [honest]]
        stall = [m for kind in self._kinds if (m := self._bad(node, kind, body, block)) is not None]
        return [Send(p, m) for p in peers for m in stall]

    def _bad(self, node: SimNode, kind: str, body: PrePrepare, honest: Block) -> bytes | None:
        """The signed pre-prepare of `kind` for the slot of `body`; None if it cannot be made here."""
        app = node.app
        found = _parent(app, body.prev_hash)  # type: ignore[arg-type]
        if found is None:
            return None
        if kind == "not_a_block":
            attachment, block_hash = b"\x93junk" + bytes(body.height), bytes(32)
        else:
            if kind == "other_proposer":
                built = forge(app.chain, "", honest.txs, honest.header, *found)  # type: ignore[attr-defined]
                assert built is not None
                header = replace(built.block.header, proposer=KEYS[1].id)
                block: Block | None = Block(header, built.block.txs)
            else:
                now = GENESIS.timestamp + TICK_MS * self.net.time
                executed = forge(app.chain, kind, honest.txs, honest.header, *found,  # type: ignore[attr-defined]
                                 now_ms=now)
                block = None if executed is None else executed.block
            if block is None:
                return None
            attachment, block_hash = encode(block), compute_block_hash(block.header)
            self.forged.add(block_hash)
        self.sent[kind] += 1
        forged = sign_message(node.key, self.net.chain_id, replace(body, block_hash=block_hash), attachment)
        return encode_envelope(forged)


@pytest.mark.parametrize("seed", [3, 8])
def test_a_primarys_bad_proposals_never_commit_and_the_view_moves_on(seed: int) -> None:
    net = real_app_network(GENESIS, KEYS, seed, config={"batch_size": 4})
    assert net.nodes[0].replica.primary == KEYS[0].id, "node 0 must be the view-0 primary"
    liar = BadPrimary(net)
    net.make_byzantine(0, "bad proposals").outgoing = liar
    before = {name: net.total_metric(name) for name in set(KINDS.values())}

    txs = [encode(make_tx(ADMIN, GENESIS.chain_id, i + 1, "id.register",
                          IdRegister(f"88.100/BAD-{i:03d}", (ValueSpec(1, "URL", f"https://t.example/{i}"),))))
           for i in range(40)]
    for i in range(0, len(txs), 4):
        net.submit(txs[i:i + 4], 1)  # one client, to one backup, nonces in order
        net.run(8)
    assert_live(net, txs)
    finish(net)

    honest_nodes = net.honest_running()
    chains = [n.app.chain for n in honest_nodes]  # type: ignore[attr-defined]
    # No forged block is in any honest chain.
    for chain in chains:
        hashes = {compute_block_hash(b.header) for h in range(1, chain.height + 1) if (b := chain.get_block(h))}
        assert not hashes & liar.forged, f"{len(hashes & liar.forged)} forged blocks committed"
    # Every kind was proposed, each ahead of the honest block of its slot, then only bad ones.
    assert set(liar.sent) == set(KINDS), liar.sent
    # The honest block of each slot where a bad one came first committed, still in view 0.
    for height in liar.honest_slots:
        block = chains[0].get_block(height)
        assert block is not None and block.header.view == 0 and block.header.proposer == KEYS[0].id, height
    # The stalling primary was replaced: the later blocks came from other validators in later views.
    assert all(n.replica.view > 0 for n in honest_nodes), [n.replica.view for n in honest_nodes]
    assert chains[0].get_block(chains[0].height).header.proposer != KEYS[0].id
    # Each kind was refused for its own reason.
    for name in set(KINDS.values()):
        assert net.total_metric(name) > before[name], name
