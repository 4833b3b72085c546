"""Fixed descriptors (composition, foldseek3di) through train/embed_structure, and registry variants
(structure.<alias>: {base: <gdm>, ...}) running their base's code with their own weights setting."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from protalign.params import ParamsError, parse_params
from protalign.paths import Paths
from protalign.storage import load_embeddings, write_json
from protalign.structure import composition, registry
from protalign.structure import embed as embed_stage
from protalign.structure import train as train_stage

REPO = Path(__file__).resolve().parents[2]
IDS = ["107L", "154L", "161L", "11AS"]
SCANNET_H5 = (
    Path(os.environ.get("PROTALIGN_SHARED_REFERENCE", REPO.parent / "shared" / "reference"))
    / "scannet"
    / "ScanNet_PPI_noMSA.h5"
)


def _params(gdms, variants=None, **structure):
    """params.yaml with `gdms`, the given variant sections and overrides, through the real parser."""
    data = copy.deepcopy(yaml.safe_load((REPO / "params.yaml").read_text()))
    s = data["structure"]
    s.update(gdms=list(gdms), threads=1)
    s["gat"].update(hidden=4, heads=2, layers=1)
    s["train"].update(epochs=1, batch_size=2, max_residues=64)
    for key, value in structure.items():  # a mapping merges into its section
        s[key].update(value) if isinstance(value, dict) else s.__setitem__(key, value)
    s.update(copy.deepcopy(variants or {}))
    return parse_params(data, "test")


@pytest.fixture
def repo(tmp_path, real, monkeypatch):
    from protalign.corpus.store import write_store

    monkeypatch.setenv("PROTALIGN_MAIN_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    paths = Paths(tmp_path)
    write_store(paths.structures, [real(i) for i in sorted(IDS)])
    write_json(paths.split, {"train": IDS[:3], "val": IDS[3:], "test": []})
    return paths


def _run(params, paths, gdm):
    train_stage.run(params, paths, gdm)
    embed_stage.run(params, paths, gdm)
    return load_embeddings(paths.structure_embeddings(gdm))


def test_composition_descriptor(make_structure):
    st = make_structure(np.zeros((5, 3)), ["A", "A", "A", "B", "B"], aa=[0, 0, 3, 20, 19])
    enc = composition.CompositionEncoder({"parts": ["aa", "length", "chains"]})
    emb = enc.embed(enc.collate([enc.featurize(st)]))[0].numpy()
    assert emb.shape == (22,) and enc.dim == 22
    assert np.allclose(emb[[0, 3, 19]], [0.5, 0.25, 0.25]) and emb[:20].sum() == pytest.approx(1.0)
    assert emb[20] == pytest.approx(np.log(5)) and emb[21] == 2.0
    blind = composition.CompositionEncoder({"parts": ["aa", "length", "chains"], "residue_types": False})
    be = blind.embed(blind.collate([blind.featurize(blind.input_structure(st))]))[0].numpy()
    assert not be[:20].any() and be[20:].tolist() == emb[20:].tolist()  # no types: only size and chains
    assert registry.is_reference("composition") and not registry.is_trainable("composition")
    assert not registry.is_reference("foldseek3di") and not registry.is_reference("gat")


@pytest.mark.parametrize("gdm", ["composition", "foldseek3di"])
def test_fixed_descriptors_through_the_stages(repo, real, gdm):
    params = _params([gdm])
    emb = _run(params, repo, gdm)
    _, payload = train_stage.load_checkpoint(repo.structure_model(gdm))
    assert payload["summary"]["weights"] == "none" and payload["summary"]["trainable"] is False
    assert payload["summary"]["method"] == ("composition" if gdm == "composition" else "mini3di 0.2.1")
    assert payload["state_dict"] == {}
    enc = registry.build(gdm, params.structure)
    direct = enc.embed(enc.collate([enc.featurize(real(i)) for i in emb.ids])).numpy()
    assert emb.ids == sorted(IDS) and np.array_equal(emb.vectors, direct)


def test_variant_runs_its_base_with_its_own_weights(repo):
    """gat_untrained (base gat, weights: random) beside gat (trained): the variant's checkpoint is the seeded
    initial GAT, equal to what gat itself gives with weights: random."""
    variant = {"gat_untrained": {**yaml.safe_load((REPO / "params.yaml").read_text())["structure"]["gat"]}}
    variant["gat_untrained"].update(base="gat", hidden=4, heads=2, layers=1, weights="random")
    params = _params(["gat", "gat_untrained"], variant)
    assert (
        params.structure.base("gat_untrained") == "gat"
        and params.structure.section("gat").weights == "trained"
    )
    v = _run(params, repo, "gat_untrained")
    _, payload = train_stage.load_checkpoint(repo.structure_model("gat_untrained"))
    assert payload["encoder"] == "gat" and payload["summary"]["weights"] == "random"
    trained = _run(params, repo, "gat")
    assert not np.array_equal(trained.vectors, v.vectors)  # the base trained; the variant did not
    plain = _params(["gat"], gat={"weights": "random"})
    base_random = _run(plain, repo, "gat")
    assert np.array_equal(base_random.vectors, v.vectors) and base_random.ids == v.ids


def test_variant_sections_are_checked():
    ok = {"scannet_x": {"base": "scannet", "weights": "random", "pooling": "max", "max_residues": 0}}
    params = _params(["scannet", "scannet_x"], ok)
    assert params.to_dict()["structure"]["scannet_x"] == ok["scannet_x"]  # the file's shape, for MLflow / DVC
    assert parse_params(params.to_dict()) == params
    assert registry.build("scannet_x", params.structure).config["pooling"] == "max"  # its own section
    assert registry.build("scannet", params.structure).config["pooling"] == "mean"
    with pytest.raises(ParamsError, match="structure.oops.base"):
        _params(["gat"], {"oops": {"base": "graph", "weights": "random"}})
    with pytest.raises(ParamsError, match="max_residues"):
        _params(["scannet_x"], {"scannet_x": {"base": "scannet", "weights": "trained", "pooling": None}})
    with pytest.raises(ParamsError, match="structure.gdms"):
        _params(["nope"])


def test_released_scannet_variant_equals_base_with_the_same_weights(repo):
    if not SCANNET_H5.is_file():
        pytest.skip(
            f"released ScanNet weights not at {SCANNET_H5} (../shared/reference); set PROTALIGN_SHARED_REFERENCE"
        )
    released = {
        "scannet_released": {
            "base": "scannet",
            "weights": str(SCANNET_H5),
            "pooling": None,
            "max_residues": 0,
        }
    }
    params = _params(["scannet", "scannet_released"], released)
    v = _run(params, repo, "scannet_released")
    _, payload = train_stage.load_checkpoint(repo.structure_model("scannet_released"))
    assert payload["encoder"] == "scannet" and payload["summary"]["released"] is True
    assert payload["config"]["pretrained"] == "ScanNet_PPI_noMSA.h5"
    same = _params(["scannet"], scannet={"weights": str(SCANNET_H5), "pooling": None, "max_residues": 0})
    base = _run(same, repo, "scannet")
    assert base.ids == v.ids and np.array_equal(base.vectors, v.vectors)


def test_reference_set_matches_the_registry_and_leaves_comparisons():
    from protalign.analysis.findings import finetune_todo, llm_size_todo
    from protalign.analysis.report import compared_pairs, pairs
    from protalign.structure import references

    flagged = {g for g in registry.available() if registry.encoder_class(g).reference}
    assert flagged == set(references.REFERENCE_GDMS) == {"composition"}
    floor = {"composition_b": {"base": "composition", "parts": ["aa"]}}
    params = _params(["gat", "composition", "composition_b"], floor)
    assert references.compared_gdms(params.structure) == ("gat",)  # the variant of the floor too
    assert {g for _, g in pairs(params)} == {"gat", "composition", "composition_b"}  # still in the table
    assert {g for _, g in compared_pairs(params)} == {"gat"}
    assert all(g == "gat" for todo in (llm_size_todo(params), finetune_todo(params)) for pr in todo for _, g in pr)


def test_torchdrug_gearnet_state_dict_as_a_variants_weights(repo, real):
    """A TorchDrug state dict (the 32x32 fixture of tests/fixtures/gearnet) named as `weights` is imported as
    published: the variant's embeddings equal the port loading the same file through gearnet_edge.checkpoint."""
    from protalign.structure.gearnet import GearNetEncoder

    fixture = REPO / "tests" / "fixtures" / "gearnet" / "torchdrug_gearnet_edge_32x32.pt"
    section = {"hidden_dims": [32, 32], "readout": "sum", "checkpoint": None, "weights": str(fixture)}
    params = _params(["gearnet_released"], {"gearnet_released": {"base": "gearnet_edge", **section}})
    v = _run(params, repo, "gearnet_released")
    _, payload = train_stage.load_checkpoint(repo.structure_model("gearnet_released"))
    assert payload["config"]["released"] == fixture.name and payload["config"]["checkpoint"] is None
    ref = GearNetEncoder({**registry.build("gearnet_released", params.structure).config, "checkpoint": str(fixture)})
    direct = ref.eval().embed(ref.collate([ref.featurize(real(i)) for i in v.ids])).detach().numpy()
    assert np.allclose(v.vectors, direct, atol=1e-5)
