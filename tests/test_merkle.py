"""RFC 6962 conformance vectors and properties for ledger.merkle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.merkle import (
    EMPTY_ROOT,
    HistoryAccumulator,
    consistency_proof,
    history_consistency_proof,
    history_inclusion_proof,
    history_root,
    inclusion_proof,
    leaf_hash,
    merkle_root,
    node_hash,
    root_from_inclusion,
    verify_consistency,
    verify_inclusion,
)

VECTORS: dict[str, Any] = json.loads((Path(__file__).parent / "data" / "merkle-rfc6962.json").read_text())
REF = VECTORS["reference_tree"]
REF_LEAVES = [bytes.fromhex(x) for x in REF["leaves_hex"]]


def _h(xs: list[str]) -> list[bytes]:
    return [bytes.fromhex(x) for x in xs]


def _store_of(leaves: list[bytes]) -> dict[tuple[int, int], bytes]:
    """Perfect-subtree nodes as a caller would persist them from append()."""
    store: dict[tuple[int, int], bytes] = {}
    acc = HistoryAccumulator()
    for leaf in leaves:
        for level, idx, h in acc.append(leaf):
            assert (level, idx) not in store
            store[(level, idx)] = h
    return store


# ---------------------------------------------------------------- vectors


@pytest.mark.parametrize("vec", VECTORS["hasher_vectors"], ids=lambda v: v["kind"])
def test_hasher_vectors(vec: dict[str, Any]) -> None:
    expected = bytes.fromhex(vec["expected"])
    if vec["kind"] == "empty_tree":
        assert merkle_root([]) == expected == EMPTY_ROOT
    elif vec["kind"] == "leaf":
        assert leaf_hash(bytes.fromhex(vec["input_hex"])) == expected
    else:
        assert vec["kind"] == "node"
        assert node_hash(bytes.fromhex(vec["left_hex"]), bytes.fromhex(vec["right_hex"])) == expected


def test_reference_leaf_hashes() -> None:
    assert [leaf_hash(d) for d in REF_LEAVES] == _h(REF["leaf_hashes"])


@pytest.mark.parametrize("case", REF["roots_by_tree_size"], ids=lambda c: f"size{c['tree_size']}")
def test_reference_roots(case: dict[str, Any]) -> None:
    n = case["tree_size"]
    root = bytes.fromhex(case["root"])
    assert merkle_root(REF_LEAVES[:n]) == root
    assert HistoryAccumulator.from_leaves(REF_LEAVES[:n]).root() == root
    store = _store_of(REF_LEAVES)
    assert history_root(n, lambda lv, i: store[(lv, i)]) == root


def test_reference_node_hashes_match_accumulator_output() -> None:
    levels = REF["node_hashes_by_level"]["levels"]
    store = _store_of(REF_LEAVES)
    for level, hashes in enumerate(levels):
        for idx, h in enumerate(hashes):
            assert store[(level, idx)] == bytes.fromhex(h)
    assert len(store) == sum(len(x) for x in levels)


def test_reference_proof_lengths_follow_level_counts() -> None:
    # Leaf 0 always has the longest path: one sibling per level below the root.
    for n, levels in enumerate(REF["level_counts_by_tree_size_1_to_8"], start=1):
        assert len(inclusion_proof(0, REF_LEAVES[:n])) == levels - 1


@pytest.mark.parametrize(
    "case", VECTORS["inclusion_proofs"]["cases"], ids=lambda c: f"{c['leaf_index']}-{c['tree_size']}"
)
def test_inclusion_vectors(case: dict[str, Any]) -> None:
    idx, n = case["leaf_index"], case["tree_size"]
    path, root, lh = _h(case["audit_path"]), bytes.fromhex(case["root"]), bytes.fromhex(case["leaf_hash"])
    leaves = REF_LEAVES[:n]
    assert leaves[idx] == bytes.fromhex(case["leaf_hex"])
    assert inclusion_proof(idx, leaves) == path
    store = _store_of(leaves)
    assert history_inclusion_proof(idx, n, lambda lv, i: store[(lv, i)]) == path
    assert verify_inclusion(lh, idx, n, path, root)


def test_invalid_inclusion_query() -> None:
    # CT's "leaf 0 of the empty tree": no proof exists and nothing verifies.
    assert VECTORS["inclusion_proofs"]["invalid_queries"][0]["tree_size"] == 0
    with pytest.raises(ValueError):
        inclusion_proof(0, [])
    with pytest.raises(ValueError):
        history_inclusion_proof(0, 0, lambda lv, i: b"")
    assert not verify_inclusion(leaf_hash(b""), 0, 0, [], EMPTY_ROOT)


def _example_names() -> tuple[dict[str, bytes], list[bytes]]:
    ex = VECTORS["rfc6962_section_2_1_3_example"]
    leaves = [f"d{i}".encode() for i in range(ex["tree_size"])]
    names = {
        name: merkle_root(leaves[r["leaf_range_start"] : r["leaf_range_end_exclusive"]])
        for name, r in ex["node_names"].items()
    }
    return names, leaves


def test_rfc_example_inclusion_paths() -> None:
    ex = VECTORS["rfc6962_section_2_1_3_example"]
    names, leaves = _example_names()
    store = _store_of(leaves)
    assert names["hash"] == merkle_root(leaves)
    for case in ex["inclusion_paths"]:
        expected = [names[x] for x in case["audit_path"]]
        idx = case["leaf_index"]
        assert inclusion_proof(idx, leaves) == expected
        assert history_inclusion_proof(idx, len(leaves), lambda lv, i: store[(lv, i)]) == expected
        assert verify_inclusion(leaf_hash(leaves[idx]), idx, len(leaves), expected, names["hash"])


def test_rfc_example_consistency_proofs() -> None:
    ex = VECTORS["rfc6962_section_2_1_3_example"]
    names, leaves = _example_names()
    store = _store_of(leaves)
    for case in ex["consistency_proofs"]:
        expected = [names[x] for x in case["proof"]]
        m, n = case["size1"], case["size2"]
        assert consistency_proof(m, leaves[:n]) == expected
        assert history_consistency_proof(m, n, lambda lv, i: store[(lv, i)]) == expected
        assert verify_consistency(m, n, merkle_root(leaves[:m]), merkle_root(leaves[:n]), expected)


@pytest.mark.parametrize("case", VECTORS["consistency_proofs"]["cases"], ids=lambda c: f"{c['size1']}-{c['size2']}")
def test_consistency_vectors(case: dict[str, Any]) -> None:
    m, n = case["size1"], case["size2"]
    proof = _h(case["proof"])
    r1, r2 = bytes.fromhex(case["root1"]), bytes.fromhex(case["root2"])
    assert consistency_proof(m, REF_LEAVES[:n]) == proof
    store = _store_of(REF_LEAVES[:n])
    assert history_consistency_proof(m, n, lambda lv, i: store[(lv, i)]) == proof
    assert verify_consistency(m, n, r1, r2, proof)


def test_real_ct_log_inclusion() -> None:
    ct = VECTORS["real_ct_log_inclusion"]
    lh = leaf_hash(bytes.fromhex(ct["leaf_input_hex"]))
    assert lh == bytes.fromhex(ct["leaf_hash"])
    path, root = _h(ct["audit_path"]), bytes.fromhex(ct["root"])
    assert verify_inclusion(lh, ct["leaf_index"], ct["tree_size"], path, root)
    assert root_from_inclusion(lh, ct["leaf_index"], ct["tree_size"], path) == root
    for neg in ct["negative_variants"]:
        idx = neg.get("leaf_index", ct["leaf_index"])
        r = bytes.fromhex(neg.get("root", ct["root"]))
        assert verify_inclusion(lh, idx, ct["tree_size"], path, r) is neg["expect_valid"]


@pytest.mark.parametrize(
    "probe",
    VECTORS["verifier_probes"]["inclusion"],
    ids=lambda p: p["file"].removeprefix("testdata/inclusion/"),
)
def test_inclusion_verifier_probes(probe: dict[str, Any]) -> None:
    ok = verify_inclusion(
        bytes.fromhex(probe["leaf_hash"]),
        probe["leaf_index"],
        probe["tree_size"],
        _h(probe["proof"]),
        bytes.fromhex(probe["root"]),
    )
    assert ok is probe["expect_valid"]


@pytest.mark.parametrize(
    "probe",
    VECTORS["verifier_probes"]["consistency"],
    ids=lambda p: p["file"].removeprefix("testdata/consistency/"),
)
def test_consistency_verifier_probes(probe: dict[str, Any]) -> None:
    ok = verify_consistency(
        probe["size1"],
        probe["size2"],
        bytes.fromhex(probe["root1"]),
        bytes.fromhex(probe["root2"]),
        _h(probe["proof"]),
    )
    assert ok is probe["expect_valid"]


@pytest.mark.parametrize(
    "args",
    [
        (None, 0, 1, [], b"\x00" * 32),
        (b"\x00" * 32, -1, 1, [], b"\x00" * 32),
        (b"\x00" * 32, 0, 1, None, b"\x00" * 32),
        (b"\x00" * 32, 0, 2, [b"\x00" * 32], "00" * 32),
        (b"\x00" * 32, 0, 2, b"\x00" * 32, b"\x00" * 32),
        (b"\x00" * 32, 0, 2, [1], b"\x00" * 32),
        (b"\x00" * 32, True, 2, [b"\x00" * 32], b"\x00" * 32),
        (b"\x00" * 32, 0.0, 1, [], b"\x00" * 32),
        (b"\x00" * 32, 0, "1", [], b"\x00" * 32),
    ],
)
def test_verify_inclusion_never_raises_on_garbage(args: tuple[Any, ...]) -> None:
    assert verify_inclusion(*args) is False


def test_verify_consistency_never_raises_on_garbage() -> None:
    z = b"\x00" * 32
    assert verify_consistency(1, 2, z, z, None) is False  # type: ignore[arg-type]
    assert verify_consistency(1, 2, z, z, [None]) is False  # type: ignore[list-item]
    assert verify_consistency("1", 2, z, z, [z]) is False  # type: ignore[arg-type]
    assert verify_consistency(1, 2, "zz", z, [z]) is False  # type: ignore[arg-type]


def test_accumulator_restore_and_validation() -> None:
    acc = HistoryAccumulator.from_leaves(REF_LEAVES[:5])
    restored = HistoryAccumulator(acc.size, acc.peaks)
    for leaf in REF_LEAVES[5:]:
        assert restored.append(leaf) == acc.append(leaf)
    assert restored.root() == acc.root() == merkle_root(REF_LEAVES)
    with pytest.raises(ValueError):
        HistoryAccumulator(3, acc.peaks)  # 3 leaves need 2 peaks, 8 have 1
    with pytest.raises(ValueError):
        HistoryAccumulator(1, [b"short"])
    with pytest.raises(TypeError):
        acc.append("not bytes")  # type: ignore[arg-type]
    # peaks is a copy: mutating it must not corrupt the accumulator.
    acc.peaks.clear()
    assert acc.root() == merkle_root(REF_LEAVES)


def test_append_reports_completed_nodes() -> None:
    acc = HistoryAccumulator()
    assert [(lv, i) for lv, i, _ in acc.append(b"a")] == [(0, 0)]
    assert [(lv, i) for lv, i, _ in acc.append(b"b")] == [(0, 1), (1, 0)]
    assert [(lv, i) for lv, i, _ in acc.append(b"c")] == [(0, 2)]
    assert [(lv, i) for lv, i, _ in acc.append(b"d")] == [(0, 3), (1, 1), (2, 0)]
    assert acc.size == 4 and len(acc.peaks) == 1


# ---------------------------------------------------------------- properties


def _shape(m: int, n: int) -> list[bool]:
    """Sibling sides (True = sibling on the right) of PATH(m, D[n]), leaf to root.

    Straight from the RFC recursion, independent of the verifier's bit tricks.
    """
    if n <= 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    return _shape(m, k) + [True] if m < k else _shape(m - k, n - k) + [False]


leaf_lists = st.lists(st.binary(min_size=0, max_size=40), min_size=0, max_size=70)
nonempty_leaf_lists = st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=70)


@given(leaf_lists)
def test_accumulator_root_equals_merkle_root(leaves: list[bytes]) -> None:
    acc = HistoryAccumulator()
    assert acc.root() == merkle_root([])
    for n, leaf in enumerate(leaves, start=1):
        acc.append(leaf)
        assert acc.size == n
        assert acc.root() == merkle_root(leaves[:n])


@given(nonempty_leaf_lists, st.data())
def test_every_inclusion_proof_verifies(leaves: list[bytes], data: st.DataObject) -> None:
    store = _store_of(leaves)
    calls = 0

    def get_node(level: int, idx: int) -> bytes:
        nonlocal calls
        calls += 1
        return store[(level, idx)]

    size = data.draw(st.integers(1, len(leaves)), label="size")
    root = merkle_root(leaves[:size])
    assert history_root(size, get_node) == root
    for idx in range(size):
        calls = 0
        proof = history_inclusion_proof(idx, size, get_node)
        assert calls <= 2 * size.bit_length()  # O(log n) lookups, never the leaves
        assert proof == inclusion_proof(idx, leaves[:size])
        assert verify_inclusion(leaf_hash(leaves[idx]), idx, size, proof, root)


@settings(max_examples=200)
@given(nonempty_leaf_lists, st.data())
def test_tampering_breaks_inclusion(leaves: list[bytes], data: st.DataObject) -> None:
    n = len(leaves)
    idx = data.draw(st.integers(0, n - 1), label="index")
    proof = inclusion_proof(idx, leaves)
    root = merkle_root(leaves)
    lh = leaf_hash(leaves[idx])
    assert verify_inclusion(lh, idx, n, proof, root)

    # Another leaf hash at the same position.
    other = data.draw(st.binary(min_size=32, max_size=32).filter(lambda b: b != lh), label="leaf")
    assert not verify_inclusion(other, idx, n, proof, root)
    # Raw data instead of its leaf hash (leaves are 32 bytes here, so length alone won't catch it).
    assert not verify_inclusion(leaves[idx], idx, n, proof, root)
    # Another index: only a duplicate leaf at that index can make it verify.
    j = data.draw(st.integers(0, 2 * n + 2).filter(lambda j: j != idx), label="other index")
    if j >= n or leaves[j] != leaves[idx]:
        assert not verify_inclusion(lh, j, n, proof, root)
    # Another size. RFC 6962 proofs do not bind the size by themselves (e.g. leaf 0 of
    # sizes 3 and 4 has the same path shape), so only sizes whose path shape differs
    # must be rejected; the size has to be authenticated together with the root.
    m = data.draw(st.integers(0, 2 * n + 2).filter(lambda m: m != n), label="other size")
    if idx >= m or _shape(idx, m) != _shape(idx, n):
        assert not verify_inclusion(lh, idx, m, proof, root)
    # Another root.
    assert not verify_inclusion(lh, idx, n, proof, leaf_hash(root))
    if proof:
        # Flip one bit in one element.
        k = data.draw(st.integers(0, len(proof) - 1), label="element")
        bit = data.draw(st.integers(0, 255), label="bit")
        bad = list(proof)
        bad[k] = (int.from_bytes(bad[k], "big") ^ (1 << bit)).to_bytes(32, "big")
        assert not verify_inclusion(lh, idx, n, bad, root)
        # Drop an element / reorder.
        assert not verify_inclusion(lh, idx, n, proof[:-1], root)
        if len(proof) > 1 and proof[0] != proof[1]:
            assert not verify_inclusion(lh, idx, n, [proof[1], proof[0], *proof[2:]], root)
    # Extra element.
    assert not verify_inclusion(lh, idx, n, [*proof, root], root)


@given(nonempty_leaf_lists, st.data())
def test_consistency_proofs_roundtrip(leaves: list[bytes], data: st.DataObject) -> None:
    n = len(leaves)
    m = data.draw(st.integers(1, n), label="size1")
    store = _store_of(leaves)
    proof = history_consistency_proof(m, n, lambda lv, i: store[(lv, i)])
    assert proof == consistency_proof(m, leaves)
    r1, r2 = merkle_root(leaves[:m]), merkle_root(leaves)
    assert verify_consistency(m, n, r1, r2, proof)
    if m < n:
        assert not verify_consistency(m, n, r2, r1, proof) or r1 == r2
        assert not verify_consistency(m, n, r1, leaf_hash(r2), proof)
