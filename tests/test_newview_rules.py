"""Direct tests of view-change and new-view validation (ledger/consensus/newview.py) with crafted,
really signed messages: every rule refuses what it names, in a test named after it, and valid
messages pass. `test_every_rule_of_newview_has_a_test` keeps the list complete: a new check in
newview.py without a test here fails it."""

from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ledger.chain import Block, CommitCertificate, CommitVote, ValidatorSignature, compute_block_hash
from ledger.consensus.head import Head
from ledger.consensus.membership import Membership
from ledger.consensus.messages import (
    Checkpoint,
    CheckpointProof,
    MalformedMessage,
    NewView,
    Prepare,
    PreparedProof,
    PrePrepare,
    SignatureChecker,
    Suspect,
    ViewChange,
    encode_envelope,
    sign_message,
)
from ledger.consensus.newview import (
    InvalidNewView,
    InvalidViewChange,
    check_attached_blocks,
    check_new_view,
    check_view_change,
    compute_new_view,
    decode_view_change,
)
from ledger.consensus.quorum import Quorums
from ledger.crypto import DOMAIN_COMMIT, SigningKey, signing_digest
from tests.sim.apps import FakeApp

KEYS = [SigningKey.from_seed(f"newview-validator-{i}".encode()) for i in range(4)]
IDS = tuple(k.id for k in KEYS)  # rotation order: the primary of view v is IDS[v % 4]
BY_ID = {k.id: k for k in KEYS}
CHAIN = "newview-test"
Q = Quorums.of(IDS)  # n = 4, f = 1, quorum 3, weak 2
DELAY = 16  # heights up to head + DELAY have a known validator set
M = Membership(IDS, Head(0), DELAY)  # the genesis set for every height, as a replica at height 0 sees it
PIPELINE = 3
OUTSIDER = SigningKey.from_seed(b"newview-outsider")


def checker() -> SignatureChecker:
    return SignatureChecker(CHAIN, {k.id: k.public_key for k in KEYS})


def h(label: str) -> bytes:
    return label.encode().ljust(32, b".")


def sig(signer: str, body: Any) -> bytes:
    key = BY_ID.get(signer, OUTSIDER)
    return sign_message(key, CHAIN, body).signature


def sigs(signers: list[str], body: Any) -> tuple[ValidatorSignature, ...]:
    return tuple(ValidatorSignature(v, sig(v, body)) for v in signers)


def backups(view: int) -> list[str]:
    return sorted(v for v in IDS if v != Q.primary(view))


def prepared(view: int, height: int, block: bytes, prev: bytes, signers: list[str] | None = None) -> PreparedProof:
    """A genuine prepared proof: the view's primary pre-prepared, 2f backups prepared."""
    pp_sig = sig(Q.primary(view), PrePrepare(view, height, block, prev))
    chosen = signers if signers is not None else backups(view)[:2]
    return PreparedProof(view, height, block, prev, pp_sig, sigs(chosen, Prepare(view, height, block)))


def certificate(height: int, view: int, block: bytes, signers: list[str] | None = None) -> CommitCertificate:
    vote = CommitVote(CHAIN, height, view, block)
    chosen = signers if signers is not None else sorted(IDS)[:3]
    signed = tuple(ValidatorSignature(v, BY_ID.get(v, OUTSIDER).sign_digest(signing_digest(DOMAIN_COMMIT, vote)))
                   for v in chosen)
    return CommitCertificate(height, view, block, signed)


def checkpoint(height: int, block: bytes, signers: list[str] | None = None) -> CheckpointProof:
    chosen = signers if signers is not None else sorted(IDS)[:3]
    return CheckpointProof(height, block, sigs(chosen, Checkpoint(height, block)))


def suspicion(view_left: int, signers: list[str] | None = None) -> tuple[ValidatorSignature, ...]:
    return sigs(signers if signers is not None else sorted(IDS)[:2], Suspect(view_left))


def check_vc(vc: ViewChange) -> None:
    check_view_change(vc, checker(), M, PIPELINE)


def envelope(sender: str, body: Any) -> bytes:
    return encode_envelope(sign_message(BY_ID[sender], CHAIN, body))


# A chain: block a1 at height 1 (prepared in view 0), a2 at 2; b2 at 2 prepared in view 1 (another
# block at height 2 over a1); c1 at 1 prepared in view 0 by a different pre-prepare (never both
# prepared in one view by honest replicas, but a forger may carry it).
A1 = prepared(0, 1, h("a1"), h("genesis"))
A2 = prepared(0, 2, h("a2"), h("a1"))
B2 = prepared(1, 2, h("b2"), h("a1"))
A3 = prepared(1, 3, h("a3"), h("b2"))


def valid_vc(view: int = 2, **changes: Any) -> ViewChange:
    vc = ViewChange(view, None, None, (A1, B2), suspicion(view - 1))
    return replace(vc, **changes)


def refused(error: type[Exception], rule: str, call: Any, *args: Any) -> None:
    with pytest.raises(error, match=rule):
        call(*args)


# --- the fragments of each rule's message: the meta-test below checks every raise has one -------

RULES = {
    "signers duplicated or unsorted", "signed by a non-validator", "needed", "checkpoint proof: bad signature",
    "commit certificate: bad signature", "bad pre-prepare signature", "the primary cannot prepare",
    "bad prepare from", "suspicion: bad signature", "view change to view 0",
    "not above the base or not increasing", "beyond the pipeline above the base",
    "from a view not before the new one", "not attached", "does not match its proof", "has other transactions",
    "is not a view change", "not sent by the view's primary",
    "is for another view", "two view changes from one validator", "bad view change signature",
    "carried view change invalid", "view changes, .* needed", "base differs", "re-proposals differ",
    "are not known at height", "not a validator of the current set",
}

# Checks no message can reach, kept as defence in depth: why each cannot be triggered.
UNREACHABLE = {
    "view change body expected": "decode_body of an envelope of kind viewchange always yields a ViewChange",
}


def test_every_rule_of_newview_has_a_test() -> None:
    """Each `raise` of newview.py names a rule whose message fragment is in RULES (and so is matched
    by a test below)."""
    import re

    source = Path(__file__).resolve().parents[1] / "ledger" / "consensus" / "newview.py"
    messages = []
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and node.exc.args:
            arg = node.exc.args[0]
            if isinstance(arg, ast.Constant):
                messages.append(str(arg.value))
            elif isinstance(arg, ast.JoinedStr):
                messages.append("".join(str(v.value) if isinstance(v, ast.Constant) else "X" for v in arg.values))
    assert len(messages) >= 25
    for message in messages:
        if set(message) <= set("X: "):  # re-raising another check's text (UnknownSet's: see RULES)
            continue
        if message in UNREACHABLE:
            continue
        assert any(re.search(rule, message) for rule in RULES), f"no test for the rule {message!r}"


# --- proofs ------------------------------------------------------------------------------------


def test_valid_view_change_passes() -> None:
    vc = ViewChange(2, checkpoint(0 + 5, h("cp5")), certificate(5, 0, h("cp5")),
                    (prepared(1, 6, h("x6"), h("cp5")),), suspicion(1))
    check_vc(vc)
    check_vc(valid_vc())


def test_signers_duplicated_or_unsorted() -> None:
    ids = sorted(IDS)
    for signers in ([ids[0], ids[0], ids[1]], [ids[2], ids[1], ids[0]]):
        refused(InvalidViewChange, "signers duplicated or unsorted", check_vc,
                valid_vc(checkpoint=checkpoint(5, h("cp"), signers)))


def test_signed_by_a_non_validator() -> None:
    signers = sorted([*sorted(IDS)[:2], OUTSIDER.id])
    refused(InvalidViewChange, "signed by a non-validator", check_vc, valid_vc(certificate=certificate(
        5, 0, h("c5"), signers)))


def test_fewer_signatures_than_needed() -> None:
    refused(InvalidViewChange, "checkpoint proof: 2 signatures, 3 needed", check_vc,
            valid_vc(checkpoint=checkpoint(5, h("cp"), sorted(IDS)[:2])))
    refused(InvalidViewChange, "suspicion: 1 signatures, 2 needed", check_vc,
            valid_vc(suspicion=suspicion(1, sorted(IDS)[:1])))
    one_prepare = prepared(0, 1, h("a1"), h("genesis"), backups(0)[:1])
    refused(InvalidViewChange, "prepared proof at 1: 1 signatures, 2 needed", check_vc,
            valid_vc(prepared=(one_prepare,)))


def test_proof_of_a_height_whose_validator_set_cannot_be_known_yet() -> None:
    # A checkpoint far above this replica's head: a set change could have replaced its signers.
    far = checkpoint(DELAY + 1, h("far"))
    refused(InvalidViewChange, "checkpoint proof: the validators of height 17 are not known at height 0", check_vc,
            valid_vc(checkpoint=far))


def test_checkpoint_proof_bad_signature() -> None:
    proof = checkpoint(5, h("cp"))
    other = checkpoint(5, h("other"))
    mixed = replace(proof, signatures=(*proof.signatures[:2], other.signatures[2]))
    refused(InvalidViewChange, "checkpoint proof: bad signature", check_vc, valid_vc(checkpoint=mixed))


def test_commit_certificate_bad_signature() -> None:
    cert = certificate(5, 0, h("c5"))
    wrong_view = certificate(5, 1, h("c5"))  # votes over another view of the same block
    refused(InvalidViewChange, "commit certificate: bad signature", check_vc,
            valid_vc(certificate=replace(cert, signatures=wrong_view.signatures)))


def test_bad_pre_prepare_signature() -> None:
    # Pre-prepared by a validator that is not the view's primary.
    wrong = replace(A1, preprepare_signature=sig(Q.primary(1), PrePrepare(0, 1, h("a1"), h("genesis"))))
    refused(InvalidViewChange, "bad pre-prepare signature", check_vc, valid_vc(prepared=(wrong, B2)))


def test_the_primary_cannot_prepare() -> None:
    with_primary = prepared(0, 1, h("a1"), h("genesis"), sorted([Q.primary(0), backups(0)[0]]))
    refused(InvalidViewChange, "the primary cannot prepare", check_vc, valid_vc(prepared=(with_primary,)))


def test_bad_prepare_from_a_backup() -> None:
    other = prepared(0, 1, h("other"), h("genesis"))  # prepares of another block at that height
    mixed = replace(A1, prepares=other.prepares)
    refused(InvalidViewChange, "bad prepare from", check_vc, valid_vc(prepared=(mixed,)))


def test_suspicion_bad_signature() -> None:
    # Genuine suspicions, but of another view than the one left (view - 1).
    refused(InvalidViewChange, "suspicion: bad signature", check_vc, valid_vc(suspicion=suspicion(0)))


def test_view_change_to_view_0() -> None:
    refused(InvalidViewChange, "view change to view 0", check_vc, ViewChange(0, None, None, ()))


def test_prepared_proofs_not_above_the_base_or_not_increasing() -> None:
    at_base = valid_vc(certificate=certificate(1, 0, h("a1")), prepared=(A1,))
    refused(InvalidViewChange, "not above the base or not increasing", check_vc, at_base)
    refused(InvalidViewChange, "not above the base or not increasing", check_vc, valid_vc(prepared=(B2, A1)))
    refused(InvalidViewChange, "not above the base or not increasing", check_vc, valid_vc(prepared=(A1, A1)))


def test_prepared_proof_beyond_the_pipeline_above_the_base() -> None:
    far = prepared(0, 1 + PIPELINE, h("far"), h("x"))
    refused(InvalidViewChange, "beyond the pipeline above the base 0", check_vc, valid_vc(prepared=(far,)))
    check_vc(valid_vc(prepared=(prepared(0, PIPELINE, h("near"), h("x")),)))  # the last height within


def test_prepared_proof_from_a_view_not_before_the_new_one() -> None:
    same_view = prepared(2, 1, h("a1"), h("genesis"))
    refused(InvalidViewChange, "from a view not before the new one", check_vc, valid_vc(prepared=(same_view,)))


# --- attached blocks -----------------------------------------------------------------------------


def _block_for(proof_height: int) -> tuple[Block, PreparedProof]:
    app = FakeApp(CHAIN, {k.id: k.public_key for k in KEYS})
    block = app.propose([b"t1", b"t2"], 0, IDS[0], None)
    proof = prepared(0, proof_height, compute_block_hash(block.header), block.header.prev_hash)
    return block, proof


def test_attached_blocks_pass_when_they_match() -> None:
    block, proof = _block_for(1)
    assert check_attached_blocks(valid_vc(prepared=(proof,)), [block]) == {proof.block_hash: block}


def test_block_of_a_prepared_proof_not_attached() -> None:
    _, proof = _block_for(1)
    refused(InvalidViewChange, "not attached", check_attached_blocks, valid_vc(prepared=(proof,)), [])


def test_attached_block_does_not_match_its_proof() -> None:
    block, proof = _block_for(1)
    elsewhere = replace(proof, height=2)  # the proof places the block at another height
    refused(InvalidViewChange, "does not match its proof", check_attached_blocks,
            valid_vc(prepared=(elsewhere,)), [block])


def test_attached_block_has_other_transactions() -> None:
    block, proof = _block_for(1)
    swapped = Block(block.header, (b"t1", b"other"))
    refused(InvalidViewChange, "has other transactions", check_attached_blocks, valid_vc(prepared=(proof,)), [swapped])


# --- compute_new_view ----------------------------------------------------------------------------


def test_new_view_base_is_the_highest_any_view_change_proves() -> None:
    by_checkpoint = ViewChange(2, checkpoint(5, h("b5")), None, ())
    by_certificate = ViewChange(2, None, certificate(6, 1, h("b6")), ())
    plan = compute_new_view([by_checkpoint, by_certificate, ViewChange(2, None, None, ())])
    assert (plan.base_height, plan.base_hash, plan.chosen) == (6, h("b6"), ())


def test_new_view_takes_the_highest_view_proof_at_each_height() -> None:
    plan = compute_new_view([
        ViewChange(2, None, None, (A1, A2)),
        ViewChange(2, None, None, (A1, B2, A3)),
        ViewChange(2, None, None, ()),
    ])
    assert (plan.base_height, plan.base_hash) == (0, b"")
    assert [p.block_hash for p in plan.chosen] == [h("a1"), h("b2"), h("a3")]


def test_new_view_stops_at_the_first_height_without_a_linking_proof() -> None:
    gap = prepared(1, 4, h("a4"), h("a3"))  # height 3 missing: nothing above it is re-proposed
    plan = compute_new_view([ViewChange(2, None, None, (A1, B2)), ViewChange(2, None, None, (gap,))])
    assert [p.block_hash for p in plan.chosen] == [h("a1"), h("b2")]


def test_new_view_skips_proofs_that_do_not_extend_the_chosen_chain() -> None:
    # A higher-view proof at height 2 whose parent is not the block chosen at height 1.
    stray = prepared(1, 2, h("s2"), h("not-a1"))
    plan = compute_new_view([ViewChange(2, None, None, (A1, A2)), ViewChange(2, None, None, (stray,))])
    assert [p.block_hash for p in plan.chosen] == [h("a1"), h("a2")]


def test_new_view_ignores_proofs_at_or_below_the_base() -> None:
    based = ViewChange(2, None, certificate(1, 0, h("a1")), (B2,))
    stale = ViewChange(2, None, None, (prepared(0, 1, h("c1"), h("genesis")),))
    plan = compute_new_view([based, stale])
    assert (plan.base_height, [p.block_hash for p in plan.chosen]) == (1, [h("b2")])


def test_a_decided_block_survives_any_quorum_of_view_changes() -> None:
    """b2 was decided in view 1 (prepared by f+1 honest replicas); a lower-view block at height 2 in
    other view changes never replaces it, in whatever order they come."""
    honest = ViewChange(2, None, None, (A1, B2))
    stale = ViewChange(2, None, None, (A1, A2))
    empty = ViewChange(2, None, None, ())
    for vcs in ([honest, stale, empty], [stale, empty, honest], [empty, honest, stale]):
        assert [p.block_hash for p in compute_new_view(vcs).chosen] == [h("a1"), h("b2")]


# --- check_new_view ------------------------------------------------------------------------------


def _new_view(view: int = 2, vcs: dict[str, ViewChange] | None = None, **changes: Any) -> NewView:
    held = vcs if vcs is not None else {
        IDS[2]: valid_vc(view), IDS[1]: valid_vc(view, prepared=(A1, A2)), IDS[3]: valid_vc(view, prepared=()),
    }
    plan = compute_new_view(list(held.values()))
    nv = NewView(view, tuple(envelope(s, vc) for s, vc in held.items()), plan.base_height, plan.base_hash,
                 tuple(p.block_hash for p in plan.chosen))
    return replace(nv, **changes)


def check_nv(nv: NewView, sender: str | None = None) -> Any:
    return check_new_view(nv, sender or Q.primary(nv.view), checker(), M, PIPELINE)


def test_valid_new_view_passes_and_returns_its_plan() -> None:
    plan = check_nv(_new_view())
    assert [p.block_hash for p in plan.chosen] == [h("a1"), h("b2")]


def test_new_view_not_sent_by_the_views_primary() -> None:
    refused(InvalidNewView, "not sent by the view's primary", check_nv, _new_view(), Q.primary(1))


def test_new_view_carrying_something_that_is_not_a_view_change() -> None:
    nv = _new_view()
    prepare = envelope(IDS[1], Prepare(2, 1, h("a1")))
    refused(InvalidNewView, "is not a view change", check_nv, replace(nv, viewchanges=(*nv.viewchanges[:2], prepare)))
    refused(InvalidNewView, "bad envelope", check_nv, replace(nv, viewchanges=(*nv.viewchanges[:2], b"\x93junk")))


def test_decode_view_change_refuses_other_kinds() -> None:
    # The kind decides the body's type, so a view change's body is always a ViewChange (UNREACHABLE).
    with pytest.raises(MalformedMessage, match="is not a view change"):
        decode_view_change(envelope(IDS[1], Suspect(1)))
    _, body = decode_view_change(envelope(IDS[1], valid_vc()))
    assert isinstance(body, ViewChange)


def test_carried_view_change_is_for_another_view() -> None:
    vcs = {IDS[2]: valid_vc(2), IDS[1]: valid_vc(3, suspicion=suspicion(2)), IDS[3]: valid_vc(2)}
    refused(InvalidNewView, "is for another view", check_nv, _new_view(2, vcs))


def test_two_view_changes_from_one_validator() -> None:
    nv = _new_view()
    refused(InvalidNewView, "two view changes from one validator", check_nv,
            replace(nv, viewchanges=(nv.viewchanges[0], nv.viewchanges[1], nv.viewchanges[0])))


def test_view_change_from_outside_the_current_set() -> None:
    nv = _new_view()
    outsider = encode_envelope(sign_message(OUTSIDER, CHAIN, valid_vc()))  # correctly signed, by no validator
    refused(InvalidNewView, "not a validator of the current set", check_nv,
            replace(nv, viewchanges=(*nv.viewchanges[:2], outsider)))


def test_bad_view_change_signature() -> None:
    nv = _new_view()
    forged = sign_message(BY_ID[IDS[1]], CHAIN, valid_vc())
    stolen = encode_envelope(replace(forged, sender=IDS[3]))  # IDS[1]'s signature under IDS[3]'s name
    refused(InvalidNewView, "bad view change signature", check_nv,
            replace(nv, viewchanges=(*nv.viewchanges[:2], stolen)))


def test_carried_view_change_invalid() -> None:
    vcs = {IDS[2]: valid_vc(), IDS[1]: valid_vc(suspicion=suspicion(0)), IDS[3]: valid_vc()}
    refused(InvalidNewView, "carried view change invalid: suspicion: bad signature", check_nv, _new_view(2, vcs))


def test_fewer_view_changes_than_a_quorum() -> None:
    nv = _new_view()
    refused(InvalidNewView, "2 view changes, 3 needed", check_nv, replace(nv, viewchanges=nv.viewchanges[:2]))


def test_new_view_base_differs_from_the_one_its_view_changes_prove() -> None:
    nv = _new_view()
    refused(InvalidNewView, "base differs", check_nv, replace(nv, base_height=1))
    refused(InvalidNewView, "base differs", check_nv, replace(nv, base_hash=h("a1")))


def test_new_view_re_proposals_differ_from_the_ones_its_view_changes_force() -> None:
    nv = _new_view()
    for chosen in (nv.chosen[:1], (*nv.chosen, h("extra")), (h("a1"), h("a2")), ()):
        refused(InvalidNewView, "re-proposals differ", check_nv, replace(nv, chosen=chosen))
