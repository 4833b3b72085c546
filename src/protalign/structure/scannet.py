"""ScanNet (Tubiana, Schneidman-Duhovny & Wolfson, Nat. Methods 2022) in torch, loadable from ScanNet_PPI_noMSA.h5.

Atom NEM (Gaussian kernels in covalent atom frames × valency classes) → 64-head attention pooling to residues →
[residue-type embedding | pooled atoms] → residue NEM → `SCAN_filter_activity_aa` (128-d, the study's features)
→ MLP → neighbourhood attention (binding-site probability, used to validate an import against PPBS labels).
Frames and neighbourhoods are precomputed in scannet_frames.py; samples of a batch are concatenated (flat layout,
no padding), so plain BatchNorm equals ScanNet's masked BatchNorm. Spec: ../shared/reference/scannet.md.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from protalign.errors import MissingArtifactError
from protalign.structure import scannet_frames as sf
from protalign.structure.registry import Batch, Sample, StructureEncoder
from protalign.structure.scannet_weights import load_keras_h5

N_GAUSS = 32
D_MAX_ATOM, D_MAX_AA, D_MAX_GRAPH = 4.0, 11.0, 13.0  # Å, scale of the from-scratch Gaussian initialisation
ROW_CHUNK = 8192  # (centre, neighbour) rows per kernel/filter block (bounds memory on huge complexes)
NODE_KEYS = ("aa_in", "pos", "aa_nbr", "aa_u", "graph_nbr", "graph_e")
ATOM_KEYS = ("atom_type", "atom_res", "atom_nbr", "atom_u")


class GaussianKernel(nn.Module):
    """G_n(u) = exp(−½‖S_n(u − c_n)‖²) with full S (sqrt precision, entries clipped to ±10), Keras layout [d, d, N]."""

    def __init__(self, d: int, n: int, scale: float) -> None:
        super().__init__()
        centers = (torch.rand(d, n) * 2 - 1) * scale / 2  # seeded by the caller's torch seed
        centers[:, 0] = 0.0  # every neighbourhood contains its centre
        self.centers = nn.Parameter(centers)
        self.sqrt_precision = nn.Parameter(torch.eye(d)[:, :, None].repeat(1, 1, n) * (4.0 / scale))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """u [..., d] → [..., N]. S_n(u − c_n) = u·S_n − S_n c_n: one [rows, d] @ [d, d·N] product per block
        instead of d broadcasts over [rows, d, N] (the atom-level kernel is the forward's largest tensor)."""
        s = self.sqrt_precision.clamp(-10.0, 10.0)  # [i, j, N]
        d, n = self.centers.shape
        w = s.permute(1, 0, 2).reshape(d, d * n)  # [j, (i, n)]
        shift = torch.einsum("ijn,jn->in", s, self.centers).reshape(d * n)
        rows = u.reshape(-1, d)
        out = [
            torch.exp(-0.5 * torch.addmm(shift, block, w, beta=-1).view(-1, d, n).square().sum(1))
            for block in rows.split(ROW_CHUNK)
        ]
        g = (out[0] if len(out) == 1 else torch.cat(out)) if out else rows.new_zeros(0, n)
        return g.view(*u.shape[:-1], n)


def _centre_blocks(m: int, k: int) -> list[slice]:
    """Slices of centres holding ≤ ROW_CHUNK (centre, neighbour) rows: kernels and filters are computed block
    by block, so the [M, K, N] activations never exist whole (bounded memory, cache-sized temporaries)."""
    step = max(1, ROW_CHUNK // max(k, 1))
    return [slice(i, min(i + step, m)) for i in range(0, m, step)]


class BetaBN(nn.Module):
    """BatchNorm with a learned shift only (Keras center=True, scale=False), ε 1e-3, Keras momentum 0.99."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(c, eps=1e-3, momentum=0.01, affine=False)
        self.beta = nn.Parameter(torch.zeros(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == 0:
            return x
        if self.training and x.shape[0] == 1:  # one row has no batch statistics: use the running ones
            return F.batch_norm(x, self.bn.running_mean, self.bn.running_var, eps=1e-3) + self.beta
        return self.bn(x) + self.beta


class FilterBank(nn.Module):
    """Spatio-chemical filters h_c = Σ_k Σ_n g_kn (Σ_f W_nfc a_kf + b_nc), then ReLU(BN) (spec §3.2–3.3)."""

    def __init__(self, n: int, f: int, c: int) -> None:
        super().__init__()
        norm = math.sqrt(n / sf.K_ATOM)
        self.kernel12 = nn.Parameter(nn.init.trunc_normal_(torch.empty(n, f, c), std=norm / math.sqrt(n * f)))
        self.kernel1 = nn.Parameter(nn.init.trunc_normal_(torch.empty(n, c), std=1 / math.sqrt(n)))
        self.norm = BetaBN(c)

    def _out(self, hs: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
        h = torch.cat(hs) if hs else like.new_zeros(0, self.kernel1.shape[1])
        return F.relu(self.norm(h))

    def forward(self, gauss: GaussianKernel, u: torch.Tensor, nbr, x: torch.Tensor) -> torch.Tensor:
        """u [M, K, d] neighbours in the centres' frames, nbr [M, K] their rows of x [nodes, F] (-1 padding)."""
        m, k = nbr.shape
        w12 = self.kernel12.reshape(-1, self.kernel12.shape[-1])
        hs = []
        for sl in _centre_blocks(m, k):
            nb = nbr[sl]
            g = gauss(u[sl]) * (nb >= 0).unsqueeze(-1).to(u.dtype)  # [b, K, N]; padding rows → 0
            outer = torch.bmm(g.transpose(1, 2), x[nb.clamp_min(0)])  # Σ_k g_kn a_kf: [b, N, F]
            hs.append(torch.addmm(g.sum(1) @ self.kernel1, outer.reshape(len(nb), -1), w12))
        return self._out(hs, u)

    def forward_typed(self, gauss: GaussianKernel, u, nbr, types: torch.Tensor, table) -> torch.Tensor:
        """Same filters when attributes are rows of a small table (atom classes: a = table[types[nbr]]).
        g is summed per (centre, neighbour class) with one index_add ([b, T, N]) and the table folded into W,
        instead of tiny outer products (slow bmm); kernel1 joins W since Σ_k g_k = Σ_t binned_t."""
        m, k = nbr.shape
        t, n = table.shape[0], self.kernel1.shape[0]
        w = (torch.einsum("tf,nfc->tnc", table.to(u.dtype), self.kernel12) + self.kernel1).reshape(t * n, -1)
        hs = []
        for sl in _centre_blocks(m, k):
            nb = nbr[sl]
            b = len(nb)
            bins = torch.arange(b, device=nb.device)[:, None] * t + types[nb.clamp_min(0)]
            bins = torch.where(nb >= 0, bins, b * t).reshape(-1)  # padding → one extra bin, discarded
            g = gauss(u[sl]).reshape(-1, n)
            binned = g.new_zeros(b * t + 1, n).index_add_(0, bins, g)[:-1]
            hs.append(binned.view(b, t * n) @ w)
        return self._out(hs, u)


def _segment_softmax_pool(logits, values, seg, n_seg):
    """Σ_{a∈r} softmax_a(logits) · values per segment r (heads independent); denominator + 1e-6 as ScanNet."""
    h = logits.shape[1]
    idx = seg[:, None].expand(-1, h)
    mx = logits.new_full((n_seg, h), -torch.inf).scatter_reduce(0, idx, logits, "amax", include_self=True)
    e = torch.exp(logits - mx[seg])
    den = logits.new_zeros(n_seg, h).index_add_(0, seg, e)
    num = logits.new_zeros(n_seg, h).index_add_(0, seg, e * values)
    return num / (den + 1e-6)


class ScanNet(nn.Module):
    """ScanNet_PPI_noMSA's architecture; `forward` returns named per-residue layers (and p_binding)."""

    def __init__(self, n_aa: int = 20, n_valency: int = 12) -> None:
        super().__init__()
        emb = torch.zeros(n_valency + 1, n_valency)
        emb[1:] = math.sqrt(n_valency) * torch.eye(n_valency)
        self.register_buffer("atom_embedding", emb)  # frozen in ScanNet (nembedding_atom == nfeatures_atom)
        self.gauss_atom = GaussianKernel(3, N_GAUSS, D_MAX_ATOM)
        self.filters_atom = FilterBank(N_GAUSS, n_valency, 128)
        self.pool_coef = nn.Linear(128, 64, bias=False)
        nn.init.zeros_(self.pool_coef.weight)  # uniform attention at the start (as ScanNet)
        self.pool_feat = nn.Linear(128, 64, bias=False)
        self.pool_norm = BetaBN(64)
        self.aa_proj = nn.Linear(n_aa, 32, bias=False)
        self.aa_norm = BetaBN(32)
        self.gauss_aa = GaussianKernel(3, N_GAUSS, D_MAX_AA)
        self.filters_aa = FilterBank(N_GAUSS, 96, 128)
        self.mlp = nn.Linear(128, 32, bias=False)
        self.mlp_norm = BetaBN(32)
        self.beta = nn.Linear(32, 1)
        self.self_attention = nn.Linear(32, 1)
        self.cross_attention = nn.Linear(32, 1, bias=False)
        self.node_output = nn.Linear(32, 2)
        self.gauss_graph = GaussianKernel(5, N_GAUSS, D_MAX_GRAPH)
        self.edges_graph = nn.Linear(N_GAUSS, 1, bias=False)
        for lin in (self.beta, self.self_attention, self.cross_attention):
            nn.init.zeros_(lin.weight)
        nn.init.ones_(self.beta.bias)
        nn.init.zeros_(self.self_attention.bias)
        self.n_aa = n_aa

    def forward(self, b: Batch, head: bool = False) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        n_res = b["aa_in"].shape[0]
        # atom scale
        y_atom = self.filters_atom.forward_typed(
            self.gauss_atom, b["atom_u"], b["atom_nbr"], b["atom_type"], self.atom_embedding
        )
        w = self.pool_feat.weight  # ScanNet constrains each value column to unit norm (released: already 1)
        w = w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)
        pooled = _segment_softmax_pool(self.pool_coef(y_atom), y_atom @ w.T, b["atom_res"], n_res)
        out["SCAN_filters_atom_aggregated_activity"] = F.relu(self.pool_norm(pooled))
        # residue scale
        onehot = F.one_hot(b["aa_in"], self.n_aa + 1)[:, : self.n_aa].to(y_atom.dtype)  # hidden type → 0
        emb_aa = F.relu(self.aa_norm(self.aa_proj(onehot)))
        x = torch.cat([emb_aa, out["SCAN_filters_atom_aggregated_activity"]], dim=1)
        out["all_embedded_attributes_aa"] = x
        out["SCAN_filter_activity_aa"] = self.filters_aa(self.gauss_aa, b["aa_u"], b["aa_nbr"], x)
        if head:
            out.update(self.binding_head(out["SCAN_filter_activity_aa"], b))
        return out

    def binding_head(self, y: torch.Tensor, b: Batch) -> dict[str, torch.Tensor]:
        """MLP + neighbourhood attention module → P(binding) (spec §5.1)."""
        e = F.relu(self.mlp_norm(self.mlp(y)))
        nbr, valid = b["graph_nbr"].clamp_min(0), b["graph_nbr"] >= 0
        beta = F.relu(self.beta(e))[:, 0]
        cross = self.cross_attention(e)[:, 0][nbr]
        cross[:, 0] = cross[:, 0] + self.self_attention(e)[:, 0]  # k = 0 is the residue itself
        logit = (beta[:, None] + 1e-6) * cross
        logit = logit.masked_fill(~valid, -torch.inf)
        omega = self.edges_graph(self.gauss_graph(b["graph_e"]))[..., 0] * valid
        w = omega * torch.exp(logit - logit.max(1, keepdim=True).values)
        alpha = w / (w.abs().sum(1, keepdim=True) + 1e-6)
        z = torch.einsum("lk,lkc->lc", alpha, self.node_output(e)[nbr])
        return {"SCAN_filters_aa_embedded_1": e, "p_binding": torch.softmax(z, dim=1)[:, 1]}


class ScanNetEncoder(StructureEncoder):
    """Registry wrapper; per-residue output = SCAN_filter_activity_aa (128-d), embedding = its mean (or meanmax)."""

    name = "scannet"
    node_keys = ("aa", *NODE_KEYS)

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.net = ScanNet()
        if self.config.get("weights"):
            path = Path(self.config.pop("weights"))
            if not path.is_file():
                raise MissingArtifactError(
                    f"structure.scannet.weights: {path} not found (ScanNet's models/ folder)"
                )
            load_keras_h5(self.net, path)
            self.config["pretrained"] = path.name  # checkpoints carry the tensors; the flag keeps them frozen
        if self.config.get("pretrained"):
            self.net.requires_grad_(False)

    def train(self, mode: bool = True):
        """Released weights stay as published: frozen, BN on its moving statistics (train_structure only fits
        its probe head on top)."""
        super().train(mode)
        if self.config.get("pretrained"):
            self.net.eval()
        return self

    @classmethod
    def config_from_params(cls, params) -> dict[str, Any]:
        """Settings only: structure.scannet.weights is train_structure's (a released .h5 -> from_released)."""
        s = getattr(params, "scannet", None)
        return {
            "pooling": getattr(s, "pooling", None) or params.pooling,
            "max_residues": int(getattr(s, "max_residues", 0) or 0),
        }

    @classmethod
    def from_released(cls, path, config: dict[str, Any]) -> ScanNetEncoder | None:
        """The released Keras weights (ScanNet's models/ScanNet_PPI_noMSA.h5 etc.), imported and frozen."""
        if Path(path).suffix.lower() not in (".h5", ".hdf5"):
            return None
        return cls({**config, "weights": str(path)})

    @property
    def node_dim(self) -> int:
        return 128

    def featurize(self, structure) -> Sample:
        """Frames + neighbourhoods of one protein (ValueError with the reason when it cannot be encoded)."""
        raw, drops = sf.raw_arrays(structure)
        if self.config.get("residue_types", True) and not (raw["aa"] < 20).any():
            raise ValueError("no residue of a standard type")  # sequence-blind inputs are all unknown by design
        limit = self.config.get("max_residues", 0)
        if limit and len(raw["aa"]) > limit:
            raise ValueError(f"{len(raw['aa'])} residues > structure.scannet.max_residues={limit}")
        return self._sample(structure.id, raw, drops=drops)

    def _sample(
        self, sid: str, raw: dict, hide: np.ndarray | None = None, drops: dict | None = None
    ) -> Sample:
        g = sf.build(raw, hide)
        f32 = torch.float32
        sample: Sample = {
            "id": sid,
            "num_nodes": len(raw["aa"]),
            "num_atoms": len(g["atom_type"]),
            "raw": raw,
            "drops": drops or {},
            "aa": torch.from_numpy(raw["aa"]),
            "aa_in": torch.from_numpy(g["aa_in"]),
            "pos": torch.from_numpy(g["ca"]).to(f32),
            "aa_nbr": torch.from_numpy(g["aa_nbr"]),
            "aa_u": torch.from_numpy(g["aa_u"]).to(f32),
            "graph_nbr": torch.from_numpy(g["graph_nbr"]),
            "graph_e": torch.from_numpy(g["graph_e"]).to(f32),
            "atom_type": torch.from_numpy(g["atom_type"]),
            "atom_res": torch.from_numpy(g["atom_res"]),
            "atom_nbr": torch.from_numpy(g["atom_nbr"]),
            "atom_u": torch.from_numpy(g["atom_u"]).to(f32),
        }
        return sample

    def crop(self, sample: Sample, start: int, stop: int) -> Sample:
        """Residues [start, stop), frames and neighbourhoods rebuilt on them."""
        if start == 0 and stop >= sample["num_nodes"]:
            return sample
        return self._sample(sample["id"], sf.crop_raw(sample["raw"], start, stop))

    def collate(self, samples: list[Sample]) -> Batch:
        """Flat concatenation; neighbour ids shifted by residue / atom offsets (-1 padding kept)."""
        if not samples:
            raise ValueError("cannot collate an empty list of samples")
        counts = torch.tensor([s["num_nodes"] for s in samples])
        ptr = torch.zeros(len(samples) + 1, dtype=torch.long)
        ptr[1:] = counts.cumsum(0)
        atom_ptr = np.concatenate([[0], np.cumsum([s["num_atoms"] for s in samples])]).tolist()

        def shift(key: str, offsets) -> torch.Tensor:
            return torch.cat(
                [
                    torch.where(s[key] >= 0, s[key] + int(o), s[key])
                    for s, o in zip(samples, offsets, strict=True)
                ]
            )

        out: Batch = {
            "ids": [s["id"] for s in samples],
            "samples": samples,
            "num_graphs": len(samples),
            "ptr": ptr,
            "batch": torch.repeat_interleave(torch.arange(len(samples)), counts),
            "aa_nbr": shift("aa_nbr", ptr[:-1].tolist()),
            "graph_nbr": shift("graph_nbr", ptr[:-1].tolist()),
            "atom_nbr": shift("atom_nbr", atom_ptr[:-1]),
            "atom_res": shift("atom_res", ptr[:-1].tolist()),
        }
        for k in ("aa", "aa_in", "pos", "aa_u", "graph_e", "atom_type", "atom_u"):
            out[k] = torch.cat([s[k] for s in samples])
        return out

    def _masked_batch(self, batch: Batch, type_mask: torch.Tensor) -> Batch:
        """The batch rebuilt with hidden residues reduced to type-free backbone atoms (side chains leak the type)."""
        mask = type_mask.detach().cpu().numpy()
        ptr = batch["ptr"].tolist()
        samples = [
            self._sample(s["id"], s["raw"], hide=mask[ptr[i] : ptr[i + 1]])
            for i, s in enumerate(batch["samples"])
        ]
        device = batch["aa"].device
        return {
            k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in self.collate(samples).items()
        }

    def forward(self, batch: Batch, type_mask: torch.Tensor | None = None) -> torch.Tensor:
        if type_mask is not None and bool(type_mask.any()):
            batch = self._masked_batch(batch, type_mask)
        return self.net(batch)["SCAN_filter_activity_aa"]

    def layers(self, batch: Batch) -> dict[str, torch.Tensor]:
        """All named per-residue layers plus p_binding (the released model's PPI binding-site probability)."""
        return self.net(batch, head=True)
