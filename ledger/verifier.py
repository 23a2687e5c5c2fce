"""The reference verifier behind `ledger verify`: a proof, or an answer carrying one (docs/proofs.md).

`verify_document` checks the proof against the genesis file, picks the answer's kind from the proof's
first key and the answer's fields, and has that kind's checker prove every field of the answer. The
verdict is JSON: `valid`, and either what is proven or the `reason` code of the first failed check
with a message. Fields under `unproven` are reported as such, never checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ledger.answer_rules import AnswerKind, fail
from ledger.genesis import Genesis
from ledger.nft.proofs import ASSET, LICENCE, RIGHTS
from ledger.proofs import PROOF_TYPE, AnchorClaim, InvalidProof, VerifiedState, verify_state_proof
from ledger.resolver.proofs import HANDLE, NATIVE

# Every kind of answer that carries a proof. A new kind: its AnswerKind here, its checker beside its records.
KINDS: tuple[AnswerKind, ...] = (NATIVE, HANDLE, ASSET, LICENCE, RIGHTS)


@dataclass(frozen=True)
class Verdict:
    state: VerifiedState
    kind: str  # "state-proof" for a bare proof
    present: bool
    record: Any
    unproven: dict[str, Any] | None


def select_kind(doc: dict[str, Any], key: bytes) -> AnswerKind:
    """The kind of `doc`: among those of the first key's namespace, the one whose marker field it has, else
    the namespace's default kind."""
    candidates = [k for k in KINDS if key.startswith(k.key_prefix)]
    marked = [k for k in candidates if k.marker is not None and k.marker in doc]
    default = [k for k in candidates if k.marker is None]
    chosen = marked or default
    if not chosen:
        raise fail("answer_kind", f"no kind of answer is about the key {key.decode(errors='replace')!r}")
    return chosen[0]


def verify_document(doc: Any, genesis: Genesis) -> Verdict:
    """Check `doc` (a proof, or an answer carrying one as `proof`); raise InvalidProof naming the first failure."""
    if type(doc) is not dict or ("proof" not in doc and "type" not in doc):
        raise fail("malformed_answer", f"neither an answer carrying a proof nor a {PROOF_TYPE} document")
    if "proof" not in doc:
        state = verify_state_proof(doc, genesis)
        first = state.values[state.keys[0]]
        return Verdict(state, "state-proof", first is not None, None if first is None else first.hex(), None)
    state = verify_state_proof(doc["proof"], genesis)
    kind = select_kind(doc, state.keys[0])
    # The answer has exactly the fields of its kind: none the proof would not cover.
    allowed = kind.required | kind.optional | {"proof", "unproven"}
    missing = sorted(kind.required - set(doc))
    unknown = sorted(set(doc) - allowed)
    if missing or unknown:
        raise fail("answer_fields", f"a {kind.name} answer: missing fields {missing}, fields no proof covers {unknown}")
    unproven = doc.get("unproven")
    if "unproven" in doc and type(unproven) is not dict:
        raise fail("answer_fields", "the answer's unproven part is not an object")
    # The answer is as of the proof's height.
    if "height" in kind.required:
        if type(doc["height"]) is not int:
            raise fail("answer_fields", "the answer's height is not an integer")
        if doc["height"] != state.height:
            raise fail("answer_height", f"the answer says height {doc['height']}, its proof is as of {state.height}")
    checked = kind.check(doc, state)
    return Verdict(state, kind.name, checked.present, checked.record, unproven)


def verdict_json(verdict: Verdict, chain_id: str) -> dict[str, Any]:
    """What `ledger verify` prints for a valid document."""
    state = verdict.state
    return {
        "valid": True, "kind": verdict.kind, "chain_id": chain_id, "height": state.height,
        "block_hash": state.block_hash.hex(), "key": state.keys[0].decode(errors="replace"),
        "present": verdict.present, "record": verdict.record,
        "entries": [{"key": k.decode(errors="replace"), "present": state.values[k] is not None} for k in state.keys],
        "unproven": verdict.unproven, "anchor": anchor_json(state.anchor, state.anchor_asked),
    }


def anchor_json(claim: AnchorClaim | None, asked: bool) -> dict[str, Any] | None:
    if claim is None:
        return {"covered": False} if asked else None
    return {"covered": True, "height": claim.height, "eth_chain_id": claim.eth_chain_id, "contract": claim.contract,
            "tx_hash": claim.tx_hash, "eth_block": claim.eth_block, "submitter": claim.submitter,
            "record_height": claim.record_height, "checked_on_chain": False}


def failure_json(exc: InvalidProof) -> dict[str, Any]:
    return {"valid": False, "reason": exc.code, "message": exc.message}
