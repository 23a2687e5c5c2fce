"""What every component of a replica works with: its settings, the validator sets, its signing key,
the outbox for its actions, its clock and its event counters. None of it is state a component owns."""

from __future__ import annotations

from dataclasses import dataclass

from ledger.consensus.clock import Clock
from ledger.consensus.membership import Membership
from ledger.consensus.messages import Signer
from ledger.consensus.outbox import Outbox
from ledger.consensus.quorum import Quorums
from ledger.consensus.settings import ReplicaConfig


@dataclass(frozen=True)
class Context:
    config: ReplicaConfig
    membership: Membership
    signer: Signer
    out: Outbox
    clock: Clock
    metrics: dict[str, int]

    @property
    def quorums(self) -> Quorums:
        """The current set (the next height's): primaries, view changes, catch-up. Messages about one
        height count against `membership.at(height)`."""
        return self.membership.current
