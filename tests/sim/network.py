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
Before an honest node sends what it signed, its record is in the store (persist before send; with
a `PowerLossStore`, synced: a record a power cut could still lose does not count).
No threads, no sleeps, no wall clock.

Faults go through the methods of `Network` (partition, crash, pause, loss, Byzantine roles...), which
count them (`faults`) and, when a `Transcript` is attached (`trace`), write them in it beside every
message, tick and decision, so a failing run can be read afterwards (tests/sim/trace.py).
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ledger.chain import (
    Block,
    BlockHeader,
    CommitCertificate,
    check_certificate,
    compute_block_hash,
)
from ledger.codec import decode
from ledger.consensus import messages as consensus_messages
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
from ledger.crypto import SigningKey
from ledger.driver import MSG_CONSENSUS, PAUSE, CatchUpPause, CatchUpRound, Driver
from ledger.store import NS
from tests.sim.apps import Committed, FakeApp, SafetyViolation, SimApp, fake_genesis  # noqa: F401 (tests import them here)
from tests.sim.trace import Transcript, describe_payload

# The replicas of one simulated network verify the same signatures, each its own copy of every
# message: a verification is a pure function of (key, digest, signature), so the simulation does it
# once per process. Every replica still checks every signature; only libsodium is not asked again.
if not hasattr(consensus_messages.verify_digest, "cache_info"):
    consensus_messages.verify_digest = functools.lru_cache(maxsize=1 << 17)(consensus_messages.verify_digest)


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
        if self.node.honest and payload[0] == MSG_CONSENSUS:
            self.net.check_persisted_before_send(self.node, payload[1:])  # once for all peers
        for v in self.net.validator_keys:  # every validator of any set, as a transport following the set would
            if v != self.node.id:
                self.net.send(self.node, v, payload)

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
        if self.net.trace is not None:
            self.net.trace.note(self.net.time, f"node {self.node.index} GIVES UP {len(txs)} txs: {reason}")

    def on_evidence(self, first: bytes, second: bytes) -> None:
        # Evidence is checked as the ledger's handler checks it, then kept.
        found = check_equivocation(first, second, self.net.chain_id, self.net.validator_keys)
        self.node.evidence.append(found)
        if self.net.trace is not None:
            self.net.trace.note(self.net.time, f"node {self.node.index} REPORTS EVIDENCE: {found.kind} "
                                               f"equivocation by {found.validator[:8]}")


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
    serves: Callable[[SimNode, bytes], bytes | None] | None = None  # a Byzantine peer's catch-up answers
    caught_up: int = 0  # blocks it applied from catch-up answers (not by ordering)
    role: str = "honest"  # what the transcript calls it

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
    for settings in _configured:
        base.update(settings)
    base.update(overrides)
    return ReplicaConfig(chain_id, validators, **base)


_watchers: list[Callable[[Network], None]] = []
_configured: list[dict[str, Any]] = []


@contextlib.contextmanager
def configured(**settings: Any) -> Iterator[None]:
    """Every Network made inside the block runs its replicas with these settings (run a scenario so)."""
    _configured.append(settings)
    try:
        yield
    finally:
        _configured.remove(settings)


@contextlib.contextmanager
def watching(watch: Callable[[Network], None]) -> Iterator[None]:
    """Call `watch` with every Network made inside the block (to count its faults, attach a trace)."""
    _watchers.append(watch)
    try:
        yield
    finally:
        _watchers.remove(watch)


def start_transcript(net: Network, header: Sequence[str] = ()) -> Transcript:
    """Attach a transcript to `net`, headed by what each of its nodes is."""
    lines = [*header, f"{len(net.keys)} validators, f = {(len(net.keys) - 1) // 3}, seed-driven delays "
                      f"{net.min_delay}-{net.max_delay} steps, a tick every {net.tick_every} steps"]
    lines += [f"node {n.index}: validator {n.id[:8]} ({n.role})" for n in net.nodes]
    net.trace = Transcript(lines)
    return net.trace


class Network:
    def __init__(
        self, n: int = 4, seed: int = 0, *, twins: Sequence[int] = (), config: dict[str, Any] | None = None,
        app_factory: Callable[[], SimApp] | None = None, keys: Sequence[SigningKey] | None = None,
        chain_id: str = "sim", drop: float = 0.0, duplicate: float = 0.0, min_delay: int = 1, max_delay: int = 4,
        tick_every: int = 5, joiners: int = 0,
    ) -> None:
        """`joiners`: nodes beyond the n genesis validators, running from the start without being
        validators (a set change may add them)."""
        self.rng = random.Random(seed)
        self.keys = list(keys) if keys else [SigningKey.from_seed(f"sim-validator-{i}".encode())
                                             for i in range(n + joiners)]
        genesis_keys = self.keys[:len(self.keys) - joiners]
        self.validator_keys = {k.id: k.public_key for k in self.keys}
        self.chain_id = chain_id
        self.config = default_config(chain_id, tuple(k.id for k in genesis_keys), **(config or {}))
        self.app_factory: Callable[[], SimApp] = app_factory or (lambda: FakeApp(
            self.chain_id, self.validator_keys, genesis_ids=self.config.validators,
            activation_delay=self.config.activation_delay))
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
        self.drop_in_view_change = 0.0  # loss of messages sent or received by a replica changing views
        self.catch_up_first: int | None = None  # a node every catch-up round asks first (a liar, say)
        self.injected = False  # a scenario sent messages under other senders' names
        self.faults: Counter[str] = Counter()  # faults injected, by kind
        self.observed: Counter[str] = Counter()  # what a scenario saw happen (summed over a whole search)
        self.delivered = 0  # messages delivered
        self.trace: Transcript | None = None
        self.nodes: list[SimNode] = []
        for i, k in enumerate(self.keys):
            self.nodes.append(self._make_node(i, k, self.app_factory()))
        for j, twin_of in enumerate(twins):
            self.nodes[twin_of].honest = False
            self.nodes[twin_of].role = f"twin of validator {twin_of}"
            twin = self._make_node(len(self.keys) + j, self.keys[twin_of], self.app_factory())
            twin.honest = False
            twin.role = f"twin of validator {twin_of}"
            self.nodes.append(twin)
            self.faults["twin"] += 1
        for watch in _watchers:
            watch(self)

    def _make_node(self, index: int, key: SigningKey, app: SimApp) -> SimNode:
        node = SimNode(index, key, app)
        self._attach_driver(node)
        node.committed = [(b"", None)] * (app.committed_height() + 1)
        return node

    def _attach_driver(self, node: SimNode) -> None:
        """Build the node's replica from its store and the driver around it, as a node start does."""
        app = node.app
        later = app.later_sets() if isinstance(app, FakeApp) else []  # as a node start reads them from its chain
        replica = Replica(self.config, node.key, app, self.validator_keys, Driver.persisted(app.store), later)

        node.driver = SimDriver(replica, app, app.store, SimLinks(self, node), SimHost(self, node))
        node.driver.node = node

    # --- fault control -------------------------------------------------------------------------

    def fault(self, kind: str, detail: str = "") -> None:
        """Count a fault injected (and write it in the transcript)."""
        self.faults[kind] += 1
        if self.trace is not None:
            self.trace.note(self.time, f"FAULT {kind}{': ' + detail if detail else ''}")

    def partition(self, *groups: Iterable[int]) -> None:
        """Only nodes in one group reach each other (nodes in no group reach nobody)."""
        sets = [set(g) for g in groups]
        self.blocked = {(a.index, b.index) for a in self.nodes for b in self.nodes
                        if not any(a.index in s and b.index in s for s in sets)}
        self.fault("partition", " | ".join(" ".join(map(str, sorted(g))) for g in sets))

    def block(self, src: int, dst: int) -> None:
        """Messages from `src` to `dst` are lost (one direction)."""
        self.blocked.add((src, dst))
        self.fault("link_down", f"{src} -> {dst}")

    def unblock(self) -> None:
        if self.blocked:
            self.blocked = set()
            self.fault("links_up")

    def set_loss(self, drop: float, duplicate: float | None = None) -> None:
        self.drop = drop
        if duplicate is not None:
            self.duplicate = duplicate
        if drop or self.duplicate:
            self.fault("loss", f"drop {drop:.2f}, duplicate {self.duplicate:.2f}")

    def slow_down(self, index: int, extra: int) -> None:
        self.slow[index] = extra
        self.fault("slow", f"node {index} +{extra} steps")

    def pause(self, index: int) -> None:
        self.nodes[index].paused = True
        self.fault("pause", f"node {index}")

    def resume(self, index: int) -> None:
        self.nodes[index].paused = False
        if self.trace is not None:
            self.trace.note(self.time, f"resume node {index}")

    def make_byzantine(self, index: int, role: str) -> SimNode:
        """Node `index` is faulty from now on (its behaviour is set by the caller)."""
        node = self.nodes[index]
        node.honest = False
        node.role = role
        self.fault("byzantine", f"node {index}: {role}")
        return node

    def heal(self) -> None:
        self.blocked = set()
        self.slow = {}
        self.drop_in_view_change = 0.0
        for node in self.nodes:
            node.paused = False
        if self.trace is not None:
            self.trace.note(self.time, "heal: every link up, nobody paused or slow")

    def crash(self, index: int) -> None:
        self.nodes[index].alive = False
        self.fault("crash", f"node {index}")

    def restart(self, index: int) -> None:
        """Start the node again from its disk (its application's chain and store); nothing else survives."""
        node = self.nodes[index]
        node.app = node.app.restarted()
        if node.app.committed_height() < node.height:  # its disk lost a block it acknowledged
            raise SafetyViolation(f"node {index} restarted at height {node.app.committed_height()}, "
                                  f"below the {node.height} it acknowledged")
        node.alive = True
        node.catching_up = None
        node.generation += 1
        self._attach_driver(node)
        self.fault("restart", f"node {index} at height {node.app.committed_height()}")

    # --- plumbing ------------------------------------------------------------------------------

    def _push(self, due: int, kind: str, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._events, (due, self.rng.random(), self._seq, kind, payload))

    def _delay(self, src: SimNode) -> int:
        return self.rng.randint(self.min_delay, self.max_delay) + self.slow.get(src.index, 0)

    def _reachable(self, src: SimNode, dst: SimNode) -> bool:
        return dst.running and (src.index, dst.index) not in self.blocked

    def _changing(self, node: SimNode) -> bool:
        return node.alive and not node.replica.views.active

    def send(self, src: SimNode, to: str, payload: bytes) -> None:
        for dst in self.nodes:
            if dst.id != to or dst is src:
                continue
            lost = self.rng.random() < self.drop
            if not lost and self.drop_in_view_change and (self._changing(src) or self._changing(dst)):
                lost = self.rng.random() < self.drop_in_view_change
            if lost:
                if self.trace is not None:
                    self.trace.note(self.time, f"{src.index}->{dst.index} LOST {describe_payload(payload)}")
                continue
            self._push(self.time + self._delay(src), "msg", (src.index, dst.index, src.id, payload))
            if self.rng.random() < self.duplicate:
                self._push(self.time + self._delay(src) + 2, "msg", (src.index, dst.index, src.id, payload))

    def perform(self, node: SimNode, actions: list[Action]) -> None:
        if self.trace is None:
            node.driver.perform(actions)
        else:
            self.traced(node, node.driver.perform, actions)

    def check_persisted_before_send(self, node: SimNode, raw: bytes) -> None:
        """What a replica signs is in its store before the message leaves (synced, if the store
        can tell: `PowerLossStore.durable`)."""
        env = decode_envelope(raw)
        if env.sender != node.id or env.kind not in ("preprepare", "prepare", "commit", "vote"):
            return
        body = decode_body(env)
        h = body.height
        store: Any = getattr(node.app.store, "durable", node.app.store)
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
        keys = self.validator_keys
        if isinstance(node.app, FakeApp):  # the certificate of the set in force at its height
            keys = {v: keys[v] for v in node.app.ids_at(block.header.height)}
        check_certificate(cert, self.chain_id, block.header, keys)
        block_hash = compute_block_hash(block.header)
        height = block.header.height
        if height != len(node.committed):
            raise SafetyViolation(f"node {node.index} committed height {height} out of order")
        node.committed.append((block_hash, cert))
        again = node.committed_txs.intersection(block.txs)
        if again and all(n.honest for n in self.nodes if n.id == block.header.proposer):
            # An honest primary never proposes a committed transaction again (it would stand in two blocks).
            raise SafetyViolation(f"block {height} by an honest primary repeats {len(again)} committed txs")
        node.committed_txs.update(block.txs)
        if self.trace is not None:
            self.trace.note(self.time, f"node {node.index} DECIDES h{height} {block_hash.hex()[:8]} "
                                       f"(view {block.header.view}, {len(block.txs)} txs)")
        if node.honest:
            seen = self.canonical.setdefault(height, block_hash)
            if seen != block_hash:
                raise SafetyViolation(f"two blocks committed at height {height} (node {node.index})")

    # --- catch-up: the driver's own rounds, each request and answer an event -------------------

    def start_catch_up(self, node: SimNode) -> None:
        if node.catching_up is not None:
            return
        peers = [p for p in self.nodes if p.id != node.id]
        self.rng.shuffle(peers)
        peers.sort(key=lambda p: p.index != self.catch_up_first)
        node.catching_up = node.driver.catch_up([p.id for p in peers])
        if self.trace is not None:
            self.trace.note(self.time, f"node {node.index} CATCH-UP round from height {node.height}")
        self._resume_catch_up(node, None, first=True)

    def _resume_catch_up(self, node: SimNode, answer: bytes | None, first: bool = False) -> None:
        """Feed the round `answer` and run it to its next request (or its end)."""
        round_ = node.catching_up
        assert round_ is not None
        before = node.height - node.replica.metrics["blocks_delivered"]
        try:
            step = next(round_) if first else round_.send(answer)
            while step is PAUSE:
                step = round_.send(None)
        except StopIteration:
            node.catching_up = None
            return
        finally:  # blocks written while the round ran, less those the replica delivered by ordering
            node.caught_up += node.height - node.replica.metrics["blocks_delivered"] - before
        assert not isinstance(step, CatchUpPause)
        peer_id, request = step
        # Twins share an id: the round names a validator, the network picks one of its nodes.
        candidates = [p for p in self.nodes if p.id == peer_id and p is not node]
        peer = candidates[0] if len(candidates) == 1 else self.rng.choice(candidates)
        self._push(self.time + self._delay(node), "request", (node.index, node.generation, peer.index, request))

    def _serve_request(self, index: int, generation: int, peer_index: int, request: bytes) -> None:
        node, peer = self.nodes[index], self.nodes[peer_index]
        answer = None
        if self._reachable(node, peer):
            answer = peer.serves(peer, request) if peer.serves is not None else peer.driver.serve(request)
        if self.trace is not None:
            what = f"{len(answer)} bytes" if answer is not None else "no answer"
            self.trace.note(self.time, f"node {peer_index} serves node {index}'s block request: {what}")
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
                if self.trace is not None:
                    why = "partitioned" if (src_index, dst_index) in self.blocked else "not running"
                    self.trace.note(self.time, f"{src_index}->{dst_index} {why.upper()} {describe_payload(raw)}")
                return
            if self.record_log and raw[0] == MSG_CONSENSUS:
                self.log.append((sender, raw[1:]))
            self.delivered += 1
            if self.trace is None:
                dst.driver.on_peer_message(sender, raw)
            else:
                self.trace.note(self.time, f"{src_index}->{dst_index} {describe_payload(raw)}")
                self.traced(dst, dst.driver.on_peer_message, sender, raw)
        elif kind == "request":
            self._serve_request(*payload)
        elif kind == "answer":
            self._answer(*payload)

    def traced(self, node: SimNode, call: Callable[..., None], *args: Any) -> None:
        """Run one driver call on `node`, writing the view moves it made in the transcript."""
        assert self.trace is not None
        before = (node.replica.view, node.replica.views.active)
        call(*args)
        after = (node.replica.view, node.replica.views.active)
        if after != before:
            what = "INSTALLS view" if after[1] else "LEAVES for view"
            self.trace.note(self.time, f"node {node.index} {what} {after[0]} (was {before[0]}"
                                       f"{'' if before[1] else ', changing'})")

    # --- running -------------------------------------------------------------------------------

    def step(self) -> None:
        self.time += 1
        while self._events and self._events[0][0] <= self.time:
            _, _, _, kind, payload = heapq.heappop(self._events)
            self._process(kind, payload)
        if self.time % self.tick_every == 0:
            order = list(self.nodes)
            self.rng.shuffle(order)
            if self.trace is not None:
                idle = [n.index for n in self.nodes if not n.running]
                self.trace.note(self.time, "tick" + (f" (not ticking: {idle})" if idle else ""))
            for node in order:
                if node.running:
                    if self.trace is None:
                        node.driver.tick()
                    else:
                        self.traced(node, node.driver.tick)

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
        if self.trace is None:
            node.driver.submit(node.admit(txs))
        else:
            self.trace.note(self.time, f"client submits {len(txs)} txs to node {node.index}")
            self.traced(node, node.driver.submit, node.admit(txs))

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
