"""A deterministic simulated network that drives N sans-I/O replicas.

Theory of operation: time is a logical step counter. Every message a replica sends becomes an event
due a few steps later (seeded `random.Random`: delay, drop, duplicate, reorder); every `tick_every`
steps each running replica gets `tick()`. Events at the same step run in a random but seeded order.
Partitions, paused nodes (they neither tick nor receive) and crashes (restart from the node's
persisted map, losing everything else) are switched by the test. A node's driver performs the
actions of one call in order, like ledger/node.py: Persist into its map (empty value deletes), Send
and Broadcast into the network, Deliver into its application after checking the certificate,
FetchBlocks from an honest peer's committed chain (certificates checked) with notify_committed for
each block, ForwardTxs to the primary's submit after a duplicate check.

Every Deliver of an honest node is checked against a global record: no two honest nodes ever commit
different blocks at one height (`SafetyViolation` otherwise). No threads, no sleeps, no wall clock.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from ledger.chain import (
    ZERO_HASH,
    Block,
    BlockHeader,
    CommitCertificate,
    check_certificate,
    compute_block_hash,
    compute_tx_root,
)
from ledger.codec import decode
from ledger.consensus.actions import Action, Broadcast, Deliver, FetchBlocks, ForwardTxs, Persist, Send
from ledger.consensus.log import (
    PREFIX_ACCEPTED,
    PREFIX_PREPARED,
    PREFIX_VOTE,
    AcceptedRecord,
    VoteRecord,
    key_for_height,
)
from ledger.consensus.messages import PreparedProof, decode_body, decode_envelope
from ledger.consensus.replica import Replica
from ledger.consensus.settings import ReplicaConfig
from ledger.crypto import SigningKey, sha256


class SafetyViolation(AssertionError):
    pass


# --- applications ------------------------------------------------------------------------------


def _state_after(root: bytes, txs: Sequence[bytes]) -> bytes:
    return sha256(root + b"".join(sha256(t) for t in txs))


def fake_genesis() -> Block:
    header = BlockHeader(0, b"\x11" * 32, 0, 1_000, compute_tx_root(()), b"\x22" * 32, ZERO_HASH, "")
    return Block(header, ())


class FakeApp:
    """In-memory Application: opaque txs, state_root = hash chain over the txs."""

    def __init__(self, chain: list[Block] | None = None) -> None:
        self.chain: list[Block] = list(chain) if chain else [fake_genesis()]
        self.hashes = [compute_block_hash(b.header) for b in self.chain]
        self.pending: dict[bytes, Block] = {}

    def _tip(self, parent: bytes | None) -> Block | None:
        if parent is None or parent == self.hashes[-1]:
            return self.chain[-1]
        return self.pending.get(parent)

    def _expected(self, tip: Block, txs: Sequence[bytes], view: int, ts: int, proposer: str) -> BlockHeader:
        t = tip.header
        return BlockHeader(
            t.height + 1, compute_block_hash(t), view, ts, compute_tx_root(txs), _state_after(t.state_root, txs),
            ZERO_HASH, proposer,
        )

    def propose(self, txs: Sequence[bytes], view: int, proposer: str, parent: bytes | None) -> Block:
        tip = self._tip(parent)
        if tip is None:
            raise ValueError("unknown parent")
        block = Block(self._expected(tip, txs, view, tip.header.timestamp + 1, proposer), tuple(txs))
        self.pending[compute_block_hash(block.header)] = block
        return block

    def validate(self, block: Block, parent: bytes | None) -> bool:
        tip = self._tip(parent)
        h = block.header
        if tip is None or h.timestamp < tip.header.timestamp:
            return False
        if h != self._expected(tip, block.txs, h.view, h.timestamp, h.proposer):
            return False
        self.pending[compute_block_hash(h)] = block
        return True

    def committed_height(self) -> int:
        return len(self.chain) - 1

    def commit(self, block: Block, cert: CommitCertificate) -> None:
        tip = self.chain[-1]
        h = block.header
        if h != self._expected(tip, block.txs, h.view, h.timestamp, h.proposer):
            raise SafetyViolation(f"block {h.height} does not extend the committed head")
        self.chain.append(block)
        self.hashes.append(compute_block_hash(h))
        self.pending = {k: b for k, b in self.pending.items() if b.header.height > h.height}

    apply_fetched = commit

    def restarted(self) -> FakeApp:
        return FakeApp(self.chain)

    def committed_block(self, height: int) -> Block:
        return self.chain[height]


class SimApp(Protocol):
    def propose(self, txs: Sequence[bytes], view: int, proposer: str, parent: bytes | None) -> Block: ...
    def validate(self, block: Block, parent: bytes | None) -> bool: ...
    def committed_height(self) -> int: ...
    def commit(self, block: Block, cert: CommitCertificate) -> Any: ...
    def apply_fetched(self, block: Block, cert: CommitCertificate) -> Any: ...
    def restarted(self) -> SimApp: ...


# --- nodes -------------------------------------------------------------------------------------


@dataclass
class SimNode:
    index: int
    key: SigningKey
    app: SimApp
    replica: Replica
    honest: bool = True
    alive: bool = True
    paused: bool = False
    persisted: dict[bytes, bytes] = field(default_factory=dict)
    committed: list[tuple[bytes, CommitCertificate | None]] = field(default_factory=list)  # index = height
    committed_txs: set[bytes] = field(default_factory=set)
    outgoing: Callable[[SimNode, list[Action]], list[Action]] | None = None  # Byzantine rewriting
    submitted: set[bytes] = field(default_factory=set)

    @property
    def id(self) -> str:
        return self.key.id

    @property
    def running(self) -> bool:
        return self.alive and not self.paused

    @property
    def height(self) -> int:
        return len(self.committed) - 1


def default_config(chain_id: str, validators: tuple[str, ...], **overrides: Any) -> ReplicaConfig:
    base: dict[str, Any] = dict(
        batch_size=4, batch_ticks=1, checkpoint_interval=5, watermark_window=20, max_inflight=3,
        view_change_ticks=8, request_timeout_ticks=24, retransmit_ticks=3, fetch_retry_ticks=4,
        max_buffered_per_peer=32,
    )
    base.update(overrides)
    return ReplicaConfig(chain_id, validators, **base)


class Network:
    def __init__(
        self, n: int = 4, seed: int = 0, *, twins: Sequence[int] = (), config: dict[str, Any] | None = None,
        app_factory: Callable[[], SimApp] | None = None, keys: Sequence[SigningKey] | None = None,
        chain_id: str = "sim", drop: float = 0.0, duplicate: float = 0.0, min_delay: int = 1, max_delay: int = 4,
        tick_every: int = 5,
    ) -> None:
        self.rng = random.Random(seed)
        self.keys = list(keys) if keys else [SigningKey.from_seed(f"sim-validator-{i}".encode()) for i in range(n)]
        self.validator_keys = {k.id: k.public_key for k in self.keys}
        self.chain_id = chain_id
        self.config = default_config(chain_id, tuple(k.id for k in self.keys), **(config or {}))
        self.app_factory: Callable[[], SimApp] = app_factory or FakeApp
        self.drop, self.duplicate = drop, duplicate
        self.min_delay, self.max_delay = min_delay, max_delay
        self.tick_every = tick_every
        self.time = 0
        self._events: list[tuple[int, float, int, str, Any]] = []
        self._seq = 0
        self.canonical: dict[int, bytes] = {}
        self.blocked: set[tuple[int, int]] = set()  # (from node index, to node index)
        self.slow: dict[int, int] = {}  # node index -> extra delay of its outgoing messages
        self.log: list[tuple[str, bytes]] = []  # (sender id, message) of every delivered message
        self.record_log = False
        self.nodes: list[SimNode] = []
        for i, k in enumerate(self.keys):
            self.nodes.append(self._make_node(i, k))
        for j, twin_of in enumerate(twins):
            self.nodes[twin_of].honest = False
            twin = self._make_node(len(self.keys) + j, self.keys[twin_of])
            twin.honest = False
            self.nodes.append(twin)

    def _make_node(self, index: int, key: SigningKey, app: SimApp | None = None,
                   persisted: dict[bytes, bytes] | None = None) -> SimNode:
        app = app if app is not None else self.app_factory()
        replica = Replica(self.config, key, app, self.validator_keys, dict(persisted or {}))
        node = SimNode(index, key, app, replica, persisted=dict(persisted or {}))
        node.committed = [(b"", None)] * (app.committed_height() + 1)
        return node

    # --- fault control -------------------------------------------------------------------------

    def partition(self, *groups: Iterable[int]) -> None:
        sets = [set(g) for g in groups]
        self.blocked = {(a.index, b.index) for a in self.nodes for b in self.nodes
                        if not any(a.index in s and b.index in s for s in sets)}

    def heal(self) -> None:
        self.blocked = set()
        self.slow = {}
        for node in self.nodes:
            node.paused = False

    def crash(self, index: int) -> None:
        self.nodes[index].alive = False

    def restart(self, index: int) -> None:
        old = self.nodes[index]
        node = self._make_node(index, old.key, old.app.restarted(), old.persisted)
        node.honest, node.outgoing = old.honest, old.outgoing
        node.committed, node.committed_txs, node.submitted = old.committed, old.committed_txs, old.submitted
        self.nodes[index] = node

    # --- plumbing ------------------------------------------------------------------------------

    def _push(self, due: int, kind: str, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._events, (due, self.rng.random(), self._seq, kind, payload))

    def _delay(self, src: SimNode) -> int:
        return self.rng.randint(self.min_delay, self.max_delay) + self.slow.get(src.index, 0)

    def _send(self, src: SimNode, to: str, raw: bytes) -> None:
        for dst in self.nodes:
            if dst.id != to or dst is src:
                continue
            if self.rng.random() < self.drop:
                continue
            self._push(self.time + self._delay(src), "msg", (src.index, dst.index, src.id, raw))
            if self.rng.random() < self.duplicate:
                self._push(self.time + self._delay(src) + 2, "msg", (src.index, dst.index, src.id, raw))

    def perform(self, node: SimNode, actions: list[Action]) -> None:
        if node.outgoing is not None:
            actions = node.outgoing(node, actions)
        for a in actions:
            if isinstance(a, Persist):
                if a.value:
                    node.persisted[a.key] = a.value
                else:
                    node.persisted.pop(a.key, None)
            elif isinstance(a, Send):
                if node.honest:
                    self._check_persisted_before_send(node, a.message)
                self._send(node, a.to, a.message)
            elif isinstance(a, Broadcast):
                if node.honest:
                    self._check_persisted_before_send(node, a.message)
                for v in self.config.validators:
                    if v != node.id:
                        self._send(node, v, a.message)
            elif isinstance(a, Deliver):
                self._deliver(node, a.block, a.certificate)
            elif isinstance(a, FetchBlocks):
                self._push(self.time + self.rng.randint(2, 8), "fetch", (node.index, a.from_height))
            elif isinstance(a, ForwardTxs):
                for dst in self.nodes:
                    if dst.id == a.to and dst is not node:
                        self._push(self.time + self._delay(node), "forward", (dst.index, a.txs))

    def _check_persisted_before_send(self, node: SimNode, raw: bytes) -> None:
        """What a replica signs is in its persisted map before the message leaves."""
        env = decode_envelope(raw)
        if env.sender != node.id or env.kind not in ("preprepare", "prepare", "commit", "vote"):
            return
        body = decode_body(env)
        h = body.height
        if env.kind == "vote":
            raw_vote = node.persisted.get(key_for_height(PREFIX_VOTE, h))
            ok = raw_vote is not None and decode(VoteRecord, raw_vote).block_hash == body.block_hash
        elif env.kind == "commit":
            raw_proof = node.persisted.get(key_for_height(PREFIX_PREPARED, h))
            ok = raw_proof is not None and decode(PreparedProof, raw_proof).view >= body.view
        else:
            raw_acc = node.persisted.get(key_for_height(PREFIX_ACCEPTED, h))
            acc = decode(AcceptedRecord, raw_acc) if raw_acc is not None else None
            ok = acc is not None and (acc.view, acc.block_hash) == (body.view, body.block_hash)
        if not ok and h > node.replica.checkpoints.low:
            raise SafetyViolation(f"node {node.index} sent a {env.kind} for {h} it had not persisted")

    def _record(self, node: SimNode, block: Block, cert: CommitCertificate) -> None:
        block_hash = compute_block_hash(block.header)
        height = block.header.height
        if height != len(node.committed):
            raise SafetyViolation(f"node {node.index} committed height {height} out of order")
        node.committed.append((block_hash, cert))
        node.committed_txs.update(block.txs)
        if node.honest:
            seen = self.canonical.setdefault(height, block_hash)
            if seen != block_hash:
                raise SafetyViolation(f"two blocks committed at height {height} (node {node.index})")

    def _deliver(self, node: SimNode, block: Block, cert: CommitCertificate) -> None:
        check_certificate(cert, self.chain_id, block.header, self.validator_keys)
        node.app.commit(block, cert)
        self._record(node, block, cert)

    def _fetch(self, index: int, from_height: int) -> None:
        node = self.nodes[index]
        if not node.running:
            return
        sources = [s for s in self.nodes if s.honest and s.alive and s.height >= from_height and s is not node]
        if not sources:
            return
        src = self.rng.choice(sources)
        for h in range(max(from_height, node.height + 1), min(src.height, from_height + 60) + 1):
            if h <= node.height:
                continue  # a Deliver returned by notify_committed already brought it
            block = src.app.committed_block(h)  # type: ignore[attr-defined]
            cert = src.committed[h][1]
            assert cert is not None
            check_certificate(cert, self.chain_id, block.header, self.validator_keys)
            node.app.apply_fetched(block, cert)
            self._record(node, block, cert)
            self.perform(node, node.replica.notify_committed(h, cert.block_hash, cert, block.txs))

    def _process(self, kind: str, payload: Any) -> None:
        if kind == "msg":
            src_index, dst_index, sender, raw = payload
            dst = self.nodes[dst_index]
            if not dst.running or (src_index, dst_index) in self.blocked:
                return
            if self.record_log:
                self.log.append((sender, raw))
            self.perform(dst, dst.replica.step(sender, raw))
        elif kind == "fetch":
            self._fetch(*payload)
        elif kind == "forward":
            dst_index, txs = payload
            dst = self.nodes[dst_index]
            if dst.running:
                fresh = [t for t in txs if t not in dst.committed_txs]
                self.perform(dst, dst.replica.submit(fresh))

    # --- running -------------------------------------------------------------------------------

    def step(self) -> None:
        self.time += 1
        while self._events and self._events[0][0] <= self.time:
            _, _, _, kind, payload = heapq.heappop(self._events)
            self._process(kind, payload)
        if self.time % self.tick_every == 0:
            order = list(self.nodes)
            self.rng.shuffle(order)
            for node in order:
                if node.running:
                    self.perform(node, node.replica.tick())

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.step()

    def run_until(self, done: Callable[[], bool], max_steps: int) -> bool:
        for _ in range(max_steps):
            if done():
                return True
            self.step()
        return done()

    def submit(self, txs: Sequence[bytes], index: int | None = None) -> None:
        """Client transactions to one node (a random running honest one by default)."""
        if index is None:
            choices = [n for n in self.nodes if n.running and n.honest] or [n for n in self.nodes if n.running]
            node = self.rng.choice(choices)
        else:
            node = self.nodes[index]
        node.submitted.update(txs)
        self.perform(node, node.replica.submit([t for t in txs if t not in node.committed_txs]))

    # --- checks --------------------------------------------------------------------------------

    def honest_running(self) -> list[SimNode]:
        return [n for n in self.nodes if n.honest and n.running]

    def all_committed(self, txs: Iterable[bytes], nodes: Sequence[SimNode] | None = None) -> bool:
        wanted = set(txs)
        return all(wanted <= n.committed_txs for n in (nodes if nodes is not None else self.honest_running()))

    def check_agreement(self) -> None:
        """Every honest node's chain is a prefix of the canonical record, with valid certificates."""
        for node in self.nodes:
            if not node.honest:
                continue
            for h in range(1, len(node.committed)):
                block_hash, cert = node.committed[h]
                if self.canonical.get(h) != block_hash:
                    raise SafetyViolation(f"node {node.index} diverges at height {h}")
                if cert is not None and cert.block_hash != block_hash:
                    raise SafetyViolation(f"node {node.index} holds a certificate for another block at {h}")

    def total_metric(self, name: str) -> int:
        return sum(n.replica.metrics[name] for n in self.nodes)


def with_prev(header: BlockHeader, **changes: Any) -> BlockHeader:
    return replace(header, **changes)
