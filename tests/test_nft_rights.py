"""Data-rights licences: the tree per token, purposes, time bounds, revocation, owner changes, `check`."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.members import MemberRemove
from ledger.nft.assets import AssetBurn, AssetTransfer
from ledger.nft.rights import (
    LicenceGrant,
    LicenceRevoke,
    check,
    compute_licence_id,
    get_licence,
    inactive_reason,
    is_licence_active,
    licences_of,
)
from tests.test_nft_assets import ADMIN, DAY, ORG1, ORG2, ORG3, T0, Ledger, mint

TERMS = hashlib.sha256(b"terms").digest()


def grant(token: str, holder: str, purposes: tuple[str, ...], until: int, parent: str = "",
          sublicensable: bool = False, valid_from: int = 0) -> LicenceGrant:
    return LicenceGrant(token, parent, holder, purposes, valid_from, until, sublicensable,
                        "https://terms.example/1", TERMS)


def granted(ledger: Ledger, key: Any, payload: LicenceGrant) -> str:
    return compute_licence_id(ledger.ok(key, "licence.grant", payload).tx_id)


@pytest.fixture
def ledger() -> Ledger:
    lg = Ledger()
    lg.ok(ORG2, "asset.mint", mint("DATA-1", "data"))
    return lg


def test_root_grant_and_check(ledger: Ledger) -> None:
    until = T0 + 30 * DAY
    lid = granted(ledger, ORG2, grant("DATA-1", ORG3.id, ("analytics",), until, sublicensable=True))
    lic = get_licence(ledger.state, lid)
    assert lic is not None
    assert (lic.holder, lic.grantor, lic.purposes, lic.valid_until, lic.sublicensable, lic.terms_hash) == (
        ORG3.id, ORG2.id, ("analytics",), until, True, TERMS)
    assert lic.valid_from == ledger.time  # 0 means block time
    now = ledger.time
    assert check(ledger.state, "DATA-1", ORG3.id, "analytics", now) == check(ledger.state, "DATA-1", ORG3.id,
                                                                              "analytics", until - 1)
    d = check(ledger.state, "DATA-1", ORG3.id, "analytics", now)
    assert (d.allowed, d.reason, d.licence_id) == (True, "allowed", lid)
    assert check(ledger.state, "DATA-1", ORG3.id, "training", now).reason == "purpose_not_granted"
    assert check(ledger.state, "DATA-1", ORG3.id, "analytics", until).reason == "expired"
    assert check(ledger.state, "DATA-1", ORG3.id, "analytics", now - 10).reason == "not_yet_valid"
    assert check(ledger.state, "DATA-1", ORG1.id, "analytics", now).reason == "no_licence"
    assert check(ledger.state, "NOPE", ORG3.id, "analytics", now).reason == "unknown_token"
    assert check(ledger.state, "DATA-1", "nobody", "analytics", now).reason == "holder_not_member"


@pytest.mark.parametrize(
    ("key", "payload", "reason"),
    [
        (ORG1, grant("DATA-1", ORG3.id, ("a",), T0 + DAY), "unauthorized"),  # someone else's token
        (ORG2, grant("NOPE", ORG3.id, ("a",), T0 + DAY), "not_found"),
        (ORG2, grant("DATA-1", "nobody", ("a",), T0 + DAY), "not_found"),  # unknown member
        (ORG2, grant("DATA-1", ORG3.id, ("a",), T0 - 1, valid_from=T0 - 10), "expired"),  # in the past
        (ORG2, grant("DATA-1", ORG3.id, ("a",), T0 + DAY, valid_from=T0 + 2 * DAY), "invalid_value"),  # inverted
        (ORG2, grant("DATA-1", ORG3.id, ("a",), T0 + DAY, valid_from=T0 + DAY), "invalid_value"),  # empty
        (ORG2, grant("DATA-1", ORG3.id, (), T0 + DAY), "invalid_value"),
        (ORG2, grant("DATA-1", ORG3.id, ("two words",), T0 + DAY), "invalid_value"),
        (ORG2, LicenceGrant("DATA-1", "", ORG3.id, ("a",), 0, T0 + DAY, False, "u", b"x"), "invalid_value"),
        (ORG2, grant("DATA-1", ORG3.id, ("a",), T0 + DAY, parent="00" * 32), "not_found"),
    ],
)
def test_bad_grants_are_refused_and_change_nothing(ledger: Ledger, key: Any, payload: LicenceGrant,
                                                   reason: str) -> None:
    ledger.refused(key, "licence.grant", payload, reason)


def test_grant_on_a_burned_token_is_refused(ledger: Ledger) -> None:
    lid = granted(ledger, ORG2, grant("DATA-1", ORG3.id, ("a",), T0 + DAY))
    ledger.ok(ORG2, "asset.burn", AssetBurn("DATA-1"))
    ledger.refused(ORG2, "licence.grant", grant("DATA-1", ORG3.id, ("a",), T0 + DAY), "inactive")
    assert check(ledger.state, "DATA-1", ORG3.id, "a", ledger.time).reason == "token_burned"
    assert get_licence(ledger.state, lid) is not None


def test_sublicence_rules(ledger: Ledger) -> None:
    until = T0 + 30 * DAY
    root = granted(ledger, ORG2, grant("DATA-1", ORG3.id, ("analytics", "training"), until, sublicensable=True))
    plain = granted(ledger, ORG2, grant("DATA-1", ORG1.id, ("analytics",), until))
    # Only the parent's holder sublicenses, only from a sublicensable parent.
    ledger.refused(ORG2, "licence.grant", grant("DATA-1", ORG1.id, ("analytics",), until, root), "unauthorized")
    ledger.refused(ORG1, "licence.grant", grant("DATA-1", ORG3.id, ("analytics",), until, plain), "unauthorized")
    # A sublicence wider or longer than its parent.
    msg = ledger.refused(ORG3, "licence.grant", grant("DATA-1", ORG1.id, ("analytics", "resale"), until, root),
                         "exceeds_parent")
    assert "resale" in msg
    ledger.refused(ORG3, "licence.grant", grant("DATA-1", ORG1.id, ("analytics",), until + 1, root), "exceeds_parent")
    ledger.refused(ORG3, "licence.grant", grant("DATA-1", ORG1.id, ("analytics",), until, root, valid_from=T0 - 5),
                   "exceeds_parent")
    # The parent must licence the same token.
    ledger.ok(ORG2, "asset.mint", mint("DATA-2", "data"))
    ledger.refused(ORG3, "licence.grant", grant("DATA-2", ORG1.id, ("analytics",), until, root), "invalid_value")
    child = granted(ledger, ORG3, grant("DATA-1", ORG1.id, ("analytics",), until, root, sublicensable=True))
    lic = get_licence(ledger.state, child)
    assert lic is not None and (lic.parent, lic.depth, lic.revoker) == (root, 1, ORG3.id)
    assert check(ledger.state, "DATA-1", ORG1.id, "analytics", ledger.time).allowed
    # Revoking the parent denies the whole subtree and refuses new sublicences under it.
    ledger.ok(ORG2, "licence.revoke", LicenceRevoke(root))
    assert check(ledger.state, "DATA-1", ORG3.id, "analytics", ledger.time).reason == "revoked"
    assert inactive_reason(ledger.state, lic, ledger.time) == "ancestor_revoked"
    ledger.refused(ORG1, "licence.grant", grant("DATA-1", ORG2.id, ("analytics",), until, child), "inactive")
    # ORG1's own root licence is unaffected and now decides.
    d = check(ledger.state, "DATA-1", ORG1.id, "analytics", ledger.time)
    assert (d.allowed, d.licence_id) == (True, plain)
    assert [x.id for x in licences_of(ledger.state, "DATA-1", ORG1.id)] == [plain, child]
    ledger.ok(ORG2, "licence.revoke", LicenceRevoke(plain))
    d = check(ledger.state, "DATA-1", ORG1.id, "analytics", ledger.time)
    assert (d.allowed, d.reason, d.licence_id) == (False, "revoked", plain)


def test_plain_licence_still_allows_when_a_sibling_is_revoked(ledger: Ledger) -> None:
    until = T0 + DAY
    a = granted(ledger, ORG2, grant("DATA-1", ORG3.id, ("x",), until))
    granted(ledger, ORG2, grant("DATA-1", ORG3.id, ("x",), until))
    ledger.ok(ORG2, "licence.revoke", LicenceRevoke(a))
    assert check(ledger.state, "DATA-1", ORG3.id, "x", ledger.time).allowed


def test_expired_parent_refuses_new_sublicences(ledger: Ledger) -> None:
    root = granted(ledger, ORG2, grant("DATA-1", ORG3.id, ("x",), T0 + DAY, sublicensable=True))
    ledger.refused(ORG3, "licence.grant", grant("DATA-1", ORG1.id, ("x",), T0 + 5 * DAY, root), "inactive",
                   advance_ms=2 * DAY)
    ledger.refused(ORG3, "licence.grant", grant("DATA-1", ORG1.id, ("x",), T0 + DAY, root), "expired")
    assert check(ledger.state, "DATA-1", ORG3.id, "x", ledger.time).reason == "expired"


def test_revoke_rules(ledger: Ledger) -> None:
    until = T0 + DAY
    root = granted(ledger, ORG2, grant("DATA-1", ORG3.id, ("x",), until, sublicensable=True))
    child = granted(ledger, ORG3, grant("DATA-1", ORG1.id, ("x",), until, root))
    ledger.refused(ORG1, "licence.revoke", LicenceRevoke(root), "unauthorized")  # the holder does not revoke
    ledger.refused(ORG3, "licence.revoke", LicenceRevoke(root), "unauthorized")
    ledger.refused(ORG2, "licence.revoke", LicenceRevoke("00" * 32), "not_found")
    ledger.ok(ORG3, "licence.revoke", LicenceRevoke(child))  # the grantor of a sublicence revokes it
    lic = get_licence(ledger.state, child)
    assert lic is not None and (lic.revoked, lic.revoked_by, lic.revoked_height) == (True, ORG3.id, ledger.height)
    ledger.refused(ORG2, "licence.revoke", LicenceRevoke(child), "inactive")  # once


def test_owner_change_keeps_licences_and_moves_control(ledger: Ledger) -> None:
    until = T0 + DAY
    root = granted(ledger, ORG2, grant("DATA-1", ORG3.id, ("x",), until, sublicensable=True))
    child = granted(ledger, ORG3, grant("DATA-1", ADMIN.id, ("x",), until, root))
    ledger.ok(ORG2, "asset.transfer", AssetTransfer("DATA-1", ORG1.id))
    # Licences persist: holders keep their rights.
    assert check(ledger.state, "DATA-1", ORG3.id, "x", ledger.time).allowed
    assert check(ledger.state, "DATA-1", ADMIN.id, "x", ledger.time).allowed
    # The former owner no longer grants roots nor revokes the roots it granted.
    ledger.refused(ORG2, "licence.grant", grant("DATA-1", ORG2.id, ("x",), until), "unauthorized")
    ledger.refused(ORG2, "licence.revoke", LicenceRevoke(root), "unauthorized")
    # The new owner grants roots and revokes any licence on the token.
    granted(ledger, ORG1, grant("DATA-1", ORG2.id, ("x",), until))
    ledger.ok(ORG1, "licence.revoke", LicenceRevoke(child))
    ledger.ok(ORG1, "licence.revoke", LicenceRevoke(root))
    assert not check(ledger.state, "DATA-1", ORG3.id, "x", ledger.time).allowed
    assert check(ledger.state, "DATA-1", ORG2.id, "x", ledger.time).allowed


def test_removed_member_is_denied(ledger: Ledger) -> None:
    granted(ledger, ORG2, grant("DATA-1", ORG3.id, ("x",), T0 + DAY))
    ledger.ok(ADMIN, "member.remove", MemberRemove(ORG3.id))
    assert check(ledger.state, "DATA-1", ORG3.id, "x", ledger.time).reason == "holder_not_member"


# --- properties ------------------------------------------------------------------------------------

MEMBERS = [ORG1, ORG2, ORG3]
PURPOSES = ("a", "b", "c")

grant_st = st.tuples(
    st.just("grant"), st.integers(0, 2), st.integers(0, 2), st.integers(-1, 7),
    st.sets(st.sampled_from(PURPOSES), min_size=1), st.integers(-2, 40), st.booleans(),
)
revoke_st = st.tuples(st.just("revoke"), st.integers(0, 2), st.integers(0, 7))
transfer_st = st.tuples(st.just("transfer"), st.integers(0, 2), st.integers(0, 2))
wait_st = st.tuples(st.just("wait"), st.integers(1, 20))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(grant_st, revoke_st, transfer_st, wait_st), min_size=1, max_size=30))
def test_licence_tree_invariants(ops: list[tuple[Any, ...]]) -> None:
    ledger = Ledger()
    ledger.ok(ORG2, "asset.mint", mint("DATA-1", "data"))
    ids: list[str] = []
    for op in ops:
        if op[0] == "wait":
            ledger.time += op[1] * DAY // 4
            continue
        key = MEMBERS[op[1]]
        if op[0] == "grant":
            _, _, holder, parent, purposes, days, sub = op
            parent_id = ids[parent] if 0 <= parent < len(ids) else ""
            payload = grant("DATA-1", MEMBERS[holder].id, tuple(sorted(purposes)), ledger.time + days * DAY // 4,
                            parent_id, sub)
            result = ledger.send(key, "licence.grant", payload)
            if result.ok:
                ids.append(compute_licence_id(result.tx_id))
        elif op[0] == "revoke" and op[2] < len(ids):
            ledger.send(key, "licence.revoke", LicenceRevoke(ids[op[2]]))
        elif op[0] == "transfer":
            ledger.send(key, "asset.transfer", AssetTransfer("DATA-1", MEMBERS[op[2]].id))
    licences = {i: get_licence(ledger.state, i) for i in ids}
    for lic in licences.values():
        assert lic is not None
        if lic.parent:
            parent = licences[lic.parent]
            assert parent is not None
            # A child never outlives, starts before or exceeds its parent.
            assert lic.valid_until <= parent.valid_until and lic.valid_from >= parent.valid_from
            assert set(lic.purposes) <= set(parent.purposes)
            assert parent.sublicensable and lic.grantor == parent.holder
        # A revoked licence, or one under a revoked ancestor, never checks as allowed through it.
        chain = [lic]
        while chain[-1].parent:
            nxt = licences[chain[-1].parent]
            assert nxt is not None
            chain.append(nxt)
        for t in (ledger.time - DAY, ledger.time, ledger.time + DAY, ledger.time + 10 * DAY):
            if any(x.revoked for x in chain) or not all(x.valid_from <= t < x.valid_until for x in chain):
                assert not is_licence_active(ledger.state, lic, t)
            for purpose in PURPOSES:
                d = check(ledger.state, "DATA-1", lic.holder, purpose, t)
                if d.allowed:
                    deciding = licences[d.licence_id]
                    assert deciding is not None and purpose in deciding.purposes
                    assert is_licence_active(ledger.state, deciding, t)
                    assert not deciding.revoked
