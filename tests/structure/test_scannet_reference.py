"""The released ScanNet_PPI_noMSA weights through our port: per-residue features and PPBS ROC-AUC on 2XHE chain A.

Reference files live in ../shared/reference/scannet (never shipped); the tests skip with the reason elsewhere.
Reference features come from an independent float64 numpy forward pass written from the spec.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from protalign.structure import scannet_ppbs as ppbs
from protalign.structure.scannet import ScanNetEncoder

REF = Path(
    os.environ.get("PROTALIGN_SHARED_REFERENCE", Path(__file__).resolve().parents[3] / "shared" / "reference")
)
SCANNET = REF / "scannet"
TOL = 5e-4  # max |Δ| of float32 port vs float64 reference (features up to ~9; observed ≤ 1.3e-4)


@pytest.fixture(scope="module")
def released():
    needed = [SCANNET / f for f in ("ScanNet_PPI_noMSA.h5", "2xhe_A_reference.npz", "2xhe_A_summary.json",
                                     "PPBS_labels_validation_topology.txt")]  # fmt: skip
    missing = [p.name for p in needed if not p.exists()]
    if missing:
        pytest.skip(
            f"ScanNet reference files not found in {SCANNET} ({missing}); set PROTALIGN_SHARED_REFERENCE"
        )
    return ScanNetEncoder({"weights": str(needed[0])}).eval()


@pytest.fixture(scope="module")
def xhe(released, shared_data):
    path = shared_data / "structures" / "2XHE.pdb.gz"
    if not path.exists():
        pytest.skip("2XHE is not in the shared corpus")
    structure, ids = ppbs.read_chain(path, "A", "2XHE_A")
    torch.set_num_threads(1)
    with torch.inference_mode():
        out = released.layers(released.collate([released.featurize(structure)]))
    return structure, ids, out


def test_features_match_reference(xhe):
    structure, ids, out = xhe
    ref = np.load(SCANNET / "2xhe_A_reference.npz")
    assert structure.sequence == str(ref["sequence"])
    assert [f"A_{i}" for i in ids] == list(ref["residue_ids"])
    for key in (
        "all_embedded_attributes_aa",
        "SCAN_filter_activity_aa",
        "SCAN_filters_aa_embedded_1",
        "p_binding",
    ):
        diff = np.abs(out[key].numpy() - ref[key]).max()
        assert diff < TOL, f"{key}: max |Δ| {diff:.2e} ≥ {TOL}"
    summary = json.loads((SCANNET / "2xhe_A_summary.json").read_text())
    pooled = out["SCAN_filter_activity_aa"].mean(0).numpy()
    np.testing.assert_allclose(pooled, summary["mean_pooled_SCAN_filter_activity_aa"], atol=1e-4)
    assert abs((out["SCAN_filter_activity_aa"] == 0).float().mean().item() - summary["frac_zero"]) < 2e-3


def test_auc_on_ppbs_2xhe(released, shared_data):
    labels = ppbs.read_labels(SCANNET / "PPBS_labels_validation_topology.txt")["2xhe_0-A"]
    res = ppbs.evaluate_chain(released, shared_data / "structures" / "2XHE.pdb.gz", "2xhe_0-A", labels)
    assert res["n_matched"] == res["n_labelled"] == 567 and res["n_positive"] == 43
    assert res["auc"] == pytest.approx(0.83, abs=0.005)


def test_released_weights_stay_frozen(released):
    assert not any(p.requires_grad for p in released.parameters())
    released.train()
    assert not released.net.training  # BN keeps the published moving statistics
    released.eval()
    assert released.config["pretrained"] == "ScanNet_PPI_noMSA.h5" and "weights" not in released.config


def test_wrong_h5_is_refused(released, tmp_path):
    import h5py

    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        f["beta/beta/kernel:0"] = np.zeros((32, 1), np.float32)
    with pytest.raises(ValueError, match="missing"):
        ScanNetEncoder({"weights": str(bad)})
