"""GAT (Veličković et al. 2018) on residue graphs: the simplest GDM of the registry.

Design (reference spec §4.2, a design choice rather than an official model):
- nodes = residues with a Cα; edges = sequential + radius + kNN (graph.py), as one simple directed graph
  (parallel radius/kNN edges would get double attention mass); GATConv adds one self-loop per node itself;
- node input = 21-d one-hot residue type (index 20 = unknown) ‖ 6 backbone dihedral features
  [sin φ, sin ψ, sin ω, cos φ, cos ψ, cos ω] (zeros where undefined), the latter unless `dihedrals` is False.
  Dihedrals give the model local geometry the Cα graph alone does not carry (helix vs strand);
- `layers` × [dropout(x) → GATConv(in, hidden, heads, attention dropout) → ELU], heads concatenated, so the
  per-residue width is hidden·heads; readout = mean | max | meanmax over residues.
Masked residue-type training zeroes the one-hot of masked residues (the all-zero vector is the mask token).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import GATConv

from protalign.structure.graph import dihedral_features, structure_edges
from protalign.structure.registry import Batch, Sample, StructureEncoder

N_TYPES = 21  # 20 amino acids + unknown
N_DIHEDRAL = 6


class GATEncoder(StructureEncoder):
    name = "gat"
    node_keys = ("aa", "geo")
    edge_keys = ()

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.hidden = int(config["hidden"])
        self.heads = int(config["heads"])
        self.dropout = float(config["dropout"])
        self.n_geo = N_DIHEDRAL if config.get("dihedrals", True) else 0
        if int(config["layers"]) < 1:
            raise ValueError("gat.layers must be >= 1")
        width = self.hidden * self.heads
        dims = [N_TYPES + self.n_geo] + [width] * int(config["layers"])
        self.convs = nn.ModuleList(
            GATConv(d_in, self.hidden, heads=self.heads, dropout=self.dropout) for d_in in dims[:-1]
        )

    @classmethod
    def config_from_params(cls, params) -> dict[str, Any]:
        g, gat = params.graph, params.gat
        return {
            "graph": {
                "radius": g.radius,
                "knn": g.knn,
                "seq_offsets": g.seq_offsets,
                "min_seq_sep": g.min_seq_sep,
            },
            "hidden": gat.hidden,
            "heads": gat.heads,
            "layers": gat.layers,
            "dropout": gat.dropout,
            "dihedrals": bool(gat.dihedrals),
            "pooling": params.pooling,
        }

    @property
    def node_dim(self) -> int:
        return self.hidden * self.heads

    def featurize(self, structure) -> Sample:
        """Graph + node inputs of one protein (CPU tensors); raises ValueError on unusable input."""
        aa = np.asarray(structure.aa, dtype=np.int64)
        n = len(aa)
        if n == 0:
            raise ValueError("no residues")
        if aa.min() < 0 or aa.max() >= N_TYPES:
            raise ValueError(f"residue type out of range 0..{N_TYPES - 1}")
        if len(structure.ca) != n:
            raise ValueError(f"{len(structure.ca)} Cα coordinates for {n} residues")
        geo = dihedral_features(structure) if self.n_geo else np.zeros((n, 0), dtype=np.float32)
        return {
            "id": structure.id,
            "num_nodes": n,
            "aa": torch.from_numpy(aa),
            "geo": torch.from_numpy(geo),
            "edge_index": structure_edges(structure, self.config["graph"]),
        }

    def node_input(self, batch: Batch, type_mask: torch.Tensor | None = None) -> torch.Tensor:
        onehot = F.one_hot(batch["aa"], N_TYPES).to(torch.float32)
        if type_mask is not None:
            onehot = onehot * (~type_mask).to(torch.float32)[:, None]
        return torch.cat([onehot, batch["geo"].to(torch.float32)], dim=1)

    def forward(self, batch: Batch, type_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.node_input(batch, type_mask)
        for conv in self.convs:
            x = F.dropout(x, p=self.dropout, training=self.training)
            x = F.elu(conv(x, batch["edge_index"]))
        return x
