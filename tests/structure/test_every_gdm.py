"""Every registered GDM, built from the repository's params.yaml, runs a forward pass on one real protein.

Per-model tests build their encoders from hand-written small configs; this one catches a registry entry or a
params.yaml section that no longer fit together (a renamed key, a model that cannot featurize real input).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from protalign.params import load_params
from protalign.structure import registry

REPO = Path(__file__).resolve().parents[2]
PARAMS = load_params(REPO / "params.yaml")
PROTEIN = "154L"  # T4 lysozyme, one chain, 164 residues: small enough for the 6x512-class settings on a CPU


def _expected_node_width(name: str) -> int:
    """The per-residue width params.yaml asks for, computed from the params (not from the built model)."""
    s = PARAMS.structure
    widths = {
        "gat": s.gat.hidden * s.gat.heads,
        "gearnet_edge": sum(s.gearnet_edge.hidden_dims),  # hidden layers concatenated, as TorchDrug
        "gvp": s.gvp.out_dim,
        "proteinmpnn": 128,  # h_V of the released encoder (fixed by its weights)
        "scannet": 128,  # SCAN_filter_activity_aa of the released network (fixed by its architecture)
        "foldseek3di": 20,  # per-residue one-hot 3Di state
        "composition": 20,  # per-residue one-hot amino-acid type
    }
    if name not in widths:
        pytest.fail(f"GDM {name!r} is registered but this test does not know its width from params: add it")
    return widths[name]


DESCRIPTOR_PART_WIDTHS = {  # fixed descriptors: the embedding is their parts, not a pooled node vector
    "foldseek3di": {"states": 20, "bigrams": 400, "aa_pairs": 400},
    "composition": {"aa": 20, "length": 1, "chains": 1},
}


def _expected_embed_width(name: str, node: int) -> int:
    s = PARAMS.structure
    if name in DESCRIPTOR_PART_WIDTHS:
        return sum(DESCRIPTOR_PART_WIDTHS[name][p] for p in getattr(s, name).parts)
    pooling = {"gearnet_edge": s.gearnet_edge.readout, "scannet": s.scannet.pooling or s.pooling}.get(
        name, s.pooling
    )
    return node * (2 if pooling == "meanmax" else 1)


def test_params_yaml_configures_every_registered_gdm():
    data = yaml.safe_load((REPO / "params.yaml").read_text())["structure"]
    assert sorted(data["gdms"]) == registry.available(), "params.yaml structure.gdms must list every GDM"
    for name in registry.available():
        assert isinstance(data.get(name), dict), (
            f"params.yaml has no structure.{name} section (dvc.yaml uses it)"
        )


def test_pipeline_test_params_run_every_registered_gdm():
    """The end-to-end test is the only place the whole DAG runs: it must train and align every GDM."""
    data = yaml.safe_load((REPO / "tests" / "pipeline_params.yaml").read_text())
    assert sorted(data["structure"]["gdms"]) == registry.available()
    test_params = load_params(REPO / "tests" / "pipeline_params.yaml")
    for name in registry.available():
        registry.build(name, test_params.structure)  # the reduced settings build too


@pytest.mark.parametrize("name", registry.available())
def test_forward_on_a_real_protein_with_params_yaml_settings(name, real):
    structure = real(PROTEIN)
    torch.manual_seed(0)
    enc = registry.build(name, PARAMS.structure).eval()
    assert isinstance(enc, registry.StructureEncoder) and enc.node_dim == _expected_node_width(name)
    sample = enc.featurize(structure)
    assert sample["id"] == PROTEIN and sample["num_nodes"] == len(structure.aa)
    batch = enc.collate([sample])
    with torch.inference_mode():
        nodes = enc(batch)
        emb = enc.embed(batch)
    assert nodes.shape == (len(structure.aa), enc.node_dim), nodes.shape
    assert emb.shape == (1, _expected_embed_width(name, enc.node_dim)) and enc.dim == emb.shape[1]
    assert torch.isfinite(nodes).all() and torch.isfinite(emb).all()
    assert nodes.std(dim=0).max() > 0  # residues get different features: the structure reached the output


def test_study_params_hold_every_gdm_and_the_released_scannet_variant():
    study = load_params(REPO / "benchmarks" / "study_params.yaml")
    s = study.structure
    assert set(registry.available()) <= set(s.gdms)
    assert s.base("scannet_released") == "scannet" and s.section("scannet_released").weights.endswith(
        "ScanNet_PPI_noMSA.h5"
    )
