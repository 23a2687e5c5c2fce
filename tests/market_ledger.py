"""An in-memory ledger for the market tests: the real state machine and modules, one block per transaction
(block hooks included, so offers expire as on a node), a block time the test moves."""

from __future__ import annotations

import hashlib
from typing import Any

from ledger.chaindb import default_modules
from ledger.codec import encode
from ledger.crypto import SigningKey
from ledger.genesis import Genesis, GenesisMember, GenesisValidator, genesis_state
from ledger.governance import GovernanceSettings
from ledger.market.credits import CreditBalance, get_balance, get_supply
from ledger.members import lookup_sender
from ledger.nft.assets import Asset, AssetMint, get_asset
from ledger.state import Overlay, StateMachine, TxResult, get_nonce, nonce_key
from ledger.tx import make_tx

CHAIN = "market-test"
T0 = 1_700_000_000_000
HOUR = 3_600_000
DAY = 24 * HOUR
TREASURY, ADMIN2, ORG1, ORG2, ORG3 = (SigningKey.from_seed(s) for s in (b"treasury", b"admin2", b"org1", b"org2",
                                                                          b"org3"))
MEMBERS = (ORG1, ORG2, ORG3)
HASH = hashlib.sha256(b"metadata").digest()


class DictView:
    def __init__(self, data: dict[bytes, bytes]) -> None:
        self.data = data

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)


class MarketLedger:
    def __init__(self, approvals: int = 1) -> None:
        genesis = Genesis(
            CHAIN, T0, (GenesisValidator("v0", SigningKey.from_seed(b"v").public_key),),
            members=(
                GenesisMember("admin", TREASURY.public_key, ("admin", "appraiser", "treasury")),
                GenesisMember("admin2", ADMIN2.public_key, ("admin",)),
                GenesisMember("org1", ORG1.public_key, ("issuer", "registrar")),
                GenesisMember("org2", ORG2.public_key, ("issuer",)),
                GenesisMember("org3", ORG3.public_key, ()),
            ),
            prefixes=(),
            governance=GovernanceSettings(approvals, 7 * DAY) if approvals > 1 else None,
        )
        self.state = Overlay(DictView(genesis_state(genesis)))
        self.machine = StateMachine(CHAIN, default_modules(genesis), lookup_sender)
        self.height = 0
        self.time = T0

    def advance(self, ms: int) -> None:
        """An empty block `ms` later (its hooks run)."""
        self.height += 1
        self.time += ms
        self.machine.execute_block(self.state, [], self.height, self.time, prev_hash=bytes(32))

    def send(self, key: SigningKey, kind: str, payload: Any, advance_ms: int = 1000) -> TxResult:
        self.height += 1
        self.time += advance_ms
        tx = make_tx(key, CHAIN, get_nonce(self.state, key.id) + 1, kind, payload)
        [result] = self.machine.execute_block(self.state, [encode(tx)], self.height, self.time, prev_hash=bytes(32))
        return result

    def ok(self, key: SigningKey, kind: str, payload: Any, advance_ms: int = 1000) -> TxResult:
        result = self.send(key, kind, payload, advance_ms)
        assert result.ok, (result.reason, result.message)
        return result

    def refused(self, key: SigningKey, kind: str, payload: Any, reason: str) -> str:
        """Send a tx that must fail with `reason` and change nothing but the sender's nonce."""
        before = dict(self.state.changes)
        result = self.send(key, kind, payload, advance_ms=0)  # same block time: no hook has new work
        assert (result.ok, result.reason) == (False, reason), result.message
        after = dict(self.state.changes)
        changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
        assert changed <= {nonce_key(key.id)}, changed
        return result.message

    def balance(self, key: SigningKey) -> CreditBalance:
        return get_balance(self.state, key.id)

    def outstanding(self) -> int:
        return get_supply(self.state).outstanding

    def asset(self, token: str) -> Asset:
        asset = get_asset(self.state, token)
        assert asset is not None
        return asset


def mint(token: str, owner: str = "", kind: str = "data") -> AssetMint:
    return AssetMint(token, kind, f"https://meta.example/{token}.json", HASH, owner, "")
