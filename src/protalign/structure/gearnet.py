"""GearNet-Edge (Zhang et al. 2023) in plain torch, faithful to TorchDrug 0.2.x (reference spec §1.4–§1.8).

Module names mirror TorchDrug (`layers`, `edge_layers`, `batch_norms`, each conv with `batch_norm`, `self_loop`,
`linear`) so a TorchDrug state dict (e.g. the released `angle_gearnet_edge.pth`) loads key for key through
`load_torchdrug_state_dict`. Graph construction, edge features and the spatial line graph are in gearnet_graph.py;
the sparse aggregation kernels (RowSum, LinePlan) in gearnet_kernels.py.

Layer l: c = ReLU(BN(linear(Σ_rel-major A(h)) + self_loop(h))) (+ h if shapes match);
m' = same conv on the line graph (8 angle-bin relations, no shortcut); c += ReLU(linear_l(Σ_rel-major m' → dst));
h' = BN_l(c). Output: concat of all h' (or the last), readout = sum over residues (TorchDrug's SumReadout).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from protalign.structure import gearnet_graph as gg
from protalign.structure.gearnet_kernels import LinePlan, line_plan, relational_adjacency, relational_sum
from protalign.structure.registry import POOLINGS, Batch, Sample, StructureEncoder, pool

INPUT_DIM = 21  # TorchDrug residue_symbol one-hot (20 + unknown)
READOUTS = ("sum", *POOLINGS)


class GeometricRelationalGraphConv(nn.Module):
    """TorchDrug's GeometricRelationalGraphConv (sum aggregation, no degree normalisation, no edge_linear)."""

    def __init__(self, input_dim: int, output_dim: int, num_relation: int, batch_norm: bool = True) -> None:
        super().__init__()
        self.input_dim, self.output_dim, self.num_relation = input_dim, output_dim, num_relation
        # registration order = TorchDrug's state-dict order
        self.batch_norm = nn.BatchNorm1d(output_dim) if batch_norm else None
        self.self_loop = nn.Linear(input_dim, output_dim)
        self.linear = nn.Linear(num_relation * input_dim, output_dim)

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        """x [N, in]; adj = relational_adjacency(...) of the graph, [N·R, N]."""
        agg = relational_sum(adj, x, self.num_relation)
        out = self.linear(agg) + self.self_loop(x)
        if self.batch_norm is not None:
            out = self.batch_norm(out)
        return F.relu(out)

    def forward_line(self, m: torch.Tensor, plan: LinePlan) -> torch.Tensor:
        """`forward` on the line graph via its LinePlan: same sums, fewer rows (see LinePlan)."""
        d_in = self.input_dim
        agg = plan.agg @ m  # [Q, D_in]
        w, ptr = self.linear.weight, plan.bin_ptr
        blocks = [
            (agg[ptr[b] : ptr[b + 1]], w[:, b * d_in : (b + 1) * d_in].t()) for b in range(self.num_relation)
        ]
        if torch.is_grad_enabled() and (m.requires_grad or w.requires_grad):
            z = torch.cat([a @ wb for a, wb in blocks])
        else:  # inference: write each bin's product in place (torch.cat costs a full extra copy)
            z = agg.new_empty(agg.shape[0], self.output_dim)
            for b, (a, wb) in enumerate(blocks):
                torch.mm(a, wb, out=z[ptr[b] : ptr[b + 1]])
        per_pair = plan.pair_sum @ z  # each pair's rows summed (index_add_ is ~10× slower)
        out = torch.addmm(self.linear.bias + self.self_loop.bias, m, self.self_loop.weight.t())
        out = out + per_pair[plan.pair_of_edge]
        if self.batch_norm is not None:
            out = self.batch_norm(out)
        return F.relu(out)


class GearNet(nn.Module):
    """TorchDrug `models.GearNet` (with edge_input_dim + num_angle_bin = GearNet-Edge); returns node features."""

    def __init__(
        self,
        hidden_dims: Sequence[int],
        *,
        input_dim: int = INPUT_DIM,
        num_relation: int = 7,
        num_angle_bin: int | None = 8,
        batch_norm: bool = True,
        concat_hidden: bool = True,
        short_cut: bool = True,
    ) -> None:
        super().__init__()
        if not hidden_dims:
            raise ValueError("hidden_dims must not be empty")
        self.dims = [int(input_dim), *(int(h) for h in hidden_dims)]
        self.num_relation = int(num_relation)
        self.num_angle_bin = num_angle_bin
        self.concat_hidden, self.short_cut = concat_hidden, short_cut
        self.edge_input_dim = gg.num_edge_features(self.num_relation)
        n = len(self.dims) - 1
        self.layers = nn.ModuleList(
            GeometricRelationalGraphConv(self.dims[i], self.dims[i + 1], self.num_relation, batch_norm)
            for i in range(n)
        )
        if num_angle_bin:
            edge_dims = [self.edge_input_dim, *self.dims[:-1]]
            self.edge_layers = nn.ModuleList(
                GeometricRelationalGraphConv(edge_dims[i], edge_dims[i + 1], num_angle_bin, batch_norm)
                for i in range(n)
            )
        self.batch_norms = nn.ModuleList(nn.BatchNorm1d(d) for d in self.dims[1:]) if batch_norm else None

    @property
    def output_dim(self) -> int:
        return sum(self.dims[1:]) if self.concat_hidden else self.dims[-1]

    def forward(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        relation: torch.Tensor,
        edge_feature: torch.Tensor | None = None,
        line: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x [N, 21]; edge_index [2, E] (src → dst); line = gearnet_graph.line_graph(...) [3, L] (GearNet-Edge)."""
        src, dst = edge_index
        n = x.shape[0]
        edge_mode = self.num_angle_bin is not None and self.num_angle_bin > 0
        if edge_mode and (edge_feature is None or line is None):
            raise ValueError("GearNet-Edge needs edge_feature and the line graph")
        r = self.num_relation
        adj = relational_adjacency(src, dst, relation, n, r, n)
        if edge_mode:
            e = src.numel()
            plan = line_plan(edge_index, line, n, self.num_angle_bin)
            adj_feed = relational_adjacency(torch.arange(e, device=dst.device), dst, relation, n, r, e)
        hiddens = []
        h, m = x, edge_feature
        for i, layer in enumerate(self.layers):
            c = layer(h, adj)
            if self.short_cut and c.shape == h.shape:
                c = c + h
            if edge_mode:
                m = self.edge_layers[i].forward_line(m, plan)
                c = c + F.relu(layer.linear(relational_sum(adj_feed, m, r)))
            if self.batch_norms is not None:
                c = self.batch_norms[i](c)
            hiddens.append(c)
            h = c
        return torch.cat(hiddens, dim=-1) if self.concat_hidden else hiddens[-1]


def expected_torchdrug_keys(model: GearNet) -> dict[str, tuple[int, ...]]:
    """TorchDrug key → shape for this architecture (identical to our own names)."""
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def load_torchdrug_state_dict(model: GearNet | GearNetEncoder, state_dict: Mapping[str, Any]) -> None:
    """Load a TorchDrug GearNet state dict: a bare one, or an Engine checkpoint {"model": {"model.<key>": ...}}.

    Every expected key must be present with the expected shape; extra keys other than a task head are an error.
    """
    net = model.net if isinstance(model, GearNetEncoder) else model
    sd = state_dict.get("model", state_dict) if isinstance(state_dict, Mapping) else state_dict
    if not isinstance(sd, Mapping):
        raise TypeError(f"expected a state dict mapping, got {type(sd).__name__}")
    expected = expected_torchdrug_keys(net)
    if not any(k in sd for k in expected) and any(k.startswith("model.") for k in sd):
        # Engine checkpoint of a task: the encoder lives under "model.", the head (mlp.*) and buffers are dropped
        sd = {k[len("model.") :]: v for k, v in sd.items() if k.startswith("model.")}
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    wrong = [
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {shape}"
        for k, shape in expected.items()
        if k in sd and tuple(sd[k].shape) != shape
    ]
    if missing or unexpected or wrong:
        raise ValueError(
            "TorchDrug state dict does not fit this GearNet "
            f"(dims {net.dims}, {net.num_relation} relations, angle bins {net.num_angle_bin}): "
            f"{len(missing)} missing {missing[:6]}, {len(unexpected)} unexpected {unexpected[:6]}, "
            f"{len(wrong)} shape mismatches {wrong[:6]}"
        )
    net.load_state_dict({k: torch.as_tensor(sd[k]) for k in expected}, strict=True)


class GearNetEncoder(StructureEncoder):
    """Registry wrapper: featurize (TorchDrug graph of one protein) → collate → forward / embed (sum readout)."""

    name = "gearnet_edge"
    node_keys = ("symbol", "rtype", "pos", "chain")
    edge_keys = ("relation",)

    def __init__(self, config: dict[str, Any]) -> None:
        cfg = dict(config)
        readout = cfg.get("readout", "sum")
        if readout not in READOUTS:
            raise ValueError(f"unknown gearnet readout {readout!r}; expected one of {READOUTS}")
        cfg["pooling"] = (
            readout if readout in POOLINGS else "mean"
        )  # the base class only knows mean/max/meanmax
        super().__init__(cfg)
        self.readout = readout
        self.graph_cfg = {**DEFAULT_GRAPH, **cfg.get("graph", {})}
        self.net = GearNet(
            cfg.get("hidden_dims", [512, 512]),
            num_relation=2 * int(self.graph_cfg["seq_offsets"]) + 3,
            num_angle_bin=cfg.get("num_angle_bin", 8),
            batch_norm=cfg.get("batch_norm", True),
            concat_hidden=cfg.get("concat_hidden", True),
            short_cut=cfg.get("short_cut", True),
        )
        if cfg.get("checkpoint"):
            load_torchdrug_state_dict(
                self.net, torch.load(cfg["checkpoint"], map_location="cpu", weights_only=True)
            )

    @classmethod
    def from_released(cls, path, config: dict[str, Any]) -> GearNetEncoder | None:
        """A TorchDrug GearNet-Edge state dict (bare, or an Engine checkpoint {"model": ...}) named as a GDM's
        `weights`: imported as published (no training). None for our own checkpoints / state dicts ("net." keys)."""
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or "format" in payload or any(str(k).startswith("net.") for k in payload):
            return None
        encoder = cls({**config, "checkpoint": str(path)})
        encoder.config.update(checkpoint=None, released=Path(path).name)  # the state dict carries the tensors
        return encoder

    @classmethod
    def config_from_params(cls, params) -> dict[str, Any]:
        g = params.gearnet_edge
        return {
            "hidden_dims": list(g.hidden_dims),
            "readout": g.readout,
            "checkpoint": g.checkpoint,
            "graph": dict(DEFAULT_GRAPH),
        }

    @property
    def node_dim(self) -> int:
        return self.net.output_dim

    @property
    def dim(self) -> int:
        return self.node_dim * (2 if self.readout == "meanmax" else 1)

    def featurize(self, structure) -> Sample:
        """Node inputs + TorchDrug edges of one protein; raises ValueError on unusable input."""
        aa = np.asarray(structure.aa, dtype=np.int64)
        if len(aa) == 0:
            raise ValueError("no residues")
        if len(structure.ca) != len(aa):
            raise ValueError(f"{len(structure.ca)} Cα coordinates for {len(aa)} residues")
        symbol, rtype = gg.td_residue_ids(aa)
        chain = torch.from_numpy(np.asarray(structure.chain_index, dtype=np.int64))
        return self.make_sample(structure.id, symbol, rtype, torch.as_tensor(np.asarray(structure.ca)), chain)

    def make_sample(self, sid, symbol, rtype, pos, chain) -> Sample:
        """A sample from TorchDrug-style node arrays (symbol 0..20, residue type 0..19, Cα, int chain id)."""
        g = self.graph_cfg
        edge_index, relation = gg.build_edges(
            pos,
            chain,
            radius=g["radius"],
            knn=g["knn"],
            seq_offsets=g["seq_offsets"],
            min_distance=g["min_distance"],
            max_radius_neighbors=g["max_radius_neighbors"],
        )
        pos = pos.to(torch.float32)
        return {"id": sid, "num_nodes": pos.shape[0], "symbol": symbol, "rtype": rtype, "pos": pos, "chain": chain,
                "edge_index": edge_index, "relation": relation}  # fmt: skip

    def crop(self, sample: Sample, start: int, stop: int) -> Sample:
        """Residues [start, stop) with the graph rebuilt on them (TorchDrug builds graphs after truncation)."""
        if start == 0 and stop >= sample["num_nodes"]:
            return sample
        sl = slice(start, stop)
        return self.make_sample(sample["id"], sample["symbol"][sl], sample["rtype"][sl], sample["pos"][sl],
                            sample["chain"][sl])  # fmt: skip

    def forward(self, batch: Batch, type_mask: torch.Tensor | None = None) -> torch.Tensor:
        symbol = batch["symbol"]
        x = F.one_hot(symbol, INPUT_DIM).float()
        visible = None
        if type_mask is not None:  # hidden residues: zero node one-hot and their type in edge features
            visible = ~type_mask
            x = x * visible.float()[:, None]
        n = x.shape[0]
        edge_feature = line = None
        if self.net.num_angle_bin:
            edge_feature = gg.edge_features(
                batch["edge_index"],
                batch["relation"],
                batch["rtype"],
                batch["pos"],
                self.net.num_relation,
                visible,
            )
            line = gg.line_graph(batch["edge_index"], batch["pos"], n, self.net.num_angle_bin)
        return self.net(x, batch["edge_index"], batch["relation"], edge_feature, line)

    def embed(self, batch: Batch) -> torch.Tensor:
        feats = self.forward(batch)
        if self.readout == "sum":
            return feats.new_zeros(batch["num_graphs"], feats.shape[1]).index_add_(0, batch["batch"], feats)
        return pool(feats, batch["batch"], batch["num_graphs"], self.readout)


# TorchDrug GearNet configs (GN config/*/gearnet_edge.yaml): Sequential(2), Spatial(10 Å, min 5), KNN(10, min 5)
DEFAULT_GRAPH: dict[str, Any] = {
    "radius": 10.0,
    "knn": 10,
    "seq_offsets": 2,
    "min_distance": 5,
    "max_radius_neighbors": 32,
}
