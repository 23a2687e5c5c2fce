"""Backups: the file format, the checks a restore makes, and the backup route's token."""

from __future__ import annotations

import io
import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.api.server import create_app
from ledger.chain import Block, CommitCertificate, ValidatorSignature, compute_commit_vote
from ledger.chain_history import TxLocation
from ledger.chaindb import ChainDB
from ledger.cli import main as cli_main
from ledger.codec import decode, encode
from ledger.crypto import DOMAIN_COMMIT, SigningKey
from ledger.genesis import Genesis, GenesisMember, GenesisPrefix, GenesisValidator
from ledger.resolver.registry import IdDelete, IdRegister, IdUpdate, ValueSpec, identifier_key
from ledger.smt import EMPTY
from ledger.snapshot.archive import PARTS, BackupError, BackupReader, write_stream
from ledger.snapshot.auth import HEADER, make_token, token_problem
from ledger.snapshot.restore import RestoreRefused, restore, store_path
from ledger.store import NS, LevelDBStore, MemoryStore, Store, height_key
from ledger.tx import compute_tx_id, make_tx
from tests.nodeutil import make_home
from tests.test_chain_state import CHAIN as OTHER_CHAIN
from tests.test_chain_state import VALIDATORS as OTHER_VALIDATORS
from tests.test_chain_state import sign_cert
from tests.test_validator_set import _changed_twice as changed_twice

V0, V1, _, V3 = OTHER_VALIDATORS

CHAIN = "snapshot-test"
T0 = 1_700_000_000_000
VALIDATORS = [SigningKey.from_seed(f"snap-validator-{i}".encode()) for i in range(4)]
ORG1 = SigningKey.from_seed(b"snap-org1")
ADMIN = SigningKey.from_seed(b"snap-admin")
OUTSIDER = SigningKey.from_seed(b"snap-outsider")


def _genesis(chain_id: str = CHAIN) -> Genesis:
    return Genesis(
        chain_id, T0,
        validators=tuple(GenesisValidator(f"v{i}", k.public_key) for i, k in enumerate(VALIDATORS)),
        members=(GenesisMember("admin", ADMIN.public_key, ("admin",)),
                 GenesisMember("org1", ORG1.public_key, ("registrar",))),
        prefixes=(GenesisPrefix("88", ORG1.id),),
    )


GENESIS = _genesis()


def _cert(header: object, signers: list[SigningKey]) -> CommitCertificate:
    vote = compute_commit_vote(CHAIN, header)  # type: ignore[arg-type]
    sigs = sorted((ValidatorSignature(k.id, k.sign(DOMAIN_COMMIT, vote)) for k in signers), key=lambda s: s.validator)
    return CommitCertificate(vote.height, vote.view, vote.block_hash, tuple(sigs))


def _url(n: int) -> tuple[ValueSpec, ...]:
    return (ValueSpec(1, "URL", f"https://example.org/{n}"),)


def _build() -> ChainDB:
    """A chain of 6 blocks certified by 3 of 4 validators: registrations, an update, a delete, and a transaction
    replayed in a later block (its index entry stays at its first position)."""
    db = ChainDB(MemoryStore(), GENESIS)
    nonces = iter(range(1, 1000))

    def tx(kind: str, payload: object) -> bytes:
        return encode(make_tx(ORG1, CHAIN, next(nonces), kind, payload))

    first = tx("id.register", IdRegister("88/first", _url(0)))
    blocks = [
        [first] + [tx("id.register", IdRegister(f"88/eq-{i}", _url(i))) for i in range(5)],
        [tx("id.update", IdUpdate("88/eq-1", _url(100)))],
        [tx("id.delete", IdDelete("88/eq-2")), first],
        [],
        [tx("id.register", IdRegister(f"88/late-{i}", _url(i))) for i in range(3)],
        [tx("id.update", IdUpdate("88/late-0", _url(7)))],
    ]
    for i, txs in enumerate(blocks):
        executed = db.build_block(txs, view=0, timestamp=T0 + 1000 * (i + 1), proposer=VALIDATORS[0].id)
        db.commit(executed, _cert(executed.block.header, [VALIDATORS[(i + j) % 4] for j in range(3)]))
    return db


@pytest.fixture(scope="module")
def chain() -> ChainDB:
    return _build()


def _backup_bytes(store: Store, genesis: Genesis = GENESIS) -> bytes:
    snapshot = store.snapshot()
    try:
        return b"".join(write_stream(snapshot, genesis, chunk_bytes=256))
    finally:
        snapshot.close()


@pytest.fixture(scope="module")
def backup(chain: ChainDB) -> bytes:
    return _backup_bytes(chain.store)


def _all(store: Store) -> dict[bytes, bytes]:
    return dict(store.iterate(b""))


def _restore(tmp: Path, data: bytes, genesis: Genesis = GENESIS) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "backup.ledger"
    path.write_bytes(data)
    restore(path, tmp / "data", genesis, stream=io.StringIO())
    return store_path(tmp / "data")


# --- round trip ---------------------------------------------------------------------------------


def test_restore_rebuilds_the_store_key_for_key(chain: ChainDB, backup: bytes, tmp_path: Path) -> None:
    """Copied tables and rebuilt ones (hash index, roots, history, head) come out byte for byte as the node had
    them, the replica's votes excepted."""
    chain.store.write_batch([(NS.CONSENSUS + b"view", b"\x01")])  # not part of a backup
    target = _restore(tmp_path, backup)
    restored = LevelDBStore(target)
    try:
        original = {k: v for k, v in _all(chain.store).items() if not k.startswith(NS.CONSENSUS)}
        assert _all(restored) == original
        reopened = ChainDB(restored, GENESIS)
        assert (reopened.height, reopened.head_hash) == (chain.height, chain.head_hash)
        assert reopened.history.root() == chain.history.root()
    finally:
        restored.close()


def test_manifest_names_the_head_and_every_part(chain: ChainDB, backup: bytes, tmp_path: Path) -> None:
    path = tmp_path / "b"
    path.write_bytes(backup)
    reader = BackupReader(path)
    counts = {name: sum(1 for _ in chain.store.iterate(prefix)) for name, prefix in PARTS.items()}
    assert sum(1 for _ in reader.records()) == sum(counts.values())
    reader.close()
    manifest = reader.manifest
    assert manifest is not None
    assert (manifest.height, manifest.block_hash, manifest.state_root) == (
        chain.height, chain.head_hash.hex(), chain.head.state_root.hex())
    assert {p.name: p.records for p in manifest.parts} == counts


@pytest.mark.parametrize("block", [1, 7, 300])
def test_reading_in_small_blocks_gives_the_same_records_and_digests(chain: ChainDB, backup: bytes, tmp_path: Path,
                                                                     block: int) -> None:
    """Records and digests do not depend on where the reader's buffer boundaries fall."""
    path = tmp_path / "b"
    path.write_bytes(backup)
    whole, small = BackupReader(path), BackupReader(path, block)
    assert list(small.records()) == list(whole.records())
    assert small.manifest == whole.manifest
    changed = bytearray(backup)
    for position in (len(backup) // 3, len(backup) - 40):
        changed[position] ^= 0x20
        path.write_bytes(bytes(changed))
        with pytest.raises(BackupError):
            list(BackupReader(path, block).records())
        changed[position] ^= 0x20


def test_a_leveldb_snapshot_ignores_later_commits(tmp_path: Path) -> None:
    """A backup describes the moment it started, while the node goes on committing."""
    store = LevelDBStore(tmp_path / "db")
    db = ChainDB(store, GENESIS)
    snapshot = store.snapshot()
    executed = db.build_block([], view=0, timestamp=T0 + 1, proposer=VALIDATORS[0].id)
    db.commit(executed, _cert(executed.block.header, VALIDATORS[:3]))
    data = b"".join(write_stream(snapshot, GENESIS))
    snapshot.close()
    store.close()
    target = _restore(tmp_path / "r", data)
    restored = LevelDBStore(target)
    assert ChainDB(restored, GENESIS).height == 0
    restored.close()


# --- refusals -----------------------------------------------------------------------------------


def _refusal(tmp: Path, data: bytes, genesis: Genesis = GENESIS) -> str:
    with pytest.raises(RestoreRefused) as refused:
        _restore(tmp, data, genesis)
    assert not store_path(tmp / "data").exists()  # a refused backup leaves nothing behind
    assert not list((tmp / "data").glob("*")) if (tmp / "data").exists() else True
    return str(refused.value)


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_any_changed_byte_is_refused(backup: bytes, tmp_path_factory: pytest.TempPathFactory,
                                     data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(backup) - 1), label="position")
    flip = data.draw(st.integers(1, 255), label="xor")
    changed = bytearray(backup)
    changed[position] ^= flip
    message = _refusal(tmp_path_factory.mktemp("byte"), bytes(changed))
    assert message.startswith("backup refused: ")


def test_a_truncated_or_extended_file_is_refused(backup: bytes, tmp_path: Path) -> None:
    assert "truncated" in _refusal(tmp_path / "a", backup[:-20])
    assert "end marker" in _refusal(tmp_path / "b", backup + b"x")


def test_a_backup_of_another_chain_is_refused(backup: bytes, tmp_path: Path) -> None:
    assert "is of chain 'snapshot-test'" in _refusal(tmp_path, backup, _genesis("other-chain"))


def test_restore_never_overwrites_a_store(backup: bytes, tmp_path: Path) -> None:
    (tmp_path / "data" / "ledger.db").mkdir(parents=True)
    (tmp_path / "data" / "ledger.db" / "CURRENT").write_text("x")
    with pytest.raises(RestoreRefused, match="never overwrites"):
        _restore(tmp_path, backup)


# A rogue admin rewrites the file with fresh digests: the checks must find the change where it lies.

def _rewritten(chain: ChainDB, change: Callable[[dict[bytes, bytes]], None]) -> bytes:
    records = _all(chain.store)
    change(records)
    copy = MemoryStore()
    copy.write_batch(records.items())
    return _backup_bytes(copy)


def _block(records: dict[bytes, bytes], height: int) -> Block:
    return decode(Block, records[NS.BLOCK + height_key(height)])


def _cert_of(records: dict[bytes, bytes], height: int) -> CommitCertificate:
    return decode(CommitCertificate, records[NS.CERT + height_key(height)])


def _swap_tx(r: dict[bytes, bytes]) -> None:
    block = _block(r, 1)
    r[NS.BLOCK + height_key(1)] = encode(Block(block.header, block.txs[:-1]))


def _forge_signature(r: dict[bytes, bytes]) -> None:
    cert = _cert_of(r, 3)
    sigs = list(cert.signatures)
    sigs[0] = ValidatorSignature(sigs[0].validator, bytes(64))
    r[NS.CERT + height_key(3)] = encode(CommitCertificate(cert.height, cert.view, cert.block_hash, tuple(sigs)))


def _outsider_certifies(r: dict[bytes, bytes]) -> None:
    header = _block(r, 4).header
    r[NS.CERT + height_key(4)] = encode(_cert(header, [OUTSIDER, *VALIDATORS[:2]]))


def _short_quorum(r: dict[bytes, bytes]) -> None:
    cert = _cert_of(r, 1)
    r[NS.CERT + height_key(1)] = encode(CommitCertificate(cert.height, cert.view, cert.block_hash, cert.signatures[:2]))


def _change_state(r: dict[bytes, bytes]) -> None:
    r[NS.STATE_LATEST + identifier_key("88/eq-3")] = r[NS.STATE_LATEST + identifier_key("88/eq-4")]


def _add_state(r: dict[bytes, bytes]) -> None:
    r[NS.STATE_LATEST + identifier_key("88/invented")] = r[NS.STATE_LATEST + identifier_key("88/eq-4")]


def _drop_state(r: dict[bytes, bytes]) -> None:
    del r[NS.STATE_LATEST + identifier_key("88/eq-4")]


def _change_node(r: dict[bytes, bytes]) -> None:
    key = next(k for k in sorted(r) if k.startswith(NS.STATE_NODE) and r[k][0] == 0)
    r[key] = r[key][:-1] + bytes([r[key][-1] ^ 1])


def _move_tx(r: dict[bytes, bytes]) -> None:
    tx_id = compute_tx_id(_block(r, 5).txs[1])
    r[NS.TX + tx_id] = encode(TxLocation(5, 0, True, "", ""))


def _drop_tx(r: dict[bytes, bytes]) -> None:
    del r[NS.TX + compute_tx_id(_block(r, 5).txs[0])]


def _drop_block(r: dict[bytes, bytes]) -> None:
    del r[NS.BLOCK + height_key(3)]
    del r[NS.CERT + height_key(3)]


def _rewrite_history(r: dict[bytes, bytes]) -> None:
    """Block 6 replaced by a validly signed one that does not link to block 5."""
    block = _block(r, 6)
    header = block.header.__class__(**{**block.header.__dict__, "prev_hash": EMPTY})
    r[NS.BLOCK + height_key(6)] = encode(Block(header, block.txs))
    r[NS.CERT + height_key(6)] = encode(_cert(header, VALIDATORS[:3]))


REWRITES: dict[str, tuple[Callable[[dict[bytes, bytes]], None], str]] = {
    "a block loses a transaction": (_swap_tx, "block 1: tx_root does not match"),
    "a signature is forged": (_forge_signature, "block 3: bad commit signature"),
    "an outsider signs": (_outsider_certifies, "block 4: certificate signed by a non-validator"),
    "a certificate lacks a quorum": (_short_quorum, "block 1: certificate lacks a quorum"),
    "a state value changes": (_change_state, "differs from the certified state root of block 6"),
    "a state entry is added": (_add_state, "entries, but the certified state root of block 6 holds"),
    "a state entry is removed": (_drop_state, "differs from the certified state root"),
    "a state node changes": (_change_node, "not stored under its hash"),
    "a tx index entry moves": (_move_tx, "the tx index places transaction 1 at 5/0"),
    "a tx index entry is removed": (_drop_tx, "block 5: transaction 0"),
    "a block is missing": (_drop_block, "block 3: block missing"),
    "a block does not link": (_rewrite_history, "block 6: prev_hash does not match"),
}


@pytest.mark.parametrize("name", list(REWRITES))
def test_a_rewritten_backup_is_refused_where_it_lies(chain: ChainDB, tmp_path: Path, name: str) -> None:
    change, expected = REWRITES[name]
    assert expected in _refusal(tmp_path, _rewritten(chain, change))


def _records_of(chain: ChainDB) -> Iterator[bytes]:
    return (k for k in sorted(_all(chain.store)) if k[:2] in (NS.BLOCK, NS.CERT, NS.STATE_NODE, NS.STATE_NODE_AT,
                                                                    NS.ROOT_BIRTH, NS.STATE_LATEST))


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_any_rewritten_byte_of_blocks_certificates_or_state_is_refused(
        chain: ChainDB, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(list(_records_of(chain))), label="record")
    records = _all(chain.store)
    position = data.draw(st.integers(0, len(records[key]) - 1), label="position")
    flip = data.draw(st.integers(1, 255), label="xor")

    def change(r: dict[bytes, bytes]) -> None:
        value = bytearray(r[key])
        value[position] ^= flip
        r[key] = bytes(value)

    try:
        rewritten = _rewritten(chain, change)
    except BackupError:  # the head block no longer decodes: not even a backup can be written of it
        return
    _refusal(tmp_path_factory.mktemp("rewrite"), rewritten)


def test_certificates_are_checked_against_the_set_of_their_height(tmp_path: Path) -> None:
    """Across two validator-set changes, each certificate counts against the set in force at its height."""
    chain, _added, removed = changed_twice()
    records = _all(chain.db.store)
    target = _restore(tmp_path / "ok", _backup_bytes(chain.db.store, chain.genesis), chain.genesis)
    restored = LevelDBStore(target)
    assert ChainDB(restored, chain.genesis).head_hash == chain.db.head_hash
    restored.close()

    # V3 left the set at `removed`: its signature there makes the certificate one a non-validator signed.
    header = _block(records, removed).header
    records[NS.CERT + height_key(removed)] = encode(sign_cert(OTHER_CHAIN, header, [V0, V1, V3]))
    forged = MemoryStore()
    forged.write_batch(records.items())
    message = _refusal(tmp_path / "forged", _backup_bytes(forged, chain.genesis), chain.genesis)
    assert f"block {removed}: certificate signed by a non-validator" in message


# --- the backup route's token ------------------------------------------------------------------


def test_only_the_node_key_signs_a_fresh_backup_token() -> None:
    node = VALIDATORS[0]
    now = T0
    assert token_problem(make_token(node, CHAIN, now), node.public_key, CHAIN, now + 5_000) is None
    assert "not signed by this node" in str(token_problem(make_token(VALIDATORS[1], CHAIN, now), node.public_key,
                                                          CHAIN, now))
    assert "not signed by this node" in str(token_problem(make_token(node, "other", now), node.public_key, CHAIN, now))
    assert "from the node's clock" in str(token_problem(make_token(node, CHAIN, now), node.public_key, CHAIN,
                                                        now + 600_000))
    assert "malformed" in str(token_problem("12.zz", node.public_key, CHAIN, now))
    assert "needs the" in str(token_problem(None, node.public_key, CHAIN, now))


# --- the commands on a stopped node -----------------------------------------------------------


def test_backup_and_restore_commands_on_a_stopped_node(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = make_home(tmp_path / "a")
    store = LevelDBStore(home.path / "data" / "ledger.db")
    db = ChainDB(store, home.genesis)
    for i in range(3):
        executed = db.build_block([], view=0, timestamp=home.genesis.timestamp + i + 1, proposer=home.validator.id)
        vote = compute_commit_vote(home.genesis.chain_id, executed.block.header)
        db.commit(executed, CommitCertificate(i + 1, 0, vote.block_hash, (
            ValidatorSignature(home.validator.id, home.validator.sign(DOMAIN_COMMIT, vote)),)))
    head = db.head_hash.hex()
    store.close()
    out = tmp_path / "a.ledger"
    assert cli_main(["backup", "--home", str(home.path), "--out", str(out)]) == 0
    made = json.loads(capsys.readouterr().out)
    assert (made["height"], made["block_hash"]) == (3, head)
    assert cli_main(["backup", "--home", str(home.path), "--out", str(out)]) == 2  # never overwritten unasked

    fresh = tmp_path / "b"  # a replacement machine: the same config, key and genesis, no data
    shutil.copytree(home.path, fresh, ignore=shutil.ignore_patterns("data"))
    assert cli_main(["restore", str(out), "--home", str(fresh)]) == 0
    assert json.loads(capsys.readouterr().out)["block_hash"] == head
    assert cli_main(["restore", str(out), "--home", str(fresh)]) == 1
    assert "never overwrites" in capsys.readouterr().err


def test_the_backup_route_serves_the_node_key_on_its_own_host_only(tmp_path: Path) -> None:
    home = make_home(tmp_path / "a")
    now_ms = time.time_ns() // 1_000_000
    token = {HEADER: make_token(home.validator, home.genesis.chain_id, now_ms)}
    with TestClient(create_app(home.path), client=("192.0.2.7", 40000)) as remote:
        refused = remote.get("/v1/admin/backup", headers=token)  # a valid token, from another host
        assert refused.status_code == 403 and "own host" in refused.json()["message"]
    with TestClient(create_app(home.path), client=("127.0.0.1", 40000)) as local:
        assert local.get("/v1/admin/backup").status_code == 403
        served = local.get("/v1/admin/backup", headers=token)
        assert served.status_code == 200
    fresh = tmp_path / "b"
    shutil.copytree(home.path, fresh, ignore=shutil.ignore_patterns("data"))
    (tmp_path / "served.ledger").write_bytes(served.content)
    restored = restore(tmp_path / "served.ledger", fresh / "data", home.genesis, stream=io.StringIO())
    assert restored.height == 0 and restored.records > 0
