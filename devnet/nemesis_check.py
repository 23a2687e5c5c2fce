"""The nemesis's final checks: one chain on every validator, and every acknowledged transaction in
it exactly once and held by every validator's state.

- One chain: every validator lists the same block hash at every height (`GET /v1/blocks` pages),
  up to the same head.
- Exactly once: walking the chain block by block (`GET /v1/blocks/{h}`: tx ids and outcomes), of
  the transactions a client signed for an acknowledged identifier (several when it was signed again
  after a refusal or a manual retry) exactly one committed successfully, and no tx id is in two blocks.
- Held: every validator resolves every acknowledged identifier (`POST /v1/resolve`, 1,000 a request).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

from devnet.nemesis_load import Batch

RESOLVE_PAGE = 1000
LIST_PAGE = 100


@dataclass
class Verdict:
    height: int = -1
    head_hash: str = ""
    chains_agree: bool = False
    txs_in_chain: int = 0
    acknowledged: int = 0  # identifiers acknowledged to clients (one transaction each)
    lost: list[str] = field(default_factory=list)  # acknowledged, no successful tx in the chain
    doubled: list[str] = field(default_factory=list)  # acknowledged, more than one successful tx
    repeated_tx_ids: int = 0  # tx ids found in more than one block (the later copies failed)
    missing_on: dict[int, int] = field(default_factory=dict)  # node -> acknowledged identifiers it lacks
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        # A tx id in a second block would fail there on its used nonce, but no honest primary proposes
        # a tx that a block carries already: any repeat is a fault.
        return (self.chains_agree and not self.lost and not self.doubled and not self.repeated_tx_ids
                and not any(self.missing_on.values()) and not self.problems)


def block_hashes(url: str) -> list[str]:
    """Every block hash of a node's chain, by height from 0."""
    out: dict[int, str] = {}
    with httpx.Client(base_url=url, timeout=30) as http:
        before: int | None = None
        while True:
            page = http.get("/v1/blocks", params={"limit": LIST_PAGE, **({} if before is None else
                                                                           {"before": before})}).json()
            out.update((b["height"], b["hash"]) for b in page["blocks"])
            before = page["next_before"]
            if before is None:
                break
    return [out[h] for h in range(len(out))]


def committed_txs(url: str, height: int) -> tuple[Counter[str], int]:
    """Successful tx ids in blocks 1..height (with their counts), and how many txs the chain holds."""
    ok: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    with httpx.Client(base_url=url, timeout=30) as http:
        for h in range(1, height + 1):
            for tx in http.get(f"/v1/blocks/{h}").json()["txs"]:
                seen[tx["tx_id"]] += 1
                if tx.get("ok"):
                    ok[tx["tx_id"]] += 1
    return ok, sum(seen.values()) - len(seen)  # repeats: a tx id in more than one block


def unresolved(url: str, identifiers: list[str]) -> int:
    missing = 0
    with httpx.Client(base_url=url, timeout=60) as http:
        for start in range(0, len(identifiers), RESOLVE_PAGE):
            page = identifiers[start:start + RESOLVE_PAGE]
            while (r := http.post("/v1/resolve", json=page)).status_code == 429:
                time.sleep(float(r.headers.get("retry-after", "1")))  # the read budget: wait as told
            results = r.json()["results"]
            missing += sum(1 for r in results if r.get("record") is None)
    return missing


def check(urls: list[str], batches: list[Batch]) -> Verdict:
    v = Verdict()
    chains = [block_hashes(u) for u in urls]
    v.chains_agree = all(c == chains[0] for c in chains)
    if not v.chains_agree:
        v.problems.append("validators hold different chains: heights " + ", ".join(str(len(c) - 1) for c in chains))
    v.height, v.head_hash = len(chains[0]) - 1, chains[0][-1]
    ok, v.repeated_tx_ids = committed_txs(urls[0], v.height)
    v.txs_in_chain = sum(ok.values())
    acked = {h: ids for b in batches for h, ids in b.acked.items()}
    v.acknowledged = len(acked)
    for handle, ids in acked.items():
        count = sum(ok[i] for i in set(ids))
        if count == 0:
            v.lost.append(handle)
        elif count > 1:
            v.doubled.append(handle)
    for i, url in enumerate(urls):
        v.missing_on[i] = unresolved(url, sorted(acked))
    return v
