"""ScanNet inputs of one protein: atom/residue local frames and K-nearest neighbourhoods (spec §1–§2), numpy only.

Everything the network needs that depends only on coordinates is computed here once per protein, so the forward
pass is pure tensor algebra: neighbour indices and the neighbours' coordinates in each centre's local frame
(numpy; torch's thread setting only sizes the k-d tree query).
`raw_arrays` reduces a ProteinStructure to what `build` needs, so crops and type-masked variants are rebuilt from
the same arrays (neighbourhoods must be recomputed when residues or side chains are removed).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.spatial import cKDTree

from protalign.structure import scannet_chem as chem

K_ATOM, K_AA, K_GRAPH = 16, 16, 32
INDEX_DISTANCE_MAX = 8
EPS_FRAME = 1e-6
EYE = np.eye(3)


def raw_arrays(structure) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """(raw arrays, counts): every residue of the store, atoms in ScanNet's 38-name list.

    The store already resolved altlocs (most occupied), mapped modified residues to their parent type, kept only
    model 1 and residues with a CA. ScanNet drops residues of unknown type; here they stay (every stage needs one
    row per stored residue) but are encoded like type-masked residues: backbone only, no type.
    """
    aa = np.asarray(structure.aa, dtype=np.int64)
    ptr = np.asarray(structure.atom_ptr, dtype=np.int64)
    keep_res = np.ones(len(aa), dtype=bool)
    res_of_atom = np.repeat(np.arange(len(aa)), np.diff(ptr))
    code = chem.atom_codes(structure.atom_name)
    keep_atom = keep_res[res_of_atom] & (code >= 0)
    counts = np.bincount(res_of_atom[keep_atom], minlength=len(aa))[keep_res]
    raw = {
        "aa": aa[keep_res],
        "atom_ptr": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        "code": code[keep_atom],
        "mass": chem.atom_masses(structure.element)[keep_atom],
        "xyz": np.asarray(structure.xyz, dtype=np.float64)[keep_atom],
    }
    drops = {"unknown_residues": int((aa >= 20).sum()), "dropped_atoms": int((code < 0).sum())}
    return raw, drops


def crop_raw(raw: dict[str, np.ndarray], start: int, stop: int) -> dict[str, np.ndarray]:
    a0, a1 = raw["atom_ptr"][start], raw["atom_ptr"][stop]
    return {
        "aa": raw["aa"][start:stop],
        "atom_ptr": raw["atom_ptr"][start : stop + 1] - a0,
        "code": raw["code"][a0:a1],
        "mass": raw["mass"][a0:a1],
        "xyz": raw["xyz"][a0:a1],
    }


def frames(origin: np.ndarray, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    """Rotations [N, 3, 3] (rows e_x, e_y, e_z): z towards `nxt`, `prev` in the xz half-plane (order '2', ε-exact)."""
    n, p = nxt - origin, prev - origin
    ez = (n + EPS_FRAME * EYE[2]) / (np.linalg.norm(n, axis=1, keepdims=True) + EPS_FRAME)
    cy = np.cross(ez, p)
    ey = (cy + EPS_FRAME * EYE[1]) / (np.linalg.norm(cy, axis=1, keepdims=True) + EPS_FRAME)
    cx = np.cross(ey, ez)
    ex = (cx + EPS_FRAME * EYE[0]) / (np.linalg.norm(cx, axis=1, keepdims=True) + EPS_FRAME)
    return np.stack([ex, ey, ez], axis=1)


def knn(points: np.ndarray, k: int) -> np.ndarray:
    """[N, k] neighbour ids by distance with the point itself first; -1 pads when N < k."""
    n = len(points)
    kk = min(k, n)
    _, idx = cKDTree(points).query(points, k=kk, workers=torch.get_num_threads())
    idx = np.asarray(idx, dtype=np.int64).reshape(n, kk)
    own = np.arange(n)[:, None]
    bad = idx[:, 0] != own[:, 0]  # only duplicated coordinates can put another point before the point itself
    if bad.any():
        sub, own_b = idx[bad], own[bad]
        missing = ~(sub == own_b).any(1)  # ... or push it out of its own list
        sub[missing, -1] = own_b[missing, 0]
        order = np.argsort(sub != own_b, axis=1, kind="stable")  # self first, the rest keep distance order
        idx[bad] = np.take_along_axis(sub, order, axis=1)
    if kk < k:
        idx = np.concatenate([idx, np.full((n, k - kk), -1, np.int64)], axis=1)
    return idx


def local_coords(origin: np.ndarray, rot: np.ndarray, points: np.ndarray, nbr: np.ndarray) -> np.ndarray:
    """u_ik = R_i (x_nbr − o_i) for every centre i and neighbour k; zero at padding."""
    delta = points[np.maximum(nbr, 0)] - origin[:, None]
    u = np.matmul(delta, rot.transpose(0, 2, 1))  # batched 3×3 (np.einsum here is ~6× slower)
    u[nbr < 0] = 0.0
    return u


def _atom_partners(aa_eff, res, code, tab, n_res):
    """Indices of each atom's previous / next covalent partner (-1 missing), crossing to neighbour residues."""
    n_codes = tab.shape[1]
    out = []
    for table, sentinel, shift, partner in (
        (chem.PREV, chem.PREV_C, -1, "C"),
        (chem.NEXT, chem.NEXT_N, 1, "N"),
    ):
        pc = table[aa_eff[res], code]
        idx = np.full(len(code), -1, np.int64)
        same = pc >= 0
        idx[same] = tab[res[same], pc[same]]
        cross = pc == sentinel
        other = res + shift
        ok = cross & (other >= 0) & (other < n_res)
        idx[ok] = tab[other[ok], chem.CODE[partner]]
        out.append(idx)
    assert n_codes == len(chem.ATOM_NAMES)
    return out


def _virtual_points(x: np.ndarray, prev: np.ndarray, nxt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates of each atom's prev/next partner, completing missing ones by parallelograms (spec §1.4)."""
    p_pt = np.where(prev[:, None] >= 0, x[np.maximum(prev, 0)], 0.0)
    n_pt = np.where(nxt[:, None] >= 0, x[np.maximum(nxt, 0)], 0.0)
    no_p, no_n = prev < 0, nxt < 0
    # prev missing, next present: x_a + x_next − x_next(next), else +x̂
    a = no_p & ~no_n
    nn = np.where(a, nxt[np.maximum(nxt, 0)], -1)
    ok = a & (nn >= 0)
    p_pt[ok] = x[ok] + x[nxt[ok]] - x[nn[ok]]
    p_pt[a & ~ok] = x[a & ~ok] + EYE[0]
    # next missing, prev present: x_a + x_prev − x_prev(prev), else +ẑ
    b = no_n & ~no_p
    pp = np.where(b, prev[np.maximum(prev, 0)], -1)
    ok = b & (pp >= 0)
    n_pt[ok] = x[ok] + x[prev[ok]] - x[pp[ok]]
    n_pt[b & ~ok] = x[b & ~ok] + EYE[2]
    both = no_p & no_n
    p_pt[both] = x[both] + EYE[0]
    n_pt[both] = x[both] + EYE[2]
    return p_pt, n_pt


def _sidechain_points(x, mass, res, code, tab, n_res) -> np.ndarray:
    """Mass-weighted side-chain centroid; without side chain the released model's (buggy) 3Cα − N_{l−1} − C_l."""
    side = ~chem.IS_BACKBONE[code]
    w = np.bincount(res[side], weights=mass[side], minlength=n_res).astype(np.float64)
    sc = np.stack(
        [np.bincount(res[side], weights=mass[side] * x[side, d], minlength=n_res) for d in range(3)], 1
    )
    sc = sc.astype(np.float64)
    has = w > 0
    sc[has] /= w[has, None]
    ca_i, c_i, n_i = (tab[:, chem.CODE[a]] for a in ("CA", "C", "N"))
    n_prev = np.concatenate([[-1], n_i[:-1]])
    fix = ~has & (ca_i >= 0) & (c_i >= 0) & (n_prev >= 0)
    sc[fix] = 3 * x[ca_i[fix]] - x[n_prev[fix]] - x[c_i[fix]]
    last = np.zeros(n_res, np.int64)
    last[res] = np.arange(len(res))  # last atom of each residue (atoms are grouped by residue)
    rest = ~has & ~fix
    sc[rest] = x[last[rest]]
    return sc


def build(raw: dict[str, np.ndarray], hide: np.ndarray | None = None) -> dict[str, Any]:
    """Frames + neighbourhoods of one protein; residues where `hide` is True keep only type-free backbone atoms."""
    aa = raw["aa"]
    n_res = len(aa)
    if n_res == 0:
        raise ValueError("no residues")
    ptr, code, mass, x = raw["atom_ptr"], raw["code"], raw["mass"], raw["xyz"]
    res = np.repeat(np.arange(n_res), np.diff(ptr))
    aa_eff = aa.copy()
    hide = (aa >= 20) if hide is None else (hide | (aa >= 20))
    if hide.any():
        aa_eff[hide] = chem.HIDDEN
        keep = ~hide[res] | chem.IS_BACKBONE[code]
        res, code, mass, x = res[keep], code[keep], mass[keep], x[keep]
    n_atoms = len(code)
    tab = np.full((n_res, len(chem.ATOM_NAMES)), -1, np.int64)
    tab[res, code] = np.arange(n_atoms)
    ca = tab[:, chem.CODE["CA"]]
    first = np.full(n_res, -1, np.int64)
    first[res[::-1]] = np.arange(n_atoms)[::-1]
    if (first < 0).any():
        raise ValueError(f"{int((first < 0).sum())} residues without any ScanNet atom")
    ca = np.where(ca >= 0, ca, first)  # ScanNet: a residue without CA uses its first atom
    prev, nxt = _atom_partners(aa_eff, res, code, tab, n_res)
    p_pt, n_pt = _virtual_points(x, prev, nxt)
    rot = frames(x, p_pt, n_pt)
    atom_nbr = knn(x, K_ATOM)
    atom_u = local_coords(x, rot, x, atom_nbr)
    # residue frames: Cα, previous Cα (virtual for residue 0), side-chain centre
    ca_x = x[ca]
    sc = _sidechain_points(x, mass, res, code, tab, n_res)
    prev_ca = np.empty_like(ca_x)
    prev_ca[1:] = ca_x[:-1]
    prev_ca[0] = 2 * ca_x[0] - x[first[1]] if n_res > 1 else ca_x[0] + EYE[0]
    rot_aa = frames(ca_x, prev_ca, sc)
    graph_nbr = knn(ca_x, max(K_GRAPH, K_AA))
    aa_nbr = np.ascontiguousarray(graph_nbr[:, :K_AA])  # the K_AA nearest are the head of the K_GRAPH list
    graph_nbr = graph_nbr[:, :K_GRAPH]
    aa_u = local_coords(ca_x, rot_aa, ca_x, aa_nbr)
    safe = np.maximum(graph_nbr, 0)
    delta = ca_x[safe] - ca_x[:, None]
    dist = np.linalg.norm(delta, axis=-1)
    dhat = delta / (dist[..., None] + 1e-10)
    z = rot_aa[:, 2]
    zn = z[safe]
    seq = np.abs(safe - np.arange(n_res)[:, None])
    graph_e = np.stack(
        [
            dist,
            (z[:, None] * zn).sum(-1),
            (dhat * zn).sum(-1),
            (z[:, None] * dhat).sum(-1),
            np.minimum(seq, INDEX_DISTANCE_MAX).astype(np.float64),
        ],
        axis=-1,
    )
    graph_e[graph_nbr < 0] = 0.0
    return {
        "aa_in": aa_eff,
        "ca": ca_x,
        "atom_type": chem.VALENCY[aa_eff[res], code] + 1,
        "atom_res": res,
        "atom_nbr": atom_nbr,
        "atom_u": atom_u,
        "aa_nbr": aa_nbr,
        "aa_u": aa_u,
        "graph_nbr": graph_nbr,
        "graph_e": graph_e,
    }
