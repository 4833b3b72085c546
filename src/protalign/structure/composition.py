"""`composition`: the floor, what a "structure" encoder that sees no 3D at all gets (a reference, not a GDM).

Per protein, the concatenated parts of `structure.composition.parts`:
- `aa` (20): amino-acid composition over residues of a standard type, L1-normalised (all zeros when none is
  typed, as in the sequence-blind ablation);
- `length` (1): natural log of the number of stored residues;
- `chains` (1): number of protein chains.
Nothing is trained (registry `trainable = False`), and the registry marks it `reference = True`: findings,
correlations and `use/` leave it out of the encoder comparisons (it is shown beside them, as a floor).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from protalign.structure.graph import chain_index
from protalign.structure.registry import Batch, Sample, StructureEncoder

N_AA = 20
PARTS = {"aa": N_AA, "length": 1, "chains": 1}


def descriptor(aa: np.ndarray, n_chains: int, parts: tuple[str, ...]) -> np.ndarray:
    """The embedding of one protein from its residue types and chain count."""
    out = []
    for part in parts:
        if part == "aa":
            counts = np.bincount(aa[aa < N_AA], minlength=N_AA).astype(np.float64)
            out.append(counts / counts.sum() if counts.sum() > 0 else counts)
        elif part == "length":
            out.append(np.array([math.log(len(aa))]))
        elif part == "chains":
            out.append(np.array([float(n_chains)]))
        else:
            raise ValueError(f"unknown composition part {part!r}; expected some of {list(PARTS)}")
    return np.concatenate(out).astype(np.float32)


class CompositionEncoder(StructureEncoder):
    """Registry wrapper; per-residue output = the type one-hot (its mean is the `aa` part)."""

    name = "composition"
    node_keys = ("aa",)
    trainable = False
    reference = True

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        parts = tuple(self.config.get("parts", tuple(PARTS)))
        if not parts or any(p not in PARTS for p in parts) or len(set(parts)) != len(parts):
            raise ValueError(
                f"structure.composition.parts: {list(parts)}; expected distinct items of {list(PARTS)}"
            )
        self.parts = parts

    @classmethod
    def config_from_params(cls, params) -> dict[str, Any]:
        return {"parts": list(params.composition.parts), "pooling": params.pooling}

    @property
    def node_dim(self) -> int:
        return N_AA

    @property
    def dim(self) -> int:
        return sum(PARTS[p] for p in self.parts)

    def estimate_bytes(self, sample: Sample) -> float:
        return 8.0 * sample["num_nodes"] * N_AA

    def featurize(self, structure) -> Sample:
        if len(structure) == 0:
            raise ValueError("no residues")
        return {
            "id": structure.id,
            "num_nodes": len(structure),
            "edge_index": torch.zeros(2, 0, dtype=torch.long),
            "aa": torch.as_tensor(np.asarray(structure.aa), dtype=torch.long),
            "n_chains": int(chain_index(structure.chain).max()) + 1,
        }

    def collate(self, samples: list[Sample]) -> Batch:
        out = super().collate(samples)
        out["n_chains"] = torch.tensor([s["n_chains"] for s in samples], dtype=torch.long)
        return out

    def forward(self, batch: Batch, type_mask: torch.Tensor | None = None) -> torch.Tensor:
        aa = batch["aa"]
        onehot = torch.zeros(len(aa), N_AA, dtype=torch.float32, device=aa.device)
        typed = aa < N_AA
        onehot[typed, aa[typed]] = 1.0
        return onehot

    def embed(self, batch: Batch) -> torch.Tensor:
        ptr = batch["ptr"].tolist()
        rows = [
            descriptor(batch["aa"][ptr[i] : ptr[i + 1]].cpu().numpy(), int(batch["n_chains"][i]), self.parts)
            for i in range(batch["num_graphs"])
        ]
        return torch.from_numpy(np.stack(rows)).to(batch["aa"].device)
