"""What the anchoring service needs of the node it runs beside, and nothing more.

The service depends on this protocol, not on `ledger.node`, so the node and the service do not
import each other; `ledger.assembly` hands the node to the service.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from ledger.chaindb import ChainDB, ExecutedBlock
from ledger.crypto import SigningKey
from ledger.genesis import Genesis
from ledger.mempool import Admission, Outcome, Refusal


class HasView(Protocol):
    @property
    def view(self) -> int: ...


class AnchorNode(Protocol):
    """A running validator node, as the anchoring service sees it."""

    @property
    def chain(self) -> ChainDB:
        """The committed chain: head, state at the head, blocks, and the validator set of each height, in the
        order that designates the anchoring validator."""

    @property
    def replica(self) -> HasView:
        """Consensus; its current view rotates the designated anchoring validator."""

    @property
    def key(self) -> SigningKey:
        """The validator's key: signs `anchor.attest` and names this validator."""

    @property
    def genesis(self) -> Genesis:
        """The trust root (the validators at each height are `chain.validators_at`)."""

    def submit_system(self, kind: str, payload: Any) -> Admission:
        """Submit a transaction signed with the node key (the service's `anchor.attest` votes)."""

    async def wait_committed(self, tx_ids: Iterable[bytes], timeout: float) -> list[Outcome | Refusal | None]:
        """Wait until each tx commits; None for those still pending at the timeout."""

    def add_commit_listener(self, listener: Callable[[ExecutedBlock], None]) -> None:
        """Call `listener` with every committed block."""
