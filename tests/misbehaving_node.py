"""A Byzantine validator in test mode, for the multi-process tests only.

`python -m tests.misbehaving_node --home HOME [--attacks LIST] [--counts FILE]` runs the node of HOME as
`ledger node run` does: its replica, storage, transport and keys are the real ones. Two thin wrappers, both
outside ledger/, make it lie whenever it is the primary, with real messages signed with its real key:

- its application's `propose` (what its replica proposes, votes for and would commit): in turn, a block
  whose time lies far ahead of every clock (`future`), one whose time runs backwards from its parent's
  (`backwards`), one whose transactions exceed the chain's block budget (`oversized`, the message still
  fits the limit), and one whose pre-prepare exceeds the consensus message limit (`frame`, the transport
  still carries it). Were a backup to accept one, it would commit: the refusals are what stop it.
- its peer links (`Node.broadcast`, the I/O edge): each pre-prepare also goes out as the other bad kinds,
  and with `equivocate` one backup (the witness) first gets a valid block of another batch for the same
  view and height, then the proposed one, so that an honest replica holds two signed pre-prepares of one
  slot and can have the equivocation recorded. Retransmissions resend the same messages.
- `fake-anchors`: its anchoring service attests fake anchors (every few seconds) and anchors a huge height
  on the contract (tests/lying_anchor_node.py).

What it did is counted in the counts file (default HOME/misbehaviour.json): `proposed KIND` per block its
replica proposed, `sent KIND` and `sent equivocation` per pre-prepare, `fake-anchors` per round of lies, so
a test can check each attack was made. The switch lives here, in the tests, and nowhere in the product: no
configuration of a real node can turn it on.
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
    """The forged proposals and pre-prepares of one node, and the counts of what it did."""

    def __init__(self, attacks: frozenset[str], counts_path: Path) -> None:
        self.attacks = attacks
        self.counts: Counter[str] = Counter()
        self._path = counts_path
        self._kinds = [k for k in PROPOSAL_KINDS if k in attacks]
        self._proposals = 0
        self._batches: dict[bytes, tuple[tuple[bytes, ...], int, str]] = {}  # forged hash -> honest batch, time, kind
        self._forged: dict[bytes, list[tuple[str, bytes]]] = {}  # broadcast message -> (peer, payload) sent instead
        self._save()

    def _save(self) -> None:
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(dict(self.counts), sort_keys=True))
        os.replace(tmp, self._path)

    def count(self, what: str) -> None:
        self.counts[what] += 1
        self._save()

    # --- its own replica's proposals -------------------------------------------------------------

    def propose(self, app: LedgerApp, honest: Block, txs: tuple[bytes, ...], parent: bytes | None) -> Block:
        """What its replica proposes instead of `honest`: the next bad kind in turn (kept in `app.pending`, so
        its replica builds on it and votes for it as for any block of its own)."""
        if not self._kinds:
            return honest
        kind = self._kinds[self._proposals % len(self._kinds)]
        self._proposals += 1
        found = _parent(app, honest.header.prev_hash if parent is None else parent)
        executed = None if found is None else forge(app.chain, kind, txs, honest.header, *found)
        if executed is None:
            return honest
        app.pending[executed.block_hash] = executed
        self._batches[executed.block_hash] = (txs, honest.header.timestamp, kind)
        self.count(f"proposed {kind}")
        return executed.block

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
            cached = self._forge_sends(node, payload, decode_body(env), decode_block(env.attachment))
            self._forged[payload] = cached
            while len(self._forged) > 32:
                del self._forged[next(iter(self._forged))]
        return cached

    def _forge_sends(self, node: Node, proposed: bytes, body: PrePrepare, block: Block) -> list[tuple[str, bytes]]:
        peers = sorted(v.id for v in node.chain.validators_at(body.height) if v.id != node.key.id)
        found = _parent(node.app, body.prev_hash)
        if found is None or not peers:
            return [(p, proposed) for p in peers]
        txs, timestamp, kind = self._batches.get(body.block_hash, (block.txs, block.header.timestamp, ""))
        honest_header = replace(block.header, timestamp=timestamp)
        out: list[tuple[str, bytes]] = []
        others = peers
        if "equivocate" in self.attacks:
            # The witness holds a valid block of another batch first, then meets the one proposed.
            alt_txs = txs[:-1] if txs else txs
            alt_header = honest_header if txs else replace(honest_header, timestamp=timestamp + 1)
            alt = forge(node.chain, "", alt_txs, alt_header, *found)
            assert alt is not None
            out += [(peers[0], self._signed(node, body, alt.block)), (peers[0], proposed)]
            others = peers[1:]
            self.count("sent equivocation")
        out += [(p, proposed) for p in others]
        if kind:
            self.count(f"sent {kind}")
        # Every other bad kind too, to the same backups, after the proposed block.
        for other in (k for k in self._kinds if k != kind):
            executed = forge(node.chain, other, txs, honest_header, *found)
            if executed is not None:
                forged = self._signed(node, body, executed.block)
                out += [(p, forged) for p in others]
                self.count(f"sent {other}")
        log.warning("misbehaving at view %d height %d: %s", body.view, body.height, dict(self.counts))
        return out

    @staticmethod
    def _signed(node: Node, proposed: PrePrepare, block: Block) -> bytes:
        body = replace(proposed, block_hash=compute_block_hash(block.header))
        env = sign_message(node.key, node.genesis.chain_id, body, encode(block))
        return bytes([MSG_CONSENSUS]) + encode_envelope(env)


def _parent(app: LedgerApp, prev_hash: bytes) -> tuple[BlockHeader, ExecutedBlock | None] | None:
    """The parent's header, and the pending block to build on (None: the committed head)."""
    if prev_hash == app.chain.head_hash:
        return app.chain.head, None
    pending = app.pending.get(prev_hash)
    return None if pending is None else (pending.block.header, pending)


def forge(chain: ChainDB, kind: str, txs: Sequence[bytes], honest: BlockHeader, parent_header: BlockHeader,
          parent: ExecutedBlock | None) -> ExecutedBlock | None:
    """The block of `kind` ("" for a valid one) with the batch `txs` on `parent`, executed as its proposer
    would; None when the kind cannot be made here (time cannot run back from a parent at time zero)."""
    if kind == "future":
        return chain.build_block(txs, honest.view, time.time_ns() // 1_000_000 + FUTURE_MS, honest.proposer, parent)
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
    honest_propose = LedgerApp.propose

    def propose(self: LedgerApp, txs: Sequence[bytes], view: int, proposer: str, parent: bytes | None) -> Block:
        return misbehaviour.propose(self, honest_propose(self, txs, view, proposer, parent), tuple(txs), parent)

    LedgerApp.propose = propose  # type: ignore[method-assign]
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
