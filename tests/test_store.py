"""Store semantics (LevelDB and the in-memory double agree) and crash safety of committed blocks."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import random
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import merkle
from ledger.chain import check_certificate, compute_block_hash
from ledger.chaindb import ChainDB
from ledger.config import NodeConfig, write_config
from ledger.node import Node
from ledger.resolver.registry import get_identifier
from ledger.smt import EMPTY, SparseMerkleTree
from ledger.store import NS, LevelDBStore, MemoryStore, Store
from tests.nodeutil import make_home

REPO = Path(__file__).resolve().parents[1]


def _open(kind: str, path: Path) -> Store:
    return MemoryStore() if kind == "memory" else LevelDBStore(path / "db")


@pytest.fixture(params=["memory", "leveldb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s = _open(request.param, tmp_path)
    yield s
    s.close()


def test_get_put_overwrite_delete(store: Store) -> None:
    assert store.get(b"k") is None
    store.write_batch([(b"k", b"v1"), (b"other", b"o")])
    assert store.get(b"k") == b"v1"
    store.write_batch([(b"k", b"v2")])
    assert store.get(b"k") == b"v2"
    store.write_batch([], [b"k", b"never-there"])
    assert store.get(b"k") is None
    assert store.get(b"other") == b"o"
    store.write_batch([(b"empty", b"")])
    assert store.get(b"empty") == b""


def test_iterate_prefix_in_order_and_reverse(store: Store) -> None:
    keys = [b"a", b"ab", b"ab\x00", b"ab\xff", b"abc", b"abc\x01", b"ac", b"b", b"\xff", b"\xff\xff", b"\xff\x00",
            b"", b"\x00"]
    store.write_batch([(k, b"v" + k) for k in keys])
    for prefix in (b"ab", b"a", b"\xff", b"", b"zz", b"abc", b"abcd"):
        expected = sorted((k, b"v" + k) for k in keys if k.startswith(prefix))
        assert list(store.iterate(prefix)) == expected, prefix
        assert list(store.iterate(prefix, reverse=True)) == expected[::-1], prefix


@pytest.mark.parametrize("kind", ["memory", "leveldb"])
@pytest.mark.parametrize("neighbours", [(), (b"ab",), (b"abd",)])
def test_reverse_iteration_includes_a_key_equal_to_the_prefix(
    kind: str, neighbours: tuple[bytes, ...], tmp_path: Path
) -> None:
    store = _open(kind, tmp_path)
    store.write_batch([(b"abc", b"v"), *((n, b"n") for n in neighbours)])
    assert list(store.iterate(b"abc")) == [(b"abc", b"v")]
    assert list(store.iterate(b"abc", reverse=True)) == [(b"abc", b"v")]
    store.close()


def test_batch_applies_puts_and_deletes_together(store: Store) -> None:
    store.write_batch([(b"x/1", b"1"), (b"x/2", b"2"), (b"x/3", b"3")])
    store.write_batch([(b"x/4", b"4"), (b"x/2", b"22")], [b"x/1", b"x/3"])
    assert list(store.iterate(b"x/")) == [(b"x/2", b"22"), (b"x/4", b"4")]
    # The last put of a key in one batch wins.
    store.write_batch([(b"x/5", b"a"), (b"x/5", b"b")])
    assert store.get(b"x/5") == b"b"


def test_failed_batch_writes_nothing(store: Store) -> None:
    store.write_batch([(b"keep", b"old")])

    def puts() -> Iterator[tuple[bytes, bytes]]:
        yield b"keep", b"new"
        yield b"added", b"x"
        raise RuntimeError("producer failed mid-batch")

    with pytest.raises(RuntimeError):
        store.write_batch(puts(), [b"keep"])
    assert store.get(b"keep") == b"old"
    assert store.get(b"added") is None


@pytest.mark.parametrize("kind", ["memory", "leveldb"])
def test_iteration_is_a_snapshot_of_its_start(kind: str, tmp_path: Path) -> None:
    store = _open(kind, tmp_path)
    store.write_batch([(b"p/1", b"a"), (b"p/2", b"b"), (b"p/3", b"c")])
    it = store.iterate(b"p/")
    assert next(it) == (b"p/1", b"a")
    store.write_batch([(b"p/2", b"changed"), (b"p/25", b"new")], [b"p/3"])
    assert list(it) == [(b"p/2", b"b"), (b"p/3", b"c")]
    store.close()


def test_leveldb_keeps_data_across_reopen(tmp_path: Path) -> None:
    s = LevelDBStore(tmp_path / "db")
    s.write_batch([(b"a", b"1"), (b"b", b"2")], [])
    s.write_batch([], [b"a"])
    s.close()
    s = LevelDBStore(tmp_path / "db")
    assert s.get(b"a") is None and s.get(b"b") == b"2"
    s.close()


def _write_12_mb_and_compact(store: LevelDBStore, seed: int) -> None:
    """12 MB of records at random keys in two rounds, each compacted: the second overlaps the first, so
    compaction writes new tables (a single flushed table would be moved down whole, whatever its size)."""
    rng = random.Random(seed)
    for _ in range(2):
        for _ in range(6):
            store.write_batch([(rng.randbytes(32), rng.randbytes(1000)) for _ in range(1024)], sync=False)
        store.compact()


def _table_sizes(db: Path) -> list[int]:
    return [p.stat().st_size for p in db.glob("*.ldb")]


@pytest.mark.parametrize("table_mb", [1, 8])
def test_leveldb_writes_tables_of_the_size_it_is_given(tmp_path: Path, table_mb: int) -> None:
    """`max_file_mb` reaches LevelDB: 12 MB of records make tables of about that size (1 MB: a dozen or more
    files; 8 MB: two or three)."""
    s = LevelDBStore(tmp_path / "db", max_file_mb=table_mb)
    _write_12_mb_and_compact(s, seed=5)
    s.close()
    tables = _table_sizes(tmp_path / "db")
    assert sum(tables) > 12 << 20
    assert max(tables) <= (table_mb << 20) * 1.05
    assert len(tables) == pytest.approx(12 / table_mb, rel=0.5, abs=1)


def test_a_nodes_store_takes_the_table_size_of_its_config(tmp_path: Path) -> None:
    """`leveldb_table_mb` in config.json reaches the node's own store (the test above: LevelDB then honours it)."""
    home = make_home(tmp_path)
    config = json.loads((home.path / "config.json").read_text())
    write_config(home.path, {**config, "leveldb_table_mb": 1})
    node = Node(NodeConfig.load(home.path), on_fatal=lambda exc: pytest.fail(str(exc)))
    assert isinstance(node.store, LevelDBStore)
    try:
        _write_12_mb_and_compact(node.store, seed=6)
    finally:
        asyncio.run(node.stop())
    tables = _table_sizes(home.path / "data" / "ledger.db")
    assert sum(tables) > 12 << 20 and max(tables) <= (1 << 20) * 1.05


# Small key alphabet so batches overwrite, delete and share prefixes.
_key_st = st.binary(max_size=3).map(lambda b: bytes(x % 3 * 0x7F for x in b))
_batch_st = st.tuples(
    st.lists(st.tuples(_key_st, st.binary(max_size=4)), max_size=6), st.lists(_key_st, max_size=3)
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_batch_st, max_size=6), st.lists(_key_st, min_size=1, max_size=4))
def test_memory_and_leveldb_agree(batches: list[tuple[list[tuple[bytes, bytes]], list[bytes]]],
                                  probes: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as d:
        stores: list[Store] = [MemoryStore(), LevelDBStore(Path(d) / "db")]
        model: dict[bytes, bytes] = {}
        for puts, deletes in batches:
            for s in stores:
                s.write_batch(puts, deletes)
            model.update(puts)
            for k in deletes:
                model.pop(k, None)
        for prefix in [b"", *probes]:
            expected = sorted((k, v) for k, v in model.items() if k.startswith(prefix))
            for s in stores:
                assert list(s.iterate(prefix)) == expected
                assert list(s.iterate(prefix, reverse=True)) == expected[::-1]
                assert s.get(prefix) == model.get(prefix)
        for s in stores:
            s.close()


# === crash safety: SIGKILL while committing ======================================================

CHILD_SCRIPT = '''
"""Commits blocks of id.register/id.update txs forever, printing each height once commit returns."""
import sys

from ledger.chain import CommitCertificate, ValidatorSignature, compute_commit_vote
from ledger.chaindb import ChainDB
from ledger.codec import encode
from ledger.crypto import DOMAIN_COMMIT, SigningKey
from ledger.genesis import Genesis, GenesisMember, GenesisPrefix, GenesisValidator
from ledger.resolver.registry import IdRegister, IdUpdate, ValueSpec
from ledger.state import get_nonce
from ledger.store import LevelDBStore
from ledger.tx import make_tx

CHAIN = "crash-chain"
T0 = 1_700_000_000_000
VALIDATOR = SigningKey.from_seed(b"crash-validator")
ADMIN = SigningKey.from_seed(b"crash-admin")
ORG = SigningKey.from_seed(b"crash-org")
MAX_HEIGHT = 5000  # a runaway guard; the parent kills long before


def genesis():
    return Genesis(
        CHAIN, T0,
        validators=(GenesisValidator("v0", VALIDATOR.public_key),),
        members=(GenesisMember("admin", ADMIN.public_key, ("admin",)),
                 GenesisMember("org", ORG.public_key, ("registrar",))),
        prefixes=(GenesisPrefix("77", ORG.id),),
    )


def block_size(height):
    return 1 + (height * 7) % 23


def handle(height, i):
    return f"77/b{height}-{i}"


def block_txs(db, height):
    nonce = get_nonce(db.latest, ORG.id) + 1
    txs = []
    for i in range(block_size(height)):
        values = (ValueSpec(1, "URL", f"https://example.org/{height}/{i}"),)
        txs.append(make_tx(ORG, CHAIN, nonce, "id.register", IdRegister(handle(height, i), values)))
        nonce += 1
    if height > 1:  # overwrite an older record too
        values = (ValueSpec(1, "URL", f"https://example.org/updated/{height}"),)
        txs.append(make_tx(ORG, CHAIN, nonce, "id.update", IdUpdate(handle(height - 1, 0), values)))
    return [encode(t) for t in txs]


def main(path):
    db = ChainDB(LevelDBStore(path), genesis())
    while db.height < MAX_HEIGHT:
        height = db.height + 1
        executed = db.build_block(block_txs(db, height), view=0, timestamp=T0 + height * 1000,
                                  proposer=VALIDATOR.id)
        if not all(r.ok for r in executed.results):
            print("tx failed", [r.reason for r in executed.results], file=sys.stderr, flush=True)
            sys.exit(3)
        header = executed.block.header
        vote = compute_commit_vote(CHAIN, header)
        signature = ValidatorSignature(VALIDATOR.id, VALIDATOR.sign(DOMAIN_COMMIT, vote))
        db.commit(executed, CommitCertificate(header.height, header.view, vote.block_hash, (signature,)))
        print(height, flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
'''


def _load_child(path: Path) -> ModuleType:
    path.write_text(CHILD_SCRIPT)
    spec = importlib.util.spec_from_file_location("crash_child", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _LineReader:
    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.fd = proc.stdout.fileno()
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.fd, selectors.EVENT_READ)
        self.buf = b""
        self.heights: list[int] = []
        self.eof = False

    def pump(self, timeout: float) -> None:
        if self.eof or not self.sel.select(timeout):
            return
        chunk = os.read(self.fd, 65536)
        if not chunk:
            self.eof = True
            return
        self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")  # an unterminated last line is not an acknowledgement
        self.heights.extend(int(line) for line in lines)

    def drain(self) -> None:
        while not self.eof:
            self.pump(5.0)
        self.sel.close()


def _run_and_kill(script: Path, data_dir: Path, wait_for: int, extra_s: float) -> list[int]:
    """Start the committer, SIGKILL it after `wait_for` acknowledged blocks (+ a little), return acks."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(data_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    reader = _LineReader(proc)
    deadline = time.monotonic() + 60
    try:
        while len(reader.heights) < wait_for and not reader.eof:
            assert time.monotonic() < deadline, "child made no progress"
            reader.pump(1.0)
        # Land the kill at an arbitrary point of the next block's execution or commit.
        end = time.monotonic() + extra_s
        while time.monotonic() < end and not reader.eof:
            reader.pump(max(0.0, end - time.monotonic()))
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        reader.drain()
        assert proc.stderr is not None
        stderr = proc.stderr.read().decode(errors="replace")
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, f"child exited by itself ({proc.returncode}): {stderr}"
    return reader.heights


def _check_recovered(child: ModuleType, data_dir: Path, acked: int) -> int:
    genesis = child.genesis()
    store = LevelDBStore(data_dir)
    try:
        db = ChainDB(store, genesis)
        head = db.height
        # Nothing acknowledged is lost.
        assert head >= acked
        validators = genesis.validator_keys()
        history = merkle.HistoryAccumulator()
        prev = db.get_block(0)
        assert prev is not None
        history.append(compute_block_hash(prev.header))
        for h in range(1, head + 1):
            block = db.get_block(h)
            cert = db.get_certificate(h)
            # Every block up to the head is there, with a valid certificate.
            assert block is not None and cert is not None, h
            check_certificate(cert, genesis.chain_id, block.header, validators)
            assert block.header.height == h
            # Blocks chain by hash, and each header's history root covers all earlier blocks.
            assert block.header.prev_hash == compute_block_hash(prev.header)
            assert block.header.history_root == history.root()
            assert db.state_root_at(h) == block.header.state_root
            history.append(compute_block_hash(block.header))
            prev = block
        assert db.get_block(head + 1) is None and db.get_certificate(head + 1) is None
        assert db.head_hash == compute_block_hash(prev.header)
        # The state at the head is exactly what the header's state root commits to.
        flat = {k[len(NS.STATE_LATEST):]: v for k, v in store.iterate(NS.STATE_LATEST)}
        assert dict(db.smt.items(db.head.state_root)) == flat
        assert SparseMerkleTree(lambda _b, _h: None).update(EMPTY, flat)[0] == db.head.state_root
        # Acknowledged identifiers resolve; nothing of a block past the head is visible.
        for h in range(1, head + 1):
            for i in range(child.block_size(h)):
                record = get_identifier(db.latest, child.handle(h, i))
                assert record is not None and record.created_height == h
        assert get_identifier(db.latest, child.handle(head + 1, 0)) is None
        if head >= 2:
            updated = get_identifier(db.latest, child.handle(head - 1, 0))
            assert updated is not None and updated.values[0].value.endswith(f"/updated/{head}")
        return head
    finally:
        store.close()


def test_sigkill_never_loses_an_acknowledged_block(tmp_path: Path) -> None:
    script = tmp_path / "crash_child.py"
    child = _load_child(script)
    data_dir = tmp_path / "data"
    rng = random.Random(20240607)
    head = 0
    for _round in range(5):
        acks = _run_and_kill(script, data_dir, wait_for=rng.randint(1, 12), extra_s=rng.uniform(0.0, 0.03))
        # The child resumed from the recovered head and acknowledged in order.
        assert acks and acks == list(range(head + 1, head + 1 + len(acks)))
        head = _check_recovered(child, data_dir, acked=acks[-1])
        assert head in (acks[-1], acks[-1] + 1)  # at most the one block being committed at the kill
