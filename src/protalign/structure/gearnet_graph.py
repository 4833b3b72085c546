"""GearNet-Edge inputs exactly as TorchDrug builds them (reference spec §1.1–§1.3, §1.5).

Edges come from neighbors.py in its "torchdrug" mode (the |Δindex| filter ignores chains; the radius search caps
at the first 33 hits *including self*, as CUDA torch_cluster <= 1.6.3, which trained the released checkpoints;
kNN keeps the k+1 nearest including self, ties → lower index, squared distances >= 5e4 never picked, then drops
self). Loading official weights needs these exact semantics; GAT/GVP use the kernel's "plain" mode.

Relations: sequential i → i+d for d = -2..2 (same chain, adjacent in the residue list) → d + 2; radius → 5; kNN → 6.
Edge feature (59-d): one-hot type(src) 20 ‖ one-hot type(dst) 20 ‖ one-hot relation 7 ‖ one-hot min(|Δidx|, 10) 11
‖ Cα distance (Å). Residue types use TorchDrug's own order (`TD_RESIDUES`), not the store's ACDEF... order.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from protalign.corpus.store import AA_ORDER, UNKNOWN_AA
from protalign.structure.neighbors import TORCHDRUG, check_inputs, sequential_edges, spatial_edges

# TorchDrug residue vocabulary order (data/protein.py residue2id); the node one-hot has a 21st "unknown" slot
TD_RESIDUES = "GASPVTCILNDQKEMHFRYW"
TD_UNKNOWN_SYMBOL = 20  # node one-hot index of an unknown residue
TD_UNKNOWN_TYPE = 0  # residue_type of an unknown residue ("treat as glycine")
SEQ_DIST_CLASSES = 11  # one-hot of min(|Δidx|, 10)

# store aa index (ACDEFGHIKLMNPQRSTVWY, 20 = unknown) -> TorchDrug node symbol / residue type
_STORE_TO_TD = np.array([TD_RESIDUES.index(c) for c in AA_ORDER] + [TD_UNKNOWN_SYMBOL], dtype=np.int64)


def td_residue_ids(aa: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Store residue ids → (TorchDrug node symbol 0..20, TorchDrug residue_type 0..19; unknown → GLY)."""
    aa_np = np.asarray(aa, dtype=np.int64)
    if aa_np.size and (aa_np.min() < 0 or aa_np.max() > UNKNOWN_AA):
        raise ValueError(f"residue ids must be in 0..{UNKNOWN_AA}")
    symbol = torch.from_numpy(_STORE_TO_TD[aa_np])
    rtype = torch.where(symbol == TD_UNKNOWN_SYMBOL, torch.full_like(symbol, TD_UNKNOWN_TYPE), symbol)
    return symbol, rtype


def num_edge_features(num_relation: int) -> int:
    return 2 * len(TD_RESIDUES) + num_relation + SEQ_DIST_CLASSES + 1


def build_edges(
    pos: torch.Tensor,
    chain: torch.Tensor,
    *,
    radius: float = 10.0,
    knn: int = 10,
    seq_offsets: int = 2,
    min_distance: int = 5,
    max_radius_neighbors: int = 32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """TorchDrug's GraphConstruction([Sequential, Spatial, KNN]) for ONE protein → (edge_index [2, E], relation [E]).

    `chain` is an integer chain id per node; residue index = node index (the list TorchDrug keeps after dropping
    residues without Cα). Edge order: sequential by offset, then radius, then kNN (TorchDrug's order is arbitrary
    within a graph; only floating-point summation order depends on it).
    """
    pos, chain = check_inputs(pos, chain)
    seq, offset = sequential_edges(chain, seq_offsets)  # relation d + seq_offsets
    parts, rels = [seq], [offset]
    rad, nn_ = spatial_edges(
        pos,
        chain,
        radius=float(radius),
        knn=int(knn),
        min_seq_sep=min_distance,
        mode=TORCHDRUG,
        max_radius_neighbors=int(max_radius_neighbors),
    )
    for rel, ei in ((2 * seq_offsets + 1, rad), (2 * seq_offsets + 2, nn_)):
        parts.append(ei)
        rels.append(torch.full((ei.shape[1],), rel, dtype=torch.long))
    return torch.cat(parts, 1), torch.cat(rels)


def edge_features(
    edge_index: torch.Tensor,
    relation: torch.Tensor,
    rtype: torch.Tensor,
    pos: torch.Tensor,
    num_relation: int,
    type_visible: torch.Tensor | None = None,
) -> torch.Tensor:
    """TorchDrug's "gearnet" edge feature (59-d for 7 relations); indices are global within a batch.

    `type_visible` (bool per node) zeroes the residue-type one-hots of hidden residues (masked-type training).
    """
    src, dst = edge_index
    n_types = len(TD_RESIDUES)
    t_src = torch.nn.functional.one_hot(rtype[src], n_types).float()
    t_dst = torch.nn.functional.one_hot(rtype[dst], n_types).float()
    if type_visible is not None:
        vis = type_visible.float()
        t_src = t_src * vis[src, None]
        t_dst = t_dst * vis[dst, None]
    rel = torch.nn.functional.one_hot(relation, num_relation).float()
    seq = torch.nn.functional.one_hot(
        (src - dst).abs().clamp(max=SEQ_DIST_CLASSES - 1), SEQ_DIST_CLASSES
    ).float()
    dist = (pos[src] - pos[dst]).norm(dim=1, keepdim=True)
    return torch.cat([t_src, t_dst, rel, seq, dist], dim=1)


def line_graph(
    edge_index: torch.Tensor, pos: torch.Tensor, num_nodes: int, num_angle_bin: int = 8
) -> torch.Tensor:
    """Spatial line graph: [3, L] rows (e_in, e_out, angle bin) for every e_in = k→j, e_out = j→i pair.

    All in×out pairs at each node j (back-tracking, self-loops and parallel edges included). θ = angle between
    x_i − x_j and x_k − x_j; bin = floor(θ / π · bins) clamped to bins − 1.
    """
    src, dst = edge_index
    by_dst = torch.argsort(dst, stable=True)  # incoming edges grouped by node
    by_src = torch.argsort(src, stable=True)  # outgoing edges grouped by node
    indeg = torch.bincount(dst, minlength=num_nodes)
    outdeg = torch.bincount(src, minlength=num_nodes)
    dev = edge_index.device
    in_ptr = torch.cat([indeg.new_zeros(1), indeg.cumsum(0)])
    out_ptr = torch.cat([outdeg.new_zeros(1), outdeg.cumsum(0)])
    pairs = indeg * outdeg
    total = int(pairs.sum())
    node = torch.repeat_interleave(torch.arange(num_nodes, device=dev), pairs)
    offset = torch.arange(total, device=dev) - torch.repeat_interleave(
        torch.cat([pairs.new_zeros(1), pairs.cumsum(0)[:-1]]), pairs
    )
    od = outdeg[node]
    e_in = by_dst[in_ptr[node] + torch.div(offset, od.clamp_min(1), rounding_mode="floor")]
    e_out = by_src[out_ptr[node] + offset % od.clamp_min(1)]
    x_j = pos[node]
    v1 = pos[dst[e_out]] - x_j
    v2 = pos[src[e_in]] - x_j
    theta = torch.atan2(torch.linalg.cross(v1, v2).norm(dim=1), (v1 * v2).sum(1))
    bins = (theta / math.pi * num_angle_bin).long().clamp(max=num_angle_bin - 1)
    return torch.stack([e_in, e_out, bins])
