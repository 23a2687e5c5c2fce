"""A deterministic simulated network that drives N validators through the node's own driver.

Theory of operation: time is a logical step counter. Each simulated validator is a replica run by
`ledger.driver.Driver`, the code that runs it in a real node, over an in-memory `Store` and these
in-memory links. Every message a driver hands to the links becomes an event due a few steps later
(seeded `random.Random`: delay, drop, duplicate, reorder); every `tick_every` steps each running
validator ticks. Events at the same step run in a random but seeded order. Catch-up runs the
driver's own round: each block request and each answer is an event, to a peer chosen by the seed.
Partitions, paused nodes (they neither tick nor receive) and crashes (restart from the node's
store, losing everything else) are switched by the test.

Every block an honest node writes is checked against a global record: no two honest nodes ever
commit different blocks at one height (`SafetyViolation` otherwise), and its certificate checks.
Before an honest node sends what it signed, its record is in the store (persist before send).
No threads, no sleeps, no wall clock.
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
    InvalidBlock,
    check_certificate,
    compute_block_hash,
    compute_tx_root,
)
from ledger.codec import decode
from ledger.consensus.actions import Action
from ledger.consensus.evidence import Equivocation, check_equivocation
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
from ledger.driver import MSG_CONSENSUS, PAUSE, CatchUpPause, CatchUpRound, Driver
from ledger.net.sync import BlockBatch, BlockRequest, serve_blocks
from ledger.store import NS, MemoryStore, Store


class SafetyViolation(AssertionError):
    pass


# --- applications ------------------------------------------------------------------------------


def _state_after(root: bytes, txs: Sequence[bytes]) -> bytes:
    return sha256(root + b"".join(sha256(t) for t in txs))


def fake_genesis() -> Block:
    header = BlockHeader(0, b"\x11" * 32, 0, 1_000, compute_tx_root(()), b"\x22" * 32, ZERO_HASH, "")
    return Block(header, ())


@dataclass(frozen=True)
class Committed:
    """What a simulated application reports for a block it wrote."""

    block: Block
    certificate: CommitCertificate


class FakeApp:
    """In-memory application: opaque txs, state_root = hash chain over the txs.

    Its committed chain survives a restart (`restarted`), like a disk; so does `store`, which holds
    what the replica persisted.
    """

    def __init__(
        self, chain_id: str, validator_keys: dict[str, bytes], chain: list[tuple[Block, CommitCertificate | None]]
        | None = None, store: Store | None = None,
    ) -> None:
        self.chain_id = chain_id
        self.validator_keys = validator_keys
        self.blocks: list[Block] = [b for b, _ in chain] if chain else [fake_genesis()]
        self.certs: list[CommitCertificate | None] = [c for _, c in chain] if chain else [None]
        self.hashes = [compute_block_hash(b.header) for b in self.blocks]
        self.pending: dict[bytes, Block] = {}
        self.store: Store = store if store is not None else MemoryStore()

    def _tip(self, parent: bytes | None) -> Block | None:
        if parent is None or parent == self.hashes[-1]:
            return self.blocks[-1]
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

    def validate(self, block: Block, parent: bytes | None, fresh: bool = True) -> bool:
        tip = self._tip(parent)
        h = block.header
        if tip is None or h.timestamp < tip.header.timestamp:
            return False
        if h != self._expected(tip, block.txs, h.view, h.timestamp, h.proposer):
            return False
        self.pending[compute_block_hash(h)] = block
        return True

    def committed_height(self) -> int:
        return len(self.blocks) - 1

    # The chain as `ledger.net.sync.serve_blocks` reads it.
    @property
    def height(self) -> int:
        return self.committed_height()

    def get_block(self, height: int) -> Block | None:
        return self.blocks[height] if height < len(self.blocks) else None

    def get_certificate(self, height: int) -> CommitCertificate | None:
        return self.certs[height] if height < len(self.certs) else None

    def commit(self, block: Block, cert: CommitCertificate) -> Committed:
        h = block.header
        if h != self._expected(self.blocks[-1], block.txs, h.view, h.timestamp, h.proposer):
            raise SafetyViolation(f"block {h.height} does not extend the committed head")
        self.blocks.append(block)
        self.certs.append(cert)
        self.hashes.append(compute_block_hash(h))
        self.pending = {k: b for k, b in self.pending.items() if b.header.height > h.height}
        return Committed(block, cert)

    def apply_certified(self, block: Block, cert: CommitCertificate) -> Committed:
        check_certificate(cert, self.chain_id, block.header, self.validator_keys)
        if block.header != self._expected(self.blocks[-1], block.txs, block.header.view, block.header.timestamp,
                                          block.header.proposer):
            raise InvalidBlock("fetched block does not extend the committed head")
        return self.commit(block, cert)

    def serve_blocks(self, request: BlockRequest) -> BlockBatch:
        return serve_blocks(self, request)

    def restarted(self) -> FakeApp:
        return FakeApp(self.chain_id, self.validator_keys, list(zip(self.blocks, self.certs, strict=True)),
                       self.store)

    def committed(self, result: Committed) -> tuple[Block, CommitCertificate]:
        return result.block, result.certificate


class SimApp(Protocol):
    """An application the simulation runs: what the driver needs, a disk that survives restarts."""

    store: Store

    def propose(self, txs: Sequence[bytes], view: int, proposer: str, parent: bytes | None) -> Block: ...
    def validate(self, block: Block, parent: bytes | None, fresh: bool = True) -> bool: ...
    def committed_height(self) -> int: ...
    def commit(self, block: Block, cert: CommitCertificate) -> Any: ...
    def apply_certified(self, block: Block, cert: CommitCertificate) -> Any: ...
    def serve_blocks(self, request: BlockRequest) -> BlockBatch: ...
    def restarted(self) -> SimApp: ...
    def committed(self, result: Any) -> tuple[Block, CommitCertificate]:
        """The block and certificate behind what `commit` or `apply_certified` returned."""
        ...


# --- nodes -------------------------------------------------------------------------------------


class SimLinks:
    """One node's links in the simulated network (the driver's `PeerLinks`)."""

    def __init__(self, net: Network, node: SimNode) -> None:
        self.net = net
        self.node = node

    def send(self, peer: str, payload: bytes) -> None:
        if self.node.honest and payload[0] == MSG_CONSENSUS:
            self.net.check_persisted_before_send(self.node, payload[1:])
        self.net.send(self.node, peer, payload)

    def broadcast(self, payload: bytes) -> None:
        for v in self.net.config.validators:
            if v != self.node.id:
                self.send(v, payload)

    def start_catch_up(self) -> None:
        self.net.start_catch_up(self.node)


class SimHost:
    """What a simulated node's driver tells it (the node's hooks), recorded for the checks."""

    def __init__(self, net: Network, node: SimNode) -> None:
        self.net = net
        self.node = node

    def admit(self, txs: Sequence[bytes]) -> list[bytes]:
        return self.node.admit(txs)

    def on_committed(self, result: Any) -> None:
        self.net.record(self.node, *self.node.app.committed(result))

    def on_dropped(self, txs: Sequence[bytes], reason: str) -> None:
        self.node.given_up.update(txs)

    def on_evidence(self, first: bytes, second: bytes) -> None:
        # Evidence is checked as the ledger's handler checks it, then kept.
        found = check_equivocation(first, second, self.net.chain_id, self.net.validator_keys)
        self.node.evidence.append(found)


class SimDriver(Driver[Any]):
    """The node's driver; a Byzantine node's `outgoing` rewrites its actions before they are performed."""

    node: SimNode

    def perform(self, actions: Sequence[Action]) -> None:
        if self.node.outgoing is not None:
            actions = self.node.outgoing(self.node, list(actions))
        super().perform(actions)


@dataclass
class SimNode:
    index: int
    key: SigningKey
    app: SimApp
    honest: bool = True
    alive: bool = True
    paused: bool = False
    committed: list[tuple[bytes, CommitCertificate | None]] = field(default_factory=list)  # index = height
    committed_txs: set[bytes] = field(default_factory=set)
    outgoing: Callable[[SimNode, list[Action]], list[Action]] | None = None  # Byzantine rewriting
    submitted: set[bytes] = field(default_factory=set)
    driver: SimDriver = field(init=False)
    catching_up: CatchUpRound | None = None
    refuses: Callable[[bytes], bool] | None = None  # a Byzantine primary's admission: what it will not order
    given_up: set[bytes] = field(default_factory=set)  # txs the replica dropped as unorderable
    evidence: list[Equivocation] = field(default_factory=list)  # equivocations it reported
    equivocated: int = 0  # conflicting messages a Byzantine node's rewriting sent
    generation: int = 0  # bumped by a restart: events of the old incarnation are dropped

    @property
    def id(self) -> str:
        return self.key.id

    @property
    def replica(self) -> Replica:
        return self.driver.replica

    @property
    def running(self) -> bool:
        return self.alive and not self.paused

    @property
    def height(self) -> int:
        return len(self.committed) - 1

    @property
    def persisted(self) -> dict[bytes, bytes]:
        return Driver.persisted(self.app.store)

    def admit(self, txs: Sequence[bytes]) -> list[bytes]:
        """Admission, as a mempool would: nothing already committed here, nothing it refuses."""
        return [t for t in txs if t not in self.committed_txs and not (self.refuses and self.refuses(t))]




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
        self.app_factory: Callable[[], SimApp] = app_factory or (lambda: FakeApp(self.chain_id, self.validator_keys))
        self.drop, self.duplicate = drop, duplicate
        self.min_delay, self.max_delay = min_delay, max_delay
        self.tick_every = tick_every
        self.time = 0
        self._events: list[tuple[int, float, int, str, Any]] = []
        self._seq = 0
        self.canonical: dict[int, bytes] = {}
        self.blocked: set[tuple[int, int]] = set()  # (from node index, to node index)
        self.slow: dict[int, int] = {}  # node index -> extra delay of its outgoing messages
        self.log: list[tuple[str, bytes]] = []  # (sender id, consensus message) of every delivered message
        self.record_log = False
        self.nodes: list[SimNode] = []
        for i, k in enumerate(self.keys):
            self.nodes.append(self._make_node(i, k, self.app_factory()))
        for j, twin_of in enumerate(twins):
            self.nodes[twin_of].honest = False
            twin = self._make_node(len(self.keys) + j, self.keys[twin_of], self.app_factory())
            twin.honest = False
            self.nodes.append(twin)

    def _make_node(self, index: int, key: SigningKey, app: SimApp) -> SimNode:
        node = SimNode(index, key, app)
        self._attach_driver(node)
        node.committed = [(b"", None)] * (app.committed_height() + 1)
        return node

    def _attach_driver(self, node: SimNode) -> None:
        """Build the node's replica from its store and the driver around it, as a node start does."""
        app = node.app
        replica = Replica(self.config, node.key, app, self.validator_keys, Driver.persisted(app.store))

        node.driver = SimDriver(replica, app, app.store, SimLinks(self, node), SimHost(self, node))
        node.driver.node = node

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
        """Start the node again from its disk (its application's chain and store); nothing else survives."""
        node = self.nodes[index]
        node.app = node.app.restarted()
        node.alive = True
        node.catching_up = None
        node.generation += 1
        self._attach_driver(node)

    # --- plumbing ------------------------------------------------------------------------------

    def _push(self, due: int, kind: str, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._events, (due, self.rng.random(), self._seq, kind, payload))

    def _delay(self, src: SimNode) -> int:
        return self.rng.randint(self.min_delay, self.max_delay) + self.slow.get(src.index, 0)

    def _reachable(self, src: SimNode, dst: SimNode) -> bool:
        return dst.running and (src.index, dst.index) not in self.blocked

    def send(self, src: SimNode, to: str, payload: bytes) -> None:
        for dst in self.nodes:
            if dst.id != to or dst is src:
                continue
            if self.rng.random() < self.drop:
                continue
            self._push(self.time + self._delay(src), "msg", (src.index, dst.index, src.id, payload))
            if self.rng.random() < self.duplicate:
                self._push(self.time + self._delay(src) + 2, "msg", (src.index, dst.index, src.id, payload))

    def perform(self, node: SimNode, actions: list[Action]) -> None:
        node.driver.perform(actions)

    def check_persisted_before_send(self, node: SimNode, raw: bytes) -> None:
        """What a replica signs is in its store before the message leaves."""
        env = decode_envelope(raw)
        if env.sender != node.id or env.kind not in ("preprepare", "prepare", "commit", "vote"):
            return
        body = decode_body(env)
        h = body.height
        store = node.app.store
        if env.kind == "vote":
            raw_vote = store.get(NS.CONSENSUS + key_for_height(PREFIX_VOTE, h))
            ok = raw_vote is not None and decode(VoteRecord, raw_vote).block_hash == body.block_hash
        elif env.kind == "commit":
            raw_proof = store.get(NS.CONSENSUS + key_for_height(PREFIX_PREPARED, h))
            ok = raw_proof is not None and decode(PreparedProof, raw_proof).view >= body.view
        else:
            raw_acc = store.get(NS.CONSENSUS + key_for_height(PREFIX_ACCEPTED, h))
            acc = decode(AcceptedRecord, raw_acc) if raw_acc is not None else None
            ok = acc is not None and (acc.view, acc.block_hash) == (body.view, body.block_hash)
        if not ok and h > node.replica.checkpoints.low:
            raise SafetyViolation(f"node {node.index} sent a {env.kind} for {h} it had not persisted")

    def record(self, node: SimNode, block: Block, cert: CommitCertificate) -> None:
        check_certificate(cert, self.chain_id, block.header, self.validator_keys)
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

    # --- catch-up: the driver's own rounds, each request and answer an event -------------------

    def start_catch_up(self, node: SimNode) -> None:
        if node.catching_up is not None:
            return
        peers = [p.id for p in self.nodes if p.id != node.id]
        self.rng.shuffle(peers)
        node.catching_up = node.driver.catch_up(peers)
        self._resume_catch_up(node, None, first=True)

    def _resume_catch_up(self, node: SimNode, answer: bytes | None, first: bool = False) -> None:
        """Feed the round `answer` and run it to its next request (or its end)."""
        round_ = node.catching_up
        assert round_ is not None
        try:
            step = next(round_) if first else round_.send(answer)
            while step is PAUSE:
                step = round_.send(None)
        except StopIteration:
            node.catching_up = None
            return
        assert not isinstance(step, CatchUpPause)
        peer_id, request = step
        peer = next(p for p in self.nodes if p.id == peer_id and p is not node)
        self._push(self.time + self._delay(node), "request", (node.index, node.generation, peer.index, request))

    def _serve_request(self, index: int, generation: int, peer_index: int, request: bytes) -> None:
        node, peer = self.nodes[index], self.nodes[peer_index]
        answer = peer.driver.serve(request) if self._reachable(node, peer) else None
        delay = self._delay(peer) if answer is not None else self.rng.randint(5, 15)  # a request timeout
        if answer is not None and not self._reachable(peer, node):
            answer = None
        self._push(self.time + delay, "answer", (index, generation, answer))

    def _answer(self, index: int, generation: int, answer: bytes | None) -> None:
        node = self.nodes[index]
        if node.generation != generation or node.catching_up is None:
            return  # the round of an incarnation that crashed
        if not node.running:
            answer = None
        self._resume_catch_up(node, answer)

    def _process(self, kind: str, payload: Any) -> None:
        if kind == "msg":
            src_index, dst_index, sender, raw = payload
            dst = self.nodes[dst_index]
            if not dst.running or (src_index, dst_index) in self.blocked:
                return
            if self.record_log and raw[0] == MSG_CONSENSUS:
                self.log.append((sender, raw[1:]))
            dst.driver.on_peer_message(sender, raw)
        elif kind == "request":
            self._serve_request(*payload)
        elif kind == "answer":
            self._answer(*payload)

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
                    node.driver.tick()

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
        node.driver.submit(node.admit(txs))

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
