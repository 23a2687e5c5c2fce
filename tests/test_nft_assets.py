"""Asset tokens: mint, binding to identifiers, approvals, transfers, leases, locks, burns, provenance."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.chaindb import default_modules
from ledger.codec import encode
from ledger.crypto import SigningKey
from ledger.genesis import Genesis, GenesisMember, GenesisPrefix, GenesisValidator, genesis_state
from ledger.members import MemberRemove, lookup_sender
from ledger.nft.assets import (
    Asset,
    AssetApprove,
    AssetBurn,
    AssetLease,
    AssetLock,
    AssetMint,
    AssetSetOperator,
    AssetTransfer,
    AssetUnlock,
    get_asset,
    get_history,
    kind_index_prefix,
    owner_index_prefix,
    user_of,
)
from ledger.resolver.registry import IdRegister, PrefixCreate, ValueSpec, get_identifier
from ledger.state import Overlay, StateMachine, TxResult, get_nonce, nonce_key
from ledger.tx import make_tx

CHAIN = "nft-test"
T0 = 1_700_000_000_000
DAY = 86_400_000
ADMIN, ORG1, ORG2, ORG3 = (SigningKey.from_seed(s) for s in (b"admin", b"org1", b"org2", b"org3"))
HASH = hashlib.sha256(b"metadata").digest()


class DictView:
    def __init__(self, data: dict[bytes, bytes]) -> None:
        self.data = data

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)


class Ledger:
    """A state machine over in-memory state, one tx per 'block', with a controllable block time."""

    def __init__(self) -> None:
        genesis = Genesis(
            CHAIN, T0, (GenesisValidator("v0", SigningKey.from_seed(b"v").public_key),),
            members=(
                GenesisMember("admin", ADMIN.public_key, ("admin",)),
                GenesisMember("org1", ORG1.public_key, ("issuer", "registrar")),
                GenesisMember("org2", ORG2.public_key, ("issuer", "registrar")),
                GenesisMember("org3", ORG3.public_key, ()),
            ),
            prefixes=(GenesisPrefix("88.100.1", ORG1.id), GenesisPrefix("88.100.2", ORG2.id)),
        )
        self.state = Overlay(DictView(genesis_state(genesis)))
        self.machine = StateMachine(CHAIN, default_modules(genesis), lookup_sender)
        self.height = 0
        self.time = T0

    def send(self, key: SigningKey, kind: str, payload: Any, advance_ms: int = 1000) -> TxResult:
        self.height += 1
        self.time += advance_ms
        tx = make_tx(key, CHAIN, get_nonce(self.state, key.id) + 1, kind, payload)
        return self.machine.execute_tx(self.state, encode(tx), self.height, self.time)

    def ok(self, key: SigningKey, kind: str, payload: Any, advance_ms: int = 1000) -> TxResult:
        result = self.send(key, kind, payload, advance_ms)
        assert result.ok, (result.reason, result.message)
        return result

    def snapshot(self) -> dict[bytes, bytes | None]:
        return dict(self.state.changes)

    def refused(self, key: SigningKey, kind: str, payload: Any, reason: str, advance_ms: int = 1000) -> str:
        """Send a tx that must fail with `reason` and change nothing but the sender's nonce."""
        before = self.snapshot()
        result = self.send(key, kind, payload, advance_ms)
        assert (result.ok, result.reason) == (False, reason), result.message
        after = self.snapshot()
        changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
        assert changed <= {nonce_key(key.id)}
        return result.message

    def asset(self, token: str) -> Asset:
        asset = get_asset(self.state, token)
        assert asset is not None
        return asset


def mint(token: str, kind: str = "equipment", owner: str = "", identifier: str = "") -> AssetMint:
    return AssetMint(token, kind, f"https://meta.example/{token}.json", HASH, owner, identifier)


def index_owners(ledger: Ledger, token: str) -> list[str]:
    prefix = b"asset-owner/"
    return [k[len(prefix):].decode().rsplit("/", 1)[0] for k, v in ledger.state.changes.items()
            if v is not None and k.startswith(prefix) and k.endswith(b"/" + token.encode())]


@pytest.fixture
def ledger() -> Ledger:
    return Ledger()


# --- mint and binding ------------------------------------------------------------------------------


def test_mint_sets_owner_index_and_provenance(ledger: Ledger) -> None:
    result = ledger.ok(ORG1, "asset.mint", mint("EQ-1"))
    asset = ledger.asset("EQ-1")
    assert (asset.owner, asset.minter, asset.kind, asset.sha256, asset.events) == (ORG1.id, ORG1.id, "equipment",
                                                                                     HASH, 1)
    assert ledger.state.get(owner_index_prefix(ORG1.id) + b"EQ-1") is not None
    assert ledger.state.get(kind_index_prefix("equipment") + b"EQ-1") is not None
    [event] = get_history(ledger.state, "EQ-1")
    assert (event.event, event.actor, event.to_member, event.height, event.tx_id, event.timestamp) == (
        "mint", ORG1.id, ORG1.id, ledger.height, result.tx_id, ledger.time)


def test_mint_for_another_owner(ledger: Ledger) -> None:
    ledger.ok(ORG1, "asset.mint", mint("D-1", "data", owner=ORG2.id))
    assert ledger.asset("D-1").owner == ORG2.id


@pytest.mark.parametrize(
    ("key", "payload", "reason"),
    [
        (ORG3, mint("X"), "unauthorized"),  # no issuer role
        (ADMIN, mint("X"), "unauthorized"),
        (ORG1, mint("bad/id"), "invalid_value"),
        (ORG1, mint(""), "invalid_value"),
        (ORG1, mint("X", kind="car"), "invalid_value"),
        (ORG1, AssetMint("X", "data", "https://m", b"short", "", ""), "invalid_value"),
        (ORG1, AssetMint("X", "data", "", HASH, "", ""), "invalid_value"),
        (ORG1, mint("X", owner="nobody"), "not_found"),  # unknown member
        (ORG1, mint("X", kind="data", identifier="88.100.1/EQ-1"), "invalid_value"),  # only equipment binds
        (ORG1, mint("X", identifier="88.100.2/EQ-2"), "unauthorized"),  # someone else's identifier
        (ORG1, mint("X", identifier="88.100.1/NOPE"), "not_found"),  # unregistered identifier
        (ORG1, mint("X", identifier="77.1/EQ"), "not_found"),  # unknown prefix
    ],
)
def test_bad_mints_are_refused_and_change_nothing(ledger: Ledger, key: SigningKey, payload: AssetMint,
                                                   reason: str) -> None:
    ledger.ok(ORG1, "id.register", IdRegister("88.100.1/EQ-1", (ValueSpec(1, "URL", "https://t/1"),)))
    ledger.ok(ORG2, "id.register", IdRegister("88.100.2/EQ-2", (ValueSpec(1, "URL", "https://t/2"),)))
    ledger.refused(key, "asset.mint", payload, reason)


def test_duplicate_token_ids_are_refused_even_after_burn(ledger: Ledger) -> None:
    ledger.ok(ORG1, "asset.mint", mint("EQ-1"))
    assert "already exists" in ledger.refused(ORG2, "asset.mint", mint("EQ-1", "data"), "already_exists")
    ledger.ok(ORG1, "asset.burn", AssetBurn("EQ-1"))
    ledger.refused(ORG1, "asset.mint", mint("EQ-1"), "already_exists")


def test_binding_adds_nft_value_and_burn_shows_decommissioning(ledger: Ledger) -> None:
    handle = "88.100.1/EQ-2024-1"
    ledger.ok(ORG1, "id.register", IdRegister(handle, (ValueSpec(1, "URL", "https://t"), ValueSpec(2, "EMAIL", "a@b"))))
    ledger.ok(ORG1, "asset.mint", mint("EQ-1", identifier=handle))
    record = get_identifier(ledger.state, handle)
    assert record is not None
    assert [(v.index, v.type, v.value) for v in record.values][-1] == (3, "NFT", "EQ-1")
    assert (ledger.asset("EQ-1").identifier, ledger.asset("EQ-1").nft_index) == (handle, 3)
    # A second token cannot claim the same nameplate.
    ledger.refused(ORG1, "asset.mint", mint("EQ-2", identifier=handle), "already_exists")
    # The binding survives a transfer; the burn by the new owner marks the nameplate decommissioned.
    ledger.ok(ORG1, "asset.transfer", AssetTransfer("EQ-1", ORG2.id))
    ledger.ok(ORG2, "asset.burn", AssetBurn("EQ-1"))
    record = get_identifier(ledger.state, handle)
    assert record is not None
    last = record.values[-1]
    assert (last.index, last.type) == (3, "DESC") and "decommissioned: asset EQ-1" in last.value
    asset = ledger.asset("EQ-1")
    assert asset.burned and asset.owner == "" and index_owners(ledger, "EQ-1") == []
    assert ledger.state.get(kind_index_prefix("equipment") + b"EQ-1") is None
    assert [e.event for e in get_history(ledger.state, "EQ-1")] == ["mint", "transfer", "burn"]
    # The decommissioned nameplate can carry a new token.
    ledger.ok(ORG1, "asset.mint", mint("EQ-3", identifier=handle))


def test_binding_a_gs1_item_in_any_form_names_its_one_record(ledger: Ledger) -> None:
    ledger.ok(ADMIN, "prefix.create", PrefixCreate("gs1:9506000", ORG1.id))
    ledger.ok(ORG1, "id.register", IdRegister("/01/09506000134376/21/12345", (ValueSpec(1, "URL", "https://t"),)))
    key = "gs1/01/09506000134376/21/12345"
    # Another member's company prefix is still refused, whatever the form.
    ledger.refused(ORG2, "asset.mint", mint("EQ-0", identifier="(01)09506000134376(21)12345"), "unauthorized")
    ledger.ok(ORG1, "asset.mint", mint("EQ-1", identifier="https://id.gs1.org/01/09506000134376/21/12345"))
    record = get_identifier(ledger.state, key)
    assert record is not None and (record.values[-1].type, record.values[-1].value) == ("NFT", "EQ-1")
    assert ledger.asset("EQ-1").identifier == key  # the storage key, not the form given
    # Another form of the same item is the same nameplate.
    ledger.refused(ORG1, "asset.mint", mint("EQ-2", identifier="urn:epc:id:sgtin:9506000.013437.12345"),
                   "already_exists")
    # The burn finds the record through the stored key.
    ledger.ok(ORG1, "asset.burn", AssetBurn("EQ-1"))
    record = get_identifier(ledger.state, key)
    assert record is not None and "decommissioned: asset EQ-1" in record.values[-1].value


# --- transfers and approvals ----------------------------------------------------------------------


def test_transfer_by_owner_moves_index_and_records_history(ledger: Ledger) -> None:
    ledger.ok(ORG1, "asset.mint", mint("EQ-1"))
    ledger.ok(ORG1, "asset.transfer", AssetTransfer("EQ-1", ORG2.id))
    assert ledger.asset("EQ-1").owner == ORG2.id
    assert index_owners(ledger, "EQ-1") == [ORG2.id]
    history = get_history(ledger.state, "EQ-1")
    assert [(e.seq, e.event, e.from_member, e.to_member) for e in history] == [
        (1, "mint", "", ORG1.id), (2, "transfer", ORG1.id, ORG2.id)]


def test_transfer_refusals(ledger: Ledger) -> None:
    ledger.ok(ORG1, "asset.mint", mint("EQ-1"))
    assert "only the owner" in ledger.refused(ORG2, "asset.transfer", AssetTransfer("EQ-1", ORG2.id), "unauthorized")
    ledger.refused(ORG1, "asset.transfer", AssetTransfer("EQ-1", "nobody"), "not_found")
    ledger.refused(ORG1, "asset.transfer", AssetTransfer("EQ-1", ORG1.id), "invalid_value")
    ledger.refused(ORG1, "asset.transfer", AssetTransfer("NOPE", ORG2.id), "not_found")
    ledger.ok(ORG1, "asset.lock", AssetLock("EQ-1"))
    ledger.refused(ORG1, "asset.transfer", AssetTransfer("EQ-1", ORG2.id), "locked")
    ledger.ok(ORG1, "asset.unlock", AssetUnlock("EQ-1"))
    ledger.ok(ORG1, "asset.transfer", AssetTransfer("EQ-1", ORG2.id))


def test_transfer_to_removed_member_is_refused(ledger: Ledger) -> None:
    ledger.ok(ORG1, "asset.mint", mint("EQ-1"))
    ledger.ok(ADMIN, "member.remove", MemberRemove(ORG3.id))
    ledger.refused(ORG1, "asset.transfer", AssetTransfer("EQ-1", ORG3.id), "not_found")


def test_approved_member_transfers_once_and_approval_is_cleared(ledger: Ledger) -> None:
    ledger.ok(ORG1, "asset.mint", mint("EQ-1"))
    ledger.refused(ORG2, "asset.approve", AssetApprove("EQ-1", ORG2.id), "unauthorized")
    ledger.ok(ORG1, "asset.approve", AssetApprove("EQ-1", ORG2.id))
    ledger.ok(ORG2, "asset.transfer", AssetTransfer("EQ-1", ORG3.id))
    asset = ledger.asset("EQ-1")
    assert (asset.owner, asset.approved) == (ORG3.id, "")
    ledger.refused(ORG2, "asset.transfer", AssetTransfer("EQ-1", ORG2.id), "unauthorized")


def test_operator_acts_for_all_tokens_of_the_owner_until_withdrawn(ledger: Ledger) -> None:
    ledger.ok(ORG1, "asset.mint", mint("A"))
    ledger.ok(ORG1, "asset.mint", mint("B"))
    ledger.refused(ORG1, "asset.set_operator", AssetSetOperator(ORG1.id, True), "invalid_value")
    ledger.refused(ORG1, "asset.set_operator", AssetSetOperator("nobody", True), "not_found")
    ledger.ok(ORG1, "asset.set_operator", AssetSetOperator(ORG2.id, True))
    ledger.ok(ORG2, "asset.approve", AssetApprove("A", ORG3.id))
    ledger.ok(ORG2, "asset.transfer", AssetTransfer("B", ORG3.id))
    ledger.ok(ORG1, "asset.set_operator", AssetSetOperator(ORG2.id, False))
    ledger.refused(ORG2, "asset.transfer", AssetTransfer("A", ORG2.id), "unauthorized")
    # Approved members and operators do not lock.
    ledger.refused(ORG3, "asset.lock", AssetLock("A"), "unauthorized")


# --- lease and lock ----------------------------------------------------------------------------------


def test_lease_expires_and_is_cleared_on_transfer(ledger: Ledger) -> None:
    ledger.ok(ORG1, "asset.mint", mint("EQ-1"))
    ledger.refused(ORG1, "asset.lease", AssetLease("EQ-1", ORG2.id, T0), "expired")
    ledger.refused(ORG2, "asset.lease", AssetLease("EQ-1", ORG2.id, T0 + DAY), "unauthorized")
    ledger.refused(ORG1, "asset.lease", AssetLease("EQ-1", "nobody", T0 + DAY), "not_found")
    ledger.ok(ORG1, "asset.lease", AssetLease("EQ-1", ORG2.id, T0 + DAY))
    asset = ledger.asset("EQ-1")
    assert user_of(asset, T0 + DAY - 1) == ORG2.id
    assert user_of(asset, T0 + DAY) == ""  # nobody once expired
    ledger.ok(ORG1, "asset.transfer", AssetTransfer("EQ-1", ORG3.id))
    assert user_of(ledger.asset("EQ-1"), T0 + 10) == ""


def test_lock_rules(ledger: Ledger) -> None:
    ledger.ok(ORG1, "asset.mint", mint("EQ-1"))
    ledger.refused(ORG1, "asset.unlock", AssetUnlock("EQ-1"), "invalid_value")
    ledger.ok(ORG1, "asset.lock", AssetLock("EQ-1"))
    ledger.refused(ORG1, "asset.lock", AssetLock("EQ-1"), "locked")
    ledger.refused(ORG2, "asset.unlock", AssetUnlock("EQ-1"), "unauthorized")
    ledger.ok(ORG1, "asset.approve", AssetApprove("EQ-1", ORG2.id))
    ledger.refused(ORG2, "asset.transfer", AssetTransfer("EQ-1", ORG2.id), "locked")
    # A locked (soulbound) token can still be decommissioned by its owner.
    ledger.ok(ORG1, "asset.burn", AssetBurn("EQ-1"))
    ledger.refused(ORG1, "asset.unlock", AssetUnlock("EQ-1"), "inactive")
    ledger.refused(ORG1, "asset.transfer", AssetTransfer("EQ-1", ORG2.id), "inactive")
    events = [e.event for e in get_history(ledger.state, "EQ-1")]
    assert events == ["mint", "lock", "approve", "burn"]


def test_burn_by_non_owner_is_refused(ledger: Ledger) -> None:
    ledger.ok(ORG1, "asset.mint", mint("EQ-1"))
    ledger.refused(ORG2, "asset.burn", AssetBurn("EQ-1"), "unauthorized")


# --- properties ------------------------------------------------------------------------------------

KEYS = [ORG1, ORG2, ORG3]
TOKENS = ["T0", "T1", "T2"]

op_st = st.one_of(
    st.tuples(st.just("mint"), st.integers(0, 2), st.integers(0, 2), st.integers(0, 2)),
    st.tuples(st.just("transfer"), st.integers(0, 2), st.integers(0, 2), st.integers(0, 2)),
    st.tuples(st.just("approve"), st.integers(0, 2), st.integers(0, 2), st.integers(0, 2)),
    st.tuples(st.just("operator"), st.integers(0, 2), st.integers(0, 2), st.booleans()),
    st.tuples(st.just("lock"), st.integers(0, 2), st.integers(0, 2), st.booleans()),
    st.tuples(st.just("burn"), st.integers(0, 2), st.integers(0, 2), st.integers(0, 2)),
)


def _payload(op: tuple[Any, ...]) -> tuple[str, Any]:
    name, _, token, arg = op
    t = TOKENS[token]
    if name == "mint":
        return "asset.mint", mint(t, owner=KEYS[arg].id)
    if name == "transfer":
        return "asset.transfer", AssetTransfer(t, KEYS[arg].id)
    if name == "approve":
        return "asset.approve", AssetApprove(t, KEYS[arg].id)
    if name == "operator":
        return "asset.set_operator", AssetSetOperator(KEYS[token].id, bool(arg))
    if name == "lock":
        return ("asset.lock", AssetLock(t)) if arg else ("asset.unlock", AssetUnlock(t))
    return "asset.burn", AssetBurn(t)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op_st, min_size=1, max_size=30))
def test_every_live_token_has_exactly_one_owner(ops: list[tuple[Any, ...]]) -> None:
    ledger = Ledger()
    for op in ops:
        kind, payload = _payload(op)
        key = KEYS[op[1]]
        before = ledger.snapshot()
        result = ledger.send(key, kind, payload)
        if not result.ok:  # a refused tx changes nothing but the sender's nonce
            after = ledger.snapshot()
            assert {k for k in set(before) | set(after) if before.get(k) != after.get(k)} <= {nonce_key(key.id)}
        for t in TOKENS:
            asset = get_asset(ledger.state, t)
            if asset is None:
                assert index_owners(ledger, t) == []
                continue
            history = get_history(ledger.state, t)
            assert [e.seq for e in history] == list(range(1, asset.events + 1))
            if asset.burned:
                assert asset.owner == "" and index_owners(ledger, t) == []
                assert history[-1].event == "burn"
            else:
                assert asset.owner in {k.id for k in KEYS}
                assert index_owners(ledger, t) == [asset.owner]
                # The owner is the recipient of the last mint/transfer event.
                moves = [e for e in history if e.event in ("mint", "transfer")]
                assert moves[-1].to_member == asset.owner
