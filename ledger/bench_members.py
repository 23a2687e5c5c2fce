"""The members a benchmark sends from: fresh keys, each a member with a prefix of its own, added by the
devnet's admin in a few requests (one at a time, so in nonce order)."""

from __future__ import annotations

from typing import Any

from devnet.record import DevnetError
from ledger.client import LedgerClient, Signer
from ledger.crypto import SigningKey
from ledger.members import MemberAdd
from ledger.resolver.registry import PrefixCreate

ADMIN_TXS_PER_REQUEST = 500


def add_bench_members(net: dict[str, Any], count: int, name: str, prefix: str,
                      roles: tuple[str, ...]) -> list[SigningKey]:
    """`count` new members named `{name}{i}`, holding `roles` and owning prefix `{prefix}.{i}`, on the devnet
    `net` (its launcher record); their keys. DevnetError if the admin's transactions are refused."""
    client = LedgerClient(net["nodes"][0]["http"], timeout=120)
    try:
        admin = Signer(SigningKey.load(net["keys"]["admin"]), client)
        keys = [SigningKey.generate() for _ in range(count)]
        txs = []
        for i, key in enumerate(keys):
            txs.append(admin.sign("member.add", MemberAdd(f"{name}{i}", key.public_key, roles)))
            txs.append(admin.sign("prefix.create", PrefixCreate(f"{prefix}.{i}", key.id)))
        for j in range(0, len(txs), ADMIN_TXS_PER_REQUEST):
            results = client.submit(txs[j : j + ADMIN_TXS_PER_REQUEST], wait=True, timeout=90)
            bad = [r for r in results if not (r.get("status") == "committed" and r.get("ok"))]
            if bad:
                raise DevnetError(f"adding the benchmark's members {name}0..{name}{count - 1} failed: {bad[0]}")
        return keys
    finally:
        client.close()
