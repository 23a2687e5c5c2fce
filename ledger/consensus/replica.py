"""The consensus replica: sans-I/O, driven by `submit`, `step` and `tick`, answering with actions.

Theory of operation (single validator, n = 1, f = 0): client transactions queue in arrival order.
A batch is cut when `batch_size` transactions wait, or on the tick after `batch_ticks` ticks with
anything waiting. The application executes the batch into a block; the replica signs the commit
vote, which alone is a quorum (2f+1 = 1), and returns `Deliver(block, certificate)`.

The multi-validator protocol (pre-prepare, prepare, commit, checkpoints, view change) fills in
`step` and the n > 1 paths behind this same interface.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ledger.chain import CommitCertificate, ValidatorSignature, compute_commit_vote
from ledger.consensus.actions import Action, Deliver
from ledger.consensus.app import Application
from ledger.consensus.quorum import quorum_size
from ledger.crypto import DOMAIN_COMMIT, SigningKey


@dataclass(frozen=True)
class ReplicaConfig:
    chain_id: str
    validators: tuple[str, ...]  # validator ids in primary-rotation order
    batch_size: int = 1000
    batch_ticks: int = 1  # cut a partial batch after this many ticks


class Replica:
    def __init__(
        self,
        config: ReplicaConfig,
        key: SigningKey,
        app: Application,
        validator_keys: Mapping[str, bytes],
        persisted: Mapping[bytes, bytes] | None = None,
    ) -> None:
        if len(config.validators) != 1:
            raise NotImplementedError("multi-validator consensus is not implemented in this replica")
        if quorum_size(len(config.validators)) != 1:
            raise AssertionError("a single validator is its own quorum")
        self.config = config
        self.key = key
        self.app = app
        self.validator_keys = dict(validator_keys)
        self.view = 0
        self.metrics: dict[str, int] = {"view_changes": 0}
        self._queue: deque[bytes] = deque()
        self._waited_ticks = 0

    @property
    def primary(self) -> str:
        return self.config.validators[self.view % len(self.config.validators)]

    @property
    def pending(self) -> int:
        return len(self._queue)

    def submit(self, txs: Sequence[bytes]) -> list[Action]:
        """Queue client transactions (already admitted by the driver)."""
        self._queue.extend(txs)
        actions: list[Action] = []
        while len(self._queue) >= self.config.batch_size:
            actions.extend(self._cut_batch())
        return actions

    def tick(self) -> list[Action]:
        if not self._queue:
            self._waited_ticks = 0
            return []
        self._waited_ticks += 1
        if self._waited_ticks < self.config.batch_ticks:
            return []
        return self._cut_batch()

    def step(self, sender: str, message: bytes) -> list[Action]:
        """A consensus message from a peer; a single validator has no peers, so none is accepted."""
        return []

    def notify_committed(self, height: int, block_hash: bytes) -> list[Action]:
        """The driver applied a certified block from catch-up (never needed with one validator)."""
        return []

    def _cut_batch(self) -> list[Action]:
        n = min(len(self._queue), self.config.batch_size)
        batch = [self._queue.popleft() for _ in range(n)]
        self._waited_ticks = 0
        block = self.app.propose(batch, self.view, self.key.id, None)
        vote = compute_commit_vote(self.config.chain_id, block.header)
        signature = ValidatorSignature(self.key.id, self.key.sign(DOMAIN_COMMIT, vote))
        cert = CommitCertificate(block.header.height, block.header.view, vote.block_hash, (signature,))
        return [Deliver(block, cert)]
