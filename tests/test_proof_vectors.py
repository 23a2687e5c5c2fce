"""The known-answer vectors of docs/proofs.md: made by a deterministic script, checked byte for byte, and held
against `ledger verify` and against a second verifier written from the page alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ledger.chaindb import ChainDB
from ledger.cli import main as ledger_main
from ledger.genesis import Genesis, save_genesis
from ledger.resolver import gs1
from ledger.resolver.identifiers import owner_prefix_candidates, parse_identifier
from ledger.store import MemoryStore
from tests.vectors import independent_verifier, make_proof_vectors

VECTORS = make_proof_vectors.OUT
FILES = sorted(VECTORS.glob("[0-9]*.json"))
GENESIS = VECTORS / "genesis.json"


def test_vectors_are_what_the_script_makes_byte_for_byte(tmp_path: Path) -> None:
    made = make_proof_vectors.write(tmp_path / "proofs")
    assert sorted(p.name for p in made) == sorted(p.name for p in VECTORS.glob("*.json"))
    for path in made:
        assert path.read_bytes() == (VECTORS / path.name).read_bytes(), f"{path.name} differs: rerun the script"


def test_vectors_cover_every_kind_and_stay_small() -> None:
    expected = [json.loads(f.read_text())["expected"] for f in FILES]
    kinds = {e["kind"] for e in expected if e["valid"]}
    assert kinds == {"identifier", "handle", "asset", "licence", "rights-check", "state-proof"}
    assert sum(1 for e in expected if not e["valid"]) >= 50
    # Version 3 too: proofs after validator-set changes, valid and tampered.
    types = {json.loads(f.read_text())["document"].get("proof", {}).get("type") for f in FILES}
    assert {"ledger-state-proof/v2", "ledger-state-proof/v3"} <= types
    # (anchored answers carry the certified record of their anchor: header, certificate, state path; version-3
    # ones the certified block and set record of each change)
    assert sum(f.stat().st_size for f in VECTORS.glob("*.json")) < 600_000


def _summary(out: dict[str, Any]) -> dict[str, Any]:
    if not out["valid"]:
        return {"valid": False, "reason": out["reason"]}
    return {k: out[k] for k in ("valid", "kind", "height", "key", "present", "unproven")}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_ledger_verify_gives_each_vector_its_expected_verdict(path: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    vector = json.loads(path.read_text())
    document = tmp_path / "document.json"
    document.write_text(json.dumps(vector["document"]))
    code = ledger_main(["verify", str(document), "--genesis", str(GENESIS)])
    out = json.loads(capsys.readouterr().out)
    assert _summary(out) == vector["expected"]
    assert code == (0 if vector["expected"]["valid"] else 1)


def test_the_independent_verifier_agrees_on_every_vector() -> None:
    genesis = json.loads(GENESIS.read_text())
    disagreements = []
    for path in FILES:
        vector = json.loads(path.read_text())
        verdict = independent_verifier.verify(vector["document"], genesis)
        if verdict != vector["expected"]:
            disagreements.append((path.stem, vector["expected"], verdict))
    assert disagreements == []


def test_the_pages_company_prefix_rule_is_the_resolvers() -> None:
    """docs/proofs.md 10.4 states which digits of a GS1 key give its company-prefix candidates; that rule must
    be the resolver's for every primary-key AI (the spec would otherwise drift from the code)."""
    keys = [ai for ai, entry in gs1.AI_TABLE.items() if entry.qualifier_paths is not None]
    assert keys, "no GS1 primary keys"
    for ai in keys:
        entry = gs1.AI_TABLE[ai]
        assert entry.gcp_span is not None and entry.gcp_span[1] - entry.gcp_span[0] >= 12, ai
        offset = 1 if ai in independent_verifier.OFFSET_ONE else 0
        assert entry.gcp_span[0] == offset, ai
    # One real key end to end: the resolver's candidates are the page's.
    ident = parse_identifier("gs1/01/09506000134376/21/12345")
    digits = "9506000134376"[:12]
    assert owner_prefix_candidates(ident) == [f"gs1:{digits[:n]}" for n in range(12, 3, -1)]


def assert_independent_block0(genesis: Genesis, tmp_path: Path) -> None:
    """The independent verifier reads `genesis` from its file to the same hash and block 0 state root."""
    path = tmp_path / "genesis.json"
    save_genesis(genesis, path)
    theirs = independent_verifier.Genesis(json.loads(path.read_text()))
    assert theirs.hash() == genesis.hash()
    block0 = ChainDB(MemoryStore(), genesis).get_block(0)
    assert block0 is not None
    assert theirs.header0()[5] == block0.header.state_root


def test_the_independent_verifier_computes_block_0_of_a_genesis_with_governance(tmp_path: Path) -> None:
    """The optional governance section changes the genesis hash and block 0's state; a verifier written
    from the page computes both as the ledger does (and as it did before, without the section)."""
    from ledger.crypto import SigningKey
    from ledger.genesis import GenesisMember, GenesisValidator
    from ledger.governance import GovernanceSettings

    keys = [SigningKey.from_seed(f"gov-genesis-{i}".encode()) for i in range(3)]
    members = tuple(GenesisMember(f"admin{i}", k.public_key, ("admin",)) for i, k in enumerate(keys))
    for governance in (None, GovernanceSettings(2, 86_400_000)):
        genesis = Genesis("gov-chain", 1_767_225_600_000, (GenesisValidator("v0", keys[0].public_key),),
                          members, (), governance)
        assert_independent_block0(genesis, tmp_path)
