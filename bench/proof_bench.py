"""Benchmark of proof-bearing answers: building them (what a node does per request) and checking them
(what `ledger verify` does), beside ceilings measured in the same run.

Builds a chain in process (MemoryStore, 4 validators, certificates of 3 signatures) holding --ids
identifiers under two prefixes, then, over random identifiers, for --seconds each:

* native answer with proof (one entry: the record), the route's own function;
* Handle answer with proof (two entries since proofs v2: the record and the prefix record behind HS_ADMIN),
  the function the node calls per request, JSON encoding included;
* the proofs alone: one entry (the shape a Handle proof had before v2) and two entries (since v2);
* `verify_document` of a Handle answer (3 signatures, 2 Merkle paths, the answer's fields);

ceilings: sha256 of 65-byte inputs, and Ed25519 verifications (libsodium), per second, one core.
The last line printed is one JSON object with all figures.

    .venv/bin/python bench/proof_bench.py [--ids 20000] [--seconds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger.api.handle_answer import HandleQuery, answer  # noqa: E402
from ledger.api.routes import resolve as resolve_routes  # noqa: E402
from ledger.chain import CommitCertificate, CommitVote, ValidatorSignature  # noqa: E402
from ledger.chaindb import ChainDB  # noqa: E402
from ledger.codec import encode  # noqa: E402
from ledger.crypto import DOMAIN_COMMIT, SigningKey, verify_digest  # noqa: E402
from ledger.genesis import Genesis, GenesisMember, GenesisPrefix, GenesisValidator  # noqa: E402
from ledger.proofs import build_state_proof  # noqa: E402
from ledger.resolver.registry import IdRegister, ValueSpec, identifier_key, prefix_key  # noqa: E402
from ledger.resolver.resolution import resolve_text  # noqa: E402
from ledger.store import MemoryStore  # noqa: E402
from ledger.tx import make_tx  # noqa: E402
from ledger.verifier import verify_document  # noqa: E402

VALIDATORS = [SigningKey.from_seed(f"bench-validator-{i}".encode()) for i in range(4)]
ORG = SigningKey.from_seed(b"bench-org")
PREFIXES = ("88.100.1", "88.100.2")


class Node:
    def __init__(self, chain: ChainDB) -> None:
        self.chain = chain


def build(ids: int) -> tuple[ChainDB, Genesis, list[str]]:
    genesis = Genesis("bench", 1_767_225_600_000, tuple(GenesisValidator(f"v{i}", k.public_key)
                                                        for i, k in enumerate(VALIDATORS)),
                      (GenesisMember("org", ORG.public_key, ("registrar",)),
                       GenesisMember("admin", SigningKey.from_seed(b"bench-admin").public_key, ("admin",))),
                      tuple(GenesisPrefix(p, ORG.id) for p in PREFIXES))
    db = ChainDB(MemoryStore(), genesis)
    names = [f"{PREFIXES[i % 2]}/EQ-{i:07d}" for i in range(ids)]
    nonce = 0
    for start in range(0, ids, 1000):
        txs = []
        for name in names[start:start + 1000]:
            nonce += 1
            txs.append(encode(make_tx(ORG, "bench", nonce, "id.register",
                                      IdRegister(name, (ValueSpec(1, "URL", f"https://twin.example/{name}"),)))))
        executed = db.build_block(txs, 0, genesis.timestamp + db.height * 1000 + 1000, VALIDATORS[0].id)
        header = executed.block.header
        vote = CommitVote("bench", header.height, 0, executed.block_hash)
        sigs = sorted((ValidatorSignature(k.id, k.sign(DOMAIN_COMMIT, vote)) for k in VALIDATORS[:3]),
                      key=lambda s: s.validator)
        db.commit(executed, CommitCertificate(header.height, 0, executed.block_hash, tuple(sigs)))
    return db, genesis, names


def rate(fn: Callable[[], Any], seconds: float) -> float:
    """Calls per second of `fn` over about `seconds`."""
    n = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(20):
            fn()
        n += 20
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ids", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    t0 = time.perf_counter()
    db, genesis, names = build(args.ids)
    print(f"built {args.ids} identifiers in {db.height} blocks in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    node = Node(db)
    rng = random.Random(7)
    query = HandleQuery([], [], None, True)

    def native() -> None:
        resolve_routes._answer(node, resolve_text(db.latest, rng.choice(names)), db.height, True)

    def handle() -> None:
        answer(node, rng.choice(names), query)  # type: ignore[arg-type]

    def one_entry() -> None:
        build_state_proof(db, identifier_key(rng.choice(names)))

    def two_entries() -> None:
        name = rng.choice(names)
        build_state_proof(db, [identifier_key(name), prefix_key(name.partition("/")[0])])

    docs = [json.loads(answer(node, rng.choice(names), query).body) for _ in range(200)]  # type: ignore[arg-type]

    def verify() -> None:
        verify_document(rng.choice(docs), genesis)

    data = b"\x01" + bytes(range(64))
    digest = hashlib.sha256(b"m").digest()
    signature = VALIDATORS[0].sign_digest(digest)
    figures = {
        "ids": args.ids,
        "native_answers_with_proof_per_s": round(rate(native, args.seconds)),
        "handle_answers_with_proof_per_s": round(rate(handle, args.seconds)),
        "one_entry_proofs_per_s": round(rate(one_entry, args.seconds)),
        "two_entry_proofs_per_s": round(rate(two_entries, args.seconds)),
        "verify_handle_answer_per_s": round(rate(verify, args.seconds)),
        "handle_proof_entries": len(docs[0]["proof"]["entries"]),
        "handle_answer_bytes": len(json.dumps(docs[0])),
        "ceiling_sha256_65B_per_s": round(rate(lambda: hashlib.sha256(data).digest(), args.seconds)),
        "ceiling_ed25519_verify_per_s": round(rate(lambda: verify_digest(VALIDATORS[0].public_key, digest, signature),
                                                   args.seconds)),
    }
    for name, value in figures.items():
        print(f"{name:36} {value:>12,}", file=sys.stderr)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
