"""ScanNet's released Keras weights (ScanNet_PPI_noMSA.h5) loaded into the torch port, layer by layer.

Kept apart from the model so scannet.py reads as the architecture; the h5 layer names map to our module paths here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

_H5_LAYERS = {  # h5 layer → (our module path, {h5 param: our param}); Dense kernels are [in, out] in Keras
    "embedded_local_coordinates_atom": (
        "gauss_atom",
        {"centers": "centers", "sqrt_precision": "sqrt_precision"},
    ),
    "embedded_local_coordinates_aa": ("gauss_aa", {"centers": "centers", "sqrt_precision": "sqrt_precision"}),
    "embedded_local_coordinates_graph": (
        "gauss_graph",
        {"centers": "centers", "sqrt_precision": "sqrt_precision"},
    ),
    "SCAN_filter_input_atom": ("filters_atom", {"kernel12": "kernel12", "kernel1": "kernel1"}),
    "SCAN_filter_input_aa": ("filters_aa", {"kernel12": "kernel12", "kernel1": "kernel1"}),
    "attention_pooling_coefficients_atom": ("pool_coef", {"kernel": "weight"}),
    "attention_pooling_features_atom": ("pool_feat", {"kernel": "weight"}),
    "embedded_attributes_aa_projection": ("aa_proj", {"kernel": "weight"}),
    "SCAN_filters_aa_embedded_1_projection": ("mlp", {"kernel": "weight"}),
    "beta": ("beta", {"kernel": "weight", "bias": "bias"}),
    "self_attention": ("self_attention", {"kernel": "weight", "bias": "bias"}),
    "cross_attention": ("cross_attention", {"kernel": "weight"}),
    "node_output": ("node_output", {"kernel": "weight", "bias": "bias"}),
    "edges_graph": ("edges_graph", {"kernel": "weight"}),
}
_H5_BN = {
    "SCAN_filter_activity_atom_normalization": "filters_atom.norm",
    "SCAN_filter_activity_aa_normalization": "filters_aa.norm",
    "SCAN_filters_atom_aggregated_activity_normalization": "pool_norm",
    "embedded_attributes_aa_normalization": "aa_norm",
    "SCAN_filters_aa_embedded_1_normalization": "mlp_norm",
}


def load_keras_h5(model: nn.Module, path: str | Path) -> None:
    """Load the released Keras weights (every layer must be present with the expected shape)."""
    import h5py

    state: dict[str, torch.Tensor] = {}
    with h5py.File(path, "r") as f:

        def get(layer: str, param: str) -> np.ndarray:
            key = f"{layer}/{layer}/{param}:0"
            if key not in f:
                raise ValueError(f"{path}: missing {key} (not a ScanNet_PPI_noMSA weights file?)")
            return np.asarray(f[key], dtype=np.float32)

        for layer, (mod, params) in _H5_LAYERS.items():
            for h5p, ours in params.items():
                arr = get(layer, h5p)
                state[f"{mod}.{ours}"] = torch.from_numpy(arr.T.copy() if ours == "weight" else arr)
        for layer, mod in _H5_BN.items():
            state[f"{mod}.beta"] = torch.from_numpy(get(layer, "beta"))
            state[f"{mod}.bn.running_mean"] = torch.from_numpy(get(layer, "moving_mean"))
            state[f"{mod}.bn.running_var"] = torch.from_numpy(get(layer, "moving_variance"))
        state["atom_embedding"] = torch.from_numpy(get("embedded_attributes_atom", "embeddings"))
    own = model.state_dict()
    wrong = [
        f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items() if v.shape != own[k].shape
    ]
    if wrong:
        raise ValueError(f"{path}: weights do not fit ScanNet_PPI_noMSA: {wrong[:5]}")
    for k, v in own.items():
        state.setdefault(k, v)  # num_batches_tracked
    model.load_state_dict(state, strict=True)
