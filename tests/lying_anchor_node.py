"""A validator in test mode that lies about anchors, for the anchoring process tests only.

`python -m tests.lying_anchor_node --home HOME` runs the node of HOME as `ledger node run` does, with its
anchoring service doing its honest work and then lying after each look: for every new head it attests, with
its own node key, a fake anchor of the block below (the true block hash but an Ethereum transaction that
never happened, which replaces its honest vote of that height) and a false root; and once, with its own
Ethereum key, it anchors a huge height (HUGE) on the contract. The switch lives here, in the tests,
and nowhere in the product: no configuration of a real node can turn it on. Consensus, storage and proofs
are the real ones.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import uvicorn

from ledger.anchor import service
from ledger.anchor.ethclient import Fees
from ledger.anchor.records import KIND, AnchorRecord
from ledger.api.server import create_app
from ledger.config import NodeConfig
from ledger.crypto import sha256

log = logging.getLogger("ledger.anchor.liar")
FAKE_TX = b"\x42" * 32  # the Ethereum transaction every fake vote names
HUGE = 2**64 - 2  # the height it anchors by hand
HUGE_ROOT = sha256(b"the lying node's huge height")


def lying(honest_step: Any) -> Any:
    async def step(self: service.AnchorService) -> None:
        await honest_step(self)
        settings, chain = self.settings, self.node.chain
        if settings is None or chain.height < 2 or getattr(self, "_lied_at", 0) == chain.height:
            return
        self._lied_at = chain.height  # type: ignore[attr-defined]
        height = chain.height - 1
        true_hash = self._block_hash(height)
        assert true_hash is not None
        for root in (true_hash, sha256(b"a false root %d" % height)):
            fake = AnchorRecord(height, root, settings.eth_chain_id, settings.contract, FAKE_TX, 1,
                                self.eth_address or settings.submitters[0])
            self.node.submit_system(KIND, fake)
        if not getattr(self, "_huge_sent", False) and self._client is not None:
            self._huge_sent = True  # type: ignore[attr-defined]
            client = self._client
            _, nonce = await self._call(client.nonces)
            fees: Fees = await self._call(client.suggested_fees)
            await self._call(client.send_anchor, HUGE, HUGE_ROOT, nonce, fees)
            log.warning("lying: anchored height %d with this validator's own Ethereum key", HUGE)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", required=True)
    args = parser.parse_args()
    service.AnchorService.step = lying(service.AnchorService.step)  # type: ignore[method-assign]
    config = NodeConfig.load(args.home)
    uvicorn.run(create_app(args.home), host=config.http.host, port=config.http.port, log_level="warning")


if __name__ == "__main__":
    main()
