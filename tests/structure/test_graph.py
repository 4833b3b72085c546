"""GAT/GVP residue edges (kernel plain mode): hand-checked toy chains, brute force on real proteins, blocks."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from protalign.structure import graph as G
from protalign.structure import neighbors as N


def _set(ei: torch.Tensor) -> set[tuple[int, int]]:
    return set(map(tuple, ei.T.tolist()))


def _line(n: int, spacing: float = 4.0) -> np.ndarray:
    return np.stack([np.arange(n) * spacing, np.zeros(n), np.zeros(n)], axis=1)


def _plain(ca, chain, radius, knn, min_seq_sep):
    pos, ch = torch.as_tensor(np.asarray(ca, np.float32)), torch.as_tensor(np.asarray(chain))
    return N.spatial_edges(pos, ch, radius=radius, knn=knn, min_seq_sep=min_seq_sep, mode=N.PLAIN)


def test_toy_chain_edges_by_hand():
    # residues on a line, 4 Å apart (exact in float32): distances are 4|i-j|
    rad, nn_ = _plain(_line(8), np.zeros(8, int), radius=8.5, knn=3, min_seq_sep=2)
    # radius 8.5 keeps |i-j| <= 2, min_seq_sep 2 keeps only |i-j| == 2 (both directions)
    assert _set(rad) == {(i, j) for i in range(8) for j in range(8) if abs(i - j) == 2}
    # kNN k=3: nearest 3 of each centre (ties at equal distance -> lower index), then |i-j| >= 2; (src, dst)
    assert _set(nn_) == {(2, 0), (3, 0), (3, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7), (4, 7)}
    ei = G.residue_edges(_line(8), np.zeros(8, int), radius=8.5, knn=3, seq_offsets=1, min_seq_sep=2)
    seq = {(i, i + d) for i in range(8) for d in (-1, 1) if 0 <= i + d < 8}
    assert _set(ei) == seq | _set(rad) | _set(nn_)


def test_radius_is_strict():
    rad, _ = _plain(_line(5), np.zeros(5, int), radius=8.0, knn=0, min_seq_sep=1)
    assert _set(rad) == {(i, j) for i in range(5) for j in range(5) if abs(i - j) == 1}


def test_cross_chain_edges():
    # chain A = residues 0..3, chain B = 4..7 on the same line: 3 and 4 are list-adjacent but in different chains
    chain = G.chain_index(np.array(["A"] * 4 + ["B"] * 4))
    ei = G.residue_edges(_line(8), chain, radius=4.5, knn=0, seq_offsets=1, min_seq_sep=3)
    # radius 4.5 -> only neighbours at 4 Å; within a chain |i-j| = 1 < 3 is filtered (sequential edges remain),
    # across chains it is kept; no sequential edge crosses the chain boundary
    seq = {(i, i + d) for i in range(8) for d in (-1, 1) if 0 <= i + d < 8 and chain[i] == chain[i + d]}
    assert _set(ei) == seq | {(3, 4), (4, 3)}


def test_chain_index_first_appearance():
    assert G.chain_index(np.array(["B", "B", "A", "C", "A"])).tolist() == [0, 0, 1, 2, 1]


def _brute_force(ca: np.ndarray, chain: np.ndarray, radius: float, k: int, min_sep: int):
    ca = ca.astype(np.float64)
    n = len(ca)
    rad, knn = set(), set()
    for c in range(n):
        d = np.sqrt(((ca - ca[c]) ** 2).sum(1))
        d[c] = np.inf
        order = sorted(range(n), key=lambda j: (d[j], j))[:k]
        for j in range(n):
            ok = (chain[j] != chain[c] or abs(j - c) >= min_sep) and d[j] > 0
            if d[j] < radius and ok:
                rad.add((j, c))
            if j in order and ok:
                knn.add((j, c))
    return rad, knn


@pytest.mark.parametrize("pid", ["107L", "11AS"])
def test_matches_brute_force_on_real_protein(real, pid):
    s = real(pid)
    chain = G.chain_index(s.chain)
    rad, nn_ = _plain(s.ca, chain, radius=10.0, knn=10, min_seq_sep=5)
    want_rad, want_knn = _brute_force(s.ca, chain, 10.0, 10, 5)
    assert _set(rad) == want_rad and _set(nn_) == want_knn
    assert len(want_rad) > len(s.ca) and len(want_knn) > len(s.ca)  # non-trivial


def test_blocked_equals_unblocked(real, monkeypatch):
    s = real("11AS")
    full = _plain(s.ca, G.chain_index(s.chain), radius=10.0, knn=10, min_seq_sep=5)
    monkeypatch.setattr(N, "_BLOCK_ELEMENTS", 37 * len(s.ca))  # 37-row blocks, last one ragged
    blocked = _plain(s.ca, G.chain_index(s.chain), radius=10.0, knn=10, min_seq_sep=5)
    assert all(torch.equal(a, b) for a, b in zip(full, blocked, strict=True))


def test_8000_residue_protein_builds_in_blocks():
    rng = np.random.default_rng(0)
    n = 8000
    steps = rng.normal(size=(n, 3))
    ca = np.cumsum(3.8 * steps / np.linalg.norm(steps, axis=1, keepdims=True), axis=0)
    chain = np.repeat(np.arange(4), n // 4)
    assert N._block(n) < n  # really blocked: ~500 x 8000 distances at a time
    t0 = time.perf_counter()
    _, nn_ = _plain(ca, chain, radius=10.0, knn=10, min_seq_sep=5)
    assert time.perf_counter() - t0 < 30
    indeg = torch.bincount(nn_[1], minlength=n)
    assert int(indeg.max()) <= 10 and int(indeg.sum()) > n
    # spot-check 20 centres against brute force
    for c in rng.choice(n, 20, replace=False):
        d = np.sqrt(((ca - ca[c]) ** 2).sum(1))
        d[c] = np.inf
        nn = np.argsort(d, kind="stable")[:10]
        ok = (chain[nn] != chain[c]) | (np.abs(nn - c) >= 5)
        assert set(nn_[0, nn_[1] == c].tolist()) == set(nn[ok].tolist())


def test_residue_edges_simple_sorted_no_self_loops():
    ei = G.residue_edges(_line(10), np.zeros(10, int), radius=100.0, knn=9, seq_offsets=2, min_seq_sep=3)
    pairs = list(map(tuple, ei.T.tolist()))
    assert len(pairs) == len(set(pairs)) and all(a != b for a, b in pairs)
    assert pairs == sorted(pairs, key=lambda p: (p[1], p[0]))
    assert set(pairs) == {(a, b) for a in range(10) for b in range(10) if a != b}  # radius 100 Å: complete


def test_bad_input_is_an_error():
    kw = dict(radius=5, knn=2, seq_offsets=1, min_seq_sep=1)
    with pytest.raises(ValueError, match="non-finite"):
        G.residue_edges(np.full((3, 3), np.nan), np.zeros(3, int), **kw)
    with pytest.raises(ValueError, match="R×3"):
        G.residue_edges(np.zeros((3, 2)), np.zeros(3, int), **kw)


def test_dihedrals_match_gemmi(shared_data, real, make_structure):
    gemmi = pytest.importorskip("gemmi")
    s = real("107L")
    feats = G.dihedral_features(s)
    st = gemmi.read_structure(str(sorted((shared_data / "structures").glob("107L.*"))[0]))
    chain = st[0][0]
    ref = []
    for i, res in enumerate(chain):
        if res.het_flag == "H" or res.find_atom("CA", "*") is None:
            continue
        prev = chain[i - 1] if i > 0 else None
        nxt = chain[i + 1] if i + 1 < len(chain) else None
        phi, psi = gemmi.calculate_phi_psi(prev, res, nxt)
        ref.append((phi, psi))
    ref = np.array(ref[: len(feats)])
    for col, angle in ((0, ref[:, 0]), (1, ref[:, 1])):
        ok = np.isfinite(angle)
        assert ok.sum() > 100
        np.testing.assert_allclose(feats[ok, col], np.sin(angle[ok]), atol=1e-4)
        np.testing.assert_allclose(feats[ok, col + 3], np.cos(angle[ok]), atol=1e-4)
    assert feats[0, 0] == 0 and feats[0, 3] == 0  # no phi for the first residue
    toy = make_structure(_line(4), ["A"] * 4)  # CA only: every angle undefined -> zeros
    assert not G.dihedral_features(toy).any()
