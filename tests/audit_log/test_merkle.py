"""RFC 9162 Merkle Tree Hash, compact ranges, proofs and their verification (app.audit_log.merkle)."""

from __future__ import annotations

import random
from hashlib import sha256

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.audit_log.merkle import (
    EMPTY_ROOT,
    CompactRange,
    InMemoryNodeStore,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
    subtree_root,
    verify_consistency,
    verify_inclusion,
)

PROPERTY = settings(max_examples=60, deadline=None, database=None)
SMALL = 40


# --- An independent reference: RFC 9162 §2.1.1, §2.1.3.1 and §2.1.4.1 transcribed literally ---------------


def reference_leaf(entry: bytes) -> bytes:
    return sha256(b"\x00" + entry).digest()


def reference_node(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right).digest()


def largest_power_of_two_below(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def reference_mth(leaves: list[bytes]) -> bytes:
    """MTH over leaf *hashes* (the leaf hashing already done)."""
    if not leaves:
        return sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = largest_power_of_two_below(len(leaves))
    return reference_node(reference_mth(leaves[:k]), reference_mth(leaves[k:]))


def reference_path(m: int, leaves: list[bytes]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = largest_power_of_two_below(len(leaves))
    if m < k:
        return [*reference_path(m, leaves[:k]), reference_mth(leaves[k:])]
    return [*reference_path(m - k, leaves[k:]), reference_mth(leaves[:k])]


def path_shape(m: int, size: int) -> list[str]:
    """Which side each sibling of PATH(m, D[size]) is on, from the leaf up."""
    if size == 1:
        return []
    k = largest_power_of_two_below(size)
    if m < k:
        return [*path_shape(m, k), "right"]
    return [*path_shape(m - k, size - k), "left"]


def reference_subproof(m: int, leaves: list[bytes], whole: bool) -> list[bytes]:
    if m == len(leaves):
        return [] if whole else [reference_mth(leaves)]
    k = largest_power_of_two_below(len(leaves))
    if m <= k:
        return [*reference_subproof(m, leaves[:k], whole), reference_mth(leaves[k:])]
    return [*reference_subproof(m - k, leaves[k:], False), reference_mth(leaves[:k])]


def make_leaves(count: int, salt: int = 0) -> list[bytes]:
    return [reference_leaf(f"event {salt} {i}".encode()) for i in range(count)]


LEAVES = make_leaves(SMALL)
STORE = InMemoryNodeStore(LEAVES)
ROOTS = [reference_mth(LEAVES[:size]) for size in range(SMALL + 1)]


# --- Hash primitives and roots ---------------------------------------------------------------------------


def test_hash_primitives_use_the_rfc_domain_separation_prefixes() -> None:
    assert leaf_hash(b"abc") == sha256(b"\x00abc").digest()
    assert node_hash(b"L" * 32, b"R" * 32) == sha256(b"\x01" + b"L" * 32 + b"R" * 32).digest()
    assert sha256(b"").digest() == EMPTY_ROOT
    # The empty entry's leaf hash, a well-known constant of RFC 6962 logs.
    assert leaf_hash(b"").hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"


def test_root_of_no_leaves_is_the_hash_of_the_empty_string() -> None:
    assert root_from_leaf_hashes([]) == sha256(b"").digest()
    assert CompactRange().root() == sha256(b"").digest()
    assert InMemoryNodeStore([]).root() == sha256(b"").digest()


def test_root_of_one_leaf_is_its_leaf_hash() -> None:
    only = leaf_hash(b"the only event")
    assert root_from_leaf_hashes([only]) == only
    compact_range = CompactRange()
    compact_range.append(only)
    assert compact_range.root() == only


@pytest.mark.parametrize("size", [*range(71), 127, 128, 129, 255, 256, 257, 1000, 1023, 1024, 1025, 3000])
def test_roots_match_the_recursive_reference(size: int) -> None:
    leaves = make_leaves(size, salt=size)
    expected = reference_mth(leaves)
    assert root_from_leaf_hashes(leaves) == expected
    compact_range = CompactRange()
    for leaf in leaves:
        compact_range.append(leaf)
    assert compact_range.size == size
    assert compact_range.root() == expected
    assert len(compact_range.roots) == size.bit_count()
    assert InMemoryNodeStore(leaves).root() == expected


def test_roots_match_the_reference_at_random_sizes() -> None:
    rng = random.Random(9162)
    for size in rng.sample(range(71, 5000), 8):
        leaves = make_leaves(size, salt=size)
        assert root_from_leaf_hashes(leaves) == reference_mth(leaves)


def test_compact_range_root_is_correct_after_every_append() -> None:
    compact_range = CompactRange()
    for size in range(1, SMALL + 1):
        compact_range.append(LEAVES[size - 1])
        assert compact_range.root() == ROOTS[size]


def test_extend_is_append_in_order() -> None:
    one_by_one, in_bulk = CompactRange(), CompactRange()
    for leaf in LEAVES[:13]:
        one_by_one.append(leaf)
    in_bulk.extend(LEAVES[:5])
    in_bulk.extend(LEAVES[5:13])
    assert in_bulk.size == one_by_one.size == 13
    assert in_bulk.roots == one_by_one.roots


@pytest.mark.parametrize("bad_leaf", [b"", b"\x00" * 31, b"\x00" * 33, bytearray(32), "0" * 32])
def test_compact_range_refuses_anything_but_32_byte_hashes(bad_leaf: object) -> None:
    compact_range = CompactRange()
    with pytest.raises(ValueError, match="32 bytes"):
        compact_range.append(bad_leaf)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="32 bytes"):
        compact_range.extend([LEAVES[0], bad_leaf])  # type: ignore[list-item]
    # The leaf before the bad one stays appended, and the state stays consistent.
    assert compact_range.size == 1
    assert compact_range.root() == LEAVES[0]
    with pytest.raises(ValueError, match="32 bytes"):
        root_from_leaf_hashes([bad_leaf])  # type: ignore[list-item]


@pytest.mark.parametrize("size", [0, 1, 2, 3, 7, 8, 21, 40])
def test_compact_range_storage_round_trip(size: int) -> None:
    compact_range = CompactRange()
    compact_range.extend(LEAVES[:size])
    stored = compact_range.to_bytes()
    assert len(stored) == 8 + 32 * size.bit_count()
    restored = CompactRange.from_bytes(stored)
    assert restored.size == size
    assert restored.roots == compact_range.roots
    assert restored.root() == ROOTS[size]
    # A restored range keeps growing into the same tree.
    restored.extend(LEAVES[size:])
    assert restored.root() == ROOTS[SMALL]
    assert CompactRange.from_bytes(memoryview(stored)).roots == compact_range.roots  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "stored",
    [
        b"",
        b"\x00" * 7,
        (3).to_bytes(8, "big") + b"\x00" * 32,  # size 3 needs two hashes
        (2).to_bytes(8, "big"),  # size 2 needs one hash
        (0).to_bytes(8, "big") + b"\x00" * 32,  # size 0 needs none
        (1).to_bytes(8, "big") + b"\x00" * 33,
    ],
)
def test_compact_range_from_bytes_refuses_malformed_data(stored: bytes) -> None:
    with pytest.raises(ValueError, match="compact range"):
        CompactRange.from_bytes(stored)


@pytest.mark.parametrize("size", range(SMALL + 1))
def test_compact_range_from_store_is_the_frontier(size: int) -> None:
    compact_range = CompactRange()
    compact_range.extend(LEAVES[:size])
    assert CompactRange.from_store(STORE, size).roots == compact_range.roots


def test_in_memory_store_holds_exactly_the_perfect_nodes() -> None:
    store = InMemoryNodeStore(LEAVES[:6])
    assert store.size == 6
    assert store.get(0, 5) == LEAVES[5]
    assert store.get(1, 2) == reference_node(LEAVES[4], LEAVES[5])
    assert store.get(2, 0) == reference_mth(LEAVES[:4])
    for level, index in [(0, 6), (1, 3), (2, 1), (3, 0), (-1, 0), (0, -1)]:
        with pytest.raises(LookupError):
            store.get(level, index)
    with pytest.raises(ValueError, match="32 bytes"):
        InMemoryNodeStore([b"short"])


def test_subtree_root_of_any_range_matches_the_reference() -> None:
    for start in range(SMALL + 1):
        for end in range(start, SMALL + 1):
            assert subtree_root(STORE, start, end) == reference_mth(LEAVES[start:end])
    with pytest.raises(ValueError, match="start <= end"):
        subtree_root(STORE, 3, 2)
    with pytest.raises(ValueError, match="start <= end"):
        subtree_root(STORE, -1, 2)


class CountingStore:
    """Answers any (level, index) with a fake hash and counts the lookups."""

    def __init__(self) -> None:
        self.lookups = 0

    def get(self, level: int, index: int) -> bytes:
        self.lookups += 1
        return sha256(f"{level},{index}".encode()).digest()


def test_proofs_in_a_large_tree_take_few_lookups() -> None:
    size = 2**40 + 2**33 + 12345  # far beyond memory: only perfect-node lookups can answer this
    bound = (size.bit_length() + 1) ** 2
    for leaf_index in (0, 2**39, size - 1, size // 3):
        store = CountingStore()
        assert len(inclusion_proof(store, leaf_index, size)) <= size.bit_length()
        assert store.lookups <= bound
    for old_size in (1, 2**40, 2**40 + 1, size - 1, size // 7):
        store = CountingStore()
        assert len(consistency_proof(store, old_size, size)) <= 2 * size.bit_length()
        assert store.lookups <= bound


def test_a_store_returning_a_bad_hash_is_refused() -> None:
    class TruncatingStore:
        def get(self, level: int, index: int) -> bytes:
            return STORE.get(level, index)[:31]

    with pytest.raises(ValueError, match="32 bytes"):
        subtree_root(TruncatingStore(), 0, 5)


# --- Inclusion proofs ------------------------------------------------------------------------------------


def test_inclusion_proofs_match_the_reference_and_verify() -> None:
    for size in range(1, SMALL + 1):
        for index in range(size):
            proof = inclusion_proof(STORE, index, size)
            assert proof == reference_path(index, LEAVES[:size])
            assert verify_inclusion(LEAVES[index], index, size, proof, ROOTS[size])


def test_inclusion_proof_refuses_an_index_outside_the_tree() -> None:
    for index, size in [(0, 0), (5, 5), (6, 5), (-1, 5)]:
        with pytest.raises(ValueError, match="leaf_index"):
            inclusion_proof(STORE, index, size)


def inclusion_tamperings(proof: list[bytes]) -> list[list[bytes]]:
    """Every way to damage a proof that the verifier must notice."""
    damaged: list[list[bytes]] = []
    for position in range(len(proof)):
        flipped = bytearray(proof[position])
        flipped[position % 32] ^= 0x01
        damaged.append([*proof[:position], bytes(flipped), *proof[position + 1 :]])
    if proof:
        damaged.append(proof[:-1])  # truncated
        damaged.append(proof[1:])  # first element dropped
    damaged.append([*proof, proof[-1] if proof else EMPTY_ROOT])  # an extra element at the end
    damaged.append([EMPTY_ROOT, *proof])  # an extra element at the start
    if len(set(proof)) > 1:
        damaged.append(proof[::-1])  # swapped order
    for position in range(len(proof) - 1):
        swapped = list(proof)
        swapped[position], swapped[position + 1] = swapped[position + 1], swapped[position]
        if swapped != proof:
            damaged.append(swapped)
    return damaged


def test_damaged_inclusion_proofs_fail() -> None:
    for size in range(1, SMALL + 1):
        for index in range(size):
            proof = inclusion_proof(STORE, index, size)
            for damaged in inclusion_tamperings(proof):
                assert not verify_inclusion(LEAVES[index], index, size, damaged, ROOTS[size]), (index, size)


def test_inclusion_fails_for_the_wrong_leaf_index_or_leaf() -> None:
    for size in range(1, SMALL + 1):
        for index in range(size):
            proof = inclusion_proof(STORE, index, size)
            for other in range(size):
                if other != index:
                    assert not verify_inclusion(LEAVES[index], other, size, proof, ROOTS[size])
                    assert not verify_inclusion(LEAVES[other], index, size, proof, ROOTS[size])
                    assert not verify_inclusion(LEAVES[other], other, size, proof, ROOTS[size])


def test_inclusion_fails_for_the_wrong_tree_size() -> None:
    for size in range(1, SMALL + 1):
        for index in range(size):
            proof = inclusion_proof(STORE, index, size)
            for wrong_size in (size - 1, size + 1):
                if 0 <= wrong_size <= SMALL:
                    # The claimed size with that size's real root: this proof does not show the leaf there.
                    assert not verify_inclusion(LEAVES[index], index, wrong_size, proof, ROOTS[wrong_size])
            # Same root, wrong size: the RFC algorithm binds the size only through the shape of the path, so
            # this fails exactly when the shapes differ (and roots must only be trusted with a signed size).
            for wrong_size in (size - 1, size + 1):
                if index < wrong_size:
                    same_shape = path_shape(index, wrong_size) == path_shape(index, size)
                    verified = verify_inclusion(LEAVES[index], index, wrong_size, proof, ROOTS[size])
                    assert verified == same_shape


def test_inclusion_verifier_binds_the_size_only_through_the_path_shape() -> None:
    # Documented RFC behaviour, pinned so nobody relies on verify_inclusion alone to check a size: leaf 0
    # has the same three right-hand siblings in trees of 6 and 7 leaves.
    proof = inclusion_proof(STORE, 0, 6)
    assert verify_inclusion(LEAVES[0], 0, 7, proof, ROOTS[6])
    assert not verify_inclusion(LEAVES[0], 0, 7, proof, ROOTS[7])


def test_inclusion_fails_for_the_wrong_root() -> None:
    for size in range(1, SMALL + 1):
        for index in range(size):
            proof = inclusion_proof(STORE, index, size)
            wrong_root = ROOTS[size - 1] if size > 1 else EMPTY_ROOT
            assert not verify_inclusion(LEAVES[index], index, size, proof, wrong_root)


@pytest.mark.parametrize(("leaf_index", "tree_size"), [(0, 0), (1, 1), (5, 5), (7, 5), (-1, 5), (0, -1)])
def test_inclusion_fails_for_an_index_outside_the_tree(leaf_index: int, tree_size: int) -> None:
    assert not verify_inclusion(LEAVES[0], leaf_index, tree_size, [], ROOTS[1])
    assert not verify_inclusion(LEAVES[0], leaf_index, tree_size, [LEAVES[1]], ROOTS[2])


@pytest.mark.parametrize("malformed", [b"", b"\x00" * 31, b"\x00" * 33, "not bytes", None, bytearray(32)])
def test_inclusion_fails_on_malformed_hashes_without_raising(malformed: object) -> None:
    proof = inclusion_proof(STORE, 2, 5)
    assert not verify_inclusion(malformed, 2, 5, proof, ROOTS[5])  # type: ignore[arg-type]
    assert not verify_inclusion(LEAVES[2], 2, 5, proof, malformed)  # type: ignore[arg-type]
    assert not verify_inclusion(LEAVES[2], 2, 5, [*proof[:-1], malformed], ROOTS[5])  # type: ignore[list-item]
    assert not verify_inclusion(LEAVES[2], 2, 5, malformed, ROOTS[5])  # type: ignore[arg-type]


@pytest.mark.parametrize("malformed_count", ["2", 2.0, None, True, -2])
def test_verifiers_fail_on_malformed_sizes_without_raising(malformed_count: object) -> None:
    inclusion = inclusion_proof(STORE, 2, 5)
    consistency = consistency_proof(STORE, 3, 7)
    assert not verify_inclusion(LEAVES[2], malformed_count, 5, inclusion, ROOTS[5])  # type: ignore[arg-type]
    assert not verify_inclusion(LEAVES[2], 2, malformed_count, inclusion, ROOTS[5])  # type: ignore[arg-type]
    assert not verify_consistency(malformed_count, 7, ROOTS[3], ROOTS[7], consistency)  # type: ignore[arg-type]
    assert not verify_consistency(3, malformed_count, ROOTS[3], ROOTS[7], consistency)  # type: ignore[arg-type]


def test_single_leaf_tree_needs_an_empty_inclusion_proof() -> None:
    assert inclusion_proof(STORE, 0, 1) == []
    assert verify_inclusion(LEAVES[0], 0, 1, [], ROOTS[1])
    assert not verify_inclusion(LEAVES[0], 0, 1, [LEAVES[1]], ROOTS[1])
    assert not verify_inclusion(LEAVES[1], 0, 1, [], ROOTS[1])


# --- Consistency proofs ----------------------------------------------------------------------------------


def test_consistency_proofs_match_the_reference_and_verify() -> None:
    for new_size in range(1, SMALL + 1):
        for old_size in range(1, new_size + 1):
            proof = consistency_proof(STORE, old_size, new_size)
            assert proof == reference_subproof(old_size, LEAVES[:new_size], True)
            assert verify_consistency(old_size, new_size, ROOTS[old_size], ROOTS[new_size], proof)


def test_consistency_edge_cases() -> None:
    # Equal sizes: empty proof, equal roots.
    assert consistency_proof(STORE, 7, 7) == []
    assert verify_consistency(7, 7, ROOTS[7], ROOTS[7], [])
    assert not verify_consistency(7, 7, ROOTS[7], ROOTS[8], [])
    assert not verify_consistency(7, 7, ROOTS[7], ROOTS[7], [ROOTS[7]])
    # From the empty tree: always consistent, with an empty proof and the empty tree's root.
    assert consistency_proof(STORE, 0, 9) == []
    assert consistency_proof(STORE, 0, 0) == []
    assert verify_consistency(0, 9, EMPTY_ROOT, ROOTS[9], [])
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert not verify_consistency(0, 9, EMPTY_ROOT, ROOTS[9], [ROOTS[9]])
    assert not verify_consistency(0, 9, ROOTS[1], ROOTS[9], [])
    # A shrinking or negative size is never consistent, and cannot be proven.
    assert not verify_consistency(9, 8, ROOTS[9], ROOTS[8], consistency_proof(STORE, 8, 9))
    assert not verify_consistency(9, 8, ROOTS[9], ROOTS[8], [])
    assert not verify_consistency(-1, 8, EMPTY_ROOT, ROOTS[8], [])
    for old_size, new_size in [(9, 8), (-1, 3)]:
        with pytest.raises(ValueError, match="old_size"):
            consistency_proof(STORE, old_size, new_size)


def test_a_growing_tree_needs_a_non_empty_consistency_proof() -> None:
    for new_size in range(2, SMALL + 1):
        for old_size in range(1, new_size):
            assert not verify_consistency(old_size, new_size, ROOTS[old_size], ROOTS[new_size], [])


def test_damaged_consistency_proofs_fail() -> None:
    for new_size in range(2, SMALL + 1):
        for old_size in range(1, new_size):
            proof = consistency_proof(STORE, old_size, new_size)
            old_root, new_root = ROOTS[old_size], ROOTS[new_size]
            for damaged in inclusion_tamperings(proof):
                verified = verify_consistency(old_size, new_size, old_root, new_root, damaged)
                assert not verified, (old_size, new_size, damaged)


def test_consistency_fails_for_wrong_sizes_or_roots() -> None:
    for new_size in range(2, SMALL + 1):
        for old_size in range(1, new_size):
            proof = consistency_proof(STORE, old_size, new_size)
            old_root, new_root = ROOTS[old_size], ROOTS[new_size]
            assert not verify_consistency(old_size, new_size, ROOTS[old_size - 1], new_root, proof)
            assert not verify_consistency(old_size, new_size, old_root, ROOTS[new_size - 1], proof)
            assert not verify_consistency(old_size, new_size, new_root, old_root, proof)
            for wrong_old in (old_size - 1, old_size + 1):
                if 1 <= wrong_old <= new_size:
                    assert not verify_consistency(wrong_old, new_size, ROOTS[wrong_old], new_root, proof)
            for wrong_new in (new_size - 1, new_size + 1):
                if old_size <= wrong_new <= SMALL:
                    assert not verify_consistency(old_size, wrong_new, old_root, ROOTS[wrong_new], proof)
            assert not verify_consistency(new_size, old_size, new_root, old_root, proof)


def test_consistency_fails_when_a_leaf_of_the_old_tree_was_changed() -> None:
    for new_size in range(2, SMALL + 1):
        for old_size in range(1, new_size):
            for changed in {0, old_size // 2, old_size - 1}:
                rewritten = list(LEAVES[:new_size])
                rewritten[changed] = leaf_hash(b"rewritten history")
                proof = consistency_proof(InMemoryNodeStore(rewritten), old_size, new_size)
                new_root = reference_mth(rewritten)
                assert not verify_consistency(old_size, new_size, ROOTS[old_size], new_root, proof)


@pytest.mark.parametrize("malformed", [b"", b"\x00" * 31, b"\x00" * 33, "not bytes", None, bytearray(32)])
def test_consistency_fails_on_malformed_hashes_without_raising(malformed: object) -> None:
    proof = consistency_proof(STORE, 3, 7)
    assert not verify_consistency(3, 7, malformed, ROOTS[7], proof)  # type: ignore[arg-type]
    assert not verify_consistency(3, 7, ROOTS[3], malformed, proof)  # type: ignore[arg-type]
    assert not verify_consistency(3, 7, ROOTS[3], ROOTS[7], [*proof[:-1], malformed])  # type: ignore[list-item]
    assert not verify_consistency(3, 7, ROOTS[3], ROOTS[7], malformed)  # type: ignore[arg-type]


# --- Properties over random trees ------------------------------------------------------------------------


@st.composite
def trees(draw: st.DrawFn, max_size: int = 300) -> list[bytes]:
    size = draw(st.integers(min_value=1, max_value=max_size))
    salt = draw(st.integers(min_value=0, max_value=2**32))
    return make_leaves(size, salt)


@PROPERTY
@given(leaves=trees(), data=st.data())
def test_property_inclusion_proofs_verify_and_tampering_fails(
    leaves: list[bytes], data: st.DataObject
) -> None:
    size = len(leaves)
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    store = InMemoryNodeStore(leaves)
    root = root_from_leaf_hashes(leaves)
    proof = inclusion_proof(store, index, size)
    assert proof == reference_path(index, leaves)
    assert verify_inclusion(leaves[index], index, size, proof, root)
    if proof:
        position = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
        bit = data.draw(st.integers(min_value=0, max_value=255))
        flipped = bytearray(proof[position])
        flipped[bit // 8] ^= 1 << (bit % 8)
        proof[position] = bytes(flipped)
        assert not verify_inclusion(leaves[index], index, size, proof, root)


@PROPERTY
@given(leaves=trees(), data=st.data())
def test_property_consistency_proofs_verify_and_tampering_fails(
    leaves: list[bytes], data: st.DataObject
) -> None:
    new_size = len(leaves)
    old_size = data.draw(st.integers(min_value=1, max_value=new_size))
    store = InMemoryNodeStore(leaves)
    old_root, new_root = root_from_leaf_hashes(leaves[:old_size]), root_from_leaf_hashes(leaves)
    proof = consistency_proof(store, old_size, new_size)
    assert proof == reference_subproof(old_size, leaves, True)
    assert verify_consistency(old_size, new_size, old_root, new_root, proof)
    if proof:
        position = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
        flipped = bytearray(proof[position])
        flipped[0] ^= 0x80
        proof[position] = bytes(flipped)
        assert not verify_consistency(old_size, new_size, old_root, new_root, proof)


@PROPERTY
@given(leaves=trees(max_size=200), data=st.data())
def test_property_a_rewritten_old_leaf_breaks_consistency(leaves: list[bytes], data: st.DataObject) -> None:
    new_size = len(leaves)
    old_size = data.draw(st.integers(min_value=1, max_value=new_size))
    changed = data.draw(st.integers(min_value=0, max_value=old_size - 1))
    old_root = root_from_leaf_hashes(leaves[:old_size])
    rewritten = list(leaves)
    rewritten[changed] = leaf_hash(b"rewritten history")
    proof = consistency_proof(InMemoryNodeStore(rewritten), old_size, new_size)
    assert not verify_consistency(old_size, new_size, old_root, root_from_leaf_hashes(rewritten), proof)


@PROPERTY
@given(leaves=trees(max_size=200), data=st.data())
def test_property_compact_range_grows_with_the_store(leaves: list[bytes], data: st.DataObject) -> None:
    size = data.draw(st.integers(min_value=0, max_value=len(leaves)))
    stored = CompactRange.from_store(InMemoryNodeStore(leaves), size).to_bytes()
    compact_range = CompactRange.from_bytes(stored)
    compact_range.extend(leaves[size:])
    assert compact_range.root() == reference_mth(leaves)
