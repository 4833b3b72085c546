"""GVP-GNN (Jing et al., ICLR 2021) in plain torch, after the reference spec §3 (gvp-pytorch, MQA model).

Why written here: the PyPI `geometric-vector-perceptron` breaks with current PyG and `gvp-pytorch` is not on PyPI.
Inputs per residue: backbone N, CA, C, O (O is unused, as in the reference). Node scalars: [cos, sin] of φ, ψ, ω
(0 across chain breaks / missing atoms) ‖ 1 flag "backbone complete" ‖ residue-type embedding; node vectors:
forward Cα, backward Cα, imputed side-chain direction. Edges: kNN 30 on Cα (neighbors.spatial_edges, src = neighbour);
edge scalars RBF(16, 0..20 Å) ‖ sinusoidal encoding of (src − dst) (16); edge vector unit(Cα_src − Cα_dst).
Layers: W_v/W_e (LayerNorm → GVP), `layers` × GVPConvLayer (3-GVP messages, mean aggregation, 2-GVP feed-forward,
residual + post-norm), W_out = LayerNorm → GVP to scalars only (ReLU). The output is built only from scalars and
vector NORMS, so it is rotation- and translation-INVARIANT (unlike the seed's raw vector components).

Missing backbone atoms (decision): a residue lacking N or C keeps its Cα node (forward/backward vectors, edges) and
gets zeros for dihedrals and side-chain direction plus the flag 0; an entry where more than half of the residues
lack N or C (a Cα trace) is skipped with a recorded reason, because most of GVP's geometry would be undefined.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from protalign.structure.graph import backbone_atoms, chain_index, dihedral_features
from protalign.structure.neighbors import PLAIN, spatial_edges
from protalign.structure.registry import Batch, Sample, StructureEncoder

N_TYPES = 22  # 20 amino acids, 20 = unknown, 21 = mask token (masked residue-type training)
MASK_TOKEN = 21
N_RBF = 16
N_POS = 16
NODE_IN = (6 + 1, 3)  # dihedrals + backbone flag; 3 vectors (type embedding is added to the scalars)
EDGE_IN = (N_RBF + N_POS, 1)
MAX_INCOMPLETE_FRACTION = 0.5


def _unit(v: torch.Tensor) -> torch.Tensor:
    return torch.nan_to_num(v / v.norm(dim=-1, keepdim=True))


def rbf(d: torch.Tensor, d_max: float = 20.0, count: int = N_RBF) -> torch.Tensor:
    mu = torch.linspace(0.0, d_max, count, device=d.device)
    sigma = d_max / count
    return torch.exp(-(((d[:, None] - mu) / sigma) ** 2))


def positional(delta: torch.Tensor, count: int = N_POS) -> torch.Tensor:
    freq = torch.exp(
        torch.arange(0, count, 2, dtype=torch.float32, device=delta.device) * -(math.log(10000.0) / count)
    )
    ang = delta.to(torch.float32)[:, None] * freq
    return torch.cat([torch.cos(ang), torch.sin(ang)], dim=-1)


def node_geometry(structure) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scalars R×7, vectors R×3×3, complete R bool) from the backbone; see the module docstring."""
    bb = backbone_atoms(structure, ("N", "CA", "C"))
    ca = np.asarray(structure.ca, dtype=np.float64)
    complete = np.isfinite(bb).all(axis=(1, 2))
    chain = chain_index(structure.chain)
    r = len(ca)
    with np.errstate(invalid="ignore", divide="ignore"):
        fwd = np.zeros((r, 3))
        bwd = np.zeros((r, 3))
        if r >= 2:
            same = (chain[1:] == chain[:-1])[:, None]
            step = ca[1:] - ca[:-1]
            fwd[:-1] = np.where(same, step, 0.0)
            bwd[1:] = np.where(same, -step, 0.0)
        c = bb[:, 2] - bb[:, 1]
        n = bb[:, 0] - bb[:, 1]
        c, n = c / np.linalg.norm(c, axis=1, keepdims=True), n / np.linalg.norm(n, axis=1, keepdims=True)
        bis = c + n
        bis = bis / np.linalg.norm(bis, axis=1, keepdims=True)
        perp = np.cross(c, n)
        perp = perp / np.linalg.norm(perp, axis=1, keepdims=True)
        side = -bis * math.sqrt(1 / 3) - perp * math.sqrt(2 / 3)
        vec = np.stack(
            [
                fwd / np.linalg.norm(fwd, axis=1, keepdims=True),
                bwd / np.linalg.norm(bwd, axis=1, keepdims=True),
                side,
            ],
            axis=1,
        )
    vec = np.nan_to_num(vec, nan=0.0, posinf=0.0, neginf=0.0)
    dih = dihedral_features(structure)  # [sin φψω, cos φψω], 0 where undefined
    scal = np.concatenate([dih, complete[:, None].astype(np.float32)], axis=1)
    return scal.astype(np.float32), vec.astype(np.float32), complete


# --- GVP building blocks (spec §3.2–3.4); tuples are (scalars [N, s], vectors [N, v, 3]) ---------------------


class GVP(nn.Module):
    """Geometric vector perceptron: scalars see vector norms; vectors are gated by their own norms (σ)."""

    def __init__(
        self, in_dims: tuple[int, int], out_dims: tuple[int, int], activations=(F.relu, torch.sigmoid)
    ) -> None:
        super().__init__()
        (self.si, self.vi), (self.so, self.vo) = in_dims, out_dims
        self.scalar_act, self.vector_act = activations
        if self.vi:
            self.h = max(self.vi, self.vo)
            self.wh = nn.Linear(self.vi, self.h, bias=False)
            self.ws = nn.Linear(self.si + self.h, self.so)
            if self.vo:
                self.wv = nn.Linear(self.h, self.vo, bias=False)
        else:
            self.ws = nn.Linear(self.si, self.so)

    def forward(self, x: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        s, v = x
        if self.vi:
            vh = self.wh(v.transpose(-1, -2))  # [N, 3, h]
            norm = torch.sqrt(torch.clamp((vh**2).sum(-2), min=1e-8))
            s = self.ws(torch.cat([s, norm], dim=-1))
            if self.vo:
                v = self.wv(vh).transpose(-1, -2)  # [N, vo, 3]
                if self.vector_act is not None:
                    v = v * self.vector_act(torch.sqrt(torch.clamp((v**2).sum(-1, keepdim=True), min=1e-8)))
            else:
                v = s.new_zeros(s.shape[0], 0, 3)
        else:
            s = self.ws(s)
            v = s.new_zeros(s.shape[0], self.vo, 3)
        if self.scalar_act is not None:
            s = self.scalar_act(s)
        return s, v


class GVPLayerNorm(nn.Module):
    """LayerNorm on scalars; vectors divided by the RMS of their channel norms (no parameters)."""

    def __init__(self, dims: tuple[int, int]) -> None:
        super().__init__()
        self.scalar_norm = nn.LayerNorm(dims[0])
        self.v = dims[1]

    def forward(self, x):
        s, v = x
        if not self.v:
            return self.scalar_norm(s), v
        vn = torch.clamp((v**2).sum(-1, keepdim=True), min=1e-8)
        return self.scalar_norm(s), v / torch.sqrt(vn.mean(dim=-2, keepdim=True))


class GVPDropout(nn.Module):
    """Dropout on scalars; whole 3-vectors dropped on vectors."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x):
        s, v = x
        if not self.training or self.p == 0:
            return s, v
        keep = torch.bernoulli(torch.full(v.shape[:-1], 1 - self.p, device=v.device)).unsqueeze(-1)
        return F.dropout(s, self.p, True), v * keep / (1 - self.p)


def _cat(*xs):
    return torch.cat([x[0] for x in xs], dim=-1), torch.cat([x[1] for x in xs], dim=-2)


class GVPConvLayer(nn.Module):
    """x ← LN(x + drop(mean-aggregated 3-GVP messages)); x ← LN(x + drop(2-GVP feed-forward))."""

    def __init__(self, node: tuple[int, int], edge: tuple[int, int], dropout: float) -> None:
        super().__init__()
        (ns, nv), (es, ev) = node, edge
        msg_in = (2 * ns + es, 2 * nv + ev)
        self.message = nn.Sequential(GVP(msg_in, node), GVP(node, node), GVP(node, node, (None, None)))
        self.ff = nn.Sequential(GVP(node, (4 * ns, 2 * nv)), GVP((4 * ns, 2 * nv), node, (None, None)))
        self.norm = nn.ModuleList([GVPLayerNorm(node), GVPLayerNorm(node)])
        self.drop = nn.ModuleList([GVPDropout(dropout), GVPDropout(dropout)])

    def _first_message(self, s, v, e, src, dst):
        """message[0] on (x_src ‖ e ‖ x_dst) without building that [E, 2·ns+es] input: W_h and the node columns of
        W_s are linear, so they are applied per NODE and gathered (E ≈ 30 N); same function, float-rounding apart."""
        g = self.message[0]
        if not (g.vi and g.vo and v.shape[1] and e[1].shape[1]):  # no vector channels: the plain way
            return g(_cat((s[src], v[src]), e, (s[dst], v[dst])))
        ns, nv, es, ev = s.shape[1], v.shape[1], e[0].shape[1], e[1].shape[1]
        wh, ws = g.wh.weight, g.ws.weight  # wh [h, nv+ev+nv]; ws [so, ns+es+ns+h]
        vt = v.transpose(-1, -2)  # [N, 3, nv]
        vh = (vt @ wh[:, :nv].t()).index_select(0, src) + (vt @ wh[:, nv + ev :].t()).index_select(0, dst)
        vh = vh + e[1].transpose(-1, -2) @ wh[:, nv : nv + ev].t()  # [E, 3, h]
        norm = torch.sqrt(torch.clamp((vh**2).sum(-2), min=1e-8))
        node = torch.cat([ws[:, :ns], ws[:, ns + es : 2 * ns + es]], dim=0)  # [2·so, ns]: src and dst columns
        p_src, p_dst = (s @ node.t()).split(ws.shape[0], dim=1)
        edge_w = torch.cat([ws[:, ns : ns + es], ws[:, 2 * ns + es :]], dim=1)
        out_s = torch.addmm(g.ws.bias, torch.cat([e[0], norm], dim=-1), edge_w.t())
        out_s = out_s + p_src.index_select(0, src) + p_dst.index_select(0, dst)
        out_v = g.wv(vh).transpose(-1, -2)
        out_v = out_v * g.vector_act(torch.sqrt(torch.clamp((out_v**2).sum(-1, keepdim=True), min=1e-8)))
        return g.scalar_act(out_s), out_v

    def forward(self, x, edge_index: torch.Tensor, e):
        src, dst = edge_index
        s, v = x
        msg = self.message[2](self.message[1](self._first_message(s, v, e, src, dst)))
        n = s.shape[0]
        deg = torch.bincount(dst, minlength=n).clamp_min(1).to(s.dtype)
        agg_s = s.new_zeros(n, msg[0].shape[1]).index_add_(0, dst, msg[0]) / deg[:, None]
        agg_v = v.new_zeros(n, *msg[1].shape[1:]).index_add_(0, dst, msg[1]) / deg[:, None, None]
        dx = self.drop[0]((agg_s, agg_v))
        x = self.norm[0]((s + dx[0], v + dx[1]))
        dx = self.drop[1](self.ff(x))
        return self.norm[1]((x[0] + dx[0], x[1] + dx[1]))


class GVPEncoder(StructureEncoder):
    """Registry wrapper: backbone featurisation, kNN graph, GVP-GNN → invariant per-residue scalars."""

    name = "gvp"
    node_keys = ("aa", "node_s", "node_v")
    edge_keys = ("edge_s", "edge_v")

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.knn = int(config["knn"])
        node_h = (int(config["node_scalar"]), int(config["node_vector"]))
        edge_h = (int(config["edge_scalar"]), int(config["edge_vector"]))
        self.out_dim = int(config["out_dim"])
        self.type_dim = int(config.get("type_dim", 20))
        if int(config["layers"]) < 1 or self.knn < 1:
            raise ValueError("gvp.layers and gvp.knn must be >= 1")
        self.embed_type = nn.Embedding(N_TYPES, self.type_dim)
        node_in = (NODE_IN[0] + self.type_dim, NODE_IN[1])
        self.W_v = nn.Sequential(GVPLayerNorm(node_in), GVP(node_in, node_h, (None, None)))
        self.W_e = nn.Sequential(GVPLayerNorm(EDGE_IN), GVP(EDGE_IN, edge_h, (None, None)))
        dropout = float(config["dropout"])
        self.layers = nn.ModuleList(
            GVPConvLayer(node_h, edge_h, dropout) for _ in range(int(config["layers"]))
        )
        self.W_out = nn.Sequential(GVPLayerNorm(node_h), GVP(node_h, (self.out_dim, 0)))

    @classmethod
    def config_from_params(cls, params) -> dict[str, Any]:
        g = params.gvp
        return {
            "knn": g.knn,
            "node_scalar": g.node_scalar,
            "node_vector": g.node_vector,
            "edge_scalar": g.edge_scalar,
            "edge_vector": g.edge_vector,
            "layers": g.layers,
            "dropout": g.dropout,
            "out_dim": g.out_dim,
            "pooling": params.pooling,
        }

    @property
    def node_dim(self) -> int:
        return self.out_dim

    def featurize(self, structure) -> Sample:
        """Node/edge features of one protein (CPU tensors); ValueError for unusable input (recorded by stages)."""
        aa = np.asarray(structure.aa, dtype=np.int64)
        r = len(aa)
        if r == 0:
            raise ValueError("no residues")
        if aa.min() < 0 or aa.max() > 20:
            raise ValueError("residue type out of range 0..20")
        ca = np.asarray(structure.ca, dtype=np.float32)
        if ca.shape != (r, 3) or not np.isfinite(ca).all():
            raise ValueError("missing or non-finite Cα coordinates")
        node_s, node_v, complete = node_geometry(structure)
        incomplete = 1.0 - complete.mean()
        if incomplete > MAX_INCOMPLETE_FRACTION:
            raise ValueError(f"backbone N/C missing for {incomplete:.0%} of residues (GVP needs N, CA, C)")
        pos = torch.from_numpy(ca)
        chain = torch.from_numpy(chain_index(structure.chain))
        _, (src, dst) = spatial_edges(pos, chain, radius=0.0, knn=self.knn, min_seq_sep=0, mode=PLAIN)
        vec = pos[src] - pos[dst]
        dist = vec.norm(dim=-1)
        edge_s = torch.cat([rbf(dist), positional(src - dst)], dim=-1)
        return {
            "id": structure.id,
            "num_nodes": r,
            "aa": torch.from_numpy(aa),
            "node_s": torch.from_numpy(node_s),
            "node_v": torch.from_numpy(node_v),
            "edge_index": torch.stack([src, dst]),
            "edge_s": edge_s,
            "edge_v": _unit(vec)[:, None, :],
        }

    def forward(self, batch: Batch, type_mask: torch.Tensor | None = None) -> torch.Tensor:
        aa = batch["aa"]
        if type_mask is not None:
            aa = torch.where(type_mask, torch.full_like(aa, MASK_TOKEN), aa)
        s = torch.cat([batch["node_s"], self.embed_type(aa)], dim=-1)
        x = self.W_v((s, batch["node_v"]))
        e = self.W_e((batch["edge_s"], batch["edge_v"]))
        for layer in self.layers:
            x = layer(x, batch["edge_index"], e)
        return self.W_out(x)[0]
