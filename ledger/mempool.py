"""The mempool: the one way into this node for a transaction, and the transactions waiting to commit.

Theory of operation. Every transaction this node orders came in through `Mempool.admit`, whether
a client posted it (`POST /v1/tx`), a backup forwarded it to this primary, or the node wrote it
itself (an `anchor.attest` attestation). For each tx of a batch, in this order:

1. decoding and the stateless checks (`ledger.tx`: size, canonical bytes, chain, nonce range, kind
   and payload);
2. duplicates: not waiting here already, not committed, not repeated within the batch;
3. the sender checks of the state machine (`StateMachine.check_sender`: kind handled, active
   member, kinds allowed) and its nonce check (`check_nonce`), as of the committed state; a nonce
   ahead of the next one is allowed, since the sender's pending txs fill the gap before it executes;
4. then the signatures of all survivors at once (`verify_parallel`: libsodium on a thread pool);
5. the limit on pending transactions.

An accepted tx goes to consensus (`take_released`) only once the one before it can execute first: its
nonce is the sender's next, or the sender's previous nonce went to consensus before it. Until then it
waits here (*gapped*): a sender's requests sent without waiting for each other, which arrive out of
order, are ordered by nonce instead of failing `nonce_gap` in a block (which would use up their ids for
good: the same signed bytes are a duplicate from then on). A gapped tx goes on when its predecessor
arrives or commits (through any node), and is refused `nonce_gap` if that does not happen within
`GAP_WAIT_S` (refused before ordering, it may be sent again as it is). At most
`MAX_GAPPED_PER_SENDER` of a sender's txs wait so.

Execution re-checks every envelope (`StateMachine.check_envelope`, the consensus rule) with the
same functions, so what admission accepts at a state also passes execution at that state.
Admission is this node's early refusal; execution decides. An accepted tx's verification goes into
the chain's VerifiedCache, so this node does not verify it again when it executes the tx.

A block proposed by another validator holds txs this node may never have seen: `preverify`
verifies them the same way, on the same pool, into the same cache, before the block executes.

The limits on pending work are set here: the pending set, the forwarded batches a peer may send,
the replica's queue (the node passes `limit` into its ReplicaConfig) and the VerifiedCache.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

from ledger.chaindb import ChainDB
from ledger.crypto import PARALLEL_VERIFY_MIN, verify_parallel
from ledger.state import StateView, VerifiedCache, check_nonce, check_signature, get_nonce, signature_claim
from ledger.tx import MAX_TX_BYTES, Reject, SignedTx, TxRejected, check_tx_stateless, compute_tx_id, decode_tx

MAX_PENDING = 200_000  # admitted transactions not yet committed, per node
MAX_FORWARDED_PER_MESSAGE = 10_000  # transactions in one batch a backup forwards to the primary
MAX_VERIFIED = 2 * MAX_PENDING  # verifications kept: the pending txs and those of proposed blocks
MAX_REFUSALS = 100_000  # admitted txs given up on, remembered so a client can still ask why
GAP_WAIT_S = 60.0  # how long an accepted tx waits for its sender's previous nonce to arrive
MAX_GAPPED_PER_SENDER = 1_000


@dataclass(frozen=True)
class Admission:
    """What admission said about one transaction."""

    tx_id: bytes
    accepted: bool
    reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class Outcome:
    """What happened to an admitted transaction once it committed."""

    tx_id: bytes
    height: int
    index: int
    ok: bool
    reason: str
    message: str


@dataclass(frozen=True)
class Refusal:
    """An admitted transaction this node gave up on: it will not commit through this node."""

    tx_id: bytes
    reason: str
    message: str


class _Checked(NamedTuple):  # a tuple: built for every admitted tx, on the hot path
    """A tx that passed every check but its signature."""

    tx_id: bytes
    tx: SignedTx
    payload: Any
    claim: tuple[bytes, bytes, bytes]  # (sender's public key, digest, signature)


class Mempool:
    def __init__(self, chain: ChainDB, verify_threads: int = 1, limit: int = MAX_PENDING,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if chain.verified is None:
            raise ValueError("the mempool needs a chain with a VerifiedCache")
        self.chain = chain
        self.verified: VerifiedCache = chain.verified
        self.limit = limit
        self._workers = verify_threads
        # A thread pool when this node has cores of its own to spare; where several nodes share the
        # cores (a devnet), threads only add hand-offs, so signatures are verified inline.
        self._pool = (
            ThreadPoolExecutor(max_workers=verify_threads, thread_name_prefix="verify") if verify_threads > 1 else None
        )
        self._pending: set[bytes] = set()
        self._held: dict[bytes, tuple[str, int, bytes]] = {}  # pending tx id -> (sender, nonce, raw bytes)
        self._by_sender: dict[str, set[bytes]] = {}  # sender -> its pending tx ids
        self._refused: OrderedDict[bytes, Refusal] = OrderedDict()
        self._clock = clock
        self._ordered: dict[str, set[int]] = {}  # sender -> the nonces of its pending txs gone to consensus
        self._gapped: dict[str, dict[int, tuple[bytes, float]]] = {}  # sender -> nonce -> (tx id, since when)
        self._next_expiry = math.inf  # no gapped tx is due before it: expire_gaps looks only from then on
        self._released: list[bytes] = []  # raw txs gone to consensus, not yet taken

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def __len__(self) -> int:
        return len(self._pending)

    def is_pending(self, tx_id: bytes) -> bool:
        return tx_id in self._pending

    def remove_committed(self, tx_ids: Iterable[bytes]) -> None:
        for tx_id in tx_ids:
            self._forget(tx_id)

    def take_released(self) -> list[bytes]:
        """The accepted txs that may go to consensus now, in the order they may execute (each sender's by
        nonce), once each: after an admission, and after a commit (`advanced`)."""
        released, self._released = self._released, []
        return released

    def gapped(self) -> int:
        """How many accepted txs wait for their sender's previous nonce."""
        return sum(len(g) for g in self._gapped.values())

    def after_commit(self, senders: Iterable[str]) -> tuple[list[bytes], list[Refusal]]:
        """A commit used nonces of `senders`: (the raw txs consensus must drop, the refusals to answer). Pending
        txs whose nonce it used (signed with a nonce read from a node still behind) are refused at once, so their
        client signs them again; gapped txs that may execute next go on; those that waited too long are refused."""
        stale = self.outdated(senders)
        refusals = self.refuse([tx_id for tx_id, _ in stale], Reject.REPLAYED_NONCE.value,
                               "another transaction of the sender used its nonce; sign it again with the next one")
        self.advanced(senders)
        return [raw for _, raw in stale], refusals + self.expire_gaps()

    def advanced(self, senders: Iterable[str]) -> None:
        """A commit used nonces of `senders`: their gapped txs that may execute next go on (`take_released`)."""
        view = self.chain.latest
        for sender in senders:
            gapped = self._gapped.get(sender)
            next_nonce = get_nonce(view, sender) + 1
            if gapped and next_nonce in gapped:
                self._release_from(sender, next_nonce)

    def expire_gaps(self) -> list[Refusal]:
        """Refuse (`nonce_gap`) the gapped txs that waited `GAP_WAIT_S` for their predecessor. Cheap until one
        is due (the node asks on every tick)."""
        now = self._clock()
        if now < self._next_expiry:
            return []
        since = now - GAP_WAIT_S
        doomed = [(tx_id, nonce) for gapped in self._gapped.values() for nonce, (tx_id, at) in gapped.items()
                  if at <= since]
        self._next_expiry = min((at + GAP_WAIT_S for gapped in self._gapped.values() for _, at in gapped.values()
                                 if at > since), default=math.inf)
        out: list[Refusal] = []
        for tx_id, nonce in doomed:
            out += self.refuse([tx_id], Reject.NONCE_GAP.value,
                               f"nonce {nonce} waited {GAP_WAIT_S:.0f} s for its sender's nonce {nonce - 1}, which "
                               f"this node did not receive; send that one, then this one again (it was not ordered)")
        return out

    def outdated(self, senders: Iterable[str]) -> list[tuple[bytes, bytes]]:
        """(tx id, raw bytes) of the pending txs of `senders` whose nonce the committed state has used
        (another tx of the sender took it): they can never execute. Admitted while this node was behind,
        they would otherwise wait in the queue until consensus gave up on them, after view changes."""
        view = self.chain.latest
        out: list[tuple[bytes, bytes]] = []
        for sender in senders:
            ids = self._by_sender.get(sender)
            if ids:
                used = get_nonce(view, sender)
                out.extend((i, self._held[i][2]) for i in ids if self._held[i][1] <= used)
        return out

    def give_up(self, tx_ids: Sequence[bytes], reason: str) -> tuple[list[bytes], list[Refusal]]:
        """Consensus gave up ordering `tx_ids`: (the raw txs consensus must drop besides, the refusals to answer).
        Their senders' later txs gone to consensus cannot execute before these are sent again: ordered
        without them they would fail `nonce_gap` for good, so they are given back (refused `reason`) too."""
        stranded = self._stranded_by(tx_ids)
        return [raw for _, raw in stranded], (
            self.refuse(tx_ids, reason, "consensus could not order it through several view changes; submit it again")
            + self.refuse([i for i, _ in stranded], reason, "consensus gave up on an earlier nonce of its sender, "
                          "so it could not execute; submit it again after that one"))

    def _stranded_by(self, tx_ids: Sequence[bytes]) -> list[tuple[bytes, bytes]]:
        """(tx id, raw bytes) of the pending txs gone to consensus after `tx_ids` in their senders' nonces."""
        first: dict[str, int] = {}  # sender -> its lowest nonce given up on
        for tx_id in tx_ids:
            held = self._held.get(tx_id)
            if held is not None:
                sender, nonce, _ = held
                first[sender] = min(nonce, first.get(sender, nonce))
        out: list[tuple[bytes, bytes]] = []
        for sender, nonce in first.items():
            ordered, gapped = self._ordered.get(sender, ()), self._gapped.get(sender, {})
            later = [(n, i) for i in self._by_sender[sender] if (n := self._held[i][1]) > nonce
                     and n in ordered and gapped.get(n, (b"",))[0] != i]
            out.extend((i, self._held[i][2]) for _, i in sorted(later))
        return out

    def refuse(self, tx_ids: Iterable[bytes], reason: str, message: str) -> list[Refusal]:
        """Give up on pending transactions (consensus could not order them); each is remembered,
        within a bound, as refused with `reason`, and may be submitted again."""
        out: list[Refusal] = []
        for tx_id in tx_ids:
            if tx_id not in self._pending:
                continue
            self._forget(tx_id)
            refusal = self._refused[tx_id] = Refusal(tx_id, reason, message)
            out.append(refusal)
            if len(self._refused) > MAX_REFUSALS:
                self._refused.popitem(last=False)
        return out

    def refusal(self, tx_id: bytes) -> Refusal | None:
        """Why this node gave up on an admitted transaction, if it did (and still remembers)."""
        return self._refused.get(tx_id)

    def admit(self, raws: Sequence[bytes]) -> list[Admission]:
        """Check transactions; accepted ones become pending. One result per tx, in input order."""
        results: list[Admission | None] = [None] * len(raws)
        checked: list[tuple[int, _Checked]] = []
        batch_ids: set[bytes] = set()
        view = self.chain.latest
        for i, raw in enumerate(raws):
            tx_id = compute_tx_id(raw) if len(raw) <= MAX_TX_BYTES else b""
            try:
                tx, payload = self._decode(raw)
                # Not already waiting here, committed, or repeated within this batch.
                if tx_id in self._pending or tx_id in batch_ids or self.chain.get_tx_location(tx_id):
                    raise TxRejected(Reject.DUPLICATE, "transaction already submitted")
                c = self._check_sender(view, raw, tx_id, tx, payload)
                check_nonce(view, tx, gap_allowed=True)
            except TxRejected as exc:
                results[i] = Admission(tx_id, False, exc.reason.value, exc.message)
                continue
            batch_ids.add(tx_id)
            checked.append((i, c))
        verdicts = verify_parallel([c.claim for _, c in checked], self._pool, self._workers)
        for (i, c), ok in zip(checked, verdicts, strict=True):
            try:
                check_signature(ok)
                # Room for one more: beyond this the node sheds load rather than grow.
                if len(self._pending) >= self.limit:
                    raise TxRejected(Reject.MEMPOOL_FULL, "node is overloaded; retry")
            except TxRejected as exc:
                results[i] = Admission(c.tx_id, False, exc.reason.value, exc.message)
                continue
            sender, nonce = c.tx.sender, c.tx.nonce
            gapped = self._gapped.get(sender, {})
            ordered = self._ordered.get(sender, ())
            goes_on = nonce == get_nonce(view, sender) + 1 or nonce - 1 in ordered
            if not goes_on and (nonce in gapped or len(gapped) >= MAX_GAPPED_PER_SENDER):
                waiting = "another transaction with it" if nonce in gapped else f"{len(gapped)} of this sender's"
                results[i] = Admission(c.tx_id, False, Reject.NONCE_GAP.value,
                                       f"nonce {nonce} skips ahead, and {waiting} already wait for earlier nonces")
                continue
            self._remember(c)
            self._pending.add(c.tx_id)
            self._held[c.tx_id] = (sender, nonce, raws[i])
            self._by_sender.setdefault(sender, set()).add(c.tx_id)
            self._refused.pop(c.tx_id, None)
            now = self._clock()
            self._gapped.setdefault(sender, {})[nonce] = (c.tx_id, now)
            if goes_on:
                self._release_from(sender, nonce)
            else:
                self._next_expiry = min(self._next_expiry, now + GAP_WAIT_S)
            results[i] = Admission(c.tx_id, True)
        return [r for r in results if r is not None]  # every index was filled above

    def _release_from(self, sender: str, nonce: int) -> None:
        """The gapped tx of `sender` with `nonce` goes to consensus, and so do those after it in a run."""
        gapped = self._gapped[sender]
        ordered = self._ordered.setdefault(sender, set())
        while nonce in gapped:
            tx_id, _ = gapped.pop(nonce)
            ordered.add(nonce)
            self._released.append(self._held[tx_id][2])
            nonce += 1
        if not gapped:
            del self._gapped[sender]

    def preverify(self, txs: Sequence[bytes]) -> None:
        """Verify a proposed block's signatures on the pool before the block executes.

        Execution would verify them one by one on the event loop. Verdicts go to the VerifiedCache
        under the sender's key as of the committed state; execution re-checks whatever this does
        not cover (txs refused here, a key rotated by an earlier tx of the block).
        """
        if self._pool is None or len(txs) < PARALLEL_VERIFY_MIN:
            return  # nothing to gain over execution verifying inline
        view = self.chain.latest
        checked: list[_Checked] = []
        for raw in txs:
            tx_id = compute_tx_id(raw)
            if self.verified.get(tx_id) is not None:
                continue  # admitted here, or verified for an earlier proposal
            try:
                tx, payload = self._decode(raw)
                checked.append(self._check_sender(view, raw, tx_id, tx, payload))
            except TxRejected:
                continue  # execution records the rejection
        verdicts = verify_parallel([c.claim for c in checked], self._pool, self._workers)
        for c, ok in zip(checked, verdicts, strict=True):
            if ok:
                self._remember(c)

    def _forget(self, tx_id: bytes) -> None:
        self._pending.discard(tx_id)
        held = self._held.pop(tx_id, None)
        if held is not None:
            sender, nonce, _ = held
            ids = self._by_sender[sender]
            ids.discard(tx_id)
            if not ids:
                del self._by_sender[sender]
            gapped = self._gapped.get(sender)
            if gapped is not None and gapped.get(nonce, (b"",))[0] == tx_id:
                del gapped[nonce]
                if not gapped:
                    del self._gapped[sender]
            elif sender in self._ordered:
                ordered = self._ordered[sender]
                ordered.discard(nonce)
                if not ordered:
                    del self._ordered[sender]

    def _decode(self, raw: bytes) -> tuple[SignedTx, Any]:
        """The tx and its payload, after the stateless checks; raises TxRejected."""
        tx = decode_tx(raw)
        return tx, check_tx_stateless(tx, self.chain.chain_id)

    def _check_sender(self, view: StateView, raw: bytes, tx_id: bytes, tx: SignedTx, payload: Any) -> _Checked:
        """The state machine's sender checks; what is left to check is the signature under its key."""
        sender = self.chain.machine.check_sender(view, tx)
        return _Checked(tx_id, tx, payload, signature_claim(raw, tx, sender.public_key))

    def _remember(self, c: _Checked) -> None:
        """Keep a verified tx (decoded), so execution on this node neither decodes nor verifies it again."""
        self.verified.add(c.tx_id, c.claim[0], c.tx, c.payload)
