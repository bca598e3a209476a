"""Regenerate ``tests/vectors/merkle.json``: RFC 9162 Merkle vectors and mutations.

Run ``python tests/vectors/gen_merkle.py`` from the repository root; the output is
deterministic (no randomness, no clock), and ``tests/test_merkle_vectors.py`` checks
that the committed file is exactly what this script writes.

What is in the file, and where each value comes from:

* The eight standard Certificate Transparency test leaves, their roots for sizes 0..8
  and the hasher vectors, checked here against the values published in
  transparency-dev/merkle (``testonly/constants.go``, ``rfc6962/rfc6962_test.go``).
* Every inclusion proof (all ``0 <= index < size <= 8``) and every consistency proof
  (all ``1 <= m <= n <= 8``), computed with ``ledger.merkle`` and checked against the
  naive recursive RFC 9162 §2.1 definitions below and, where published
  (``proof/verify_test.go``, ``testonly/reference_test.go``), against those proofs.
* ``mutations``: the featured valid cases (the published ones and every case of the
  unbalanced 7-leaf tree) corrupted in the ways transparency-dev's
  ``corruptInclusionProof`` / ``corruptConsistencyProof`` probe (plus a few more), and
  the edge cases of its ``TestVerifyInclusion`` / ``TestVerifyConsistency``.  The
  error each must raise is decided here *without* ``ledger.merkle``: ``ProofError``
  when the input is structurally wrong (sizes out of range, a hash not 32 bytes, a
  proof not as long as RFC 9162's PATH/PROOF for those sizes), else ``RootMismatch``,
  confirmed by a literal transcription of the RFC 9162 §2.1.3.2 / §2.1.4.2 verifiers.
  A mutation that the RFC verifier accepts is not a forgery and is left out.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # let `python tests/vectors/gen_merkle.py` find the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ledger import errors, merkle

OUT = Path(__file__).with_name("merkle.json")
MAX_SIZE = (1 << 64) - 1

LEAVES_HEX = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
]

# transparency-dev/merkle testonly/constants.go RootHashes (index = tree size).
PUBLISHED_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]

# transparency-dev/merkle proof/verify_test.go and testonly/reference_test.go
# (0-based leaf index, tree size) -> audit path.
PUBLISHED_INCLUSION: dict[tuple[int, int], list[str]] = {
    (0, 1): [],
    (0, 2): ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"],
    (1, 2): ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"],
    (2, 3): ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    (1, 5): [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ],
    (0, 8): [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (5, 8): [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
}

# transparency-dev/merkle proof/verify_test.go consistencyProofs: (m, n) -> proof.
PUBLISHED_CONSISTENCY: dict[tuple[int, int], list[str]] = {
    (1, 1): [],
    (1, 8): [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (6, 8): [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
    (2, 5): [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ],
    (6, 7): [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
}

# transparency-dev/merkle rfc6962/rfc6962_test.go TestRFC6962Hasher.
PUBLISHED_HASHER: list[dict[str, str]] = [
    {"name": "empty root", "kind": "empty", "hash": PUBLISHED_ROOTS[0]},
    {
        "name": "empty leaf",
        "kind": "leaf",
        "data": "",
        "hash": "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    },
    {
        "name": "leaf L123456",
        "kind": "leaf",
        "data": b"L123456".hex(),
        "hash": "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56",
    },
    {
        "name": "node N123 N456",
        "kind": "node",
        "left": b"N123".hex(),
        "right": b"N456".hex(),
        "hash": "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb",
    },
]

# The cases whose every corruption is written out: the published ones, and every case
# in the unbalanced 7-leaf tree (the property tests in test_merkle.py mutate the rest).
FEATURED_INCLUSION = set(PUBLISHED_INCLUSION) | {(index, 7) for index in range(7)}
FEATURED_CONSISTENCY = set(PUBLISHED_CONSISTENCY) | {(m, 7) for m in range(1, 8)}

InclusionProbe = tuple[str, bytes, int, int, list[bytes], bytes]
"""(what, leaf_hash, index, size, proof, root)"""
ConsistencyProbe = tuple[str, int, int, list[bytes], bytes, bytes]
"""(what, m, n, proof, root_m, root_n)"""

SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")
EMPTY_TREE_HASH = bytes.fromhex(PUBLISHED_ROOTS[0])


# --------------------------------------------------------------------------- RFC 9162, literally


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _split(n: int) -> int:
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def ref_mth(d: Sequence[bytes]) -> bytes:
    """RFC 9162 §2.1.1 MTH(D[n])."""
    if not d:
        return _h(b"")
    if len(d) == 1:
        return _h(b"\x00" + d[0])
    k = _split(len(d))
    return _h(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:]))


def ref_path_len(m: int, n: int) -> int:
    """len(PATH(m, D[n])) from RFC 9162 §2.1.3.1 (0 <= m < n)."""
    if n == 1:
        return 0
    k = _split(n)
    return 1 + (ref_path_len(m, k) if m < k else ref_path_len(m - k, n - k))


def ref_proof_len(m: int, n: int, b: bool = True) -> int:
    """len(SUBPROOF(m, D[n], b)) from RFC 9162 §2.1.4.1 (0 < m <= n)."""
    if m == n:
        return 0 if b else 1
    k = _split(n)
    return 1 + (ref_proof_len(m, k, b) if m <= k else ref_proof_len(m - k, n - k, False))


def rfc_inclusion_root(leaf_hash: bytes, index: int, size: int, path: Sequence[bytes]) -> bytes | None:
    """RFC 9162 §2.1.3.2 steps 1-5; None where the RFC fails for structure."""
    if index >= size:
        return None
    fn, sn, r = index, size - 1, leaf_hash
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = _h(b"\x01" + p + r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _h(b"\x01" + r + p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def rfc_consistency_roots(
    first: int, second: int, path: Sequence[bytes], first_hash: bytes
) -> tuple[bytes, bytes] | None:
    """RFC 9162 §2.1.4.2 steps 1-7 for first < second; None where the RFC fails for structure."""
    if not path:
        return None
    if first & (first - 1) == 0:
        path = [first_hash, *path]
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            fr = _h(b"\x01" + c + fr)
            sr = _h(b"\x01" + c + sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _h(b"\x01" + sr + c)
        fn >>= 1
        sn >>= 1
    return (fr, sr) if sn == 0 else None


def expected_inclusion_error(
    leaf_hash: bytes, index: int, size: int, path: Sequence[bytes], root: bytes
) -> str | None:
    """The error class a verifier must raise for this input; None if it is valid."""
    if not (0 <= index < size <= MAX_SIZE):
        return "ProofError"
    if any(len(x) != 32 for x in (leaf_hash, root, *path)):
        return "ProofError"
    if len(path) != ref_path_len(index, size):
        return "ProofError"
    calculated = rfc_inclusion_root(leaf_hash, index, size, path)
    if calculated is None:
        raise AssertionError("RFC verifier failed on structure the length check let through")
    return None if calculated == root else "RootMismatch"


def expected_consistency_error(
    m: int, n: int, path: Sequence[bytes], root_m: bytes, root_n: bytes
) -> str | None:
    """The error class a verifier must raise for this input; None if it is valid."""
    if not (0 < m <= n <= MAX_SIZE):
        return "ProofError"
    if any(len(x) != 32 for x in (root_m, root_n, *path)):
        return "ProofError"
    if len(path) != ref_proof_len(m, n):
        return "ProofError"
    if m == n:
        return None if root_m == root_n else "RootMismatch"
    roots = rfc_consistency_roots(m, n, path, root_m)
    if roots is None:
        raise AssertionError("RFC verifier failed on structure the length check let through")
    return None if roots == (root_m, root_n) else "RootMismatch"


# --------------------------------------------------------------------------- building


def _hex(items: Sequence[bytes]) -> list[str]:
    return [x.hex() for x in items]


def _flip(proof: Sequence[bytes], k: int, mask: int) -> list[bytes]:
    out = list(proof)
    out[k] = bytes([out[k][0] ^ mask]) + out[k][1:]
    return out


def _inclusion_probes(
    lh: bytes, index: int, size: int, proof: list[bytes], root: bytes
) -> list[InclusionProbe]:
    """Corruptions in the manner of transparency-dev's corruptInclusionProof, and more."""
    probes: list[InclusionProbe] = [
        ("index - 1", lh, index - 1, size, proof, root),
        ("index + 1", lh, index + 1, size, proof, root),
        ("index ^ 2", lh, index ^ 2, size, proof, root),
        ("index = size", lh, size, size, proof, root),
        ("size * 2", lh, index, size * 2, proof, root),
        ("size // 2", lh, index, size // 2, proof, root),
        ("size = 2**64", lh, index, 1 << 64, proof, root),
        ("wrong leaf", b"WrongLeaf", index, size, proof, root),
        ("other leaf", SOME_HASH, index, size, proof, root),
        ("leaf hash truncated", lh[:-1], index, size, proof, root),
        ("empty-tree root", lh, index, size, proof, EMPTY_TREE_HASH),
        ("random root", lh, index, size, proof, SOME_HASH),
        ("root truncated", lh, index, size, proof, root[:-1]),
        ("trailing garbage", lh, index, size, [*proof, b""], root),
        ("trailing root", lh, index, size, [*proof, root], root),
        ("preceding garbage", lh, index, size, [b"", *proof], root),
        ("preceding root", lh, index, size, [root, *proof], root),
    ]
    for k in range(len(proof)):
        probes.append((f"proof[{k}] bit 3 flipped", lh, index, size, _flip(proof, k, 8), root))
        probes.append(
            (f"proof[{k}] truncated", lh, index, size, [*proof[:k], proof[k][:-1], *proof[k + 1 :]], root)
        )
    if proof:
        probes.append(("last component removed", lh, index, size, proof[:-1], root))
    if len(proof) > 1:
        probes.append(("component inserted", lh, index, size, [proof[0], SOME_HASH, *proof[1:]], root))
        probes.append(("first two swapped", lh, index, size, [proof[1], proof[0], *proof[2:]], root))
    return probes


def _consistency_probes(
    m: int, n: int, proof: list[bytes], root_m: bytes, root_n: bytes
) -> list[ConsistencyProbe]:
    """Corruptions in the manner of transparency-dev's corruptConsistencyProof, and more."""
    probes: list[ConsistencyProbe] = [
        ("m - 1", m - 1, n, proof, root_m, root_n),
        ("m + 1", m + 1, n, proof, root_m, root_n),
        ("m ^ 2", m ^ 2, n, proof, root_m, root_n),
        ("n * 2", m, n * 2, proof, root_m, root_n),
        ("n // 2", m, n // 2, proof, root_m, root_n),
        ("n = 2**64", m, 1 << 64, proof, root_m, root_n),
        ("wrong root_m", m, n, proof, b"WrongRoot", root_n),
        ("wrong root_n", m, n, proof, root_m, b"WrongRoot"),
        ("random root_m", m, n, proof, SOME_HASH, root_n),
        ("random root_n", m, n, proof, root_m, SOME_HASH),
        ("swapped roots", m, n, proof, root_n, root_m),
        ("trailing garbage", m, n, [*proof, b""], root_m, root_n),
        ("trailing root_m", m, n, [*proof, root_m], root_m, root_n),
        ("trailing root_n", m, n, [*proof, root_n], root_m, root_n),
        ("preceding garbage", m, n, [b"", *proof], root_m, root_n),
        ("preceding root_m", m, n, [root_m, *proof], root_m, root_n),
        ("preceding root_n", m, n, [root_n, *proof], root_m, root_n),
    ]
    if proof:
        probes.append(("empty proof", m, n, [], root_m, root_n))
        probes.append(("preceding proof[0]", m, n, [proof[0], *proof], root_m, root_n))
        probes.append(("truncated proof", m, n, proof[:-1], root_m, root_n))
    for k in range(len(proof)):
        probes.append((f"proof[{k}] bit 4 flipped", m, n, _flip(proof, k, 16), root_m, root_n))
    return probes


def _inclusion_input(lh: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> dict[str, Any]:
    return {"leaf_hash": lh.hex(), "index": index, "size": size, "proof": _hex(proof), "root": root.hex()}


def _consistency_input(
    m: int, n: int, proof: Sequence[bytes], root_m: bytes, root_n: bytes
) -> dict[str, Any]:
    return {"m": m, "n": n, "proof": _hex(proof), "root_m": root_m.hex(), "root_n": root_n.hex()}


def _check_raises(error: str, verify: Callable[..., None], args: Sequence[Any], name: str) -> None:
    """ledger.merkle must agree with the independently decided error class."""
    try:
        verify(*args)
    except errors.VerificationError as exc:
        if type(exc).__name__ != error:
            raise AssertionError(f"{name}: ledger.merkle raised {type(exc).__name__}, want {error}") from exc
        return
    raise AssertionError(f"{name}: ledger.merkle accepted it, want {error}")


def build() -> dict[str, Any]:
    """Compute every vector, cross-check it, and return the document to write."""
    leaves = [bytes.fromhex(x) for x in LEAVES_HEX]
    leaf_hashes = [merkle.leaf_hash(d) for d in leaves]
    store: dict[tuple[int, int], bytes] = {}
    cr = merkle.CompactRange()
    roots = [cr.root()]
    for lh in leaf_hashes:
        for level, index, h in cr.append(lh):
            store[(level, index)] = h
        roots.append(cr.root())

    def get_node(level: int, index: int) -> bytes:
        return store[(level, index)]

    for size, root in enumerate(roots):
        if root.hex() != PUBLISHED_ROOTS[size] or root != ref_mth(leaves[:size]):
            raise AssertionError(f"root of size {size} differs from the published value")
        if size and merkle.root_from_store(size, get_node) != root:
            raise AssertionError(f"root_from_store({size}) differs")

    hasher = []
    for vec in PUBLISHED_HASHER:
        if vec["kind"] == "empty":
            got = merkle.EMPTY_ROOT
        elif vec["kind"] == "leaf":
            got = merkle.leaf_hash(bytes.fromhex(vec["data"]))
        else:
            got = merkle.node_hash(bytes.fromhex(vec["left"]), bytes.fromhex(vec["right"]))
        if got.hex() != vec["hash"]:
            raise AssertionError(f"hasher vector {vec['name']} differs")
        hasher.append(vec)

    inclusion: list[dict[str, Any]] = []
    consistency: list[dict[str, Any]] = []
    mutations: list[dict[str, Any]] = []
    skipped = 0

    for size in range(1, 9):
        for index in range(size):
            proof = merkle.inclusion_proof(index, size, get_node)
            name = f"inclusion i={index} n={size}"
            published = (index, size) in PUBLISHED_INCLUSION
            if published and _hex(proof) != PUBLISHED_INCLUSION[(index, size)]:
                raise AssertionError(f"{name} differs from the published proof")
            if expected_inclusion_error(leaf_hashes[index], index, size, proof, roots[size]) is not None:
                raise AssertionError(f"{name} does not verify under the RFC 9162 verifier")
            inclusion.append(
                {
                    "name": name,
                    "published": published,
                    **_inclusion_input(leaf_hashes[index], index, size, proof, roots[size]),
                }
            )
            if (index, size) not in FEATURED_INCLUSION:
                continue
            for probe in _inclusion_probes(leaf_hashes[index], index, size, proof, roots[size]):
                what, args = probe[0], probe[1:]
                error = expected_inclusion_error(*args)
                if error is None:
                    skipped += 1
                    continue
                mname = f"{name}: {what}"
                _check_raises(error, merkle.verify_inclusion, args, mname)
                mutations.append(
                    {
                        "name": mname,
                        "case": name,
                        "verify": "inclusion",
                        "input": _inclusion_input(*args),
                        "error": error,
                    }
                )

    for n in range(1, 9):
        for m in range(1, n + 1):
            proof = merkle.consistency_proof(m, n, get_node)
            name = f"consistency m={m} n={n}"
            published = (m, n) in PUBLISHED_CONSISTENCY
            if published and _hex(proof) != PUBLISHED_CONSISTENCY[(m, n)]:
                raise AssertionError(f"{name} differs from the published proof")
            if expected_consistency_error(m, n, proof, roots[m], roots[n]) is not None:
                raise AssertionError(f"{name} does not verify under the RFC 9162 verifier")
            consistency.append(
                {"name": name, "published": published, **_consistency_input(m, n, proof, roots[m], roots[n])}
            )
            if (m, n) not in FEATURED_CONSISTENCY:
                continue
            for cprobe in _consistency_probes(m, n, proof, roots[m], roots[n]):
                what, cargs = cprobe[0], cprobe[1:]
                error = expected_consistency_error(*cargs)
                if error is None:
                    skipped += 1
                    continue
                mname = f"{name}: {what}"
                _check_raises(error, merkle.verify_consistency, cargs, mname)
                mutations.append(
                    {
                        "name": mname,
                        "case": name,
                        "verify": "consistency",
                        "input": _consistency_input(*cargs),
                        "error": error,
                    }
                )

    # Edge cases from transparency-dev's TestVerifyInclusion / TestVerifyConsistency.
    # Unlike transparency-dev, m == 0 is always refused (RFC 9162 needs 0 < m).
    data_hash = merkle.leaf_hash(b"data")
    edge_inclusion: list[InclusionProbe] = [
        ("single entry, empty leaf hash", b"", 0, 1, [], data_hash),
        ("single entry, empty root", data_hash, 0, 1, [], b""),
    ]
    for index, size in [(0, 0), (0, 1), (1, 0), (2, 1)]:
        edge_inclusion += [
            (f"i={index} n={size}, empty root", SOME_HASH, index, size, [], b""),
            (f"i={index} n={size}, empty leaf hash", b"", index, size, [], EMPTY_TREE_HASH),
            (f"i={index} n={size}, wrong root", SOME_HASH, index, size, [], EMPTY_TREE_HASH),
        ]
    for probe in edge_inclusion:
        what, args = probe[0], probe[1:]
        error = expected_inclusion_error(*args)
        if error is None:
            raise AssertionError(f"edge case {what} is valid")
        mname = f"inclusion edge: {what}"
        _check_raises(error, merkle.verify_inclusion, args, mname)
        mutations.append(
            {
                "name": mname,
                "case": None,
                "verify": "inclusion",
                "input": _inclusion_input(*args),
                "error": error,
            }
        )

    root1, root2 = _h(b"don't care 1"), _h(b"don't care 2")
    edge_consistency: list[ConsistencyProbe] = [
        ("m=0 n=0", 0, 0, [], root1, root1),
        ("m=0 n=1", 0, 1, [], root1, root2),
        ("m=1 n=1, different roots", 1, 1, [], root1, root2),
        ("m=1 n=0", 1, 0, [], root1, root2),
        ("m=2 n=1", 2, 1, [], root1, root2),
        ("m=1 n=2, empty proof", 1, 2, [], root1, root2),
        ("m=0 n=0, non-empty proof", 0, 0, [EMPTY_TREE_HASH], EMPTY_TREE_HASH, EMPTY_TREE_HASH),
        ("m=0 n=1, non-empty proof", 0, 1, [EMPTY_TREE_HASH], EMPTY_TREE_HASH, EMPTY_TREE_HASH),
        ("m=1 n=1, non-empty proof", 1, 1, [EMPTY_TREE_HASH], EMPTY_TREE_HASH, EMPTY_TREE_HASH),
        ("m=1 n=1, short roots", 1, 1, [], b"don't care 1", b"don't care 1"),
    ]
    for cprobe in edge_consistency:
        what, cargs = cprobe[0], cprobe[1:]
        error = expected_consistency_error(*cargs)
        if error is None:
            raise AssertionError(f"edge case {what} is valid")
        mname = f"consistency edge: {what}"
        _check_raises(error, merkle.verify_consistency, cargs, mname)
        mutations.append(
            {
                "name": mname,
                "case": None,
                "verify": "consistency",
                "input": _consistency_input(*cargs),
                "error": error,
            }
        )

    names = [x["name"] for x in (*inclusion, *consistency, *mutations)]
    if len(names) != len(set(names)):
        raise AssertionError("vector names are not unique")

    return {
        "about": (
            "RFC 9162 Merkle tree vectors for ledger.merkle (SHA-256, leaf prefix 0x00, node prefix 0x01). "
            "Generated by tests/vectors/gen_merkle.py; do not edit by hand. Roots, hasher vectors and the "
            "proofs marked published match transparency-dev/merkle's test data."
        ),
        "hash": "sha256",
        "leaf_prefix": "00",
        "node_prefix": "01",
        "hasher": hasher,
        "leaves": LEAVES_HEX,
        "leaf_hashes": _hex(leaf_hashes),
        "roots": [{"size": size, "root": root.hex()} for size, root in enumerate(roots)],
        "inclusion": inclusion,
        "consistency": consistency,
        "mutations_skipped_as_valid": skipped,
        "mutations": mutations,
    }


def render(doc: dict[str, Any]) -> str:
    """Deterministic JSON text: one list item per line, so diffs stay readable."""
    lines = ["{"]
    keys = list(doc)
    for pos, key in enumerate(keys):
        value = doc[key]
        comma = "," if pos < len(keys) - 1 else ""
        if isinstance(value, list) and value and isinstance(value[0], dict):
            lines.append(f"  {json.dumps(key)}: [")
            for k, item in enumerate(value):
                lines.append(f"    {json.dumps(item)}{',' if k < len(value) - 1 else ''}")
            lines.append(f"  ]{comma}")
        else:
            lines.append(f"  {json.dumps(key)}: {json.dumps(value)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main() -> None:
    doc = build()
    OUT.write_text(render(doc), encoding="utf-8")
    print(
        f"wrote {OUT}: {len(doc['inclusion'])} inclusion, {len(doc['consistency'])} consistency, "
        f"{len(doc['mutations'])} mutations"
    )


if __name__ == "__main__":
    main()
