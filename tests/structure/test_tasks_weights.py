"""Pretraining tasks (pairs, triples, angle bins, EC labels), weights = random | path, device, EC training."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch

from params_helpers import default_params
from protalign.params import Params
from protalign.paths import Paths
from protalign.structure import registry, tasks
from protalign.structure import train as train_stage


def test_ec_label_levels():
    assert tasks.ec_label(["3.2.1.17"], 1) == "3"
    assert tasks.ec_label(["3.2.1.17"], 2) == "3.2"
    assert tasks.ec_label(["3.2.-.-"], 3) is None
    assert tasks.ec_label(["2.7.11.1", "1.1.1.1"], 1) == "1"  # sorted: deterministic choice
    assert tasks.ec_label([], 1) is None and tasks.ec_label(None, 1) is None
    with pytest.raises(ValueError, match="ec_level"):
        tasks.ec_label(["1.1.1.1"], 5)
    labels = {"A": "3", "B": "1", "C": None, "D": "6"}
    classes = tasks.ec_classes(labels, ["A", "B", "C"])  # D is not in train: not a class
    assert classes == ["1", "3"]
    assert tasks.ec_targets(["A", "B", "C", "D"], labels, classes).tolist() == [1, 0, -1, -1]


def test_pairs_and_triples_stay_within_proteins():
    gen = torch.Generator().manual_seed(0)
    ptr = torch.tensor([0, 5, 6, 20])  # the middle protein has one residue: no pairs
    pairs = tasks.sample_pairs(ptr, 50, gen)
    assert pairs.shape == (2, 100)
    g = torch.bucketize(pairs, ptr[1:], right=True)
    assert torch.equal(g[0], g[1]) and (pairs[0] != pairs[1]).all() and not (g == 1).any()
    pos = torch.cumsum(torch.full((20, 3), 1.5), 0)  # a straight line, 2.6 Å steps
    triples = tasks.sample_triples(pos, ptr, 30, gen)
    d = lambda a, b: (pos[a] - pos[b]).norm(dim=1)  # noqa: E731
    assert (d(triples[0], triples[1]) < 10).all() and (d(triples[2], triples[1]) < 10).all()
    assert (triples[0] != triples[2]).all() and (triples[0] != triples[1]).all()


def test_angle_bins_match_brute_force():
    rng = np.random.default_rng(0)
    pos = torch.from_numpy(rng.normal(size=(30, 3))).float()
    triples = torch.from_numpy(rng.choice(30, size=(200, 3), replace=True).T.copy())
    triples = triples[:, (triples[0] != triples[1]) & (triples[2] != triples[1])]
    got = tasks.angle_bins(pos, triples)
    for (i, j, k), b in zip(triples.T.tolist(), got.tolist(), strict=True):
        u, v = (pos[i] - pos[j]).numpy(), (pos[k] - pos[j]).numpy()
        ang = math.acos(np.clip(u @ v / np.linalg.norm(u) / np.linalg.norm(v), -1, 1))
        assert b == min(int(ang / math.pi * 8), 7)


def _params(weights="trained", tasks_=("residue_type", "distance", "angle"), device="cpu") -> Params:
    return default_params(
        structure={
            "gvp": {
                "knn": 10, "node_scalar": 8, "node_vector": 2, "edge_scalar": 4, "layers": 1, "out_dim": 8,
                "weights": weights,
            },
            "gat": {"weights": weights},
            "device": device,
            "threads": 1,
            "train": {"epochs": 2, "batch_size": 2, "max_residues": 60, "tasks": tasks_, "pairs_per_protein": 8},
        }
    )


@pytest.fixture
def repo(tmp_path, real, monkeypatch):
    from protalign.corpus.store import write_store
    from protalign.storage import write_json

    monkeypatch.setenv("PROTALIGN_MAIN_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    ids = ["107L", "154L", "161L", "162L", "163L"]
    paths = Paths(tmp_path)
    write_store(paths.structures, [real(i) for i in ids])
    write_json(paths.split, {"train": ids[:4], "val": ids[4:], "test": []})
    ecs = [["3.2.1.17"], ["3.2.1.17"], ["1.1.1.1"], [], ["3.2.1.17"]]
    paths.proteins.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"id": ids, "ec_numbers": ecs}).to_parquet(paths.proteins)
    return paths


def test_random_weights_and_external_checkpoint(repo):
    summary = train_stage.run(_params("random"), repo, "gvp")
    assert summary["weights"] == "random" and summary["history"] == []
    enc, payload = train_stage.load_checkpoint(repo.structure_model("gvp"))  # weights_only=True inside
    torch.manual_seed(0)
    fresh = registry.build("gvp", _params().structure)
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in enc.state_dict().items())  # seeded init
    # our own checkpoint as an external path ({gdm} placeholder), and a bare state dict
    ext = repo.root / "ext"
    ext.mkdir()
    repo.structure_model("gvp").rename(ext / "gvp.pt")
    train_stage.run(_params("ext/{gdm}.pt"), repo, "gvp")
    again, payload = train_stage.load_checkpoint(repo.structure_model("gvp"))
    assert payload["summary"]["weights"].endswith("ext/gvp.pt")
    assert all(torch.equal(v, enc.state_dict()[k]) for k, v in again.state_dict().items())
    torch.save({k: v * 0 for k, v in enc.state_dict().items()}, ext / "bare.pt")
    train_stage.run(_params("ext/bare.pt"), repo, "gvp")
    zero, _ = train_stage.load_checkpoint(repo.structure_model("gvp"))
    assert all(not v.any() for v in zero.state_dict().values())
    with pytest.raises(ValueError, match="not 'gat'"):
        train_stage.run(dataclasses.replace(_params("ext/gvp.pt")), repo, "gat")
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        train_stage.run(_params("nope.pt"), repo, "gvp")


def test_train_with_ec_task_uses_train_labels(repo):
    summary = train_stage.run(_params(tasks_=("residue_type", "ec")), repo, "gvp")
    assert summary["ec_classes"] == ["1", "3"] and summary["n_ec_classes"] == 2
    last = summary["history"][-1]
    assert 0 <= last["train_ec_acc"] <= 1 and 0 <= last["val_ec_acc"] <= 1 and "val_distance_mae" not in last
    _, payload = train_stage.load_checkpoint(repo.structure_model("gvp"))
    assert payload["head_state_dict"]["ec.2.weight"].shape == (2, 8)


def test_unknown_task_rejected(repo):
    with pytest.raises(ValueError, match="subset of"):
        train_stage.run(_params(tasks_=("contrastive",)), repo, "gvp")
