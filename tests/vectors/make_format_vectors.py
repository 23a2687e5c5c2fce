"""Known-answer vectors for the ledger's own formats: a transaction's bytes, id and signing digest, a
block header's bytes and hash, a commit certificate's bytes, the genesis hash, and the state root after
a fixed sequence of transactions (docs/architecture.md, "Formats").

Deterministic: keys from fixed seeds, fixed block times, a chain built in process over a MemoryStore
(three blocks after genesis, each committed by three of four validators). Ed25519 signatures are
deterministic, so every byte is fixed.

    python -m tests.vectors.make_format_vectors [--out DIR]     (default: tests/vectors/formats)

`tests/test_format_vectors.py` regenerates them and compares byte for byte with the committed files:
a change to any encoding, hash or signing domain fails it. Regenerate only for a deliberate format
change, and say so in the commit.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

from ledger.chain import CommitCertificate, CommitVote, ValidatorSignature
from ledger.chaindb import ChainDB
from ledger.codec import encode
from ledger.crypto import DOMAIN_COMMIT, SigningKey
from ledger.genesis import Genesis, GenesisMember, GenesisPrefix, GenesisValidator, genesis_to_plain
from ledger.nft.assets import AssetMint, AssetTransfer
from ledger.resolver.registry import IdRegister, IdUpdate, ValueSpec
from ledger.store import MemoryStore
from ledger.tx import compute_signing_digest, compute_tx_id, decode_tx, make_tx

OUT = Path(__file__).resolve().parent / "formats"
CHAIN_ID = "format-vectors"
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z; block h is at T0 + h seconds
VALIDATORS = [SigningKey.from_seed(f"format-validator-{i}".encode()) for i in range(4)]
MEMBERS = {name: SigningKey.from_seed(f"format-member-{name}".encode()) for name in ("admin", "org1", "org2")}


def genesis() -> Genesis:
    m = MEMBERS
    return Genesis(
        chain_id=CHAIN_ID, timestamp=T0,
        validators=tuple(GenesisValidator(f"node{i}", k.public_key) for i, k in enumerate(VALIDATORS)),
        members=(GenesisMember("admin", m["admin"].public_key, ("admin",)),
                 GenesisMember("org1", m["org1"].public_key, ("registrar", "issuer")),
                 GenesisMember("org2", m["org2"].public_key, ("issuer",))),
        prefixes=(GenesisPrefix("88.200", m["org1"].id),),
    )


def transactions() -> list[list[tuple[str, int, str, Any]]]:
    """Blocks of (signer, nonce, kind, payload): the fixed sequence."""
    org2 = MEMBERS["org2"].id
    return [
        [("org1", 1, "id.register", IdRegister("88.200/PUMP-7", (ValueSpec(1, "URL", "https://twin.example/p7"),))),
         ("org1", 2, "asset.mint", AssetMint("PUMP-7", "equipment", "https://meta.example/p7",
                                             hashlib.sha256(b"pump 7").digest(), "", "88.200/PUMP-7"))],
        [("org1", 3, "id.update", IdUpdate("88.200/PUMP-7", (ValueSpec(1, "URL", "https://twin.example/p7/v2"),
                                                              ValueSpec(2, "EMAIL", "ops@org1.example"))))],
        [("org1", 4, "asset.transfer", AssetTransfer("PUMP-7", org2))],
    ]


def build() -> dict[str, str]:
    """file name -> content."""
    g = genesis()
    db = ChainDB(MemoryStore(), g)
    files: dict[str, str] = {"genesis.json": json.dumps(genesis_to_plain(g), indent=2, sort_keys=True) + "\n"}
    txs_out, blocks_out = [], []
    for block_txs in transactions():
        raws = [encode(make_tx(MEMBERS[s], CHAIN_ID, nonce, kind, payload)) for s, nonce, kind, payload in block_txs]
        for (signer, nonce, kind, _), raw in zip(block_txs, raws, strict=True):
            tx = decode_tx(raw)
            txs_out.append({"kind": kind, "signer": signer, "nonce": nonce, "raw": raw.hex(),
                            "id": compute_tx_id(raw).hex(), "signing_digest": compute_signing_digest(raw, tx).hex()})
        height = db.height + 1
        executed = db.build_block(raws, 0, T0 + height * 1000, VALIDATORS[height % 4].id)
        failed = [r for r in executed.results if not r.ok]
        if failed:
            raise SystemExit(f"block {height}: a transaction failed: {failed[0].reason}: {failed[0].message}")
        header = executed.block.header
        vote = CommitVote(CHAIN_ID, header.height, header.view, executed.block_hash)
        signers = [k for i, k in enumerate(VALIDATORS) if i != height % 4]  # three of four
        signatures = tuple(sorted((ValidatorSignature(k.id, k.sign(DOMAIN_COMMIT, vote)) for k in signers),
                                  key=lambda s: s.validator))
        cert = CommitCertificate(header.height, header.view, executed.block_hash, signatures)
        db.commit(executed, cert)
        blocks_out.append({"height": height, "header": encode(header).hex(), "hash": executed.block_hash.hex(),
                           "state_root": header.state_root.hex(), "tx_root": header.tx_root.hex(),
                           "commit_vote": encode(vote).hex(), "certificate": encode(cert).hex()})
    block0 = db.get_block(0)
    assert block0 is not None
    files["genesis-hash.txt"] = g.hash().hex() + "\n"
    files["block0.json"] = _json({"header": encode(block0.header).hex(), "hash": _hash0(db),
                                  "state_root": block0.header.state_root.hex()})
    files["txs.json"] = _json(txs_out)
    files["blocks.json"] = _json(blocks_out)
    files["state-root.txt"] = blocks_out[-1]["state_root"] + "\n"
    return files


def _hash0(db: ChainDB) -> str:
    cert = db.get_certificate(0)
    assert cert is not None
    return cert.block_hash.hex()


def _json(value: Any) -> str:
    return json.dumps(value, indent=2) + "\n"


def write(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in build().items():
        path = out / name
        path.write_bytes(text.encode())
        paths.append(path)
    return paths


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    for p in write(parser.parse_args().out):
        print(p)
