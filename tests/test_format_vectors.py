"""The ledger's own formats pinned by known-answer vectors (tests/vectors/formats, made by
tests/vectors/make_format_vectors.py): regenerated and compared byte for byte, so a change to an
encoding, a hash or a signing domain fails here even when every other test, comparing the code with
itself, passes. The vectors are also checked against their definitions with msgpack, hashlib and
Ed25519 alone, not the ledger's code, so a wrong vector cannot pass for a right one."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tests.vectors.make_format_vectors import OUT, VALIDATORS, write

DOMAIN_TX = b"ledger/tx/v1"
DOMAIN_COMMIT = b"ledger/commit/v1"


def _load(name: str) -> Any:
    return json.loads((OUT / name).read_text())


def test_regenerated_vectors_equal_the_committed_files_byte_for_byte(tmp_path: Path) -> None:
    made = {p.name: p.read_bytes() for p in write(tmp_path)}
    committed = {p.name: p.read_bytes() for p in OUT.iterdir()}
    assert sorted(made) == sorted(committed)
    for name, data in made.items():
        assert data == committed[name], f"{name} differs from the committed vector: the format changed"


@pytest.mark.parametrize("tx", _load("txs.json"), ids=lambda t: f"{t['kind']}-{t['nonce']}")
def test_tx_id_and_signing_digest_follow_their_definitions(tx: dict[str, Any]) -> None:
    raw = bytes.fromhex(tx["raw"])
    fields = msgpack.unpackb(raw)  # [chain_id, kind, sender, nonce, payload, signature]
    assert fields[1] == tx["kind"] and fields[3] == tx["nonce"] and len(fields) == 6
    assert hashlib.sha256(raw).hexdigest() == tx["id"]  # the id: sha256 of the canonical bytes
    body = msgpack.packb(fields[:5], use_bin_type=True)  # the unsigned body: the first five fields
    assert hashlib.sha256(DOMAIN_TX + body).hexdigest() == tx["signing_digest"]


def test_block_hashes_state_roots_and_certificates_follow_their_definitions() -> None:
    keys = {k.id: Ed25519PublicKey.from_public_bytes(k.public_key) for k in VALIDATORS}
    block0 = _load("block0.json")
    prev = block0["hash"]
    genesis_hash = (OUT / "genesis-hash.txt").read_text().strip()
    header0 = msgpack.unpackb(bytes.fromhex(block0["header"]))
    assert header0[1].hex() == genesis_hash  # block 0 links to the genesis hash
    assert hashlib.sha256(bytes.fromhex(block0["header"])).hexdigest() == block0["hash"]
    for block in _load("blocks.json"):
        header = bytes.fromhex(block["header"])
        height, prev_hash, view, _, tx_root, state_root, _, _ = msgpack.unpackb(header)
        assert height == block["height"] and prev_hash.hex() == prev
        assert hashlib.sha256(header).hexdigest() == block["hash"]
        assert (state_root.hex(), tx_root.hex()) == (block["state_root"], block["tx_root"])
        vote = bytes.fromhex(block["commit_vote"])
        assert msgpack.unpackb(vote)[1:] == [height, view, bytes.fromhex(block["hash"])]
        cert_height, cert_view, cert_hash, signatures = msgpack.unpackb(bytes.fromhex(block["certificate"]))
        assert (cert_height, cert_view, cert_hash.hex()) == (height, view, block["hash"])
        assert len(signatures) == 3 and [s[0] for s in signatures] == sorted(s[0] for s in signatures)
        for validator, signature in signatures:
            keys[validator].verify(signature, hashlib.sha256(DOMAIN_COMMIT + vote).digest())
        prev = block["hash"]
    assert (OUT / "state-root.txt").read_text().strip() == _load("blocks.json")[-1]["state_root"]
