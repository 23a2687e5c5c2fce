"""Checkpoints: signed claims of delivered heights, the stable checkpoint and the watermarks it sets.

Theory of operation: after delivering a multiple of the checkpoint interval K, a replica signs and
broadcasts a checkpoint (height, block hash); 2f+1 matching ones form a `CheckpointProof`, the
stable checkpoint. It becomes the low watermark (the high one lies `watermark_window` above it),
and the replica garbage-collects everything at or below it (ordering.py does, when `add` or `send`
reports a new stable height). Every verified checkpoint is also a peer's claim of how far it has
delivered: f+1 claims above this replica show it is behind (catchup.py).

After a restart the replica announces its stable checkpoint once, so peers answer with theirs.
"""

from __future__ import annotations

from ledger.chain import ValidatorSignature
from ledger.codec import encode
from ledger.consensus.context import Context
from ledger.consensus.log import KEY_CHECKPOINT
from ledger.consensus.messages import Checkpoint, CheckpointProof, Envelope


class Checkpoints:
    def __init__(self, ctx: Context, low: int) -> None:
        self._ctx = ctx
        self._interval = ctx.config.checkpoint_interval
        self._window = ctx.config.watermark_window
        self._stable: CheckpointProof | None = None
        self._low = low
        self._tally: dict[int, dict[str, tuple[bytes, bytes]]] = {}  # height -> sender -> (hash, sig)
        self._mine: Envelope | None = None
        self._mine_height = 0
        self._claims: dict[str, int] = {}  # sender -> highest height it signed a checkpoint for
        self._announce = False

    @property
    def stable(self) -> CheckpointProof | None:
        return self._stable

    @property
    def stable_height(self) -> int:
        return self._stable.height if self._stable is not None else 0

    @property
    def low(self) -> int:
        """The low watermark: nothing at or below it is ordered any more."""
        return self._low

    @property
    def high(self) -> int:
        """The high watermark: nothing above it is ordered yet."""
        return self._low + self._window

    @property
    def mine(self) -> Envelope | None:
        """This replica's latest checkpoint message."""
        return self._mine

    @property
    def mine_height(self) -> int:
        return self._mine_height

    def is_due(self, height: int) -> bool:
        """A replica that delivered `height` checkpoints it."""
        return height % self._interval == 0

    def is_checkpoint_height(self, height: int) -> bool:
        return height != 0 and self.is_due(height)

    def is_stale(self, height: int) -> bool:
        return self._stable is not None and height <= self._stable.height

    def note_claim(self, sender: str, height: int) -> None:
        if height > self._claims.get(sender, 0):
            self._claims[sender] = height

    def claimed_by(self, count: int) -> int:
        """The height that `count` validators have each claimed to have delivered (0 if fewer claim)."""
        claims = sorted(self._claims.values(), reverse=True)
        return claims[count - 1] if len(claims) >= count else 0

    def raise_low(self, floor: int) -> None:
        self._low = max(self._low, floor)

    def add(self, sender: str, body: Checkpoint, signature: bytes) -> int | None:
        """A verified checkpoint within the watermarks; returns the height if it made a new stable one."""
        self._tally.setdefault(body.height, {}).setdefault(sender, (body.block_hash, signature))
        return self._check_stable(body.height)

    def send(self, height: int, block_hash: bytes) -> int | None:
        """Checkpoint a delivered height; returns the height if it made a new stable checkpoint."""
        if not self._ctx.membership.is_member(self._ctx.signer.id, height):
            return self._check_stable(height)  # not a validator at this height: others' checkpoints count
        env = self._ctx.signer.sign(Checkpoint(height, block_hash))
        self._mine, self._mine_height = env, height
        self._tally.setdefault(height, {})[self._ctx.signer.id] = (block_hash, env.signature)
        self._ctx.out.broadcast(env)
        return self._check_stable(height)

    def take_announcement(self) -> Envelope | None:
        """After a restart, this replica's checkpoint, once."""
        if not self._announce or self._mine is None:
            return None
        self._announce = False
        return self._mine

    def _check_stable(self, height: int) -> int | None:
        if self._stable is not None and height <= self._stable.height:
            return None
        tally: dict[bytes, list[ValidatorSignature]] = {}
        for sender, (block_hash, sig) in self._tally.get(height, {}).items():
            tally.setdefault(block_hash, []).append(ValidatorSignature(sender, sig))
        for block_hash, sigs in tally.items():
            if len(sigs) >= self._ctx.membership.at(height).quorum:
                sigs.sort(key=lambda s: s.validator)
                self._stable = CheckpointProof(height, block_hash, tuple(sigs))
                self._ctx.out.persist(KEY_CHECKPOINT, encode(self._stable))
                self._low = max(self._low, height)
                for h in [h for h in self._tally if h < height]:
                    del self._tally[h]
                return height
        return None

    def restore(self, proof: CheckpointProof) -> None:
        """After a restart: the persisted stable checkpoint (this replica's message re-signed alike)."""
        self._stable = proof
        self._low = max(self._low, proof.height)
        self._mine = self._ctx.signer.sign(Checkpoint(proof.height, proof.block_hash))
        self._mine_height = proof.height
        self._announce = True
