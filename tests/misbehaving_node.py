"""A Byzantine validator in test mode, for the multi-process tests only.

`python -m tests.misbehaving_node --home HOME [--attacks LIST] [--counts FILE]` runs the node of HOME as
`ledger node run` does, with its replica, storage and keys the real ones, but with what it sends rewritten
at the I/O edge (the node's peer links, `Node.send`/`Node.broadcast`): whenever it is the primary, each
pre-prepare its honest replica broadcasts is replaced by real messages signed with its real key:

- `equivocate`: one backup (the witness) gets the honest block and then another block for the same view and
  height (a different batch: the honest one without its last transaction, or an empty one), so that an
  honest replica holds both signed pre-prepares and can record the equivocation;
- `oversized`: a block whose transactions exceed the chain's block budget (the message still fits a frame);
- `frame`: a block whose pre-prepare exceeds the consensus message limit (the transport still carries it);
- `future`: a block whose time lies far ahead of every clock;
- `backwards`: a block whose time runs backwards from its parent's;
- `fake-anchors`: its anchoring service attests fake anchors (every few seconds) and anchors a huge height
  on the contract (tests/lying_anchor_node.py).

The other backups get the bad blocks (none of them the honest one), so no honest quorum can form in its
view and the others must change views. Retransmissions resend the same forged messages. What it did is
counted (per kind, once per pre-prepare) in the counts file (default HOME/misbehaviour.json), so a test
can check the attack was made. The switch lives here, in the tests, and nowhere in the product: no
configuration of a real node can turn it on.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import uvicorn

from ledger.api.server import create_app
from ledger.chain import MAX_BLOCK_TX_BYTES, Block, BlockHeader, compute_block_hash, compute_tx_root
from ledger.chaindb import ExecutedBlock
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
from ledger.node import Node

log = logging.getLogger("ledger.misbehaving")

ATTACKS = ("equivocate", "oversized", "frame", "future", "backwards", "fake-anchors")
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
        self._forged: dict[bytes, list[tuple[str, bytes]]] = {}  # original message -> (peer, payload) sent
        self._save()

    def _save(self) -> None:
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(dict(self.counts), sort_keys=True))
        os.replace(tmp, self._path)

    def count(self, kind: str) -> None:
        self.counts[kind] += 1
        self._save()

    # --- the I/O edge ------------------------------------------------------------------------------

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
        cached = self._forged.get(payload)
        if cached is None:
            cached = self._forge(node, payload, decode_body(env), decode_block(env.attachment))
            self._forged[payload] = cached
            while len(self._forged) > 32:
                del self._forged[next(iter(self._forged))]
        else:
            self.count("retransmitted")
        return cached

    # --- forging -----------------------------------------------------------------------------------

    def _forge(self, node: Node, honest: bytes, body: PrePrepare, block: Block) -> list[tuple[str, bytes]]:
        peers = sorted(v.id for v in node.chain.validators_at(body.height) if v.id != node.key.id)
        parent = self._parent(node, body.prev_hash)
        bad: list[tuple[str, bytes]] = []  # (kind, signed pre-prepare) that every honest backup refuses
        if "oversized" in self.attacks:
            bad.append(("oversized", self._signed(node, body, self._padded(block, MAX_BLOCK_TX_BYTES + PAD))))
        if "frame" in self.attacks:
            bad.append(("frame", self._signed(node, body, self._padded(block, MAX_MESSAGE_BYTES + PAD))))
        if "future" in self.attacks and parent is not None:
            built = node.chain.build_block(block.txs, body.view, time.time_ns() // 1_000_000 + FUTURE_MS,
                                           node.key.id, parent[1])
            bad.append(("future", self._signed(node, body, built.block)))
        if "backwards" in self.attacks and parent is not None and parent[0].timestamp >= BACKWARDS_MS:
            header = replace(block.header, timestamp=parent[0].timestamp - BACKWARDS_MS)
            bad.append(("backwards", self._signed(node, body, Block(header, block.txs))))
        out: list[tuple[str, bytes]] = []
        if "equivocate" in self.attacks and parent is not None:
            # Another batch; an empty block's alternative differs in its time instead.
            later = block.header.timestamp + (0 if block.txs else 1)
            built = node.chain.build_block(block.txs[:-1], body.view, later, node.key.id, parent[1])
            alt = self._signed(node, body, built.block)
            witness, rest = peers[0], peers[1:]
            out += [(witness, honest), (witness, alt)]  # in this order: it holds one, then meets the other
            self.count("equivocate")
            if not bad:
                out += [(p, honest if i % 2 else alt) for i, p in enumerate(rest)]
            else:
                for i, (kind, payload) in enumerate(bad):
                    out.append((rest[i % len(rest)], payload))
                    self.count(kind)
        else:
            for kind, payload in bad:
                out += [(p, payload) for p in peers]
                self.count(kind)
            if not bad:
                return [(p, honest) for p in peers]
        log.warning("misbehaving at view %d height %d: %s", body.view, body.height,
                    ", ".join(sorted(self.counts)))
        return out

    @staticmethod
    def _parent(node: Node, prev_hash: bytes) -> tuple[BlockHeader, ExecutedBlock | None] | None:
        """The parent's header, and the pending block to build on (None: the committed head)."""
        if prev_hash == node.chain.head_hash:
            return node.chain.head, None
        pending = node.app.pending.get(prev_hash)
        return None if pending is None else (pending.block.header, pending)

    @staticmethod
    def _padded(block: Block, at_least: int) -> Block:
        """The block with junk transactions appended until they carry more than `at_least` bytes."""
        txs = list(block.txs)
        n = 0
        while sum(len(t) for t in txs) <= at_least:
            txs.append(n.to_bytes(4, "big") * (PAD // 4))
            n += 1
        return Block(replace(block.header, tx_root=compute_tx_root(txs)), tuple(txs))

    @staticmethod
    def _signed(node: Node, honest: PrePrepare, block: Block) -> bytes:
        body = replace(honest, block_hash=compute_block_hash(block.header))
        env = sign_message(node.key, node.genesis.chain_id, body, encode(block))
        return bytes([MSG_CONSENSUS]) + encode_envelope(env)


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
