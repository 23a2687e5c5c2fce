"""Known-answer vectors for proofs and the answers around them (docs/proofs.md, "Known-answer vectors").

Deterministic: validator and member keys come from fixed seeds, block times are fixed, and the chain is
built in process over a MemoryStore, block by block, each committed with a certificate signed by a bare
quorum of the validators in force (three of four, rotating). A second chain from the same genesis
changes its validator set twice (a fifth validator added, then one removed): its proofs are version 3
(`validator_sets`), and come after the version-2 vectors, which stay as they were. The answers are made
by the node's own route functions, so they are exactly what a node serves. Each tampered vector is one
genuine answer with one edit and the failure code the edit must produce; the generator refuses to write a
vector whose verdict under the reference verifier is not the one declared here.

    python -m tests.vectors.make_proof_vectors [--out DIR]     (default: tests/vectors/proofs)

`tests/test_proof_vectors.py` regenerates them and compares byte for byte with the committed files.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import hashlib
import json
import shutil
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import Request

from ledger.anchor.records import AnchorRecord
from ledger.anchor.settings import AnchoringSettings
from ledger.api.errors import ApiError
from ledger.api.handle_answer import HandleQuery
from ledger.api.handle_answer import answer as handle_answer
from ledger.api.routes import assets as asset_routes
from ledger.api.routes import resolve as resolve_routes
from ledger.chain import CommitCertificate, CommitVote, ValidatorSignature
from ledger.chaindb import ChainDB
from ledger.consensus.quorum import quorum_size
from ledger.crypto import DOMAIN_COMMIT, SigningKey
from ledger.genesis import Genesis, GenesisMember, GenesisPrefix, GenesisValidator, genesis_to_plain
from ledger.nft.assets import AssetLease, AssetMint, AssetTransfer
from ledger.nft.rights import LicenceGrant, LicenceRevoke, compute_licence_id
from ledger.proofs import InvalidProof, build_state_proof
from ledger.resolver.registry import IdRegister, IdUpdate, ValueSpec
from ledger.store import MemoryStore
from ledger.tx import make_tx
from ledger.validators import ACTIVATION_DELAY, ValidatorAdd, ValidatorRemove
from ledger.verifier import verify_document

OUT = Path(__file__).resolve().parent / "proofs"
CHAIN_ID = "vectors"
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z: the genesis time; block h is at T0 + h seconds
YEAR_MS = 365 * 24 * 3600 * 1000
VALIDATORS = [SigningKey.from_seed(f"vector-validator-{i}".encode()) for i in range(4)]
ADDED = SigningKey.from_seed(b"vector-validator-4")  # joins the second chain's set; VALIDATORS[3] leaves it
SIGNING_KEYS = {k.id: k for k in (*VALIDATORS, ADDED)}
MEMBERS = {name: SigningKey.from_seed(f"vector-member-{name}".encode()) for name in ("admin", "org1", "org2", "org3")}
ITEM = "88.100.1/EQ-1"
GS1_ITEM = "gs1/01/09506000134376/21/12345"
CONTRACT = "0x5fbdb2315678afecb367f032d93f642f64180aa3"
SUBMITTERS = ("0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266", "0x70997970c51812dc3a010c7d01b54e28e8d1ec45")


def genesis() -> Genesis:
    m = MEMBERS
    return Genesis(
        chain_id=CHAIN_ID, timestamp=T0,
        validators=tuple(GenesisValidator(f"node{i}", k.public_key) for i, k in enumerate(VALIDATORS)),
        members=(
            GenesisMember("admin", m["admin"].public_key, ("admin",)),
            GenesisMember("org1", m["org1"].public_key, ("registrar", "issuer")),
            GenesisMember("org2", m["org2"].public_key, ("issuer", "registrar")),
            GenesisMember("org3", m["org3"].public_key, ("registrar",)),
        ),
        prefixes=(GenesisPrefix("88.100.1", m["org1"].id), GenesisPrefix("gs1:9506000", m["org1"].id)),
        anchoring=AnchoringSettings(31337, CONTRACT, SUBMITTERS),  # without governance: its element is null
    )


class Chain:
    """The in-process chain: blocks of signed transactions, each committed with a bare quorum's certificate."""

    def __init__(self) -> None:
        self.genesis = genesis()
        self.db = ChainDB(MemoryStore(), self.genesis)
        self.nonces: dict[str, int] = {}

    def tx(self, signer: str | SigningKey, kind: str, payload: Any) -> bytes:
        key = MEMBERS[signer] if isinstance(signer, str) else signer
        self.nonces[key.id] = self.nonces.get(key.id, 0) + 1
        from ledger.codec import encode

        return encode(make_tx(key, CHAIN_ID, self.nonces[key.id], kind, payload))

    def block(self, *txs: bytes) -> int:
        height = self.db.height + 1
        in_force = [SIGNING_KEYS[v.id] for v in self.db.validators_at(height)]
        n = len(in_force)
        proposer = in_force[height % n]
        executed = self.db.build_block(list(txs), 0, T0 + height * 1000, proposer.id)
        failed = [r for r in executed.results if not r.ok]
        if failed:
            raise SystemExit(f"block {height}: a transaction failed: {failed[0].reason}: {failed[0].message}")
        header = executed.block.header
        vote = CommitVote(CHAIN_ID, header.height, header.view, executed.block_hash)
        # A bare quorum, the ones left out rotating (three of four: all but the proposer).
        left_out = {(height + j) % n for j in range(n - quorum_size(n))}
        signers = [k for i, k in enumerate(in_force) if i not in left_out]
        signatures = sorted((ValidatorSignature(k.id, k.sign(DOMAIN_COMMIT, vote)) for k in signers),
                            key=lambda s: s.validator)
        self.db.commit(executed, CommitCertificate(header.height, header.view, executed.block_hash,
                                                   tuple(signatures)))
        return height


@dataclass
class Built:
    chain: Chain
    heights: dict[str, int]
    licences: dict[str, str]


def build() -> Built:
    c = Chain()
    m = {name: k.id for name, k in MEMBERS.items()}
    h: dict[str, int] = {}
    h["registered"] = c.block(
        c.tx("org1", "id.register", IdRegister(ITEM, (ValueSpec(1, "URL", "https://twin.example/EQ-1/v1"),
                                                      ValueSpec(2, "EMAIL", "ops@org1.example")))),
        c.tx("org1", "id.register", IdRegister(GS1_ITEM, (ValueSpec(1, "URL", "https://twin.example/gs1-12345"),))),
    )
    h["updated"] = c.block(c.tx("org1", "id.update", IdUpdate(ITEM, (
        ValueSpec(1, "URL", "https://twin.example/EQ-1/v2"), ValueSpec(2, "EMAIL", "ops@org1.example"),
        ValueSpec(3, "DESC", "Feed pump, line 4")))))
    h["minted"] = c.block(
        c.tx("org1", "asset.mint", AssetMint("PUMP-1", "equipment", "https://meta.example/PUMP-1",
                                             hashlib.sha256(b"PUMP-1 metadata").digest(), "", ITEM)),
        c.tx("org1", "asset.mint", AssetMint("PUMP-2", "equipment", "https://meta.example/PUMP-2",
                                             hashlib.sha256(b"PUMP-2 metadata").digest(), "", "")),
    )
    root_tx = c.tx("org1", "licence.grant", LicenceGrant("PUMP-1", "", m["org2"], ("maintenance", "monitoring"), 0,
                                                         T0 + YEAR_MS, True, "https://terms.example/1",
                                                         hashlib.sha256(b"terms 1").digest()))
    # A licence valid since before 1970: records may hold negative integers, and verifiers must take them.
    early_tx = c.tx("org1", "licence.grant", LicenceGrant("PUMP-1", "", m["org3"], ("archiving",), -86_400_000,
                                                          T0 + YEAR_MS, False, "", b""))
    h["granted"] = c.block(root_tx, early_tx,
                           c.tx("org1", "asset.lease", AssetLease("PUMP-1", m["org3"], T0 + YEAR_MS)))
    root = licence_id(root_tx)
    child_tx = c.tx("org2", "licence.grant", LicenceGrant("PUMP-1", root, m["org3"], ("monitoring",), 0,
                                                          T0 + YEAR_MS // 2, False, "", b""))
    revoked_tx = c.tx("org2", "licence.grant", LicenceGrant("PUMP-1", root, m["org3"], ("maintenance",), 0,
                                                            T0 + YEAR_MS // 2, False, "", b""))
    h["sublicensed"] = c.block(child_tx, revoked_tx)
    h["anchored"] = c.block(c.tx("org2", "licence.revoke", LicenceRevoke(licence_id(revoked_tx))),
                            c.tx("org1", "asset.transfer", AssetTransfer("PUMP-2", m["org2"])))
    record = AnchorRecord(h["anchored"], c.db.head_hash, 31337, CONTRACT,
                          hashlib.sha256(b"anchor transaction").digest(), 12, SUBMITTERS[0])
    # Two validators of four (f+1) attest it alike: it takes effect.
    h["recorded"] = c.block(c.tx(VALIDATORS[0], "anchor.attest", record), c.tx(VALIDATORS[1], "anchor.attest", record))
    h["head"] = c.block(c.tx("org1", "id.register",
                             IdRegister("88.100.1/EQ-2", (ValueSpec(1, "URL", "https://x.example"),))))
    return Built(c, h, {"root": root, "child": licence_id(child_tx), "revoked": licence_id(revoked_tx),
                        "early": licence_id(early_tx)})


def build_changed() -> Built:
    """The second chain: ITEM registered and anchored; ADDED joins the set, the anchor's record is made effective
    after that (so a proof of the anchored block carries the change); ITEM updated; VALIDATORS[3] leaves."""
    c = Chain()
    h: dict[str, int] = {}
    h["registered"] = c.block(c.tx("org1", "id.register", IdRegister(ITEM, (
        ValueSpec(1, "URL", "https://twin.example/EQ-1/v1"),))))
    record = AnchorRecord(h["registered"], c.db.head_hash, 31337, CONTRACT,
                          hashlib.sha256(b"anchor transaction, second chain").digest(), 40, SUBMITTERS[1])
    h["added"] = c.block(c.tx("admin", "validator.add", ValidatorAdd(ADDED.public_key, "node4.example", 7004)))
    while c.db.height < h["added"] + ACTIVATION_DELAY:
        c.block()
    # Two validators of five (f+1) attest it alike, one of them the added one: it takes effect.
    h["recorded"] = c.block(c.tx(VALIDATORS[0], "anchor.attest", record), c.tx(ADDED, "anchor.attest", record))
    h["updated"] = c.block(c.tx("org1", "id.update", IdUpdate(ITEM, (
        ValueSpec(1, "URL", "https://twin.example/EQ-1/v2"),))))
    h["removed"] = c.block(c.tx("admin", "validator.remove", ValidatorRemove(VALIDATORS[3].id)))
    while c.db.height < h["removed"] + ACTIVATION_DELAY:
        c.block()
    h["head"] = c.block(c.tx("org1", "id.register", IdRegister("88.100.1/EQ-3", (ValueSpec(1, "URL", "https://twin.example/EQ-3"),))))
    return Built(c, h, {})


def licence_id(raw_tx: bytes) -> str:
    from ledger.tx import compute_tx_id

    return compute_licence_id(compute_tx_id(raw_tx))


# --- answers, made by the node's own routes ----------------------------------------------------------


NO_CLIENT = Request({"type": "http"})  # a request without a client budget to charge


class FakeNode:
    """What the routes read from a node: its chain."""

    def __init__(self, chain: ChainDB) -> None:
        self.chain = chain


def route(call: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    """A route's JSON answer; an ApiError becomes the error body the node sends."""
    try:
        return json.loads(json.dumps(asyncio.run(call)))
    except ApiError as exc:
        return json.loads(json.dumps({"error": exc.error, "message": exc.message, **exc.extra}))


def handle(node: FakeNode, name: str, index: tuple[str, ...] = (), types: tuple[str, ...] = ()) -> dict[str, Any]:
    result = handle_answer(node, name, HandleQuery(list(index), list(types), None, True))  # type: ignore[arg-type]
    return json.loads(result.body)


def genuine(built: Built) -> dict[str, tuple[str, dict[str, Any]]]:
    """name -> (description, document): every kind of answer, as a node serves it."""
    node = FakeNode(built.chain.db)
    h, lic = built.heights, built.licences
    resolve, assets = resolve_routes, asset_routes
    gs1_form = "(01)09506000134376(21)12345"
    return {
        "identifier-found": ("native answer: the record at the head", route(resolve.resolve(ITEM, node, None, True))),
        "identifier-past": ("native answer at an earlier height: the record before its update",
                            route(resolve.resolve(ITEM, node, h["registered"], True))),
        "identifier-absent": ("native 404 answer: a proof of absence (the path ends in another key's leaf or an "
                              "empty subtree)", route(resolve.resolve("88.100.1/NOPE", node, None, True))),
        "identifier-absent-empty": ("native 404 answer whose path ends in an empty subtree (no other leaf)",
                                    route(resolve.resolve(absent_in_empty_subtree(built.chain.db), node, None, True))),
        "identifier-absent-batch": ("an entry of POST /v1/resolve for an unknown identifier: record null",
                                    route(resolve.resolve_batch(NO_CLIENT, node, ["88.100.1/NOPE-2"], None,
                                                                True))["results"][0]),
        "identifier-gs1-input": ("a GS1 item asked for by its element string: the form asked for is unproven",
                                 route(resolve.resolve(gs1_form, node, None, True))),
        "identifier-genesis": ("an absence at height 0: the header is the genesis file's block 0",
                               route(resolve.resolve(ITEM, node, 0, True))),
        "handle-found": ("Handle.Net answer with every value and the HS_ADMIN value, prefix proven",
                         handle(node, ITEM)),
        "handle-filtered": ("Handle.Net answer of the values of type URL", handle(node, ITEM, types=("URL",))),
        "handle-no-match": ("Handle.Net responseCode 200: present, no value matched the filter",
                            handle(node, ITEM, index=("7",))),
        "handle-absent": ("Handle.Net responseCode 100 with a proof of absence", handle(node, "88.100.1/NOPE")),
        "handle-gs1": ("Handle.Net answer for a GS1 key: HS_ADMIN names gs1:9506000; longer company prefixes "
                       "proven absent", handle(node, GS1_ITEM)),
        "anchored-same-block": ("a proof at the anchored height itself: the anchored header is the proven header",
                                route(resolve.resolve(ITEM, node, h["anchored"], True, True))),
        "anchored-history": ("a proof at an earlier height, linked to the anchored header by an RFC 6962 proof",
                             route(resolve.resolve(ITEM, node, h["updated"], True, True))),
        "anchored-none": ("anchor asked at the head, which no anchor covers yet: anchor null",
                          route(resolve.resolve(ITEM, node, None, True, True))),
        "asset": ("asset answer with its provenance (every event proven) and user_of at the block's time",
                  route(assets.asset("PUMP-2", node, None, True, False, True))),
        "asset-show": ("`ledger asset show --proof`: the asset answer with id, owner, kind, burned at the top; "
                       "anchored, leased", show(route(assets.asset("PUMP-1", node, h["anchored"], True, True, True)))),
        "licence-active": ("a sublicence, active: its parent is proven too",
                           route(assets.licence(lic["child"], node, None, True))),
        "licence-before-1970": ("a licence whose validity starts before 1970: a negative integer in a record",
                                route(assets.licence(lic["early"], node, None, True))),
        "licence-revoked": ("a revoked licence: inactive_reason revoked",
                            route(assets.licence(lic["revoked"], node, None, True))),
        "rights-allowed": ("rights check: allowed, decided again from the token, holder, licences and ancestors",
                           route(assets.rights_check(node, "PUMP-1", MEMBERS["org3"].id, "monitoring",
                                                     str(T0 + 3600_000), True))),
        "rights-denied": ("rights check: denied, the only licence for the purpose is revoked",
                          route(assets.rights_check(node, "PUMP-1", MEMBERS["org3"].id, "maintenance",
                                                    str(T0 + 3600_000), True))),
        "rights-unknown-token": ("rights check of a token that does not exist: its absence is proven",
                                 route(assets.rights_check(node, "PUMP-9", MEMBERS["org3"].id, "maintenance",
                                                           str(T0), True))),
        "state-proof": ("a bare state proof of two keys (a member and a prefix), no answer around it",
                        build_state_proof(built.chain.db, [b"member/" + MEMBERS["org2"].id.encode(),
                                                           b"prefix/88.100.1"], h["granted"])),
    }


def genuine_sets(built: Built) -> dict[str, tuple[str, dict[str, Any]]]:
    """name -> (description, document): version-3 answers of the second chain."""
    node = FakeNode(built.chain.db)
    h = built.heights
    resolve = resolve_routes
    return {
        "sets-two-changes": ("version 3: native answer after two set changes (a validator added, then one "
                             "removed), certified by the set of four left",
                             route(resolve.resolve(ITEM, node, None, True))),
        "sets-one-change": ("version 3: native answer between the two changes, certified by five validators",
                            route(resolve.resolve(ITEM, node, h["updated"], True))),
        "sets-before-changes": ("version 2: the same chain before its first change: no validator_sets",
                                route(resolve.resolve(ITEM, node, h["added"], True))),
        "sets-anchor-record-later": ("version 3: a block of genesis's set whose anchor was recorded after the "
                                     "first change: the proof carries the change for the record's certificate",
                                     route(resolve.resolve(ITEM, node, h["registered"], True, True))),
    }


def edits_sets(docs: dict[str, tuple[str, dict[str, Any]]]) -> list[tuple[str, str, str, str, Edit]]:
    """(name, base vector, description, expected reason, edit) on the version-3 answers `docs`."""
    later_change = docs["sets-two-changes"][1]["proof"]["validator_sets"][1]
    removed = VALIDATORS[3]

    def p(doc: dict[str, Any]) -> dict[str, Any]:
        return doc["proof"]

    def links(doc: dict[str, Any]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = p(doc)["validator_sets"]
        return found

    def as_v2(doc: dict[str, Any]) -> None:
        del p(doc)["validator_sets"]
        p(doc)["type"] = "ledger-state-proof/v2"

    def removed_signs(doc: dict[str, Any]) -> None:
        """The removed validator's valid commit signature added to the proven block (after its removal)."""
        hdr = p(doc)["header"]
        vote = CommitVote(CHAIN_ID, hdr["height"], hdr["view"], bytes.fromhex(p(doc)["certificate"]["block_hash"]))
        sigs = [*p(doc)["certificate"]["signatures"],
                {"validator": removed.id, "signature": removed.sign(DOMAIN_COMMIT, vote).hex()}]
        p(doc)["certificate"]["signatures"] = sorted(sigs, key=lambda x: x["validator"])

    def with_(fn: Callable[[dict[str, Any]], Any]) -> Edit:
        return lambda doc: None if fn(doc) else None

    return [
        ("sets-as-v2", "sets-two-changes", "the changes left out, type v2: the proven block checked against "
         "genesis's set", "certificate_signers", as_v2),
        ("sets-missing", "sets-two-changes", "validator_sets removed from a version-3 proof", "malformed_proof",
         with_(lambda d: p(d).pop("validator_sets"))),
        ("sets-empty", "sets-two-changes", "validator_sets empty", "malformed_proof",
         with_(lambda d: links(d).clear())),
        ("sets-first-dropped", "sets-two-changes", "the first change left out: the second's block is checked "
         "against genesis's set", "certificate_signers", with_(lambda d: links(d).pop(0))),
        ("sets-last-dropped", "sets-two-changes", "the last change left out: the proven block's three signatures are "
         "checked against the five, of whom they are no quorum", "certificate_quorum",
         with_(lambda d: links(d).pop())),
        ("sets-repeated", "sets-two-changes", "a change listed twice", "validator_set_link",
         with_(lambda d: links(d).append(copy.deepcopy(links(d)[1])))),
        ("sets-swapped", "sets-two-changes", "the two changes in the other order: the later one's block is "
         "checked against genesis's set", "certificate_signers",
         with_(lambda d: links(d).reverse())),
        ("sets-entry-other", "sets-two-changes", "the second change's entry replaced by the first's",
         "validator_set_link", with_(lambda d: links(d)[1].update(entry=copy.deepcopy(links(d)[0]["entry"])))),
        ("sets-record-bit", "sets-two-changes", "one bit flipped in a set record", "validator_set_link",
         with_(lambda d: links(d)[0]["entry"].update(value=flip(links(d)[0]["entry"]["value"], 41)))),
        ("sets-link-no-quorum", "sets-two-changes", "a change's block certified by too few signatures",
         "certificate_quorum", with_(lambda d: links(d)[0]["certificate"]["signatures"].pop())),
        ("sets-link-signature-bit", "sets-two-changes", "one bit flipped in a signature on a change's block",
         "certificate_signature", with_(lambda d: links(d)[1]["certificate"]["signatures"][0].update(
             signature=flip(links(d)[1]["certificate"]["signatures"][0]["signature"], 5)))),
        ("sets-link-header-bit", "sets-two-changes", "one bit flipped in a change's block header",
         "validator_set_link", with_(lambda d: links(d)[0]["header"].update(
             state_root=flip(links(d)[0]["header"]["state_root"])))),
        ("sets-not-in-force", "sets-one-change", "a change that takes effect after every block the proof "
         "certifies", "validator_set_link",
         with_(lambda d: links(d).append(copy.deepcopy(later_change)))),
        ("sets-removed-signs", "sets-two-changes", "the removed validator's genuine signature added",
         "certificate_signers", removed_signs),
        ("sets-anchor-as-v2", "sets-anchor-record-later", "the change left out of an anchored proof: the record's "
         "block (signed by the added validator) is checked against genesis's set", "anchor_certificate", as_v2),
    ]


def absent_in_empty_subtree(db: ChainDB) -> str:
    """The first of 88.100.1/NONE-0, -1, ... whose absence proof ends in an empty subtree."""
    for i in range(1000):
        name = f"88.100.1/NONE-{i}"
        _, value, smt = db.prove(f"id/{name}".encode())
        if value is None and smt.leaf is None:
            return name
    raise SystemExit("no identifier absent in an empty subtree")


def show(body: dict[str, Any]) -> dict[str, Any]:
    """What `ledger asset show --proof` prints (ledger/cli/assets.py)."""
    a = body["asset"]
    return {"id": a["id"], "owner": a["owner"], "kind": a["kind"], "burned": a["burned"], **body}


# --- tampering: one edit each, with the check it must fail ---------------------------------------------


def flip(hex_text: str, nibble: int = 0) -> str:
    """One bit flipped in a hex string (lowest bit of the nibble at `nibble`)."""
    c = int(hex_text[nibble], 16) ^ 1
    return hex_text[:nibble] + format(c, "x") + hex_text[nibble + 1:]


Edit = Callable[[dict[str, Any]], None]


def edits(built: Built) -> list[tuple[str, str, str, str, Edit]]:
    """(name, base vector, description, expected reason, edit)."""
    org2 = MEMBERS["org2"].id

    def p(doc: dict[str, Any]) -> dict[str, Any]:
        return doc["proof"]

    def e0(doc: dict[str, Any]) -> dict[str, Any]:
        entries: list[dict[str, Any]] = p(doc)["entries"]
        return entries[0]

    def sig(doc: dict[str, Any], i: int = 0) -> dict[str, Any]:
        signatures: list[dict[str, Any]] = p(doc)["certificate"]["signatures"]
        return signatures[i]

    def as_not_found(doc: dict[str, Any]) -> None:
        del doc["record"]
        doc["error"] = "not_found"
        doc["message"] = f"{ITEM} is not registered"

    def set_(path: str, value: Any) -> Edit:
        def edit(doc: dict[str, Any]) -> None:
            *parents, last = path.split(".")
            target: Any = doc
            for step in parents:
                target = target[int(step)] if isinstance(target, list) else target[step]
            if isinstance(target, list):
                target[int(last)] = value
            else:
                target[last] = value
        return edit

    def with_(fn: Callable[[dict[str, Any]], Any]) -> Edit:
        return lambda doc: None if fn(doc) else None

    return [
        # The tamperings.
        ("found-as-not-found", "identifier-found", "the record deleted and a not_found error added",
         "answer_presence", as_not_found),
        ("asset-other-id", "asset-show", "the top-level id names another token", "answer_key",
         set_("id", "PUMP-2")),
        ("asset-id-not-text", "asset-show", "the top-level id given as a number", "answer_fields", set_("id", 1)),
        ("identifier-lone-surrogate", "identifier-found", "the identifier is text UTF-8 cannot encode",
         "answer_key", set_("identifier", "88.100.1/EQ-\ud800")),
        ("asset-history-edited", "asset", "a history event's detail edited", "answer_derived",
         set_("history.0.detail", "minted elsewhere")),
        ("asset-history-dropped", "asset", "the latest history event left out", "answer_derived",
         with_(lambda d: d["history"].pop())),
        ("asset-user-of", "asset", "user_of names another member", "answer_derived", set_("user_of", org2)),
        ("absent-message", "identifier-absent", "the error message edited", "answer_derived",
         set_("message", "88.100.1/NOPE was deleted by org2")),
        # Native answers.
        ("absent-with-record", "identifier-absent", "an absence answer given a record", "answer_fields",
         set_("record", {"handle": "88.100.1/NOPE"})),
        ("batch-absent-as-found", "identifier-absent-batch", "record null replaced by a record", "answer_presence",
         set_("record", {"handle": "88.100.1/NOPE-2"})),
        ("record-value", "identifier-found", "a value of the record edited", "answer_record",
         set_("record.values.0.value", "https://evil.example/")),
        ("record-float-for-int", "identifier-found", "an integer of the record written as a float", "answer_record",
         set_("record.created_height", 1.0)),
        ("identifier-other", "identifier-found", "the identifier names another one", "answer_key",
         set_("identifier", "88.100.1/EQ-2")),
        ("height-other", "identifier-found", "the answer's height edited", "answer_height",
         with_(lambda d: d.update(height=d["height"] - 1))),
        ("height-float", "identifier-found", "the answer's height written as a float", "answer_fields",
         with_(lambda d: d.update(height=float(d["height"])))),
        ("extra-field", "identifier-found", "a field no proof covers added", "answer_fields",
         set_("owner", "org1")),
        ("unproven-edited", "identifier-gs1-input", "the unproven part edited: still valid, reported as unproven",
         "", set_("unproven.input", "(01)09506000134376(21)99999")),
        # Handle answers.
        ("handle-value", "handle-found", "a value's data edited", "answer_derived",
         set_("values.0.data.value", "https://evil.example/")),
        ("handle-admin", "handle-found", "HS_ADMIN names another prefix", "answer_derived",
         with_(lambda d: next(v for v in d["values"] if v["index"] == 100)["data"]["value"].update(
             handle="0.NA/88.100.2"))),
        ("handle-code", "handle-found", "responseCode 200 instead of 1", "answer_derived", set_("responseCode", 200)),
        ("handle-absent-code", "handle-absent", "responseCode 1 for an absent handle", "answer_presence",
         set_("responseCode", 1)),
        ("handle-filter-dropped", "handle-filtered", "the filter removed: the values claim to be all of them",
         "answer_derived", with_(lambda d: d.pop("filter"))),
        ("handle-other", "handle-found", "the handle names another identifier", "answer_key",
         set_("handle", "88.100.1/EQ-2")),
        ("handle-gs1-prefix-entry", "handle-gs1", "a longer company prefix's absence left out of the proof",
         "proof_incomplete", with_(lambda d: p(d)["entries"].pop(1))),
        # Licence and rights answers.
        ("licence-active-flipped", "licence-revoked", "a revoked licence said to be active", "answer_derived",
         with_(lambda d: d.update(active=True, inactive_reason=""))),
        ("licence-parent-dropped", "licence-active", "the parent licence left out of the proof", "proof_incomplete",
         with_(lambda d: p(d)["entries"].pop())),
        ("rights-allowed-flipped", "rights-denied", "a denial said to be allowed", "answer_derived",
         with_(lambda d: d.update(allowed=True, reason="allowed"))),
        ("rights-holder", "rights-allowed", "the question's holder changed", "proof_incomplete",
         set_("holder", org2)),
        ("rights-reason", "rights-denied", "the denial's reason edited", "answer_derived",
         set_("reason", "expired")),
        # The certificate.
        ("signature-bit", "identifier-found", "one bit flipped in a commit signature", "certificate_signature",
         with_(lambda d: sig(d).update(signature=flip(sig(d)["signature"], 5)))),
        ("signature-s-bit", "identifier-found", "one bit flipped in a signature's S half", "certificate_signature",
         with_(lambda d: sig(d, 1).update(signature=flip(sig(d, 1)["signature"], 100)))),
        ("signers-unsorted", "identifier-found", "two signatures swapped", "certificate_signers",
         with_(lambda d: p(d)["certificate"]["signatures"].reverse())),
        ("signer-repeated", "identifier-found", "one signature repeated in place of another", "certificate_signers",
         with_(lambda d: p(d)["certificate"]["signatures"].__setitem__(1, sig(d, 0)))),
        ("signer-unknown", "identifier-found", "a signer that is no genesis validator", "certificate_signers",
         with_(lambda d: sig(d, 2).update(validator="ff" * 20))),
        ("no-quorum", "identifier-found", "one of three signatures removed", "certificate_quorum",
         with_(lambda d: p(d)["certificate"]["signatures"].pop())),
        ("certificate-hash-bit", "identifier-found", "one bit flipped in the certificate's block hash",
         "certificate_mismatch", with_(lambda d: p(d)["certificate"].update(
             block_hash=flip(p(d)["certificate"]["block_hash"], 63)))),
        ("certificate-view", "identifier-found", "the certificate's view edited", "certificate_mismatch",
         with_(lambda d: p(d)["certificate"].update(view=1))),
        # The header.
        ("header-state-root-bit", "identifier-found", "one bit flipped in the header's state root",
         "certificate_mismatch", with_(lambda d: p(d)["header"].update(state_root=flip(p(d)["header"]["state_root"])))),
        ("header-timestamp", "identifier-found", "the block time moved by 1 ms", "certificate_mismatch",
         with_(lambda d: p(d)["header"].update(timestamp=p(d)["header"]["timestamp"] + 1))),
        ("header-proposer", "identifier-found", "the proposer edited", "certificate_mismatch",
         with_(lambda d: p(d)["header"].update(proposer="ff" * 20))),
        ("proof-height", "identifier-found", "the proof's height differs from its header's", "height_mismatch",
         with_(lambda d: p(d).update(height=p(d)["height"] - 1))),
        ("genesis-timestamp", "identifier-genesis", "block 0's time edited", "genesis_header",
         with_(lambda d: p(d)["header"].update(timestamp=T0 + 1))),
        ("genesis-signature", "identifier-genesis", "a signature added to block 0", "certificate_signers",
         with_(lambda d: p(d)["certificate"]["signatures"].append({"validator": VALIDATORS[0].id,
                                                                   "signature": "00" * 64}))),
        # The state path.
        ("sibling-bit", "identifier-found", "one bit flipped in a sibling hash", "state_proof",
         with_(lambda d: e0(d)["smt"]["siblings"].__setitem__(0, flip(e0(d)["smt"]["siblings"][0], 10)))),
        ("sibling-dropped", "identifier-found", "the deepest sibling removed", "state_proof",
         with_(lambda d: e0(d)["smt"]["siblings"].pop())),
        ("sibling-added", "identifier-found", "a zero sibling added at the bottom", "state_proof",
         with_(lambda d: e0(d)["smt"]["siblings"].append("00" * 32))),
        ("value-bit", "identifier-found", "one bit flipped in the proven value", "state_proof",
         with_(lambda d: e0(d).update(value=flip(e0(d)["value"], 40)))),
        ("key-bit", "identifier-found", "one bit flipped in the proven key", "state_proof",
         with_(lambda d: e0(d).update(key=flip(e0(d)["key"], 9)))),
        ("absent-given-value", "identifier-absent", "an absence proof's value set", "state_proof",
         with_(lambda d: e0(d).update(value="c0"))),
        ("absent-leaf-bit", "identifier-absent", "one bit flipped in the other leaf's value hash", "state_proof",
         with_(lambda d: e0(d)["smt"].update(leaf=[e0(d)["smt"]["leaf"][0], flip(e0(d)["smt"]["leaf"][1])]))),
        ("absent-leaf-own-path", "identifier-absent", "the other leaf given the absent key's own path",
         "state_proof", with_(lambda d: e0(d)["smt"]["leaf"].__setitem__(0, hashlib.sha256(
             bytes.fromhex(e0(d)["key"])).hexdigest()))),
        ("empty-given-leaf", "identifier-absent-empty", "an absence ending in an empty subtree given a leaf",
         "state_proof", with_(lambda d: e0(d)["smt"].update(leaf=["00" * 32, "00" * 32]))),
        ("found-as-absent", "identifier-found", "the proven value removed (null): absence claimed", "state_proof",
         with_(lambda d: (e0(d).update(value=None), d.update(record=None)))),
        # The document.
        ("version-1", "identifier-found", "type ledger-state-proof/v1", "unsupported_version",
         with_(lambda d: p(d).update(type="ledger-state-proof/v1"))),
        ("chain-id", "identifier-found", "another chain id", "wrong_chain", with_(lambda d: p(d).update(chain_id="x"))),
        ("hex-uppercase", "identifier-found", "a hash in uppercase hex", "malformed_proof",
         with_(lambda d: p(d)["header"].update(tx_root=p(d)["header"]["tx_root"].upper()))),
        ("proof-extra-field", "identifier-found", "a field the format does not have", "malformed_proof",
         with_(lambda d: p(d).update(note="trust me"))),
        ("entry-repeated", "state-proof", "an entry listed twice", "malformed_proof",
         with_(lambda d: d["entries"].append(copy.deepcopy(d["entries"][0])))),
        ("not-an-answer", "identifier-found", "the proof moved under another name", "malformed_answer",
         with_(lambda d: d.update(evidence=d.pop("proof")))),
        # The anchor.
        ("anchor-header-bit", "anchored-history", "one bit flipped in the anchored header's history root",
         "anchor_history", with_(lambda d: p(d)["anchor"]["header"].update(
             history_root=flip(p(d)["anchor"]["header"]["history_root"])))),
        ("anchor-path-bit", "anchored-history", "one bit flipped in the history proof", "anchor_history",
         with_(lambda d: p(d)["anchor"]["history_proof"].__setitem__(0, flip(p(d)["anchor"]["history_proof"][0])))),
        ("anchor-height", "anchored-history", "the anchor's height edited", "anchor_height",
         with_(lambda d: p(d)["anchor"].update(height=p(d)["anchor"]["height"] + 1))),
        ("anchor-same-block-header", "anchored-same-block", "the anchored header's timestamp edited",
         "anchor_header", with_(lambda d: p(d)["anchor"]["header"].update(
             timestamp=p(d)["anchor"]["header"]["timestamp"] + 1))),
        ("anchor-contract-not-hex", "anchored-history", "the contract address not 0x-hex", "malformed_proof",
         with_(lambda d: p(d)["anchor"].update(contract="0x" + "g" * 40))),
        ("anchor-contract-other", "anchored-history", "another contract named (a liar's own)", "anchor_record",
         with_(lambda d: p(d)["anchor"].update(contract="0x" + "66" * 20))),
        ("anchor-submitter-other", "anchored-history", "another submitter named", "anchor_record",
         with_(lambda d: p(d)["anchor"].update(submitter=SUBMITTERS[1]))),
        ("anchor-record-missing", "anchored-history", "the anchor's certified record left out", "malformed_proof",
         with_(lambda d: p(d)["anchor"].pop("record"))),
        ("anchor-record-signature-bit", "anchored-history", "one bit flipped in a signature on the record's block",
         "anchor_certificate", with_(lambda d: p(d)["anchor"]["record"]["certificate"]["signatures"][0].update(
             signature=flip(p(d)["anchor"]["record"]["certificate"]["signatures"][0]["signature"], 5)))),
        ("anchor-record-sibling-bit", "anchored-history", "one bit flipped in the record's state proof",
         "anchor_record", with_(lambda d: p(d)["anchor"]["record"]["smt"]["siblings"].__setitem__(
             0, flip(p(d)["anchor"]["record"]["smt"]["siblings"][0])))),
    ]


# --- writing ----------------------------------------------------------------------------------------------


def expected_of(doc: Any, gen: Genesis, reason: str | None) -> dict[str, Any]:
    """The verdict the reference verifier gives `doc`, checked against the declared `reason` (None: valid)."""
    try:
        verdict = verify_document(doc, gen)
    except InvalidProof as exc:
        if exc.code != reason:
            raise SystemExit(f"declared {reason or 'valid'}, the reference verifier says {exc.code}: {exc}") from exc
        return {"valid": False, "reason": exc.code}
    if reason:
        raise SystemExit(f"declared {reason}, the reference verifier accepts it")
    return {"valid": True, "kind": verdict.kind, "height": verdict.state.height,
            "key": verdict.state.keys[0].decode(errors="replace"), "present": verdict.present,
            "unproven": verdict.unproven}


def dump(value: Any) -> str:
    return json.dumps(value, indent=1) + "\n"  # ASCII: a lone surrogate is written as its escape


def write(out: Path) -> list[Path]:
    built = build()
    gen = built.chain.genesis
    docs = genuine(built)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / "genesis.json").write_text(dump(genesis_to_plain(gen)))
    written = [out / "genesis.json"]
    vectors: list[tuple[str, str, Any, str]] = [(name, desc, doc, "") for name, (desc, doc) in docs.items()]
    for name, base, desc, reason, edit in edits(built):
        doc = copy.deepcopy(docs[base][1])
        edit(doc)
        vectors.append((name, f"{base}, tampered: {desc}", doc, reason))
    # Version 3, after the version-2 vectors (so those keep their names and bytes).
    changed = build_changed()
    docs_sets = genuine_sets(changed)
    vectors += [(name, desc, doc, "") for name, (desc, doc) in docs_sets.items()]
    for name, base, desc, reason, edit in edits_sets(docs_sets):
        doc = copy.deepcopy(docs_sets[base][1])
        edit(doc)
        vectors.append((name, f"{base}, tampered: {desc}", doc, reason))
    for i, (name, desc, doc, reason) in enumerate(vectors, start=1):
        path = out / f"{i:03d}-{name}.json"
        path.write_text(dump({"name": name, "description": desc, "expected": expected_of(doc, gen, reason or None),
                              "document": doc}))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help="directory to (re)write")
    args = parser.parse_args(argv)
    files = write(args.out)
    print(f"{len(files) - 1} vectors, {sum(f.stat().st_size for f in files):,} bytes in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
