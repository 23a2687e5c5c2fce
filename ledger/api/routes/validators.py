"""The validator sets: the one in force for the next block, and those decided to take effect later."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ledger.api.deps import NodeDep
from ledger.codec import to_plain
from ledger.validators import ACTIVATION_DELAY, sets_from

router = APIRouter(tags=["validators"])


@router.get("/v1/validators")
async def validators(node: NodeDep) -> dict[str, Any]:
    """`sets`: the set that certifies the next block (`seq` 0 is genesis's), then each change decided since,
    with `active_from`, the first height it certifies. A change takes effect `activation_delay` blocks after
    the block that committed it. Each validator has `id`, `public_key`, and the `host` and `port` peers dial
    (empty for genesis validators: their nodes' configuration names them)."""
    head = node.chain.height
    sets = sets_from(node.chain.latest, head + 1, node.genesis)
    return {"height": head, "activation_delay": ACTIVATION_DELAY, "sets": [to_plain(s) for s in sets]}
