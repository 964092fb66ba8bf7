"""RFC 9162 §2.1 (Certificate Transparency v2) Merkle Tree Hash over SHA-256.

Pure functions and small in-memory structures; nothing here touches a database.

* ``leaf_hash`` / ``node_hash`` / ``EMPTY_ROOT`` are the hash primitives of §2.1.1, with the 0x00 / 0x01
  domain-separation prefixes that keep a leaf from ever being mistaken for an interior node.
* ``root_from_leaf_hashes`` and ``CompactRange`` compute MTH(D[n]).
* ``subtree_root``, ``inclusion_proof`` and ``consistency_proof`` build proofs from a ``PerfectNodeStore``:
  any store of the hashes of *perfect* (complete, aligned, power-of-two) subtrees. Those hashes never change
  once the tree has grown past them, so a log can persist them append-only.
* ``verify_inclusion`` and ``verify_consistency`` are the verification algorithms of §2.1.3.2 and §2.1.4.2,
  step for step. They return False, never raise, on malformed input.

Sizes and indices are leaf counts and zero-based leaf positions. Every hash is 32 bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from hashlib import sha256
from typing import Protocol

HASH_SIZE = 32
EMPTY_ROOT: bytes = sha256(b"").digest()
"""MTH({}): the root of the empty tree (RFC 9162 §2.1.1)."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
# CompactRange.to_bytes stores the size as an unsigned 64-bit integer.
_MAX_TREE_SIZE = 2**64 - 1
_SIZE_FIELD_BYTES = 8


def leaf_hash(entry: bytes) -> bytes:
    """SHA-256(0x00 || entry): the hash of one leaf entry."""
    return sha256(_LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right): the hash of an interior node."""
    return sha256(_NODE_PREFIX + left + right).digest()


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def _is_count(value: object) -> bool:
    # Sizes often come from parsed JSON: refuse strings, floats and booleans rather than compare them.
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _require_hash(value: object, what: str) -> bytes:
    if isinstance(value, bytes) and len(value) == HASH_SIZE:
        return value
    raise ValueError(f"{what} must be {HASH_SIZE} bytes")


def _largest_power_of_two_below(n: int) -> int:
    """The k of RFC 9162 §2.1.1: the largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaf_hashes(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of the tree whose leaves have these hashes (EMPTY_ROOT for none).

    Iterative and O(log n) extra memory: it folds the hashes into a CompactRange.
    Raises ValueError if a leaf hash is not 32 bytes.
    """
    compact_range = CompactRange()
    compact_range.extend(leaf_hashes)
    return compact_range.root()


class PerfectNodeStore(Protocol):
    """Read access to the hashes of perfect subtrees of one append-only tree."""

    def get(self, level: int, index: int) -> bytes:
        """The hash of the perfect subtree covering leaves [index * 2**level, (index + 1) * 2**level).

        Level 0 is the leaf hash itself. Only called for subtrees that are complete in the tree being
        proven; a store may raise LookupError for anything else.
        """
        ...


class CompactRange:
    """The frontier of a growing tree: the roots of its maximal perfect subtrees, largest (leftmost) first.

    A tree of ``size`` leaves has one perfect subtree per set bit of ``size``; together they determine the
    root, and appending a leaf only ever merges the rightmost ones. So the whole state is O(log n) hashes,
    small enough to store next to each checkpoint.
    """

    __slots__ = ("_roots", "_size")

    def __init__(self) -> None:
        self._size = 0
        self._roots: list[bytes] = []

    @property
    def size(self) -> int:
        """How many leaves have been appended."""
        return self._size

    @property
    def roots(self) -> tuple[bytes, ...]:
        """The perfect-subtree roots, largest (leftmost) first; one per set bit of ``size``."""
        return tuple(self._roots)

    def append(self, leaf_hash: bytes) -> None:
        """Append one leaf by its hash. Raises ValueError if it is not 32 bytes."""
        if type(leaf_hash) is not bytes or len(leaf_hash) != HASH_SIZE:
            raise ValueError(f"a leaf hash must be {HASH_SIZE} bytes")
        roots = self._roots
        carry = self._size
        self._size = carry + 1
        node = leaf_hash
        # Each trailing 1 bit of the old size is a perfect subtree as tall as the new node: merge it.
        while carry & 1:
            node = sha256(_NODE_PREFIX + roots.pop() + node).digest()
            carry >>= 1
        roots.append(node)

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append many leaves in order; the same as calling ``append`` on each, only faster."""
        # ``append`` inlined: at a million leaves the method-call overhead is a large share of the time.
        roots = self._roots
        size = self._size
        node_prefix = _NODE_PREFIX
        for node in leaf_hashes:
            if type(node) is not bytes or len(node) != HASH_SIZE:
                self._size = size  # keep the leaves appended so far consistent with the roots
                raise ValueError(f"a leaf hash must be {HASH_SIZE} bytes")
            carry = size
            while carry & 1:
                node = sha256(node_prefix + roots.pop() + node).digest()
                carry >>= 1
            roots.append(node)
            size += 1
        self._size = size

    def root(self) -> bytes:
        """MTH of all leaves appended so far (EMPTY_ROOT if none).

        MTH splits at the largest power of two below n, which is the leftmost perfect subtree; applying that
        rule again to the rest gives the next one, so the root folds the frontier from the right.
        """
        roots = self._roots
        if not roots:
            return EMPTY_ROOT
        root = roots[-1]
        for position in range(len(roots) - 2, -1, -1):
            root = sha256(_NODE_PREFIX + roots[position] + root).digest()
        return root

    def to_bytes(self) -> bytes:
        """Storage form: the size as 8 bytes big-endian, then the roots, largest first."""
        return self._size.to_bytes(_SIZE_FIELD_BYTES, "big") + b"".join(self._roots)

    @classmethod
    def from_bytes(cls, data: bytes) -> CompactRange:
        """Inverse of ``to_bytes``. Raises ValueError unless the length matches the size exactly."""
        data = bytes(data)
        if len(data) < _SIZE_FIELD_BYTES:
            raise ValueError("a stored compact range starts with an 8-byte size")
        size = int.from_bytes(data[:_SIZE_FIELD_BYTES], "big")
        packed_roots = data[_SIZE_FIELD_BYTES:]
        if len(packed_roots) != size.bit_count() * HASH_SIZE:
            raise ValueError(f"a compact range of size {size} holds {size.bit_count()} hashes")
        compact_range = cls()
        compact_range._size = size
        compact_range._roots = [
            packed_roots[offset : offset + HASH_SIZE] for offset in range(0, len(packed_roots), HASH_SIZE)
        ]
        return compact_range

    @classmethod
    def from_store(cls, store: PerfectNodeStore, size: int) -> CompactRange:
        """The frontier of the first ``size`` leaves of the tree in ``store``: one lookup per set bit."""
        if not 0 <= size <= _MAX_TREE_SIZE:
            raise ValueError("size out of range")
        compact_range = cls()
        start = 0
        for level in range(size.bit_length() - 1, -1, -1):
            if size >> level & 1:
                compact_range._roots.append(_lookup(store, level, start >> level))
                start += 1 << level
        compact_range._size = size
        return compact_range


def _lookup(store: PerfectNodeStore, level: int, index: int) -> bytes:
    # A store backed by a database could hand back a truncated or missing value; never hash that silently.
    return _require_hash(store.get(level, index), f"perfect node ({level}, {index})")


def subtree_root(store: PerfectNodeStore, start: int, end: int) -> bytes:
    """MTH(D[start:end]) from perfect nodes only (EMPTY_ROOT if start == end).

    Follows the MTH split rule (split at the largest power of two below the length) and looks up every
    sub-range that is an aligned power-of-two block. For the ranges inclusion and consistency proofs use
    (nodes of the MTH tree of [0, n)) every left half is such a block, so this costs O(log n) lookups.
    Arbitrary unaligned ranges are still answered correctly, at up to O(end - start) lookups.
    Raises ValueError unless 0 <= start <= end.
    """
    if not 0 <= start <= end:
        raise ValueError("subtree_root needs 0 <= start <= end")
    if start == end:
        return EMPTY_ROOT
    return _subtree_root(store, start, end)


def _subtree_root(store: PerfectNodeStore, start: int, end: int) -> bytes:
    # Recursion depth is at most log2(end - start) + 1, because each split at least halves the range.
    length = end - start
    if length & (length - 1) == 0 and start % length == 0:
        level = length.bit_length() - 1
        return _lookup(store, level, start >> level)
    split = start + _largest_power_of_two_below(length)
    return node_hash(_subtree_root(store, start, split), _subtree_root(store, split, end))


def inclusion_proof(store: PerfectNodeStore, leaf_index: int, tree_size: int) -> list[bytes]:
    """PATH(leaf_index, D[tree_size]) of RFC 9162 §2.1.3.1: sibling hashes, from the leaf upwards.

    Raises ValueError unless 0 <= leaf_index < tree_size.
    """
    if not 0 <= leaf_index < tree_size:
        raise ValueError("inclusion_proof needs 0 <= leaf_index < tree_size")
    siblings_top_down: list[bytes] = []
    start, end = 0, tree_size
    while end - start > 1:
        split = start + _largest_power_of_two_below(end - start)
        if leaf_index < split:
            siblings_top_down.append(subtree_root(store, split, end))
            end = split
        else:
            siblings_top_down.append(subtree_root(store, start, split))
            start = split
    siblings_top_down.reverse()
    return siblings_top_down


def consistency_proof(store: PerfectNodeStore, old_size: int, new_size: int) -> list[bytes]:
    """PROOF(old_size, D[new_size]) of RFC 9162 §2.1.4.1 (SUBPROOF with b = true), deepest node first.

    Empty when old_size is 0 or equal to new_size. Raises ValueError unless 0 <= old_size <= new_size.
    """
    if not 0 <= old_size <= new_size:
        raise ValueError("consistency_proof needs 0 <= old_size <= new_size")
    if old_size in (0, new_size):
        return []
    proof_top_down: list[bytes] = []
    # SUBPROOF(m, D[start:end], old_tree_is_whole): m counts old leaves inside [start, end).
    start, end, m = 0, new_size, old_size
    old_tree_is_whole = True
    while m != end - start:
        split = start + _largest_power_of_two_below(end - start)
        if m <= split - start:
            proof_top_down.append(subtree_root(store, split, end))
            end = split
        else:
            proof_top_down.append(subtree_root(store, start, split))
            m -= split - start
            start = split
            old_tree_is_whole = False
    if not old_tree_is_whole:
        # SUBPROOF(m, D[m], false) = {MTH(D[m])}: the verifier cannot rebuild this subtree itself.
        proof_top_down.append(subtree_root(store, start, end))
    proof_top_down.reverse()
    return proof_top_down


def verify_inclusion(
    leaf_hash: bytes, leaf_index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: does ``proof`` show the leaf at ``leaf_index`` in the tree of ``tree_size``
    leaves with this ``root``? False on any malformed input (sizes, hash lengths, proof length).

    The algorithm binds the tree size only through the shape of the path, so always check the root
    against a signed (size, root) pair, never a root alone.
    """
    if not (_is_hash(leaf_hash) and _is_hash(root)):
        return False
    if not isinstance(proof, Sequence) or not all(_is_hash(element) for element in proof):
        return False
    # 1. If leaf_index >= tree_size, fail.
    if not (_is_count(leaf_index) and _is_count(tree_size)) or leaf_index >= tree_size:
        return False
    # 2./3. Set fn to leaf_index and sn to tree_size - 1; set r to hash.
    fn, sn = leaf_index, tree_size - 1
    r = leaf_hash
    # 4. For each value p in the inclusion_path array:
    for p in proof:
        # a. If sn is 0, then stop the iteration and fail the proof verification.
        if sn == 0:
            return False
        # b. If LSB(fn) is set, or if fn is equal to sn, then:
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            # If LSB(fn) is not set, right-shift both fn and sn equally until LSB(fn) is set or fn is 0.
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        # c. Finally, right-shift both fn and sn one time.
        fn >>= 1
        sn >>= 1
    # 5. Compare sn to 0 and r against the root.
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2: is the tree (old_size, old_root) a prefix of the tree (new_size, new_root)?

    Edge cases the RFC leaves to the caller: old_size == new_size needs an empty proof and equal roots;
    old_size == 0 needs an empty proof and old_root == EMPTY_ROOT (the only root a tree of size 0 has).
    False on any malformed input, including old_size > new_size and proofs that are too short or too long.
    """
    if not (_is_hash(old_root) and _is_hash(new_root)):
        return False
    if not isinstance(proof, Sequence) or not all(_is_hash(element) for element in proof):
        return False
    if not (_is_count(old_size) and _is_count(new_size)) or old_size > new_size:
        return False
    if old_size == 0:
        return len(proof) == 0 and old_root == EMPTY_ROOT
    if old_size == new_size:
        return len(proof) == 0 and old_root == new_root
    # 1. If consistency_path is an empty array, stop and fail the proof verification.
    if len(proof) == 0:
        return False
    path = list(proof)
    # 2. If first is an exact power of 2, then prepend first_hash to the consistency_path array.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # 3. Set fn to first - 1 and sn to second - 1.
    fn, sn = old_size - 1, new_size - 1
    # 4. If LSB(fn) is set, then right-shift both fn and sn equally until LSB(fn) is not set.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5. Set both fr and sr to the first value in the consistency_path array.
    fr = sr = path[0]
    # 6. For each subsequent value c in the consistency_path array:
    for c in path[1:]:
        # a. If sn is 0, then stop the iteration and fail the proof verification.
        if sn == 0:
            return False
        # b. If LSB(fn) is set, or if fn is equal to sn, then:
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            # If LSB(fn) is not set, right-shift both fn and sn equally until LSB(fn) is set or fn is 0.
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        # c. Finally, right-shift both fn and sn one time.
        fn >>= 1
        sn >>= 1
    # 7. Verify fr == first_hash, sr == second_hash and sn == 0.
    return sn == 0 and fr == old_root and sr == new_root


class InMemoryNodeStore:
    """A PerfectNodeStore over a list of leaf hashes, every perfect node computed up front.

    For tests and for verifying an exported log offline; O(n) memory.
    """

    __slots__ = ("_levels",)

    def __init__(self, leaf_hashes: Iterable[bytes]) -> None:
        """Raises ValueError if a leaf hash is not 32 bytes."""
        current = [_require_hash(leaf, "a leaf hash") for leaf in leaf_hashes]
        self._levels: list[list[bytes]] = [current]
        while len(current) >= 2:
            # An odd node out is not the root of a perfect subtree at the next level: it is left behind.
            current = [node_hash(current[i], current[i + 1]) for i in range(0, len(current) - 1, 2)]
            self._levels.append(current)

    @property
    def size(self) -> int:
        """How many leaves the store holds."""
        return len(self._levels[0])

    def get(self, level: int, index: int) -> bytes:
        """The perfect node at (level, index). Raises LookupError if that subtree is not complete."""
        if not (0 <= level < len(self._levels) and 0 <= index < len(self._levels[level])):
            raise LookupError(f"no perfect node ({level}, {index}) in a tree of {self.size} leaves")
        return self._levels[level][index]

    def root(self) -> bytes:
        """MTH of all leaves in the store."""
        return subtree_root(self, 0, self.size)
