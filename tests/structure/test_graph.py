"""Residue graph edges: hand-checked toy chains, a brute-force reference on real proteins, blocks, big inputs."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from protalign.structure import graph as G


def _edges(g: G.ResidueGraph, rel: int) -> set[tuple[int, int]]:
    keep = g.relation == rel
    return set(map(tuple, g.edge_index[:, keep].T.tolist()))


def _line(n: int, spacing: float = 4.0) -> np.ndarray:
    return np.stack([np.arange(n) * spacing, np.zeros(n), np.zeros(n)], axis=1)


def test_toy_chain_edges_by_hand():
    # residues on a line, 4 Å apart (exact in float32): distances are 4|i-j|
    g = G.build_residue_graph(_line(8), np.zeros(8, int), radius=8.5, knn=3, seq_offsets=1, min_seq_sep=2)
    assert g.num_relations == 5
    for d, rel in ((-1, 0), (0, 1), (1, 2)):  # edge i -> i+d has relation d + s
        assert _edges(g, rel) == {(i, i + d) for i in range(8) if 0 <= i + d < 8}
    # radius 8.5 keeps |i-j| <= 2, min_seq_sep 2 keeps only |i-j| == 2 (both directions)
    assert _edges(g, 3) == {(i, j) for i in range(8) for j in range(8) if abs(i - j) == 2}
    # kNN k=3: nearest 3 of each centre (ties at equal distance -> lower index), then |i-j| >= 2; (src, dst)
    expected_knn = {(2, 0), (3, 0), (3, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7), (4, 7)}
    assert _edges(g, 4) == expected_knn


def test_radius_is_strict():
    g = G.build_residue_graph(_line(5), np.zeros(5, int), radius=8.0, knn=0, seq_offsets=0, min_seq_sep=1)
    assert _edges(g, 1) == {(i, j) for i in range(5) for j in range(5) if abs(i - j) == 1}


def test_cross_chain_edges():
    # chain A = residues 0..3, chain B = 4..7 on the same line: 3 and 4 are list-adjacent but in different chains
    chain = np.array(["A"] * 4 + ["B"] * 4)
    g = G.build_residue_graph(_line(8), G.chain_index(chain), radius=4.5, knn=0, seq_offsets=1, min_seq_sep=3)
    seq = _edges(g, 0) | _edges(g, 2)
    assert (3, 4) not in seq and (4, 3) not in seq
    # radius 4.5 -> only neighbours at 4 Å; within a chain |i-j| = 1 < 3 is filtered, across chains it is kept
    assert _edges(g, 3) == {(3, 4), (4, 3)}


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
    g = G.build_residue_graph(s.ca, chain, radius=10.0, knn=10, seq_offsets=2, min_seq_sep=5)
    rad, knn = _brute_force(s.ca, chain, 10.0, 10, 5)
    assert _edges(g, 5) == rad
    assert _edges(g, 6) == knn
    assert len(rad) > len(s.ca) and len(knn) > len(s.ca)  # non-trivial


def test_blocked_equals_unblocked(real, monkeypatch):
    s = real("11AS")
    kw = dict(radius=10.0, knn=10, seq_offsets=2, min_seq_sep=5)
    full = G.build_residue_graph(s.ca, G.chain_index(s.chain), **kw)
    monkeypatch.setattr(G, "_BLOCK_ELEMENTS", 37 * len(s.ca))  # 37-row blocks, last one ragged
    blocked = G.build_residue_graph(s.ca, G.chain_index(s.chain), **kw)
    for rel in range(full.num_relations):
        assert _edges(full, rel) == _edges(blocked, rel)


def test_8000_residue_protein_builds_in_blocks():
    rng = np.random.default_rng(0)
    n = 8000
    steps = rng.normal(size=(n, 3))
    ca = np.cumsum(3.8 * steps / np.linalg.norm(steps, axis=1, keepdims=True), axis=0)
    chain = np.repeat(np.arange(4), n // 4)
    assert G._block_rows(n) < n  # really blocked: ~1000 x 8000 distances at a time
    t0 = time.perf_counter()
    g = G.build_residue_graph(ca, chain, radius=10.0, knn=10, seq_offsets=2, min_seq_sep=5)
    assert time.perf_counter() - t0 < 30
    indeg = torch.bincount(g.edge_index[1, g.relation == 6], minlength=n)
    assert int(indeg.max()) <= 10 and int(indeg.sum()) > n
    # spot-check 20 centres against brute force
    for c in rng.choice(n, 20, replace=False):
        d = np.sqrt(((ca - ca[c]) ** 2).sum(1))
        d[c] = np.inf
        nn = np.argsort(d, kind="stable")[:10]
        ok = (chain[nn] != chain[c]) | (np.abs(nn - c) >= 5)
        got = set(g.edge_index[0, (g.relation == 6) & (g.edge_index[1] == c)].tolist())
        assert got == set(nn[ok].tolist())


def test_simple_graph_dedups_and_drops_self_loops():
    g = G.build_residue_graph(_line(10), np.zeros(10, int), radius=100.0, knn=9, seq_offsets=2, min_seq_sep=3)
    ei = G.simple_graph(g)
    pairs = list(map(tuple, ei.T.tolist()))
    assert len(pairs) == len(set(pairs))
    assert all(a != b for a, b in pairs)
    assert set(pairs) == {(a, b) for a, b in map(tuple, g.edge_index.T.tolist()) if a != b}


def test_bad_input_is_an_error():
    with pytest.raises(ValueError, match="non-finite"):
        G.build_residue_graph(
            np.full((3, 3), np.nan), np.zeros(3, int), radius=5, knn=2, seq_offsets=1, min_seq_sep=1
        )
    with pytest.raises(ValueError, match="R×3"):
        G.build_residue_graph(
            np.zeros((3, 2)), np.zeros(3, int), radius=5, knn=2, seq_offsets=1, min_seq_sep=1
        )


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
