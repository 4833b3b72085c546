"""Residue graphs for GAT (simple directed graph) and the geometry helpers shared by the GDMs.

Edges come from neighbors.py (the one radius/kNN kernel), "plain" mode: radius d < r, the k nearest other
residues (ties → lower index), no neighbour cap, and |i − j| >= min_seq_sep only within a chain (cross-chain
contacts are always kept). GearNet builds its TorchDrug-exact graph from the same kernel (gearnet_graph.py).
Edge direction follows torch_cluster: `edge_index = [src, dst]`, src = the neighbour, messages flow src → dst.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from protalign.structure.neighbors import PLAIN, check_inputs, sequential_edges, spatial_edges


def chain_index(chain: np.ndarray | list[str]) -> np.ndarray:
    """Integer chain id per residue (order of first appearance), so chains compare as ints."""
    _, first, inverse = np.unique(np.asarray(chain, dtype=str), return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))  # unique() sorts names; renumber by first appearance
    return rank[inverse].astype(np.int64)


def residue_edges(
    ca: np.ndarray | torch.Tensor,
    chain: np.ndarray | torch.Tensor,
    *,
    radius: float,
    knn: int,
    seq_offsets: int,
    min_seq_sep: int,
) -> torch.Tensor:
    """Sequential (1 <= |d| <= seq_offsets, same chain) ∪ radius ∪ kNN edges as a simple directed graph [2, E].

    Each (src, dst) pair once, no self-loops, sorted by (dst, src): parallel radius + kNN edges would otherwise
    get double attention mass in GAT (GATConv adds its own self-loop per node).
    """
    pos, chain_t = check_inputs(np.asarray(ca, dtype=np.float32), np.asarray(chain))
    seq, _ = sequential_edges(chain_t, seq_offsets)
    rad, nn_ = spatial_edges(pos, chain_t, radius=radius, knn=knn, min_seq_sep=min_seq_sep, mode=PLAIN)
    src, dst = torch.cat([seq, rad, nn_], 1)
    keep = src != dst
    n = pos.shape[0]
    key = torch.unique(dst[keep] * n + src[keep])  # sorted, deduplicated
    return torch.stack([key % n, key // n])


def structure_edges(structure: Any, graph: dict[str, Any]) -> torch.Tensor:
    """`residue_edges` of a ProteinStructure (`ca`, `chain`) with a {radius, knn, seq_offsets, min_seq_sep} dict."""
    return residue_edges(
        structure.ca,
        chain_index(structure.chain),
        radius=graph["radius"],
        knn=graph["knn"],
        seq_offsets=graph["seq_offsets"],
        min_seq_sep=graph["min_seq_sep"],
    )


def _dihedral(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, p3: np.ndarray) -> np.ndarray:
    """Signed dihedral angle (radians) of four point arrays (each M×3); NaN where undefined."""
    b0, b1, b2 = p1 - p0, p2 - p1, p3 - p2
    n1, n2 = np.cross(b0, b1), np.cross(b1, b2)
    b1n = b1 / np.linalg.norm(b1, axis=1, keepdims=True)
    m1 = np.cross(n1, b1n)
    x = (n1 * n2).sum(1)
    y = (m1 * n2).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ang = -np.arctan2(y, x)
        ang[(np.linalg.norm(n1, axis=1) < 1e-6) | (np.linalg.norm(n2, axis=1) < 1e-6)] = np.nan
    return ang


def backbone_atoms(structure, names: tuple[str, ...] = ("N", "CA", "C")) -> np.ndarray:
    """R × len(names) × 3 coordinates from the per-atom arrays; NaN where a residue lacks the atom."""
    ptr = np.asarray(structure.atom_ptr)
    atom_names = np.asarray(structure.atom_name, dtype=str)
    xyz = np.asarray(structure.xyz, dtype=np.float64)
    n_res = len(ptr) - 1
    out = np.full((n_res, len(names), 3), np.nan)
    residue = np.repeat(np.arange(n_res), np.diff(ptr))
    for j, name in enumerate(names):
        hit = np.nonzero(atom_names == name)[0]
        # first occurrence per residue (reverse assignment keeps the first)
        out[residue[hit[::-1]], j] = xyz[hit[::-1]]
    return out


def dihedral_features(structure, max_peptide_bond: float = 2.0) -> np.ndarray:
    """[sin φ, sin ψ, sin ω, cos φ, cos ψ, cos ω] per residue (R×6, float32); 0 where undefined.

    A neighbour counts only if it is in the same chain and the C–N peptide bond is < max_peptide_bond Å
    (chain breaks and missing atoms give zeros rather than garbage angles).
    """
    bb = backbone_atoms(structure)
    n_atom, ca, c = bb[:, 0], bb[:, 1], bb[:, 2]
    r = len(bb)
    chain = chain_index(structure.chain)
    ang = np.full((r, 3), np.nan)
    if r >= 2:
        linked = (chain[1:] == chain[:-1]) & (np.linalg.norm(c[:-1] - n_atom[1:], axis=1) < max_peptide_bond)
        phi = _dihedral(c[:-1], n_atom[1:], ca[1:], c[1:])  # residue i+1
        psi = _dihedral(n_atom[:-1], ca[:-1], c[:-1], n_atom[1:])  # residue i
        omg = _dihedral(ca[:-1], c[:-1], n_atom[1:], ca[1:])  # residue i
        ang[1:, 0] = np.where(linked, phi, np.nan)
        ang[:-1, 1] = np.where(linked, psi, np.nan)
        ang[:-1, 2] = np.where(linked, omg, np.nan)
    feats = np.concatenate([np.sin(ang), np.cos(ang)], axis=1)
    return np.nan_to_num(feats, nan=0.0).astype(np.float32)
