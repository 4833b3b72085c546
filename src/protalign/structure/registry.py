"""Registry of geometric deep models (GDMs) and the interface every one of them implements.

Stages only talk to `StructureEncoder`: `featurize` (CPU, once per protein) → `collate` → `forward` (per-residue
features) / `embed` (one vector per protein). Self-supervised training hides residue types through
`forward(batch, type_mask=...)`, so the same masked-type objective works for every encoder.

A sample is a dict: "id", "num_nodes", per-residue tensors (first dim R, keys in `node_keys`), per-edge tensors
(first dim E, keys in `edge_keys`) and "edge_index" [2, E] (local node ids). The generic `crop`/`collate` below
handle any encoder whose samples follow that layout; encoders with other needs override them.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch
from torch import nn

POOLINGS = ("mean", "max", "meanmax")

# name -> "module:Class"; imported lazily so models do not import each other (add GearNet/GVP/ScanNet here)
_ENCODERS: dict[str, str] = {
    "composition": "protalign.structure.composition:CompositionEncoder",
    "foldseek3di": "protalign.structure.foldseek3di:Foldseek3DiEncoder",
    "gat": "protalign.structure.gat:GATEncoder",
    "gearnet_edge": "protalign.structure.gearnet:GearNetEncoder",
    "gvp": "protalign.structure.gvp:GVPEncoder",
    "proteinmpnn": "protalign.structure.proteinmpnn:ProteinMPNNEncoder",  # released weights (class: released)
    "scannet": "protalign.structure.scannet:ScanNetEncoder",
}

Sample = dict[str, Any]
Batch = dict[str, Any]


def pool(node_feats: torch.Tensor, batch: torch.Tensor, num_graphs: int, pooling: str) -> torch.Tensor:
    """Per-protein readout over residues: mean | max | meanmax (concatenated, 2× width)."""
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; expected one of {POOLINGS}")
    d = node_feats.shape[1]
    parts = []
    if pooling in ("mean", "meanmax"):
        total = node_feats.new_zeros(num_graphs, d).index_add_(0, batch, node_feats)
        count = torch.bincount(batch, minlength=num_graphs).clamp_min(1).to(node_feats.dtype)
        parts.append(total / count[:, None])
    if pooling in ("max", "meanmax"):
        idx = batch[:, None].expand(-1, d)
        init = node_feats.new_zeros(num_graphs, d)
        parts.append(init.scatter_reduce(0, idx, node_feats, reduce="amax", include_self=False))
    return torch.cat(parts, dim=1)


class StructureEncoder(nn.Module):
    """Base class: subclasses set `name`, `node_keys`, `edge_keys`, implement `featurize`, `forward`, `node_dim`."""

    name: str = ""
    node_keys: tuple[str, ...] = ("aa",)
    edge_keys: tuple[str, ...] = ()
    # False: a fixed descriptor; train_structure records its method and version, nothing is fitted
    trainable: bool = True
    # True: a reference point (e.g. the no-3D floor), shown beside the GDMs but kept out of findings and use/
    reference: bool = False

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = dict(config)
        self.pooling = self.config.get("pooling", "mean")
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r}; expected one of {POOLINGS}")

    # --- per model -------------------------------------------------------------------------------------------
    @classmethod
    def config_from_params(cls, params) -> dict[str, Any]:
        """Everything needed to rebuild the model (and its featurizer) from `params.structure`."""
        raise NotImplementedError

    def featurize(self, structure) -> Sample:
        raise NotImplementedError

    def input_structure(self, structure):
        """What the encoder is shown of a protein: with `residue_types` False in its config (the sequence-blind
        ablation, structure.residue_types), a copy without amino-acid identities (blind.py). Every stage
        featurizes `input_structure(stored)`, so the ablation lives in this one place. Configs without the key
        (older checkpoints) saw the types."""
        if self.config.get("residue_types", True):
            return structure
        from protalign.structure.blind import sequence_blind

        return sequence_blind(structure)

    def forward(self, batch: Batch, type_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-residue features [N, node_dim]; residues where `type_mask` is True do not see their own type."""
        raise NotImplementedError

    @property
    def node_dim(self) -> int:
        raise NotImplementedError

    @classmethod
    def from_released(cls, path, config: dict[str, Any]) -> StructureEncoder | None:
        """The encoder with weights imported from a file in its authors' released format, or None when `path`
        is not such a file (train_structure then reads it as a torch checkpoint)."""
        return None

    # --- shared ----------------------------------------------------------------------------------------------
    memory_factor: float = (
        16.0  # live float32 activations per (node + edge) × node_dim (rough; override per model)
    )

    def estimate_bytes(self, sample: Sample) -> float:
        """Rough peak memory of one forward on `sample`, for skipping giants at inference (structure.max_embed_gb)."""
        edges = sample["edge_index"].shape[1] if "edge_index" in sample else 0  # ScanNet: no graph edges
        size = sample["num_nodes"] + edges
        return 4.0 * size * self.node_dim * self.memory_factor

    @property
    def dim(self) -> int:
        """Width of `embed` output (meanmax doubles the node width)."""
        return self.node_dim * (2 if self.pooling == "meanmax" else 1)

    def embed(self, batch: Batch) -> torch.Tensor:
        """One vector per protein [B, dim]."""
        return pool(self.forward(batch), batch["batch"], batch["num_graphs"], self.pooling)

    def crop(self, sample: Sample, start: int, stop: int) -> Sample:
        """Residues [start, stop) with the edges among them (local ids shifted); used for training crops."""
        n = sample["num_nodes"]
        if start == 0 and stop >= n:
            return sample
        src, dst = sample["edge_index"]
        keep = (src >= start) & (src < stop) & (dst >= start) & (dst < stop)
        out: Sample = {
            "id": sample["id"],
            "num_nodes": stop - start,
            "edge_index": sample["edge_index"][:, keep] - start,
        }
        out.update({k: sample[k][start:stop] for k in self.node_keys})
        out.update({k: sample[k][keep] for k in self.edge_keys})
        return out

    def collate(self, samples: list[Sample]) -> Batch:
        """Concatenate samples into one disconnected graph; `batch` maps residue → protein, `ptr` offsets."""
        if not samples:
            raise ValueError("cannot collate an empty list of samples")
        counts = torch.tensor([s["num_nodes"] for s in samples], dtype=torch.long)
        ptr = torch.zeros(len(samples) + 1, dtype=torch.long)
        ptr[1:] = counts.cumsum(0)
        out: Batch = {
            "ids": [s["id"] for s in samples],
            "num_graphs": len(samples),
            "ptr": ptr,
            "batch": torch.repeat_interleave(torch.arange(len(samples)), counts),
            "edge_index": torch.cat([s["edge_index"] + ptr[i] for i, s in enumerate(samples)], dim=1),
        }
        for k in (*self.node_keys, *self.edge_keys):
            out[k] = torch.cat([s[k] for s in samples], dim=0)
        return out


def to_device(batch: Batch, device: torch.device | str) -> Batch:
    """The batch with every tensor moved to `device` (collate builds CPU tensors)."""
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def available() -> list[str]:
    return sorted(_ENCODERS)


def encoder_class(name: str) -> type[StructureEncoder]:
    if name not in _ENCODERS:
        raise KeyError(f"unknown structure model {name!r}; available: {available()}")
    module, cls = _ENCODERS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def base_name(name: str, params=None) -> str:
    """The registered architecture behind a GDM name: a variant's base (params.structure.<alias>.base) or itself."""
    return params.base(name) if params is not None and hasattr(params, "base") else name


def is_trainable(name: str, params=None) -> bool:
    return encoder_class(base_name(name, params)).trainable


def is_reference(name: str, params=None) -> bool:
    """A reference encoder (registry flag), e.g. the composition floor; names not registered (variants without
    params, LLM pairs) are not."""
    base = base_name(name, params)
    return base in _ENCODERS and encoder_class(base).reference


def build(name: str, params) -> StructureEncoder:
    """A fresh encoder configured from `params.structure` (a StructureParams); a variant name builds its base
    architecture from the variant's own settings section."""
    base = base_name(name, params)
    view = params.for_gdm(name) if hasattr(params, "for_gdm") else params
    cls = encoder_class(base)
    return cls({**cls.config_from_params(view), "residue_types": bool(params.residue_types)})


def from_config(name: str, config: dict[str, Any]) -> StructureEncoder:
    """Rebuild an encoder from the config stored in its checkpoint."""
    return encoder_class(name)(config)
