"""Properties of ledger.smt checked against a plain dict model."""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.smt import (
    EMPTY,
    MissingNodeError,
    SMTProof,
    SparseMerkleTree,
    key_path,
    leaf_hash,
    verify_proof,
)
from tests.tree_nodes import BirthStore, by_hash

Changes = dict[bytes, bytes | None]

# A small key universe so batches overwrite and delete keys that exist.
keys_st = st.binary(min_size=0, max_size=2)
values_st = st.binary(min_size=0, max_size=6)
batch_st = st.dictionaries(keys_st, st.one_of(st.none(), values_st), max_size=12)
history_st = st.lists(batch_st, min_size=1, max_size=8)
PROBE_KEYS = [bytes([a]) for a in range(8)] + [b"", b"\x00\x00", b"never-written"]


def _flip(b: bytes, bit: int) -> bytes:
    return (int.from_bytes(b, "big") ^ (1 << bit)).to_bytes(len(b), "big")


def _apply(model: dict[bytes, bytes], changes: Changes) -> dict[bytes, bytes]:
    out = dict(model)
    for k, v in changes.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


def _check_content_address(h: bytes, enc: bytes) -> None:
    if enc[0] == 1:
        assert len(enc) in (65, 81) and hashlib.sha256(enc[:65]).digest() == h
    else:
        assert enc[0] == 0
        path, klen = enc[1:33], int.from_bytes(enc[33:37], "big")
        key, value = enc[37 : 37 + klen], enc[37 + klen :]
        assert key_path(key) == path
        assert leaf_hash(path, hashlib.sha256(value).digest()) == h


def _run(
    history: list[Changes], cache_size: int = 1_000_000
) -> tuple[list[bytes], list[dict[bytes, bytes]], BirthStore]:
    """Apply batches, the n-th written at birth n; return the root and model of every version and the node
    store."""
    store = BirthStore()
    tree = store.tree(cache_size=cache_size)
    roots: list[bytes] = [EMPTY]
    models: list[dict[bytes, bytes]] = [{}]
    for birth, changes in enumerate(history, 1):
        root, nodes = tree.update(roots[-1], changes, birth)
        for h, enc in nodes.items():
            _check_content_address(h, enc)
        store.nodes.update(((birth, h), enc) for h, enc in nodes.items())
        store.roots[root] = tree.new_root_birth
        roots.append(root)
        models.append(_apply(models[-1], changes))
    return roots, models, store


def _fresh_root(model: dict[bytes, bytes]) -> bytes:
    return SparseMerkleTree(by_hash({})).update(EMPTY, dict(model))[0]


# ---------------------------------------------------------------- model checks


@settings(max_examples=150)
@given(history_st, st.sampled_from([1_000_000, 3, 0]))
def test_every_version_matches_model(history: list[Changes], cache_size: int) -> None:
    roots, models, store = _run(history, cache_size)
    # A fresh, cache-less tree sees only the nodes update() returned, at the births they were written at.
    reader = store.tree(cache_size=0)
    for root, model in zip(roots, models, strict=True):
        for k in {*PROBE_KEYS, *model}:
            assert reader.get(root, k) == model.get(k)
        assert dict(reader.items(root)) == model
        # Canonical: the same map always has the same root.
        assert root == _fresh_root(model)
        if not model:
            assert root == EMPTY


@settings(max_examples=150)
@given(history_st, st.sampled_from([1, 2, 3]), st.sampled_from([3, 0]))
def test_pinned_top_levels_answer_every_version(history: list[Changes], pin_depth: int, cache_size: int) -> None:
    # The same instance that wrote every version (each position's pinned node replaced by the newer) reads
    # every old and new version as the model says.
    store = BirthStore()
    tree = store.tree(cache_size=cache_size, pin_depth=pin_depth)
    roots, models = [EMPTY], [{}]
    for birth, changes in enumerate(history, 1):
        root = store.update(tree, roots[-1], changes, birth)
        roots.append(root)
        models.append(_apply(models[-1], changes))
    for root, model in zip(roots, models, strict=True):
        assert root == _fresh_root(model)
        for k in {*PROBE_KEYS, *model}:
            assert tree.get(root, k) == model.get(k)
            assert verify_proof(root, k, model.get(k), tree.prove(root, k))


def test_a_cached_node_is_used_only_for_the_copy_its_parent_names() -> None:
    # Version 1 is {a: 1, b: 1}; version 2 sets a to 2. An update at birth 3 that sets a back to 1 and is never
    # stored (a block a view change passed over) makes version 1's root again, naming its own new leaf. Read
    # through version 1's root as stored at birth 1, the cached copy from birth 3 must not be used.
    store = BirthStore()
    tree = store.tree(cache_size=2)  # each remembered node drops the one before
    root1 = store.update(tree, EMPTY, {b"a": b"1", b"b": b"1"}, 1)
    root2 = store.update(tree, root1, {b"a": b"2"}, 2)
    again, _ = tree.update(root2, {b"a": b"1"}, 3)
    assert again == root1
    assert tree.get(root1, b"a") == b"1" and tree.get(root1, b"b") == b"1"
    assert (3, root1) not in store.nodes and (1, root1) in store.reads


def test_pinned_top_levels_are_not_read_from_the_store_again() -> None:
    store = BirthStore()
    base = {f"k{i}".encode(): b"v" for i in range(2_000)}
    root = store.update(store.tree(cache_size=0), EMPTY, base, 1)
    first = {f"n{i}".encode(): b"w" for i in range(200)}
    second = {f"m{i}".encode(): b"x" for i in range(200)}
    # Both blocks reach every one of the 8 subtrees under depth 3, so each walks all 15 nodes above depth 4.
    for block in (first, second):
        assert len({key_path(k)[0] >> 5 for k in block}) == 8

    def reads_of_second_block(pin_depth: int) -> int:
        tree = store.tree(cache_size=0, pin_depth=pin_depth)
        after_first = store.update(tree, root, first, 2)
        store.reads.clear()
        tree.update(after_first, second, 3)
        return len(store.reads)

    # The first block's new top nodes stay pinned: the second reads none of them from the store.
    assert reads_of_second_block(4) == reads_of_second_block(0) - 15


@settings(max_examples=100)
@given(history_st, st.sampled_from([1, 2, 4]))
def test_a_warmed_tree_reads_none_of_its_top_levels_again_and_answers_as_the_model(
    history: list[Changes], pin_depth: int,
) -> None:
    roots, models, store = _run(history)
    root, model = roots[-1], models[-1]
    fetched = store.reads
    fetched.clear()
    tree = store.tree(cache_size=0, pin_depth=pin_depth)
    assert tree.warm(root) == len(fetched) == len(set(fetched))  # each node of the top levels once
    warmed = set(fetched)
    fetched.clear()
    for k in {*PROBE_KEYS, *model}:
        assert tree.get(root, k) == model.get(k)
    changes: Changes = {b"\x00": b"new", next(iter(model), b"\x01"): b"changed"}  # (a deletion may read a
    # sibling by hash to see whether it moves up)
    new_root, _ = tree.update(root, changes, len(history) + 1)
    assert new_root == _fresh_root(_apply(model, changes))
    assert not warmed & set(fetched)  # the reads and the update found the top levels pinned


def test_warming_reads_each_level_in_store_order() -> None:
    store = BirthStore()
    tree = store.tree(cache_size=0)
    root = store.update(tree, EMPTY, {b"k%d" % i: b"v" for i in range(500)}, 1)
    root = store.update(tree, root, {b"k%d" % i: b"w" for i in range(0, 500, 100)}, 2)  # the top levels mix births
    store.reads.clear()
    assert store.tree(cache_size=0, pin_depth=5).warm(root) == 1 + 2 + 4 + 8 + 16  # 500 keys fill five levels
    order = store.reads
    levels = [order[:1], order[1:3], order[3:7], order[7:15], order[15:31]]
    assert all(level == sorted(level) for level in levels)  # by (birth, hash), as the store keys them
    assert {birth for birth, _ in order} == {1, 2}


@settings(max_examples=150)
@given(history_st)
def test_proofs_for_every_key_at_every_version(history: list[Changes]) -> None:
    roots, models, store = _run(history)
    reader = store.tree(cache_size=0)
    for root, model in zip(roots, models, strict=True):
        other_roots = [r for r in roots if r != root]
        for k in {*PROBE_KEYS, *model}:
            proof = reader.prove(root, k)
            v = model.get(k)
            assert verify_proof(root, k, v, proof)
            assert SMTProof.from_dict(json.loads(json.dumps(proof.to_dict()))) == proof
            for r in other_roots[:3]:
                assert not verify_proof(r, k, v, proof)
            if v is not None:
                assert proof.leaf is None
                assert not verify_proof(root, k, v + b"x", proof)
                assert not verify_proof(root, k, None, proof)  # absence of a present key
            else:
                assert not verify_proof(root, k, b"", proof)
                assert not verify_proof(root, k, b"v", proof)
            # A proof made for k says nothing about another key.
            for k2 in PROBE_KEYS[:4]:
                if k2 != k:
                    assert not verify_proof(root, k2, model.get(k2), proof) or (
                        # Legit only where both keys are absent and share the same empty slot
                        # or the same blocking leaf along an identical walk.
                        model.get(k2) is None and v is None and proof == reader.prove(root, k2)
                    )


@given(st.dictionaries(keys_st, values_st, max_size=40), st.randoms(use_true_random=False))
def test_root_independent_of_order_and_batching(final: dict[bytes, bytes], rnd: random.Random) -> None:
    one_shot = _fresh_root(final)
    # Random batching and order, with noise keys that are written and later deleted.
    items: list[tuple[bytes, bytes | None]] = list(final.items())
    noise = [(b"noise%d" % i, b"n") for i in range(rnd.randint(0, 10))]
    rnd.shuffle(items)
    history: list[Changes] = []
    pending = items + noise
    while pending:
        n = rnd.randint(1, 8)
        batch: Changes = dict(pending[:n])
        pending = pending[n:]
        # Reverse the dict insertion order sometimes: must not matter.
        if rnd.random() < 0.5:
            batch = dict(reversed(list(batch.items())))
        history.append(batch)
    history.append({k: None for k, _ in noise})
    roots, models, _ = _run(history)
    assert models[-1] == final
    assert roots[-1] == one_shot


@given(st.dictionaries(keys_st, values_st, min_size=1, max_size=40), st.randoms(use_true_random=False))
def test_deleting_everything_gives_empty_root(model: dict[bytes, bytes], rnd: random.Random) -> None:
    keys = list(model)
    rnd.shuffle(keys)
    history: list[Changes] = [dict(model)]
    while keys:
        n = rnd.randint(1, 5)
        history.append(dict.fromkeys(keys[:n]))
        keys = keys[n:]
    roots, _, _ = _run(history)
    assert roots[-1] == EMPTY


@given(st.dictionaries(keys_st, values_st, max_size=30), batch_st)
def test_update_is_deterministic_and_pure(base: dict[bytes, bytes], changes: Changes) -> None:
    store: dict[bytes, bytes] = {}
    tree = SparseMerkleTree(by_hash(store))
    root, nodes = tree.update(EMPTY, dict(base))
    store.update(nodes)
    a = tree.update(root, changes)
    b = SparseMerkleTree(by_hash(store)).update(root, dict(reversed(list(changes.items()))))
    assert a == b
    # The old version is untouched.
    for k, v in base.items():
        assert tree.get(root, k) == v


# ---------------------------------------------------------------- specific cases


def _tree_with(n: int) -> tuple[SparseMerkleTree, bytes, dict[bytes, bytes]]:
    store: dict[bytes, bytes] = {}
    tree = SparseMerkleTree(by_hash(store))
    model = {b"k%d" % i: b"v%d" % i for i in range(n)}
    root, nodes = tree.update(EMPTY, dict(model))
    store.update(nodes)
    return tree, root, model


def test_absence_proofs_cover_empty_slot_and_blocking_leaf() -> None:
    tree, root, model = _tree_with(50)
    kinds = set()
    for i in range(400):
        k = b"absent%d" % i
        proof = tree.prove(root, k)
        assert verify_proof(root, k, None, proof)
        kinds.add(proof.leaf is not None)
        if proof.leaf is not None:
            other_path, other_vhash = proof.leaf
            assert other_path != key_path(k)
            # The blocking leaf is a real key of the tree, on k's path.
            owner = next(x for x in model if key_path(x) == other_path)
            assert other_vhash == hashlib.sha256(model[owner]).digest()
            # ... and the same proof cannot claim that owner is absent.
            assert not verify_proof(root, owner, None, proof)
            # Nor can a shortened proof point at it from a level it is not on.
            if proof.siblings:
                assert not verify_proof(root, k, None, SMTProof(proof.siblings[:-1], proof.leaf))
    assert kinds == {True, False}


def test_single_key_tree_root_is_the_leaf() -> None:
    tree, root, _ = _tree_with(1)
    assert root == leaf_hash(key_path(b"k0"), hashlib.sha256(b"v0").digest())
    # Any other key: absence by the blocking leaf with no siblings.
    proof = tree.prove(root, b"zz")
    assert proof.siblings == () and proof.leaf is not None
    assert verify_proof(root, b"zz", None, proof)
    # Empty tree: absence with nothing at all.
    assert verify_proof(EMPTY, b"zz", None, SMTProof(()))
    assert not verify_proof(EMPTY, b"zz", b"", SMTProof(()))


def test_cannot_fake_absence_of_present_key() -> None:
    tree, root, model = _tree_with(20)
    for k, v in model.items():
        proof = tree.prove(root, k)
        assert verify_proof(root, k, v, proof)
        vh = hashlib.sha256(v).digest()
        # Claim "some other leaf blocks k" using k's own leaf.
        assert not verify_proof(root, k, None, SMTProof(proof.siblings, (key_path(k), vh)))
        # Claim an empty slot where k's leaf is.
        assert not verify_proof(root, k, None, SMTProof(proof.siblings))
        # Reuse another key's proofs.
        for k2 in list(model)[:5]:
            if k2 != k:
                assert not verify_proof(root, k, None, tree.prove(root, k2))
                assert not verify_proof(root, k, v, tree.prove(root, k2))
                assert not verify_proof(root, k2, v, proof)


@settings(max_examples=100)
@given(st.data())
def test_tampered_proofs_fail(data: st.DataObject) -> None:
    tree, root, model = _tree_with(30)
    k = data.draw(st.sampled_from([*model, b"absent-a", b"absent-b", b"absent-c"]), label="key")
    v = model.get(k)
    proof = tree.prove(root, k)
    assert verify_proof(root, k, v, proof)
    sibs = list(proof.siblings)
    if sibs:
        i = data.draw(st.integers(0, len(sibs) - 1), label="sibling")
        bit = data.draw(st.integers(0, 255), label="bit")
        bad = [*sibs]
        bad[i] = _flip(bad[i], bit)
        assert not verify_proof(root, k, v, SMTProof(tuple(bad), proof.leaf))
        assert not verify_proof(root, k, v, SMTProof(tuple(sibs[1:]), proof.leaf))
        assert not verify_proof(root, k, v, SMTProof(tuple(sibs[:-1]), proof.leaf))
    assert not verify_proof(root, k, v, SMTProof((*sibs, EMPTY), proof.leaf))
    assert not verify_proof(root, k, v, SMTProof((EMPTY, *sibs), proof.leaf))
    if proof.leaf is not None:
        p, vh = proof.leaf
        bit = data.draw(st.integers(0, 255), label="leaf bit")
        assert not verify_proof(root, k, v, SMTProof(proof.siblings, (p, _flip(vh, bit))))
        assert not verify_proof(root, k, v, SMTProof(proof.siblings, (_flip(p, bit), vh)))
        assert not verify_proof(root, k, v, SMTProof(proof.siblings))
    assert not verify_proof(_flip(root, data.draw(st.integers(0, 255), label="root bit")), k, v, proof)


@pytest.mark.parametrize(
    "args",
    [
        (None, b"k", None, SMTProof(())),
        (b"short", b"k", None, SMTProof(())),
        (EMPTY, "k", None, SMTProof(())),
        (EMPTY, b"k", "v", SMTProof(())),
        (EMPTY, b"k", None, None),
        (EMPTY, b"k", None, SMTProof([EMPTY])),  # type: ignore[arg-type]
        (EMPTY, b"k", None, SMTProof((b"x",))),
        (EMPTY, b"k", None, SMTProof((None,))),  # type: ignore[arg-type]
        (EMPTY, b"k", None, SMTProof((EMPTY,) * 257)),
        (EMPTY, b"k", None, SMTProof((), (b"x", EMPTY))),
        (EMPTY, b"k", None, SMTProof((), (EMPTY,))),  # type: ignore[arg-type]
        (EMPTY, b"k", None, SMTProof((), "garbage")),  # type: ignore[arg-type]
        (EMPTY, b"k", b"v", SMTProof((), (EMPTY, EMPTY))),
    ],
)
def test_verify_never_raises_on_garbage(args: tuple[Any, ...]) -> None:
    assert verify_proof(*args) is False


@pytest.mark.parametrize(
    "d",
    [
        {},
        {"siblings": "00"},
        {"siblings": ["zz" * 32]},
        {"siblings": ["00" * 31]},
        {"siblings": [None]},
        {"siblings": [], "leaf": ["00" * 32]},
        {"siblings": [], "leaf": "00"},
        {"siblings": ["00" * 32] * 257},
        [],
    ],
)
def test_from_dict_rejects_garbage(d: Any) -> None:
    with pytest.raises(ValueError):
        SMTProof.from_dict(d)


def test_same_value_rewrite_and_noop_deletes_change_nothing() -> None:
    tree, root, model = _tree_with(10)
    assert tree.update(root, {b"k3": b"v3"}) == (root, {})
    assert tree.update(root, {b"nope": None, b"nope2": None}) == (root, {})
    assert tree.update(root, {}) == (root, {})
    # Empty value is a value, not a delete.
    new_root, _ = tree.update(root, {b"k3": b""})
    assert new_root != root and tree.get(new_root, b"k3") == b""


def test_unknown_root_and_bad_types() -> None:
    tree, root, _ = _tree_with(3)
    bogus = hashlib.sha256(b"bogus").digest()
    with pytest.raises(MissingNodeError):
        tree.get(bogus, b"k0")
    with pytest.raises(MissingNodeError):
        tree.update(bogus, {b"k0": b"x"})
    with pytest.raises(TypeError):
        tree.update(root, {"k": b"x"})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        tree.update(root, {b"k": "x"})  # type: ignore[dict-item]


def test_chain_of_shared_prefix_collapses_on_delete() -> None:
    # Two keys whose paths share a long prefix force a chain of internal nodes
    # with empty siblings; deleting one must lift the other back to the root.
    target = key_path(b"a")
    best = None
    for i in range(20000):
        k = b"b%d" % i
        shared = 256 - (int.from_bytes(key_path(k), "big") ^ int.from_bytes(target, "big")).bit_length()
        if best is None or shared > best[0]:
            best = (shared, k)
    assert best is not None and best[0] >= 8
    store: dict[bytes, bytes] = {}
    tree = SparseMerkleTree(by_hash(store))
    root, nodes = tree.update(EMPTY, {b"a": b"1", best[1]: b"2"})
    store.update(nodes)
    proof = tree.prove(root, b"a")
    assert len(proof.siblings) == best[0] + 1
    assert proof.siblings[:-1] == (EMPTY,) * best[0]
    root2, _ = tree.update(root, {best[1]: None})
    assert root2 == leaf_hash(target, hashlib.sha256(b"1").digest())


def test_larger_random_workload_against_model() -> None:
    rnd = random.Random(7)
    store: dict[bytes, bytes] = {}
    tree = SparseMerkleTree(by_hash(store), cache_size=5_000)
    model: dict[bytes, bytes] = {}
    root = EMPTY
    roots = []
    for _ in range(12):
        changes: Changes = {}
        for _ in range(rnd.choice([1, 50, 700])):
            k = b"key%d" % rnd.randrange(3000)
            changes[k] = None if rnd.random() < 0.25 else rnd.randbytes(rnd.randrange(0, 40))
        root, nodes = tree.update(root, changes)
        store.update(nodes)
        model = _apply(model, changes)
        roots.append((root, dict(model)))
    reader = SparseMerkleTree(by_hash(store), cache_size=0)
    for root, snapshot in roots[::3]:
        assert root == _fresh_root(snapshot)
        for i in range(0, 3000, 7):
            k = b"key%d" % i
            assert reader.get(root, k) == snapshot.get(k)
            assert verify_proof(root, k, snapshot.get(k), reader.prove(root, k))


def test_blocking_leaf_must_lie_on_the_key_path() -> None:
    # A hand-made (non-canonical) root with another key's leaf placed in the half
    # of the tree where k's path goes, although that leaf's own path points to the
    # other half. The hashes line up, but it proves nothing about k: rejected.
    k = b"k"
    kbit = key_path(k)[0] >> 7
    other = next(x for x in (b"o%d" % i for i in range(100)) if key_path(x)[0] >> 7 != kbit)
    vh = hashlib.sha256(b"v").digest()
    lf = leaf_hash(key_path(other), vh)
    forged_root = hashlib.sha256(b"\x01" + (EMPTY + lf if kbit else lf + EMPTY)).digest()
    assert not verify_proof(forged_root, k, None, SMTProof((EMPTY,), (key_path(other), vh)))
