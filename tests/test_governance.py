"""M-of-N governance in the state machine: proposals, approvals, rejections, expiry, the admin floor.

Ledger-level, in-process, over a MemoryStore (the `Chain` of test_chain_state: real blocks, certificates
and state roots), with genesis files that set a threshold."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.chaindb import ChainDB, ExecutedBlock
from ledger.codec import encode
from ledger.crypto import SigningKey
from ledger.genesis import (
    Genesis,
    GenesisMember,
    GenesisValidator,
    InvalidGenesis,
    check_genesis,
    load_genesis,
    save_genesis,
)
from ledger.governance import (
    EXECUTED,
    EXPIRED,
    OPEN,
    REJECTED,
    GovernanceSettings,
    Proposal,
    ProposalVote,
    compute_proposal_id,
    get_proposal,
    get_settings,
    proposal_count,
    proposal_id_at,
    status_at,
)
from ledger.members import MemberAdd, MemberRemove, MemberSetRoles, active_admins, get_member
from ledger.resolver.registry import PrefixCreate, get_prefix
from ledger.state import VerifiedCache
from ledger.store import MemoryStore
from ledger.tx import compute_tx_id
from tests.test_chain_state import ADMIN, CHAIN, NEWCOMER, ORG1, ORG2, T0, V0, Chain, make_genesis

ADMINS = [SigningKey.from_seed(f"gov-admin-{i}".encode()) for i in range(5)]
A1, A2, A3, A4, A5 = ADMINS
HOUR = 3600 * 1000
EXPIRY = 24 * HOUR


def gov_genesis(admins: int = 3, approvals: int = 2, expiry_ms: int = EXPIRY) -> Genesis:
    return Genesis(
        CHAIN, T0, validators=(GenesisValidator("v0", V0.public_key),),
        members=(
            *(GenesisMember(f"admin{i + 1}", k.public_key, ("admin",)) for i, k in enumerate(ADMINS[:admins])),
            GenesisMember("org1", ORG1.public_key, ("registrar",)),
            GenesisMember("org2", ORG2.public_key, ()),
        ),
        prefixes=(),
        governance=GovernanceSettings(approvals, expiry_ms),
    )


class GovChain(Chain):
    """A Chain whose block time the test moves: each block is `step` ms after the previous one."""

    def __init__(self, genesis: Genesis) -> None:
        super().__init__(genesis)
        self.step = 1000

    def build(self, raws: Sequence[bytes]) -> ExecutedBlock:
        return self.db.build_block(list(raws), view=0, timestamp=self.db.head.timestamp + self.step, proposer=V0.id)

    def act(self, key: SigningKey, kind: str, payload: Any) -> tuple[str, str]:
        """Send one tx in its own block: (reason, the proposal id it would make)."""
        raw = self.tx(key, kind, payload)
        return self.run(raw)[0], compute_proposal_id(compute_tx_id(raw))

    def approve(self, key: SigningKey, proposal_id: str) -> str:
        return self.run1(key, "governance.approve", ProposalVote(proposal_id))

    def reject(self, key: SigningKey, proposal_id: str) -> str:
        return self.run1(key, "governance.reject", ProposalVote(proposal_id))

    def proposal(self, proposal_id: str) -> Proposal:
        found = get_proposal(self.db.latest, proposal_id)
        assert found is not None
        return found

    def admins(self) -> tuple[str, ...]:
        found = active_admins(self.db.latest)
        assert found is not None
        return found

    def is_active(self, key: SigningKey) -> bool:
        member = get_member(self.db.latest, key.id)
        return member is not None and member.active


def ids(*keys: SigningKey) -> tuple[str, ...]:
    return tuple(sorted(k.id for k in keys))


# === the threshold ===============================================================================


def test_a_proposal_runs_once_when_the_threshold_is_reached() -> None:
    chain = GovChain(gov_genesis(admins=3, approvals=2))
    reason, pid = chain.act(A1, "prefix.create", PrefixCreate("90", ORG1.id))
    assert reason == ""
    # Proposed, with the proposer's approval: nothing happened yet.
    assert get_prefix(chain.db.latest, "90") is None
    proposal = chain.proposal(pid)
    assert (proposal.status, proposal.approvals, proposal.proposer, proposal.seq) == (OPEN, (A1.id,), A1.id, 1)
    assert proposal_count(chain.db.latest) == 1 and proposal_id_at(chain.db.latest, 1) == pid
    # The second admin's approval runs the action, in that transaction.
    assert chain.approve(A2, pid) == ""
    prefix = get_prefix(chain.db.latest, "90")
    assert prefix is not None and prefix.owner == ORG1.id and prefix.created_height == chain.db.height
    executed = chain.proposal(pid)
    assert (executed.status, executed.closed_height, executed.approvals) == (EXECUTED, chain.db.height, (A1.id, A2.id))
    # A third approval finds it closed; nothing runs again (the state keeps the first execution).
    root = chain.db.head.state_root
    assert chain.approve(A3, pid) == "inactive"
    assert chain.proposal(pid) == executed and get_prefix(chain.db.latest, "90") == prefix
    assert chain.db.head.state_root != root  # only the refused tx's nonce changed
    assert chain.db.latest.get(b"gov/p/" + pid.encode()) == encode(executed)


def test_votes_that_do_not_count_are_refused() -> None:
    chain = GovChain(gov_genesis(admins=4, approvals=3))
    _, pid = chain.act(A1, "member.add", MemberAdd("newcomer", NEWCOMER.public_key, ("registrar",)))
    # A non-admin neither proposes nor votes.
    assert chain.act(ORG1, "member.remove", MemberRemove(ORG2.id))[0] == "unauthorized"
    assert chain.approve(ORG1, pid) == "unauthorized"
    assert chain.reject(ORG2, pid) == "unauthorized"
    # Each admin votes once: the proposer already approved; a second approval, or a rejection after it.
    assert chain.approve(A1, pid) == "already_exists"
    assert chain.approve(A2, pid) == ""
    assert chain.approve(A2, pid) == "already_exists"
    assert chain.reject(A2, pid) == "already_exists"
    # An unknown proposal.
    assert chain.approve(A3, "00" * 32) == "not_found"
    assert chain.proposal(pid).approvals == (A1.id, A2.id)
    assert get_member(chain.db.latest, NEWCOMER.id) is None


def test_approvals_after_expiry_are_refused() -> None:
    chain = GovChain(gov_genesis(admins=3, approvals=2, expiry_ms=10_000))
    _, pid = chain.act(A1, "member.remove", MemberRemove(ORG2.id))
    chain.step = 9_000
    assert chain.approve(A2, pid) == ""  # 9 s after the proposal: still open, and so it runs
    _, late = chain.act(A1, "member.remove", MemberRemove(ORG1.id))
    chain.step = 10_000  # exactly expires_at: votes are refused from then on
    assert chain.approve(A2, late) == "expired"
    assert chain.reject(A3, late) == "expired"
    assert chain.is_active(ORG1)
    proposal = chain.proposal(late)
    assert proposal.status == OPEN and status_at(proposal, chain.db.head.timestamp) == EXPIRED
    assert status_at(chain.proposal(pid), chain.db.head.timestamp) == EXECUTED


def test_rejections_kill_a_proposal_once_it_cannot_pass() -> None:
    chain = GovChain(gov_genesis(admins=3, approvals=2))
    _, pid = chain.act(A1, "member.remove", MemberRemove(ORG2.id))
    # One rejection of three admins at 2 of 3: A1 and A3 could still pass it.
    assert chain.reject(A2, pid) == ""
    assert chain.proposal(pid).status == OPEN
    # A second: only A1 is left, fewer than 2.
    assert chain.reject(A3, pid) == ""
    rejected = chain.proposal(pid)
    assert (rejected.status, rejected.rejections, rejected.closed_height) == (REJECTED, (A2.id, A3.id), chain.db.height)
    # Approvals after rejection are refused, and nothing ran.
    assert chain.approve(A3, pid) == "inactive"
    assert chain.is_active(ORG2)


def test_unanimity_makes_one_rejection_final() -> None:
    chain = GovChain(gov_genesis(admins=3, approvals=3))
    _, pid = chain.act(A1, "member.remove", MemberRemove(ORG2.id))
    assert chain.reject(A3, pid) == ""
    assert chain.proposal(pid).status == REJECTED


def test_one_admin_cannot_remove_or_demote_another_two_can() -> None:
    chain = GovChain(gov_genesis(admins=3, approvals=2))
    _, remove = chain.act(A1, "member.remove", MemberRemove(A3.id))
    _, demote = chain.act(A1, "member.roles", MemberSetRoles(A2.id, ("registrar",)))
    # A1 alone: both only proposed.
    assert chain.admins() == ids(A1, A2, A3)
    assert chain.is_active(A3) and "admin" in get_member(chain.db.latest, A2.id).roles  # type: ignore[union-attr]
    # With A2 (who agrees to the removal of A3): A3 is removed.
    assert chain.approve(A2, remove) == ""
    assert not chain.is_active(A3) and chain.admins() == ids(A1, A2)
    # Now two admins at 2 of 2: demoting A2 would leave one, so A2's approval cannot run it.
    assert chain.approve(A2, demote) == "unauthorized"
    assert chain.proposal(demote).status == OPEN and chain.admins() == ids(A1, A2)


def test_the_admins_never_fall_below_the_threshold() -> None:
    chain = GovChain(gov_genesis(admins=3, approvals=2))
    # Two removals proposed while three admins remain: each could run on its own.
    _, first = chain.act(A1, "member.remove", MemberRemove(A3.id))
    _, second = chain.act(A2, "member.remove", MemberRemove(A1.id))
    assert chain.approve(A2, first) == ""
    assert chain.admins() == ids(A1, A2)
    # The second would leave one admin under a threshold of two: refused when its approval comes...
    assert chain.approve(A1, second) == "unauthorized"
    # ...and a new such proposal is refused at once, as is a demotion or a self-removal.
    assert chain.act(A1, "member.remove", MemberRemove(A2.id))[0] == "unauthorized"
    assert chain.act(A1, "member.roles", MemberSetRoles(A2.id, ()))[0] == "unauthorized"
    assert chain.act(A2, "member.remove", MemberRemove(A2.id))[0] == "unauthorized"
    assert chain.admins() == ids(A1, A2)
    # Adding an admin first (approved by both) makes room again.
    _, add = chain.act(A1, "member.add", MemberAdd("admin4", A4.public_key, ("admin",)))
    assert chain.approve(A2, add) == ""
    assert chain.admins() == ids(A1, A2, A4)
    _, retire = chain.act(A2, "member.remove", MemberRemove(A2.id))  # an admin may retire, with approval
    assert chain.approve(A4, retire) == ""
    assert chain.admins() == ids(A1, A4)


def test_approvals_of_admins_removed_since_do_not_count() -> None:
    chain = GovChain(gov_genesis(admins=4, approvals=2))
    _, pending = chain.act(A1, "member.add", MemberAdd("newcomer", NEWCOMER.public_key, ("admin",)))
    _, remove_a1 = chain.act(A2, "member.remove", MemberRemove(A1.id))
    assert chain.approve(A3, remove_a1) == ""
    assert not chain.is_active(A1)
    # A1's approval of `pending` no longer counts: A2's makes one, not two.
    assert chain.approve(A2, pending) == ""
    assert chain.proposal(pending).status == OPEN and get_member(chain.db.latest, NEWCOMER.id) is None
    assert chain.approve(A4, pending) == ""
    assert chain.proposal(pending).status == EXECUTED and chain.is_active(NEWCOMER)
    assert chain.admins() == ids(A2, A3, A4, NEWCOMER)


def test_a_proposal_that_could_not_run_is_refused_with_the_actions_reason() -> None:
    chain = GovChain(gov_genesis(admins=3, approvals=2))
    assert chain.act(A1, "member.remove", MemberRemove(NEWCOMER.id))[0] == "not_found"
    assert chain.act(A1, "member.add", MemberAdd("org1", NEWCOMER.public_key, ()))[0] == "already_exists"
    assert chain.act(A1, "prefix.create", PrefixCreate("not a prefix", ORG1.id))[0] == "invalid_value"
    assert proposal_count(chain.db.latest) == 0
    # A proposal whose action fails by the time the threshold is reached leaves the approval unrecorded.
    _, first = chain.act(A1, "prefix.create", PrefixCreate("91", ORG1.id))
    _, second = chain.act(A2, "prefix.create", PrefixCreate("91", ORG2.id))
    assert chain.approve(A3, first) == ""
    assert chain.approve(A3, second) == "already_exists"
    assert chain.proposal(second).approvals == (A2.id,)
    assert get_prefix(chain.db.latest, "91").owner == ORG1.id  # type: ignore[union-attr]


def test_sub_prefixes_need_no_proposal() -> None:
    chain = GovChain(gov_genesis(admins=3, approvals=2))
    _, pid = chain.act(A1, "prefix.create", PrefixCreate("92", ORG1.id))
    assert chain.approve(A2, pid) == ""
    # The owner of 92 creates 92.1 directly; it is no admin action.
    assert chain.run1(ORG1, "prefix.create", PrefixCreate("92.1", ORG2.id)) == ""
    assert get_prefix(chain.db.latest, "92.1") is not None and proposal_count(chain.db.latest) == 1


# === one admin, threshold one: today's one-step commands =======================================


def test_threshold_one_runs_admin_actions_at_once_without_a_proposal() -> None:
    chain = GovChain(gov_genesis(admins=1, approvals=1))
    reason, pid = chain.act(A1, "member.add", MemberAdd("newcomer", NEWCOMER.public_key, ("admin",)))
    assert reason == "" and chain.is_active(NEWCOMER)
    assert get_proposal(chain.db.latest, pid) is None and proposal_count(chain.db.latest) == 0
    assert chain.admins() == ids(A1, NEWCOMER)
    assert chain.run1(A1, "prefix.create", PrefixCreate("93", ORG1.id)) == ""
    # With two admins at a threshold of one, one may leave; the last one may not.
    assert chain.run1(NEWCOMER, "member.remove", MemberRemove(NEWCOMER.id)) == ""
    assert chain.run1(A1, "member.remove", MemberRemove(A1.id)) == "unauthorized"
    assert chain.run1(A1, "member.roles", MemberSetRoles(A1.id, ())) == "unauthorized"
    assert chain.admins() == ids(A1)


def test_a_genesis_without_governance_keeps_its_hash_its_block_0_and_one_step_admins(tmp_path: Path) -> None:
    legacy = make_genesis(prefixes=(("88", ORG1),))
    # Pinned from the code before governance existed: the hash and block 0 of this genesis.
    assert legacy.hash().hex() == "66e925b2bb9da031692bd4eaeafc0e2bda00dfa87f36441d5f060cfb0a7c398e"
    db = ChainDB(MemoryStore(), legacy, verified=VerifiedCache(100))
    assert db.head_hash.hex() == "2e7991c635b7a40ff1e847ad19fd45e614b0c5c450d3518682bb176419266b6b"
    # Its file has no governance key and loads back equal (threshold one).
    save_genesis(legacy, tmp_path / "genesis.json")
    assert "governance" not in json.loads((tmp_path / "genesis.json").read_text())
    assert load_genesis(tmp_path / "genesis.json") == legacy
    assert get_settings(db.latest).approvals == 1 and active_admins(db.latest) is None
    # A section changes the hash; it round-trips through the file.
    with_gov = gov_genesis()
    save_genesis(with_gov, tmp_path / "gov.json")
    assert json.loads((tmp_path / "gov.json").read_text())["governance"] == {"approvals": 2, "expiry_ms": EXPIRY}
    assert load_genesis(tmp_path / "gov.json") == with_gov and with_gov.hash() != Genesis(
        with_gov.chain_id, with_gov.timestamp, with_gov.validators, with_gov.members, with_gov.prefixes).hash()


def test_legacy_chain_admin_runs_actions_at_once_and_cannot_remove_itself() -> None:
    chain = Chain()
    assert chain.run1(ADMIN, "member.add", MemberAdd("newcomer", NEWCOMER.public_key, ("admin",))) == ""
    assert chain.run1(ADMIN, "member.remove", MemberRemove(ADMIN.id)) == "unauthorized"
    assert chain.run1(NEWCOMER, "member.remove", MemberRemove(ADMIN.id)) == ""
    assert proposal_count(chain.db.latest) == 0


@pytest.mark.parametrize(("approvals", "expiry_ms", "complaint"), [
    (0, EXPIRY, "governance.approvals must be 1-3"),
    (4, EXPIRY, "governance.approvals must be 1-3"),
    (2, 0, "expiry_ms must be positive"),
])
def test_genesis_refuses_a_threshold_its_admins_cannot_reach(approvals: int, expiry_ms: int, complaint: str) -> None:
    with pytest.raises(InvalidGenesis, match=complaint):
        check_genesis(gov_genesis(admins=3, approvals=approvals, expiry_ms=expiry_ms))


# === determinism ==================================================================================


def test_two_chains_executing_the_same_blocks_reach_the_same_roots() -> None:
    genesis = gov_genesis(admins=3, approvals=2)
    first, second = GovChain(genesis), ChainDB(MemoryStore(), genesis)
    raws = [first.tx(A1, "member.remove", MemberRemove(ORG2.id), nonce=1),
            first.tx(A1, "prefix.create", PrefixCreate("94", ORG1.id), nonce=2)]
    pids = [compute_proposal_id(compute_tx_id(r)) for r in raws]
    blocks = [raws]
    blocks.append([first.tx(A2, "governance.approve", ProposalVote(pids[0]), nonce=1),
                   first.tx(A3, "governance.reject", ProposalVote(pids[1]), nonce=1)])
    blocks.append([first.tx(A2, "governance.reject", ProposalVote(pids[1]), nonce=2),
                   first.tx(A3, "governance.approve", ProposalVote(pids[0]), nonce=2)])
    for block_txs in blocks:
        executed = first.build(block_txs)
        first.commit(executed)
        replayed = second.execute_block(executed.block)
        second.commit(replayed, first.db.get_certificate(executed.block.header.height))  # type: ignore[arg-type]
        assert replayed.block_hash == executed.block_hash and replayed.changes == executed.changes
    assert second.head.state_root == first.db.head.state_root
    assert not first.is_active(ORG2) and get_prefix(first.db.latest, "94") is None
    assert first.proposal(pids[0]).status == EXECUTED and first.proposal(pids[1]).status == REJECTED


# === property: the invariants over random sequences ==============================================

MEMBERS = [*ADMINS, ORG1, ORG2, NEWCOMER]

Step = tuple[str, int, int]  # (what, actor pick, target or proposal pick)
steps = st.lists(st.tuples(
    st.sampled_from(["remove", "demote", "promote", "approve", "approve", "approve", "reject", "wait"]),
    st.integers(0, 9), st.integers(0, 50)), min_size=1, max_size=40)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(admins=st.integers(2, 5), threshold=st.integers(1, 5), script=steps)
def test_random_governance_keeps_its_invariants(admins: int, threshold: int, script: list[Step]) -> None:
    """Never fewer active admins than M; the admin set changes only through an action that M distinct
    admins (active before that block) approved, before expiry; a closed proposal never changes."""
    m = min(threshold, admins)
    chain = GovChain(gov_genesis(admins=admins, approvals=m, expiry_ms=5_000))
    proposals: list[str] = []
    closed: dict[str, Proposal] = {}
    for what, actor_pick, pick in script:
        # Mostly the genesis admins act (some of them removed or demoted by then), sometimes another member.
        actor = ADMINS[actor_pick % admins] if actor_pick < 8 else MEMBERS[5 + actor_pick - 8]
        target = ADMINS[pick % admins] if pick < 40 else MEMBERS[5 + pick % 3]
        before_admins = set(chain.admins())
        before = {pid: chain.proposal(pid) for pid in proposals}
        chain.step = 1000
        if what == "wait":
            chain.step = 1000 + pick * 200
            chain.run()
        elif what in ("approve", "reject") and proposals:
            pid = proposals[-1 - pick % min(3, len(proposals))]  # mostly the latest proposals
            (chain.approve if what == "approve" else chain.reject)(actor, pid)
        else:  # remove, demote, promote (an approval or rejection with nothing to vote on: remove)
            action: tuple[str, Any] = {
                "demote": ("member.roles", MemberSetRoles(target.id, ())),
                "promote": ("member.roles", MemberSetRoles(target.id, ("admin",))),
            }.get(what, ("member.remove", MemberRemove(target.id)))
            reason, pid = chain.act(actor, *action)
            if get_proposal(chain.db.latest, pid) is not None:
                proposals.append(pid)
            elif reason == "" and m == 1:
                assert actor.id in before_admins  # a threshold of one: an admin's own action ran
        after_admins = set(chain.admins())
        now = chain.db.head.timestamp
        # Never fewer active admins than the threshold; the index is the members' records.
        assert len(after_admins) >= m
        assert after_admins == {k.id for k in MEMBERS if chain.is_active(k)
                                and "admin" in get_member(chain.db.latest, k.id).roles}  # type: ignore[union-attr]
        ran = [pid for pid in proposals if pid in before and before[pid].status == OPEN
               and chain.proposal(pid).status == EXECUTED]
        for pid in ran:
            done = chain.proposal(pid)
            # M distinct admins, admins before this block, approved it, and it had not expired.
            assert len(set(done.approvals) & before_admins) >= m and len(set(done.approvals)) == len(done.approvals)
            assert now < done.expires_at
        if after_admins != before_admins and m > 1:
            assert len(ran) == 1
        for pid in proposals:
            current = chain.proposal(pid)
            if pid in closed:
                assert current == closed[pid]  # executed or rejected: final
            elif current.status != OPEN:
                closed[pid] = current


# === HTTP: the governance routes of a real node, in-process =====================================


def test_http_lists_and_shows_proposals_at_any_height(tmp_path: Path) -> None:
    import msgpack
    from fastapi.testclient import TestClient

    from ledger.api.server import create_app
    from ledger.tx import make_tx
    from tests.nodeutil import CHAIN_ID, make_home

    home = make_home(tmp_path)
    second = GenesisMember("admin2", A2.public_key, ("admin",))
    genesis = Genesis(home.genesis.chain_id, home.genesis.timestamp, home.genesis.validators,
                      (*home.genesis.members, second), (), GovernanceSettings(2, EXPIRY))
    save_genesis(genesis, home.path / "genesis.json")

    def send(client: TestClient, key: SigningKey, kind: str, payload: Any) -> dict[str, Any]:
        tx = make_tx(key, CHAIN_ID, 1, kind, payload)
        r = client.post("/v1/tx?wait=true", content=msgpack.packb([encode(tx)], use_bin_type=True),
                        headers={"content-type": "application/msgpack"})
        result: dict[str, Any] = r.json()["results"][0]
        assert result["ok"], result
        return result

    with TestClient(create_app(home.path)) as client:
        settings_answer = client.get("/v1/governance").json()
        assert settings_answer["approvals"] == 2 and set(settings_answer["admins"]) == {home.admin.id, A2.id}
        proposed = send(client, home.admin, "member.add", MemberAdd("newcomer", NEWCOMER.public_key, ("registrar",)))
        pid = compute_proposal_id(bytes.fromhex(proposed["tx_id"]))
        shown = client.get(f"/v1/governance/proposals/{pid}").json()
        assert (shown["status"], shown["approvals_counted"], shown["approvals_needed"]) == (OPEN, 1, 2)
        assert shown["action"]["name"] == "newcomer" and shown["proposal"]["kind"] == "member.add"
        listed = client.get("/v1/governance/proposals").json()
        assert listed["count"] == 1 and [p["proposal"]["id"] for p in listed["proposals"]] == [pid]
        assert client.get("/v1/governance/proposals", params={"status": EXECUTED}).json()["proposals"] == []
        assert client.get("/v1/governance/proposals", params={"status": "won"}).status_code == 400
        send(client, A2, "governance.approve", ProposalVote(pid))
        assert client.get(f"/v1/governance/proposals/{pid}").json()["status"] == EXECUTED
        assert client.get(f"/v1/members/{NEWCOMER.id}").json()["active"] is True
        # As of the block that made it, it was open.
        then = client.get(f"/v1/governance/proposals/{pid}", params={"height": proposed["height"]}).json()
        assert then["status"] == OPEN and then["height"] == proposed["height"]
        assert client.get(f"/v1/governance/proposals/{pid}", params={"height": 0}).status_code == 404
        assert client.get(f"/v1/governance/proposals/{'ab' * 32}").json()["error"] == "not_found"
