"""`evaluate` stage on synthetic EmbeddingSets written to a tmp Paths: files, keys, shared ids, determinism."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from synthetic import make_world

from protalign.align import evaluate, train


def test_writes_metrics_and_per_protein(world):
    train.train_pair(world.params, world.paths, "llm-a", "gdm-x")
    m = evaluate.run(world.params, world.paths, "llm-a", "gdm-x")
    on_disk = json.loads(world.paths.metrics("llm-a", "gdm-x").read_text())
    assert on_disk == json.loads(json.dumps(m))
    for key in ("alignment_score", "baseline_alignment_score", "matched_cosine_mean", "mrr_s2t", "mrr_t2s"):
        assert isinstance(on_disk[key], float)
    for k in (1, 5, 10):
        assert 0.0 <= on_disk[f"recall@{k}_s2t"] <= on_disk.get(f"recall@{k + 1}_s2t", 1.0) <= 1.0
        assert f"recall@{k}_t2s" in on_disk and f"baseline_recall@{k}_t2s" in on_disk
    assert (on_disk["n_test"], on_disk["n_train"], on_disk["n_val"], on_disk["n_missing"]) == (32, 96, 32, 0)
    assert on_disk["ties"] == "pessimistic"
    table = pd.read_csv(world.paths.per_protein("llm-a", "gdm-x"))
    assert list(table.columns) == ["id", "matched_cosine", "rank_s2t", "rank_t2s"]
    assert table["id"].tolist() == world.split["test"]
    assert table["matched_cosine"].mean() == pytest.approx(on_disk["matched_cosine_mean"], abs=1e-7)
    assert (table["rank_s2t"] == 1).mean() == pytest.approx(on_disk["recall@1_s2t"])
    assert (1 / table["rank_t2s"]).mean() == pytest.approx(on_disk["mrr_t2s"], abs=1e-9)
    assert table["rank_s2t"].between(1, 32).all()


def test_baseline_is_the_untrained_start(tmp_path):
    """With zero epochs of learning (lr=0) the trained heads ARE the baseline: identical numbers."""
    world = make_world(tmp_path, align={"lr": 0.0, "epochs": 1})
    train.train_pair(world.params, world.paths, "llm-a", "gdm-x")
    m = evaluate.run(world.params, world.paths, "llm-a", "gdm-x")
    assert m["alignment_score"] == m["baseline_alignment_score"]
    assert m["mrr_s2t"] == m["baseline_mrr_s2t"]


def test_same_seed_gives_identical_metrics_bytes(tmp_path):
    blobs = []
    for name in ("first", "second"):
        world = make_world(tmp_path / name, align={"epochs": 8})
        train.train_pair(world.params, world.paths, "llm-a", "gdm-x")
        evaluate.run(world.params, world.paths, "llm-a", "gdm-x")
        blobs.append(
            (
                world.paths.metrics("llm-a", "gdm-x").read_bytes(),
                world.paths.per_protein("llm-a", "gdm-x").read_bytes(),
            )
        )
    assert blobs[0] == blobs[1]


def test_evaluation_uses_ids_all_models_share(tmp_path):
    probe = make_world(tmp_path / "probe")
    test_ids = probe.split["test"]
    # llm-b could not embed three test proteins, gdm-y one more; every pair must drop all four
    drop = {"text/llm-b": test_ids[:3], "structure/gdm-y": test_ids[3:4]}
    world = make_world(tmp_path / "w", llms=("llm-a", "llm-b"), gdms=("gdm-x", "gdm-y"), drop=drop,
                       align={"epochs": 2})  # fmt: skip
    results = {}
    for llm in ("llm-a", "llm-b"):
        for gdm in ("gdm-x", "gdm-y"):
            train.train_pair(world.params, world.paths, llm, gdm)
            results[(llm, gdm)] = evaluate.run(world.params, world.paths, llm, gdm)
            ids = pd.read_csv(world.paths.per_protein(llm, gdm))["id"].tolist()
            assert ids == test_ids[4:]
    full = results[("llm-a", "gdm-x")]
    assert full["n_test"] == 28 and full["n_test_pair"] == 32 and full["n_test_not_shared"] == 4
    assert results[("llm-b", "gdm-y")]["n_test_pair"] == 28 and results[("llm-b", "gdm-y")]["n_missing"] == 4
    assert full["shared_embedding_sets"] == ["text/llm-a", "text/llm-b", "structure/gdm-x", "structure/gdm-y"]


def test_clear_errors(world, tmp_path):
    with pytest.raises(FileNotFoundError, match="align stage"):
        evaluate.run(world.params, world.paths, "llm-a", "gdm-x")
    train.train_pair(world.params, world.paths, "llm-a", "gdm-x")
    # the structure embeddings changed width after training: refuse to score stale heads
    other = make_world(tmp_path / "other", d_structure=5)
    for f in other.paths.structure_embeddings("gdm-x").iterdir():
        (world.paths.structure_embeddings("gdm-x") / f.name).write_bytes(f.read_bytes())
    with pytest.raises(ValueError, match="do not match the trained heads"):
        evaluate.run(world.params, world.paths, "llm-a", "gdm-x")


def test_chance_levels():
    out = evaluate.chance_levels(4, (1, 10))
    assert out["chance_recall@1"] == 0.25 and out["chance_recall@10"] == 1.0
    assert out["chance_mrr"] == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)
    assert np.isfinite(out["chance_mrr"])
