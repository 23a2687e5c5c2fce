"""A Byzantine validator in test mode, for the multi-process tests only.

`python -m tests.misbehaving_node --home HOME [--attacks LIST] [--counts FILE]` runs the node of HOME as
`ledger node run` does: its replica, storage, transport and keys are the real ones. What it sends is
rewritten at the I/O edge (its peer links, `Node.broadcast`): whenever it is the primary, the pre-prepare
its honest replica broadcasts for a slot is replaced by real messages signed with its real key.

- The bad kinds (`future`: time far ahead of every clock; `backwards`: time running back from the
  parent's; `oversized`: transactions over the chain's block budget, the message still within its limit;
  `frame`: a pre-prepare over the consensus message limit, which the transport still carries), one per
  slot in turn: every backup first gets the bad block, then the honest one. The backups are a quorum
  without it, so a bad block they accepted would commit; refusing it, they commit the honest one.
- Once every kind has been proposed, only bad blocks: nothing it proposes can commit, and the others
  must change views.
- `equivocate`: in each of those slots one backup (the witness) first gets a valid block of another batch
  for the same view and height, so that an honest replica holds two signed pre-prepares of one slot and
  can have the equivocation recorded.
- `fake-anchors`: its anchoring service attests fake anchors (every few seconds) and anchors a huge height
  on the contract (tests/lying_anchor_node.py).

Retransmissions resend the same messages. What it did is counted in the counts file (default
HOME/misbehaviour.json): `proposed KIND` per slot, `stalled` per slot it let nothing valid through, `sent
equivocation`, `fake-anchors` per round of lies, so a test can check each attack was made; the hash of
every block it forged goes to the same path with the suffix `.blocks`, one a line. The switch
lives here, in the tests, and nowhere in the product: no configuration of a real node can turn it on.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import uvicorn

from ledger.api.server import create_app
from ledger.chain import MAX_BLOCK_TX_BYTES, Block, BlockHeader, compute_block_hash, compute_tx_root
from ledger.chaindb import ChainDB, ExecutedBlock
from ledger.codec import encode
from ledger.config import NodeConfig
from ledger.consensus.messages import (
    KIND_PREPREPARE,
    MAX_MESSAGE_BYTES,
    MalformedMessage,
    PrePrepare,
    decode_block,
    decode_body,
    decode_envelope,
    encode_envelope,
    sign_message,
)
from ledger.driver import MSG_CONSENSUS
from ledger.ledger_app import LedgerApp
from ledger.node import Node

log = logging.getLogger("ledger.misbehaving")

PROPOSAL_KINDS = ("future", "backwards", "oversized", "frame")  # the bad blocks, in the order it proposes them
ATTACKS = ("equivocate", *PROPOSAL_KINDS, "fake-anchors")
FUTURE_MS = 10 * 60 * 1000  # far beyond any validator's allowed clock skew
BACKWARDS_MS = 5_000  # behind the parent, yet within the skew a validator allows from its own clock
PAD = 64 * 1024  # one junk "transaction" of the oversized blocks
LIE_EVERY_S = 3.0  # between two rounds of fake anchors


class Misbehaviour:
    """The forged pre-prepares of one node, and the counts of what it sent."""

    def __init__(self, attacks: frozenset[str], counts_path: Path) -> None:
        self.attacks = attacks
        self.counts: Counter[str] = Counter()
        self._path = counts_path
        self._kinds = [k for k in PROPOSAL_KINDS if k in attacks]
        self._slots = 0  # pre-prepares forged so far
        self._forged: dict[bytes, list[tuple[str, bytes]]] = {}  # broadcast message -> (peer, payload) sent instead
        self._save()

    def _save(self) -> None:
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(dict(self.counts), sort_keys=True))
        os.replace(tmp, self._path)

    def count(self, what: str) -> None:
        self.counts[what] += 1
        self._save()

    def rewrite(self, node: Node, payload: bytes) -> list[tuple[str, bytes]] | None:
        """The (peer, payload) pairs to send instead of broadcasting `payload`; None to send it as is."""
        if payload[:1] != bytes([MSG_CONSENSUS]):
            return None
        try:
            env = decode_envelope(payload[1:])
        except MalformedMessage:
            return None
        if env.kind != KIND_PREPREPARE or env.sender != node.key.id:
            return None
        cached = self._forged.get(payload)  # a retransmission: the same lies again
        if cached is None:
            cached = self._forge_sends(node, payload, decode_body(env), decode_block(env.attachment))
            self._forged[payload] = cached
            while len(self._forged) > 32:
                del self._forged[next(iter(self._forged))]
        return cached

    def _forge_sends(self, node: Node, honest: bytes, body: PrePrepare, block: Block) -> list[tuple[str, bytes]]:
        """What goes out instead of the honest pre-prepare of one slot (see the module's docstring)."""
        peers = sorted(v.id for v in node.chain.validators_at(body.height) if v.id != node.key.id)
        found = _parent(node.app, body.prev_hash)
        if found is None or not peers:
            return [(p, honest) for p in peers]
        slot, self._slots = self._slots, self._slots + 1
        sends: dict[str, list[bytes]] = {p: [] for p in peers}
        if "equivocate" in self.attacks:
            # The witness holds a valid block of another batch first, then meets the other(s).
            header = block.header if block.txs else replace(block.header, timestamp=block.header.timestamp + 1)
            alt = forge(node.chain, "", block.txs[:-1], header, *found)
            assert alt is not None
            sends[peers[0]].append(self._signed(node, body, alt.block))
            self.count("sent equivocation")
        if slot < len(self._kinds):
            # One bad block first to every backup: accepted by them, it would commit (they are a quorum).
            kind = self._kinds[slot]
            bad = forge(node.chain, kind, block.txs, block.header, *found)
            for p in peers:
                sends[p] += ([] if bad is None else [self._signed(node, body, bad.block)]) + [honest]
            if bad is not None:
                self.count(f"proposed {kind}")
        elif self._kinds:
            # Then only bad blocks: nothing it proposes can commit, and the others must change views.
            for kind in self._kinds:
                bad = forge(node.chain, kind, block.txs, block.header, *found)
                if bad is not None:
                    forged = self._signed(node, body, bad.block)
                    for p in peers:
                        sends[p].append(forged)
            self.count("stalled")
        else:
            for p in peers:
                sends[p].append(honest)
        log.warning("misbehaving at view %d height %d: %s", body.view, body.height, dict(self.counts))
        return [(p, m) for p in peers for m in sends[p]]

    def _signed(self, node: Node, proposed: PrePrepare, block: Block) -> bytes:
        body = replace(proposed, block_hash=compute_block_hash(block.header))
        with open(self._path.with_suffix(".blocks"), "a") as f:  # what it signed, for a test to look for
            f.write(body.block_hash.hex() + "\n")
        env = sign_message(node.key, node.genesis.chain_id, body, encode(block))
        return bytes([MSG_CONSENSUS]) + encode_envelope(env)


def _parent(app: LedgerApp, prev_hash: bytes) -> tuple[BlockHeader, ExecutedBlock | None] | None:
    """The parent's header, and the pending block to build on (None: the committed head)."""
    if prev_hash == app.chain.head_hash:
        return app.chain.head, None
    pending = app.pending.get(prev_hash)
    return None if pending is None else (pending.block.header, pending)


def forge(chain: ChainDB, kind: str, txs: Sequence[bytes], honest: BlockHeader, parent_header: BlockHeader,
          parent: ExecutedBlock | None, now_ms: int | None = None) -> ExecutedBlock | None:
    """The block of `kind` ("" for a valid one) with the batch `txs` on `parent`, executed as its proposer
    would; None when the kind cannot be made here (time cannot run back from a parent at time zero).
    `now_ms` is the forger's clock (the simulation's; by default the wall clock)."""
    if kind == "future":
        now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        return chain.build_block(txs, honest.view, now + FUTURE_MS, honest.proposer, parent)
    if kind == "backwards" and parent_header.timestamp < BACKWARDS_MS:
        return None
    built = chain.build_block(txs, honest.view, honest.timestamp, honest.proposer, parent)
    if kind == "backwards":
        block = Block(replace(built.block.header, timestamp=parent_header.timestamp - BACKWARDS_MS), built.block.txs)
    elif kind in ("oversized", "frame"):
        block = _padded(built.block, MAX_BLOCK_TX_BYTES if kind == "oversized" else MAX_MESSAGE_BYTES)
    else:
        return built
    return replace(built, block=block, block_hash=compute_block_hash(block.header))


def _padded(block: Block, over: int) -> Block:
    """The block with junk transactions appended until they carry more than `over` bytes."""
    txs = list(block.txs)
    n = 0
    while sum(len(t) for t in txs) <= over:
        txs.append(n.to_bytes(4, "big") * (PAD // 4))
        n += 1
    return Block(replace(block.header, tx_root=compute_tx_root(txs)), tuple(txs))


def install(attacks: frozenset[str], counts_path: Path) -> Misbehaviour:
    """Patch this process's node class so that every node in it misbehaves as `attacks` say."""
    misbehaviour = Misbehaviour(attacks, counts_path)
    honest_broadcast = Node.broadcast

    def broadcast(self: Node, payload: bytes) -> None:
        forged = misbehaviour.rewrite(self, payload)
        if forged is None:
            honest_broadcast(self, payload)
            return
        for peer, message in forged:
            self.send(peer, message)

    Node.broadcast = broadcast  # type: ignore[method-assign]
    if "fake-anchors" in attacks:
        from ledger.anchor import service
        from tests.lying_anchor_node import lying

        honest_step = service.AnchorService.step
        lie = lying(honest_step)
        last_lie = [0.0]

        async def step(self: service.AnchorService) -> None:
            # Each lie is a new block, which it would lie about at once: lie now and then, not in a loop.
            if time.monotonic() - last_lie[0] < LIE_EVERY_S:
                await honest_step(self)
                return
            before = getattr(self, "_lied_at", 0)
            await lie(self)
            if getattr(self, "_lied_at", 0) != before:
                last_lie[0] = time.monotonic()
                misbehaviour.count("fake-anchors")

        service.AnchorService.step = step  # type: ignore[method-assign]
    return misbehaviour


def parse_attacks(text: str) -> frozenset[str]:
    chosen = frozenset(a.strip() for a in text.split(",") if a.strip())
    unknown = chosen - set(ATTACKS)
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"unknown attack(s) {', '.join(sorted(unknown)) or '(none given)'}; "
                                         f"choose from {', '.join(ATTACKS)}")
    return chosen


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Attacks: " + ", ".join(ATTACKS) + " (see the module's docstring).")
    parser.add_argument("--home", required=True, help="the node's home directory (as `ledger node run --home`)")
    parser.add_argument("--attacks", type=parse_attacks, default=frozenset(ATTACKS),
                        help="comma-separated attacks to make (default: all)")
    parser.add_argument("--counts", type=Path, default=None,
                        help="JSON file of what it sent, per attack (default: HOME/misbehaviour.json)")
    args = parser.parse_args(argv)
    install(args.attacks, args.counts or Path(args.home) / "misbehaviour.json")
    logging.basicConfig(level=logging.WARNING)
    config = NodeConfig.load(args.home)
    uvicorn.run(create_app(args.home), host=config.http.host, port=config.http.port, log_level="warning")


if __name__ == "__main__":
    main()
